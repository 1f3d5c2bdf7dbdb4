"""The contrast boxes (camloc/probe/contrast.py): the score by hand, the reference subset, the settings' checks, and
the boxes of the training images of issue 11 item 6's case against their true boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import camloc
from camloc.boxes import box_iou
from camloc.errors import InputError
from camloc.probe.contrast import ContrastSettings, contrast_boxes, contrast_scores, reference_images
from tests.probe.test_probe_maps import disc_or_square


def test_contrast_score_by_hand() -> None:
    # bank: image 0 (class 0) holds [1, 0]; image 1 (class 0) holds [0.8, 0.6] and [0.6, 0.8]; image 2 (class 1)
    # holds [0, 1]. The cell [1, 0] of image 0, k = 1: its nearest same-class cell of another image is [0.8, 0.6]
    # (distance sqrt(0.4)), its nearest other-class cell [0, 1] (distance sqrt(2)).
    bank = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    classes, images = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 1, 2])
    score = contrast_scores(torch.tensor([[1.0, 0.0]]), 0, 0, bank, classes, images, k=1)
    assert float(score[0]) == pytest.approx(math.sqrt(2) - math.sqrt(0.4), abs=1e-6)
    # k = 2: the mean over both cells of image 1 (sqrt(0.4), sqrt(0.8)); only one other-class cell, so k stops at 1
    score = contrast_scores(torch.tensor([[1.0, 0.0]]), 0, 0, bank, classes, images, k=2)
    assert float(score[0]) == pytest.approx(math.sqrt(2) - (math.sqrt(0.4) + math.sqrt(0.8)) / 2, abs=1e-6)
    # a cell of image 2 (class 1): no other image of its class to compare with
    with pytest.raises(InputError, match="every class needs"):
        contrast_scores(torch.tensor([[0.0, 1.0]]), 1, 2, bank, classes, images, k=1)


def test_reference_images_share_the_cap_between_classes_reproducibly() -> None:
    labels = [0] * 10 + [1] * 3
    chosen = reference_images(labels, most=8, seed=0)  # 4 per class; class 1 has 3, all kept
    assert chosen == sorted(chosen) and chosen == reference_images(labels, most=8, seed=0)
    assert sum(labels[i] == 0 for i in chosen) == 4 and [i for i in chosen if labels[i] == 1] == [10, 11, 12]
    assert reference_images(labels, most=40, seed=0) == list(range(13))
    assert len(reference_images([0, 0, 0, 1, 1, 1, 2, 2, 2], most=3, seed=1)) == 6  # at least 2 per class


def test_contrast_settings_refuse_nonsense() -> None:
    for bad in ({"threshold": 1.0}, {"k": 0}, {"size": 8}, {"max_reference": 1}):
        with pytest.raises(InputError):
            ContrastSettings(**bad)


def test_contrast_boxes_find_the_training_objects() -> None:
    """The 60 training images of tests/probe/test_probe_maps.py (30 red discs, 30 blue squares, 40-80 px on noise
    clutter): the contrast, from the classes alone, boxes 60 of 60 at IoU >= 0.5 (mean 0.75;
    `python benchmarks/probe_maps.py --fits --only cells` prints it for six such sets: 57 to 60 of 60)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        train = [disc_or_square(rng, label) for label in (0, 1) for _ in range(30)]
        boxes = contrast_boxes(camloc.load("default"), [im for im, _ in train], [0] * 30 + [1] * 30)
    finally:
        torch.set_num_threads(before)
    iou = box_iou(torch.from_numpy(boxes).double(), torch.tensor([box for _, box in train]).double()).diagonal()
    assert int((iou >= 0.5).sum()) >= 58, iou.tolist()
    assert float(iou.mean()) > 0.7
