"""The "cells" probe classifier (camloc/probe/cells.py): the cell labels by hand, the rows against a direct
scikit-learn fit, the CAM identity of the fitted probe, its cross-validated accuracy, and issue 11 item 6's case
(red discs vs blue squares)."""

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
from camloc.probe.cells import CellSettings, cross_validated_accuracy, fit_rows, label_cells, scaled_box
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


def test_cross_validated_accuracy_classifies_held_out_images_by_their_pooled_features() -> None:
    # 2 classes x 6 images; each image's cells: 3 object cells near +-e_k (its class k) and 3 background cells near 0
    rng = np.random.default_rng(0)
    labels = [0] * 6 + [1] * 6
    per_image = []
    for c in labels:
        obj = np.eye(2)[c] * 3 + rng.normal(0, 0.1, (3, 2))
        per_image.append((np.concatenate([obj, rng.normal(0, 0.1, (3, 2))]), np.array([c] * 3 + [2] * 3)))
    pooled = np.stack([np.eye(2)[c] for c in labels])
    accuracy, folds = cross_validated_accuracy(per_image, pooled, labels, n_classes=2, C=1.0, folds=3)
    assert (accuracy, folds) == (1.0, 3)
    # the same cells, the pooled features of each image swapped to the other class's: every held-out image wrong
    assert cross_validated_accuracy(per_image, pooled[:, ::-1], labels, 2, 1.0, 3)[0] == 0.0
    # folds are capped by the smallest class
    assert cross_validated_accuracy(per_image, pooled, labels, 2, 1.0, 10)[1] == 6


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
    assert probe.config()["probe"]["classifier"] == "cells" and probe.config()["probe"]["contrast_threshold"] == 0.7
    probe.save(tmp_path / "probe")
    again = camloc.explain(camloc.load(tmp_path / "probe"), images[:3], top_k=2, map_sizes=())
    np.testing.assert_allclose(again.all_logits.numpy(), res.all_logits[:3].numpy(), atol=1e-5)


def test_cells_probe_boxes_discs_and_squares(cells_probe) -> None:
    """Every image classified; at least 9 of the 10 boxes at IoU >= 0.5 with explain's default (10 of 10 here, the
    lowest IoU 0.51; the plain probe boxes 1 of 10): docs/probe.md, `python benchmarks/probe_maps.py --fits --only
    cells`."""
    probe, images, gt = cells_probe
    res = camloc.explain(probe.model, images, top_k=1)
    assert res.classes[:, 0].tolist() == [i % 2 for i in range(10)]
    iou = box_iou(res.boxes[:, 0].cpu(), gt).diagonal()
    assert int((iou >= 0.5).sum()) >= 9 and float(iou.mean()) > 0.65, iou.tolist()


def test_cells_probe_cross_validates_its_accuracy(cells_probe) -> None:
    """The cell fit's accuracy is held out: 5 folds over the 60 training images, each classified by its pooled
    features (59 of 60 right here)."""
    probe, _, _ = cells_probe
    assert probe.fit.folds == 5
    assert 0.9 <= probe.fit.cv_accuracy <= 1.0
    assert probe.config()["probe"]["cv_accuracy"] == round(probe.fit.cv_accuracy, 6)
