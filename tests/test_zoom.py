"""`camloc.zoom`: the zoom's torch-free parts give the same windows, boxes and composites on numpy arrays as on
torch tensors (the ONNX runtime runs them on numpy, `camloc.explain` on tensors)."""

from __future__ import annotations

import numpy as np
import torch

from camloc.boxes import box_iou, mask_boxes
from camloc.zoom import SHARE_WINDOW_IOU, compose, peak_scaled, share_windows, window_iou, zoom_windows


def test_window_iou_is_box_iou() -> None:
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 40, size=(200, 4))
    boxes = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], 1)
    boxes[::17] = 0  # some empty boxes
    ref = box_iou(torch.from_numpy(boxes[:100]), torch.from_numpy(boxes[100:])).numpy()
    got = np.array([[window_iou(tuple(a), tuple(b)) for b in boxes[100:]] for a in boxes[:100]])
    assert np.array_equal(got, ref)  # the same double-precision arithmetic, so the same bits
    assert window_iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150


def test_share_windows_by_hand() -> None:
    # (0,0,10,10) vs (1,1,11,11): 81 / (100 + 100 - 81) = 0.68 >= 0.5, joins; (0,0,10,10) vs (5,5,15,15): 25 / 175
    assert window_iou((0, 0, 10, 10), (1, 1, 11, 11)) >= SHARE_WINDOW_IOU > window_iou((0, 0, 10, 10), (5, 5, 15, 15))
    windows = [(0, 0, 10, 10), None, (1, 1, 11, 11), (5, 5, 15, 15), (0, 0, 10, 10)]
    assert share_windows(windows) == [((0, 0, 10, 10), [0, 2, 4]), ((5, 5, 15, 15), [3])]
    assert share_windows([None, None]) == []


def test_zoom_windows_by_hand() -> None:
    # 360 x 480 image: a 40 x 20 box -> the least window (0.25 x 360 = 90 px); a 400 x 300 box -> 360 px, which
    # covers 0.75 of the image (> max_area 0.5): no window; an empty box: none
    boxes = np.array([[100, 100, 140, 120], [40, 20, 440, 320], [0, 0, 0, 0]])
    assert zoom_windows(boxes, 360, 480, 1.0, 0.5) == [(75, 65, 165, 155), None, None]
    assert zoom_windows(torch.from_numpy(boxes), 360, 480, 1.0, 0.8) == [(75, 65, 165, 155), (60, 0, 420, 360), None]


def test_compose_by_hand() -> None:
    """Class 0 zoomed on the 2x2 window at (1, 1), class 1 not: each part divided by its own largest magnitude,
    the window pasted, class 0's box moved into the image; class 1 keeps its coarse map and box."""
    coarse = np.zeros((2, 4, 4), dtype=np.float32)
    coarse[0] = np.arange(16, dtype=np.float32).reshape(4, 4) - 4  # largest magnitude 11
    coarse[1, 0, 0] = -2.0  # largest magnitude 2
    fine = np.zeros((2, 2, 2), dtype=np.float32)
    fine[0] = [[1.0, -4.0], [2.0, 0.0]]  # largest magnitude 4
    fine[1] = 7.0
    boxes = np.array([[0, 0, 4, 4], [0, 0, 1, 1]])
    out = compose(coarse, boxes, [((1, 1, 3, 3), [0])], [fine], [np.array([[1, 0, 2, 1], [0, 0, 2, 2]])])
    want = coarse / np.float32([11, 2])[:, None, None]
    want[0, 1:3, 1:3] = fine[0] / 4
    assert np.array_equal(out, want)
    assert boxes.tolist() == [[2, 1, 3, 2], [0, 0, 1, 1]]
    # an empty fine box keeps the coarse one
    boxes = np.array([[0, 0, 4, 4], [0, 0, 1, 1]])
    compose(coarse, boxes, [((1, 1, 3, 3), [0, 1])], [fine], [np.zeros((2, 4), dtype=np.int64)])
    assert boxes.tolist() == [[0, 0, 4, 4], [0, 0, 1, 1]]


def test_numpy_and_torch_compose_the_same() -> None:
    rng = np.random.default_rng(1)
    coarse = rng.normal(size=(3, 30, 40)).astype(np.float32)
    fines = [rng.normal(size=(3, 12, 12)).astype(np.float32), rng.normal(size=(3, 8, 8)).astype(np.float32)]
    plan = [((5, 3, 17, 15), [0, 2]), ((30, 20, 38, 28), [1])]
    fine_boxes = [rng.integers(0, 8, size=(3, 4)) for _ in fines]
    boxes_np = rng.integers(0, 30, size=(3, 4))
    boxes_t = torch.from_numpy(boxes_np.copy())
    got_np = compose(coarse, boxes_np, plan, fines, fine_boxes)
    got_t = compose(
        torch.from_numpy(coarse), boxes_t, plan, [torch.from_numpy(f) for f in fines],
        [torch.from_numpy(b) for b in fine_boxes],
    )  # fmt: skip
    assert np.array_equal(got_np, got_t.numpy()) and np.array_equal(boxes_np, boxes_t.numpy())
    assert np.array_equal(peak_scaled(coarse), peak_scaled(torch.from_numpy(coarse)).numpy())
    assert peak_scaled(np.zeros((1, 2, 2), dtype=np.float32)).tolist() == [[[0.0, 0.0], [0.0, 0.0]]]


def test_mask_boxes_numpy_equals_torch() -> None:
    rng = np.random.default_rng(2)
    masks = rng.random((4, 6, 23, 31)) > 0.97
    masks[1, 2] = False
    got = mask_boxes(masks)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.shape == (4, 6, 4)
    assert np.array_equal(got, mask_boxes(torch.from_numpy(masks)).numpy())
    assert got[1, 2].tolist() == [0, 0, 0, 0]
    ys, xs = np.nonzero(masks[0, 0])
    assert got[0, 0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
