"""Boxes from hand-made maps: the paper's rule, both threshold readings, components, IoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from camloc.boxes import (
    BoxRule,
    all_boxes_from_map,
    box_from_map,
    box_iou,
    boxes_from_maps,
    component_boxes,
    largest_component_box,
    threshold_mask,
)
from camloc.errors import InputError


def blank(h: int = 20, w: int = 30) -> np.ndarray:
    return np.zeros((h, w), dtype=np.float32)


def test_one_blob() -> None:
    m = blank()
    m[5:9, 10:16] = 1.0
    assert box_from_map(m).tolist() == [10, 5, 16, 9]  # x1, y1 exclusive


def test_two_blobs_largest_wins_and_all_components() -> None:
    m = blank()
    m[2:4, 2:4] = 1.0  # 4 pixels
    m[10:15, 20:28] = 0.9  # 40 pixels
    assert box_from_map(m).tolist() == [20, 10, 28, 15]
    assert all_boxes_from_map(m).tolist() == [[20, 10, 28, 15], [2, 2, 4, 4]]


def test_empty_and_constant_maps_give_empty_box() -> None:
    assert box_from_map(blank()).tolist() == [0, 0, 0, 0]
    assert box_from_map(np.full((5, 5), 3.0), BoxRule(0.2, "minmax")).tolist() == [0, 0, 0, 0]
    assert box_from_map(np.full((5, 5), 3.0), BoxRule(0.2, "max")).tolist() == [0, 0, 5, 5]  # all >= 0.2 x max
    assert box_from_map(np.full((5, 5), np.nan)).tolist() == [0, 0, 0, 0]


def test_map_touching_the_border() -> None:
    m = blank()
    m[:, 25:] = 1.0
    m[0, 0] = 0.1  # below 20%
    assert box_from_map(m).tolist() == [25, 0, 30, 20]


def test_threshold_readings_differ() -> None:
    # raw CAM with a negative minimum: 20% of the max (2.0) is 0.4; 20% of the range (-8..2) is -6.
    m = np.array([[-8.0, -7.0, -5.0, 0.5, 2.0]])
    assert threshold_mask(m, BoxRule(0.2, "max")).tolist() == [[False, False, False, True, True]]
    assert threshold_mask(m, BoxRule(0.2, "minmax")).tolist() == [[False, False, True, True, True]]
    assert box_from_map(m, BoxRule(0.2, "max")).tolist() == [3, 0, 5, 1]
    assert box_from_map(m, BoxRule(0.2, "minmax")).tolist() == [2, 0, 5, 1]
    assert box_from_map(-np.ones((3, 3)), BoxRule(0.2, "max")).tolist() == [0, 0, 0, 0]


def test_diagonal_pixels_are_one_component() -> None:
    m = blank(5, 5)
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0  # 8-connectivity joins them
    assert box_from_map(m).tolist() == [0, 0, 3, 3]


def test_boxes_from_maps_keeps_leading_shape() -> None:
    maps = torch.zeros(2, 3, 10, 10)
    maps[1, 2, 4:6, 1:3] = 1.0
    boxes = boxes_from_maps(maps)
    assert boxes.shape == (2, 3, 4)
    assert boxes[1, 2].tolist() == [1, 4, 3, 6]
    assert boxes[0, 0].tolist() == [0, 0, 0, 0]


def test_box_iou_hand_computed() -> None:
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = torch.tensor([[5, 5, 15, 15], [0, 0, 10, 10]])
    iou = box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[25 / 175, 1.0], [0.0, 0.0]], dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 25), st.integers(0, 15), st.integers(1, 5), st.integers(1, 5))
def test_single_rectangle_is_recovered(x0: int, y0: int, w: int, h: int) -> None:
    m = blank()
    x1, y1 = min(x0 + w, 30), min(y0 + h, 20)
    m[y0:y1, x0:x1] = 1.0
    assert box_from_map(m).tolist() == [x0, y0, x1, y1]
    assert float(box_iou(torch.tensor([[x0, y0, x1, y1]]), torch.tensor([[x0, y0, x1, y1]]))) == 1.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["minmax", "max"]), st.floats(0.05, 0.9))
def test_batched_boxes_equal_single_map_rule(seed: int, mode: str, threshold: float) -> None:
    """The batched path (thresholds in one op, components on each mask's crop) equals the one-map rule."""
    rng = np.random.default_rng(seed)
    maps = torch.nn.functional.interpolate(
        torch.from_numpy(rng.normal(size=(3, 1, 5, 6))).float(), size=(40, 48), mode="bilinear", align_corners=False
    )[:, 0]
    batched = boxes_from_maps(maps, BoxRule(threshold, mode))
    for m, b in zip(maps, batched, strict=False):
        assert b.tolist() == box_from_map(m.numpy(), BoxRule(threshold, mode)).tolist()


def test_box_rule_refuses_bad_settings() -> None:
    """Thresholds outside [0, 1], NaN / inf and unknown modes are one-line InputErrors, not silent boxes."""
    for bad in (float("nan"), float("inf"), -0.1, 2.0):
        with pytest.raises(InputError, match="threshold"):
            BoxRule(bad)
    with pytest.raises(InputError, match="mode"):
        BoxRule(0.2, "median")  # the runtime check is what is tested
    assert BoxRule() == BoxRule(0.2, "max")


def _reference_box(mask: np.ndarray) -> list[int]:
    """The largest component's box from OpenCV's labelling with statistics (`component_boxes`)."""
    boxes, _ = component_boxes(mask)
    return boxes[0].tolist() if len(boxes) else [0, 0, 0, 0]


@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
    blocks=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_largest_component_box_equals_labelling_with_stats(h: int, w: int, density: float, blocks: int, seed: int):
    """Random masks (pixel noise at any density, upscaled into blocks for larger components, so rings, holes,
    nested components, diagonal contacts, ties and components on the border all occur) give the box of the
    reference, tie-breaking included."""
    rng = np.random.default_rng(seed)
    small = rng.random((-(-h // blocks), -(-w // blocks))) < density
    mask = np.kron(small, np.ones((blocks, blocks), dtype=bool))[:h, :w]
    mask = mask ^ (rng.random((h, w)) < 0.02)  # a few flipped pixels: ragged borders, specks
    assert largest_component_box(mask).tolist() == _reference_box(mask)


def test_largest_component_inside_a_ring() -> None:
    """A thin ring with a larger filled component inside its hole: the inner one wins (it is not an outer
    border of the picture, yet a component of its own)."""
    mask = np.zeros((40, 40), dtype=bool)
    mask[2:38, 2:38] = True
    mask[3:37, 3:37] = False  # ring: 4 * 35 = 140 pixels
    mask[8:30, 8:30] = True  # 484 pixels, inside the hole
    assert largest_component_box(mask).tolist() == [8, 8, 30, 30] == _reference_box(mask)
    mask[8:30, 8:30] = False
    mask[10:14, 10:14] = True  # now the ring is larger
    assert largest_component_box(mask).tolist() == [2, 2, 38, 38] == _reference_box(mask)
