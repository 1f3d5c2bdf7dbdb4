"""The "cells" probe classifier (camloc/probe/cells.py): the cell labels by hand, the rows against a direct
scikit-learn fit, the CAM identity of the fitted probe, and issue 11 item 6's case (red discs vs blue squares)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import camloc
from camloc.boxes import box_iou
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.models.adapters import get_adapter
from camloc.probe.cells import CellSettings, fit_rows, label_cells, scaled_box
from camloc.probe.fit import ProbeSet, fit_probe
from tests.probe.test_probe_maps import CLASSES, disc_or_square


def test_label_cells_by_hand() -> None:
    # a 4 x 4 map over the window (0, 0, 40, 40): cell centres at 5, 15, 25, 35; box (10, 10, 30, 30), shrink 0.5:
    # inner box (15, 15, 25, 25) holds the centre 15 only (25 is outside: x1 exclusive); outer box (0, 0, 40, 40)
    # holds every centre, so no cell is background
    feats = np.arange(2 * 16, dtype=np.float32).reshape(2, 4, 4)
    cells, labels = label_cells(feats, (0, 0, 40, 40), (10, 10, 30, 30), label=1, background=2, shrink=0.5)
    assert labels.tolist() == [1]
    assert cells.tolist() == [[5.0, 21.0]]  # cell (1, 1): channel 0 holds 5, channel 1 holds 16 + 5
    # shrink 0.8: inner (12, 12, 28, 28) -> centres 15, 25 on both axes; outer (7.5, 7.5, 32.5, 32.5) -> the ring of
    # centres 5 and 35 is background
    cells, labels = label_cells(feats, (0, 0, 40, 40), (10, 10, 30, 30), label=0, background=2, shrink=0.8)
    assert labels.tolist() == [0] * 4 + [2] * 12
    assert cells[:4, 0].tolist() == [5.0, 6.0, 9.0, 10.0]
    assert scaled_box((10, 10, 30, 30), 0.5) == (15.0, 15.0, 25.0, 25.0)


def test_fit_rows_are_class_minus_background_of_the_logistic_fit() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) * [1, 2, 3, 4, 5] + [1, 0, -1, 2, 0]
    y = rng.integers(0, 3, 300)
    x[y == 0, 0] += 3
    x[y == 1, 1] -= 4
    weight, bias = fit_rows(x, y, n_classes=2, C=0.5)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    ref = LogisticRegression(C=0.5, max_iter=2000, class_weight="balanced").fit((x - mean) / scale, y)
    ref_logits = ref.decision_function((x - mean) / scale)
    np.testing.assert_allclose(x @ weight.T + bias, ref_logits[:, :2] - ref_logits[:, 2:], rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match=r"class\(es\) \[1\]"):
        fit_rows(x[y != 1], y[y != 1], n_classes=2, C=0.5)


def test_cell_settings_refuse_nonsense() -> None:
    with pytest.raises(InputError):
        CellSettings(shrink=0)
    with pytest.raises(InputError):
        CellSettings(C=-1)


@pytest.fixture(scope="module")
def cells_probe():
    """The cells probe on the training images of tests/probe/test_probe_maps.py, and its 10 test images."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    train = [disc_or_square(rng, label)[0] for label in (0, 1) for _ in range(30)]
    test = [disc_or_square(rng, i % 2) for i in range(10)]
    probe = fit_probe(ProbeSet(list(train), [0] * 30 + [1] * 30, CLASSES), "default", classifier="cells")
    yield probe, [im for im, _ in test], torch.tensor([box for _, box in test])
    torch.set_num_threads(before)


def test_cells_probe_keeps_the_cam_identity_and_reloads(cells_probe, tmp_path) -> None:
    probe, images, _ = cells_probe
    res = camloc.explain(probe.model, images, top_k=2, map_sizes=())
    bias = get_adapter(probe.model).bias.detach()
    for i in range(len(images)):
        assert float(check_identity(res.raw[i][None], res.all_logits[i : i + 1], res.classes[i : i + 1], bias)) < 1e-4
    assert probe.config()["probe"]["classifier"] == "cells"
    probe.save(tmp_path / "probe")
    again = camloc.explain(camloc.load(tmp_path / "probe"), images[:3], top_k=2, map_sizes=())
    np.testing.assert_allclose(again.all_logits.numpy(), res.all_logits[:3].numpy(), atol=1e-5)


def test_cells_probe_boxes_discs_and_squares(cells_probe) -> None:
    """Every image classified; 7 of the 10 boxes at IoU >= 0.5 with explain's default (every disc, 2 of the 5
    squares; the plain probe boxes 1 of 10): docs/probe.md, `python benchmarks/probe_maps.py --fits --only cells`."""
    probe, images, gt = cells_probe
    res = camloc.explain(probe.model, images, top_k=1)
    assert res.classes[:, 0].tolist() == [i % 2 for i in range(10)]
    hits = (box_iou(res.boxes[:, 0].cpu(), gt).diagonal() >= 0.5).tolist()
    assert hits[0::2] == [True] * 5, hits
    assert sum(hits) >= 7, hits
