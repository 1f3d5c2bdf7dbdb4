"""The "span" probe classifier (camloc/probe/span.py): optimality of the non-negative fit (KKT conditions), the
probe's rows are exactly non-negative mixes of the backbone's classifier rows, the model's logits equal the fit's,
the CAM identity, and the saved probe reloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camloc
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.models.adapters import get_adapter
from camloc.probe.fit import decision_logits, extract_features, fit_linear, fit_probe, open_probe_set
from camloc.probe.span import SpanModel, nonnegative_softmax_fit
from tests.probe.test_fit import BACKBONE, make_folder, native_logits


@pytest.fixture(scope="module")
def span_probe(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    data = open_probe_set(make_folder(tmp_path_factory.mktemp("data"), per_class=6))
    probe = fit_probe(data, BACKBONE, classifier="span", Cs=[0.1, 1.0], folds=2)
    yield data, probe
    torch.set_num_threads(before)


def softmax_gradient(z: np.ndarray, labels: np.ndarray, a: np.ndarray, d: np.ndarray, C: float) -> np.ndarray:
    """d/da of mean cross-entropy + |a|^2 / (2 C N), written out independently of the fit's code."""
    s = z @ a.T + d
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    return p.T @ z / len(labels) + a / (C * len(labels))


def test_nonnegative_fit_meets_the_kkt_conditions() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(80, 6))
    labels = np.where(z[:, 2] > 0.5, 2, (z[:, 0] - z[:, 1] + 0.3 * rng.normal(size=80) > 0).astype(np.int64))
    a, d = nonnegative_softmax_fit(z, labels, 3, C=0.5)
    g = softmax_gradient(z, labels, a, d, 0.5)
    assert a.min() >= 0.0
    assert (a == 0).any()  # the bound is active: an unconstrained fit would use negative weights here
    np.testing.assert_allclose(g[a > 1e-8], 0.0, atol=1e-4)  # free weights: zero gradient
    assert g[a <= 1e-8].min() > -1e-4  # weights at the bound: the loss would not fall below zero


def test_fit_linear_needs_the_backbone_classifier() -> None:
    with pytest.raises(InputError, match="backbone's own classifier"):
        fit_linear(np.zeros((4, 3)), [0, 0, 1, 1], "span", folds=2)
    with pytest.raises(InputError, match="pooled features"):
        fit_linear(np.zeros((4, 3)), [0, 0, 1, 1], "span", folds=2, backbone_classifier=(np.zeros((5, 2)), None))


def test_span_rows_are_nonnegative_mixes_of_the_backbone_rows(span_probe) -> None:
    _, probe = span_probe
    span = probe.fit.estimator
    assert isinstance(span, SpanModel) and probe.fit.classifier == "span"
    own_w, own_b = span.classifier_weight, span.classifier_bias  # the backbone's (random weights: not reloadable)
    assert own_w.shape == (1000, 256) and own_b.shape == (1000,)
    assert span.rows.shape == (3, own_w.shape[0]) and span.rows.min() >= 0.0
    head = get_adapter(probe.model)
    np.testing.assert_allclose(head.weight.detach().double().numpy(), span.rows @ own_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        head.bias.detach().double().numpy(), span.rows @ own_b + span.offsets, rtol=1e-5, atol=1e-5
    )


def test_span_probe_logits_identity_and_reload(span_probe, tmp_path) -> None:
    data, probe = span_probe
    feats, _ = extract_features(probe.model, data.sources)
    np.testing.assert_allclose(
        native_logits(probe.model, data.sources), decision_logits(probe.fit, feats), rtol=1e-4, atol=1e-4
    )
    res = camloc.explain(probe.model, data.sources[:4], top_k=3, map_sizes=())
    bias = get_adapter(probe.model).bias.detach()
    for i, raw in enumerate(res.raw if isinstance(res.raw, list) else list(res.raw)):
        assert float(check_identity(raw[None], res.all_logits[i : i + 1], res.classes[i : i + 1], bias)) < 1e-4
    probe.save(tmp_path / "probe")
    assert camloc.load(tmp_path / "probe").camloc_info.labels == data.classes
    np.testing.assert_allclose(
        native_logits(camloc.load(tmp_path / "probe"), data.sources[:3]),
        native_logits(probe.model, data.sources[:3]),
        atol=1e-6,
    )
