"""Issue 11, item 6: a probe on the default backbone for red discs vs blue squares (40-80 px on noise clutter, 30
training images per class), fitted and explained with the defaults, as `camloc probe fit` then `camloc explain
--model` run them. Logistic regression on pooled features classifies every test image but boxes 1 of 10: it reads
the context every cell carries (docs/probe.md, cause 1). The default classifier "auto" (`camloc.probe.auto`)
cross-validates it against the cells classifier (rows fitted on cells labelled by boxes the training images draw
themselves) and keeps cells, which classifies these images as well and boxes them: 10 of 10 measured; the test
asks for 8 of 10 at IoU >= 0.5 with explain's default settings, the issue's target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.boxes import box_iou
from camloc.probe.fit import Probe, ProbeSet, fit_probe

SIDE = 224
CLASSES = ["disc", "square"]


def disc_or_square(rng: np.random.Generator, label: int, background: str = "pixels") -> tuple[Image.Image, list[int]]:
    """A SIDE x SIDE noise image with six small random-colour rectangles (clutter) and one object of 40-80 px:
    a red disc (label 0) or a blue square (label 1). Returns the image and the object's box [x0, y0, x1, y1).
    background: "pixels" (per-pixel noise, the test's) or "smooth" (random SIDE/8-square colours, bicubic)."""
    if background == "smooth":
        noise = rng.integers(0, 256, (SIDE // 8, SIDE // 8, 3)).astype(np.uint8)
        a = np.asarray(Image.fromarray(noise).resize((SIDE, SIDE), Image.Resampling.BICUBIC)).copy()
    else:
        a = rng.integers(0, 256, (SIDE, SIDE, 3)).astype(np.uint8)
    for _ in range(6):
        y, x = (int(v) for v in rng.integers(0, SIDE - 20, 2))
        h, w = (int(v) for v in rng.integers(4, 20, 2))
        a[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    s = int(rng.integers(40, 81))
    y0, x0 = (int(v) for v in rng.integers(0, SIDE - s, 2))
    if label == 0:
        yy, xx = np.mgrid[:SIDE, :SIDE]
        r = s / 2
        a[(yy - y0 - r + 0.5) ** 2 + (xx - x0 - r + 0.5) ** 2 <= r * r] = (220, 30, 30)
    else:
        a[y0 : y0 + s, x0 : x0 + s] = (30, 30, 220)
    return Image.fromarray(a), [x0, y0, x0 + s, y0 + s]


@pytest.fixture(scope="module")
def discs_and_squares() -> tuple[Probe, list[Image.Image], list[int], torch.Tensor]:
    """The fitted probe and 10 test images (5 per class) with their labels and boxes (10, 4)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    train = [disc_or_square(rng, label)[0] for label in (0, 1) for _ in range(30)]
    probe = fit_probe(ProbeSet(list(train), [0] * 30 + [1] * 30, CLASSES), "default")
    test = [disc_or_square(rng, i % 2) for i in range(10)]
    yield probe, [im for im, _ in test], [i % 2 for i in range(10)], torch.tensor([box for _, box in test])
    torch.set_num_threads(before)


def test_probe_classifies_discs_and_squares(discs_and_squares) -> None:
    probe, images, labels, _ = discs_and_squares
    res = camloc.explain(probe.model, images, top_k=1, map_sizes=())
    assert res.classes[:, 0].tolist() == labels


def test_default_fit_chooses_cells_here(discs_and_squares) -> None:
    """The trial is every training image (60 < 120); cells is kept, so it erred on at most 4 images more than logreg
    (5 against it and none for it: one-sided McNemar p = 1/32 < 0.05), and the config says so."""
    probe = discs_and_squares[0]
    meta = probe.config()["probe"]
    assert meta["classifier"] == "cells" and meta["requested"] == "auto", meta
    assert meta["auto_trial_images"] == 60 and meta["auto_p_value"] >= 0.05
    assert meta["auto_logreg_right"] - meta["auto_cells_right"] <= 4
    assert probe.fit.cv_accuracy == meta["auto_cells_right"] / 60  # the trial's folds were the cross-validation


def test_probe_boxes_on_discs_and_squares(discs_and_squares) -> None:
    probe, images, _, gt = discs_and_squares
    res = camloc.explain(probe.model, images, top_k=1)  # the default settings
    iou = box_iou(res.boxes[:, 0].cpu(), gt).diagonal()
    assert int((iou >= 0.5).sum()) >= 8, iou.tolist()
