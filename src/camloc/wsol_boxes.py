"""Boxes from score maps by the wsolevaluation protocol (Choe et al., CVPR 2020), every CAM threshold at once.

Conventions (the same as clovaai/wsolevaluation `compute_bboxes_from_scoremaps`; see docs/evaluation.md):

* the float map in [0, 1] becomes `u8 = (map * 255).astype(uint8)` (truncation);
* CAM threshold `t` binarises it as `u8 > int(t * u8.max())` (so thresholds only matter through that integer
  "level", and many thresholds can share one mask);
* contours by OpenCV `findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`: outer borders AND hole borders;
* "largest" is the first contour of maximal `contourArea` (Python's `max` keeps the first);
* a contour's box is `boundingRect` -> `[x, y, x + w, y + h]` with `x1`, `y1` clipped to `W - 1`, `H - 1`,
  read as INCLUSIVE pixel coordinates by `wsol_iou` (the +1 convention);
* a level with no foreground gives the single box `[0, 0, 0, 0]`.

Two implementations with identical output: `contour_boxes_reference` (one full `findContours` per threshold, the
straightforward loop) and `contour_boxes` (one pass per *distinct* level, each on the crop of its mask, with
contour areas and boxes computed for all contours at once in numpy). `contour_box_sets` (what `BoxAccuracy` uses)
gives the same largest boxes and, per threshold, the same multiset of boxes in another order; on levels with many
contours (noisy maps) it reads them off connected components instead of tracing every contour:

* the outer borders of `RETR_TREE` are those of the 8-connected foreground components, and a border's
  `boundingRect` is its component's bounding box;
* the hole borders are those of the 4-connected background components that do not touch the image frame (nor the
  crop's edge: outside the crop all is background), traced on the foreground pixels around them: their boxes are
  the holes' bounding boxes grown by one pixel on each side;
* the largest contour is an outer border (a hole's border encloses no more than its component's outer border, and
  equal area means the same polygon, so the same box); an outer border's polygon joins pixel centres inside the
  component's bounding box, so `2 * contourArea <= 2 * (w - 1) * (h - 1)`: only components whose bound reaches
  the exact area of the one with the largest bound are traced (each alone on its crop, `RETR_EXTERNAL`, the same
  polygon as in the whole mask). A tie of areas between different boxes falls back to `findContours` on that
  level (the reference's "first contour" needs its order).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["ContourBoxes", "to_uint8", "threshold_levels", "contour_boxes", "contour_box_sets",
           "contour_boxes_reference"]


@dataclass(frozen=True)
class ContourBoxes:
    """Boxes of every CAM threshold of one map.

    largest: (T, 4) int64, the box of the largest contour at each threshold.
    boxes:   (N, 4) int64, the boxes of all contours, grouped by threshold (at least one per threshold).
    owner:   (N,) int64, the threshold index of each row of `boxes` (non-decreasing).
    """

    largest: np.ndarray
    boxes: np.ndarray
    owner: np.ndarray


def to_uint8(scoremap: np.ndarray) -> np.ndarray:
    """(H, W) float map in [0, 1] -> (H, W) uint8 as `(map * 255).astype(uint8)` (truncation, as the reference)."""
    return (scoremap * 255).astype(np.uint8)


def threshold_levels(u8_max: int, thresholds: np.ndarray) -> np.ndarray:
    """(T,) integer levels `int(t * u8_max)` of the thresholds; a pixel is foreground when `u8 > level`."""
    return np.array([int(t * u8_max) for t in thresholds], dtype=np.int64)


def _boxes_of(contours: list, offsets: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) clipped inclusive boxes and (n,) doubled areas of n OpenCV contours, each shifted by its (dx, dy)."""
    lengths = np.fromiter((len(c) for c in contours), dtype=np.int64, count=len(contours))
    pts = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    nxt = np.arange(1, len(pts) + 1)
    nxt[ends - 1] = starts  # each contour closes on its first point
    x, y = pts[:, 0], pts[:, 1]
    area2 = np.abs(np.add.reduceat(x * y[nxt] - x[nxt] * y, starts))  # shoelace = 2 * cv2.contourArea
    dx, dy = offsets[:, 0], offsets[:, 1]
    x0 = np.minimum.reduceat(x, starts) + dx
    y0 = np.minimum.reduceat(y, starts) + dy
    x1 = np.minimum(np.maximum.reduceat(x, starts) + dx + 1, width - 1)
    y1 = np.minimum(np.maximum.reduceat(y, starts) + dy + 1, height - 1)
    return np.stack([x0, y0, x1, y1], axis=1), area2


