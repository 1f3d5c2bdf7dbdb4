"""Issue 11, item 6's case with the "span" classifier (camloc/probe/span.py): red discs vs blue squares, 40-80 px
on per-pixel noise, 30 training images per class, explained with the default settings. The plain probe boxes at most
one disc; the span probe boxes every disc, though still none of the squares, so the issue's 8 of 10 is not reached
(tests/probe/test_probe_maps.py keeps that bar)."""

from __future__ import annotations

import numpy as np
import torch

import camloc
from camloc.boxes import box_iou
from camloc.probe.fit import ProbeSet, fit_probe
from tests.probe.test_probe_maps import CLASSES, disc_or_square


def test_span_probe_boxes_every_disc() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)  # the images of tests/probe/test_probe_maps.py
        train = [disc_or_square(rng, label)[0] for label in (0, 1) for _ in range(30)]
        test = [disc_or_square(rng, i % 2) for i in range(10)]
        data = ProbeSet(list(train), [0] * 30 + [1] * 30, CLASSES)
        images, gt = [im for im, _ in test], torch.tensor([box for _, box in test])
        hits = {}
        for classifier in ("logreg", "span"):
            probe = fit_probe(data, "default", classifier=classifier)
            res = camloc.explain(probe.model, images, top_k=1)
            assert res.classes[:, 0].tolist() == [i % 2 for i in range(10)]
            iou = box_iou(res.boxes[:, 0].cpu(), gt).diagonal()
            hits[classifier] = (iou[0::2] >= 0.5).tolist()
    finally:
        torch.set_num_threads(before)
    assert hits["span"] == [True] * 5, hits
    assert sum(hits["logreg"]) < 5, hits