def _components_level(mask: np.ndarray, dx: int, dy: int, width: int, height: int
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """Boxes of all contours (outer borders first, then hole borders) and the box of the largest contour of one
    level's cropped mask (uint8 0 / 1, foreground touching all four edges), by connected components; None when
    the largest area is shared by different boxes (the caller then traces the level)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, cv2.CV_32S, cv2.CCL_BBDT)
    x, y, w, h = stats[1:, :4].astype(np.int64).T
    outer = np.stack([x + dx, y + dy, np.minimum(x + w + dx, width - 1), np.minimum(y + h + dy, height - 1)], 1)
    stats = cv2.connectedComponentsWithStatsWithAlgorithm(1 - mask, 4, cv2.CV_32S, cv2.CCL_SPAGHETTI)[2][1:, :4]
    stats = stats.astype(np.int64)
    ch, cw = mask.shape
    bx, by, bw, bh = stats[(stats[:, 0] > 0) & (stats[:, 1] > 0) & (stats[:, 0] + stats[:, 2] < cw)
                           & (stats[:, 1] + stats[:, 3] < ch)].T
    holes = np.stack([bx - 1 + dx, by - 1 + dy, np.minimum(bx + bw + 1 + dx, width - 1),
                      np.minimum(by + bh + 1 + dy, height - 1)], 1)
    bound = 2 * (w - 1) * (h - 1)  # >= 2 * contourArea of the component's outer border
    xs, ys, ws, hs = x.tolist(), y.tolist(), w.tolist(), h.tolist()

    def area2(k: int) -> int:
        alone = (labels[ys[k]:ys[k] + hs[k], xs[k]:xs[k] + ws[k]] == k + 1).view(np.uint8)
        contour = cv2.findContours(alone, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0][0]
        return round(2 * cv2.contourArea(contour))  # exact: a half-integer in a double

    first = int(np.argmax(bound))
    areas = {first: area2(first)}
    for k in np.flatnonzero(bound >= areas[first]).tolist():
        if k not in areas:
            areas[k] = area2(k)
    top = max(areas.values())
    winners = [k for k, v in areas.items() if v == top]
    if len({tuple(outer[k].tolist()) for k in winners}) > 1:
        return None
    return np.concatenate([outer, holes]), outer[winners[0]]


def _contour_boxes(scoremap: np.ndarray, thresholds: np.ndarray, many: int | None) -> ContourBoxes:
    """contour_boxes (many=None) or contour_box_sets (levels after one with more than `many` contours go by
    connected components)."""
    u8 = to_uint8(scoremap)
    height, width = u8.shape
    levels = threshold_levels(int(u8.max()), thresholds)
    distinct, inverse = np.unique(levels, return_inverse=True)
    rows_on = u8.max(axis=1)[None, :].astype(np.int64) > distinct[:, None]  # (L, H)
    cols_on = u8.max(axis=0)[None, :].astype(np.int64) > distinct[:, None]  # (L, W)
    has_fg = rows_on.any(axis=1)
    r0 = rows_on.argmax(axis=1)
    r1 = height - rows_on[:, ::-1].argmax(axis=1)
    c0 = cols_on.argmax(axis=1)
    c1 = width - cols_on[:, ::-1].argmax(axis=1)

    contours: list = []
    contour_level: list = []  # (level index, number of contours) per traced level
    counts = np.zeros(len(distinct), dtype=np.int64)
    comp_boxes: list = []  # per level read off components: its largest box first, then all its boxes
    comp_level: list = []  # (level index, number of rows) per such level
    bounds = np.stack([r0, r1, c0, c1, distinct], axis=1).tolist()  # plain ints: uint8 > int stays uint8
    by_components = False
    for i in np.flatnonzero(has_fg).tolist():
        y0, y1, x0, x1, level = bounds[i]
        mask = (u8[y0:y1, x0:x1] > level).view(np.uint8)
        if by_components:
            got = _components_level(mask, x0, y0, width, height)
            if got is not None:
                comp_boxes += [got[1][None], got[0]]
                comp_level.append((i, len(got[0]) + 1))
                counts[i] = len(got[0])
                continue
        found = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        contours.extend(found)
        contour_level.append((i, len(found)))
        counts[i] = len(found)
        by_components = many is not None and len(found) > many
    level_of = np.repeat(*np.array(contour_level, dtype=np.int64).reshape(-1, 2).T)
    if contours:
        offsets = np.stack([c0, r0], axis=1)[level_of]
        found_boxes, area2 = _boxes_of(contours, offsets, width, height)
    else:
        found_boxes, area2 = np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    if comp_boxes:  # the largest box gets an area above any contour's, the others one below; it is dropped below
        comp_boxes_ = np.concatenate(comp_boxes)
        comp_level_ = np.repeat(*np.array(comp_level, dtype=np.int64).reshape(-1, 2).T)
        head = np.r_[True, comp_level_[1:] != comp_level_[:-1]]
        comp_area2 = np.where(head, np.iinfo(np.int64).max, -2)
    else:
        comp_boxes_, comp_level_, comp_area2 = np.zeros((0, 4), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        head = np.zeros(0, bool)
    # levels without foreground get the single box [0, 0, 0, 0] (area -1 so it is "largest" only when alone)
    empty = np.flatnonzero(counts == 0)
    counts[empty] = 1
    level_of = np.concatenate([level_of, comp_level_, empty])
    order = np.argsort(level_of, kind="stable")
    level_of = level_of[order]
    all_boxes = np.concatenate([found_boxes, comp_boxes_, np.zeros((len(empty), 4), np.int64)])[order]
    area2 = np.concatenate([area2, comp_area2, np.full(len(empty), -1, np.int64)])[order]
    keep = ~np.concatenate([np.zeros(len(found_boxes), bool), head, np.zeros(len(empty), bool)])[order]
    sizes = np.bincount(level_of, minlength=len(distinct))
    starts = np.cumsum(sizes) - sizes
    best = np.maximum.reduceat(area2, starts)
    first_best = np.flatnonzero(area2 == best[level_of])
    first_best = first_best[np.unique(level_of[first_best], return_index=True)[1]]
    largest = all_boxes[first_best]
    all_boxes = all_boxes[keep]
    starts = np.cumsum(counts) - counts
    # expand distinct levels back to thresholds
    per_threshold = counts[inverse]
    rows = np.repeat(starts[inverse] - (np.cumsum(per_threshold) - per_threshold), per_threshold) \
        + np.arange(int(per_threshold.sum()))
    owner = np.repeat(np.arange(len(thresholds)), per_threshold)
    return ContourBoxes(largest=largest[inverse], boxes=all_boxes[rows], owner=owner)


def contour_boxes(scoremap: np.ndarray, thresholds: np.ndarray) -> ContourBoxes:
    """Boxes of all contours and of the largest contour at each threshold (fast path, exact, in findContours order).

    scoremap: (H, W) float in [0, 1]; thresholds: (T,) floats (e.g. `np.arange(0, 1, 0.01)`).
    One `findContours` per distinct level, on the bounding crop of that level's mask; areas and boxes of all
    contours of all levels in one vectorised pass.
    """
    return _contour_boxes(scoremap, thresholds, None)


def contour_box_sets(scoremap: np.ndarray, thresholds: np.ndarray, many: int = 24) -> ContourBoxes:
    """As `contour_boxes` (the same `largest`; per threshold the same multiset of `boxes`, not in findContours
    order), faster on maps with many contours: after a level with more than `many` contours, levels are read off
    connected components (module docstring)."""
    return _contour_boxes(scoremap, thresholds, many)


def contour_boxes_reference(scoremap: np.ndarray, thresholds: np.ndarray) -> ContourBoxes:
    """The straightforward loop: threshold, findContours and boundingRect once per threshold (slow, for tests)."""
    u8 = to_uint8(scoremap)
    height, width = u8.shape
    u8_max = int(u8.max())
    largest, boxes, owner = [], [], []
    for k, t in enumerate(thresholds):
        _, binary = cv2.threshold(u8, int(t * u8_max), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            found = [[0, 0, 0, 0]]
            best = [0, 0, 0, 0]
        else:
            found = []
            for contour in contours:
                x, y, w, h = cv2.boundingRect(contour)
                found.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            best = found[max(range(len(contours)), key=lambda j: cv2.contourArea(contours[j]))]
        largest.append(best)
        boxes.extend(found)
        owner.extend([k] * len(found))
    return ContourBoxes(largest=np.array(largest, dtype=np.int64), boxes=np.array(boxes, dtype=np.int64),
                        owner=np.array(owner, dtype=np.int64))
