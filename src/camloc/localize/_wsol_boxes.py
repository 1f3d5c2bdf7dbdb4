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

Two implementations with the same output: `contour_boxes_reference` (one full `findContours` per threshold, the
straightforward loop, slow, kept for tests) and `contour_box_sets` (what `BoxAccuracy` uses): the same largest box
per threshold and, per threshold, the same multiset of boxes in another order, read for all levels at once off
the nested level sets by the compiled pass of `camloc.localize._level_sets` (outer borders = 8-connected foreground
components, hole borders = 4-connected background components away from the frame, grown by one pixel; the largest
contour traced only where its area can win). A tie of the largest area between different boxes falls back to
`findContours` on that level (the reference's "first contour" needs OpenCV's order).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from camloc.localize._level_sets import level_contour_boxes, uint8_levels

__all__ = ["ContourBoxes", "LevelBoxes", "contour_box_sets", "contour_boxes_reference", "level_box_sets", "to_uint8"]


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


def _opencv_level(u8: np.ndarray, level: int) -> tuple[list[list[int]], list[int]]:
    """The reference's boxes of one level: all contours' boxes (findContours order) and the largest one's (the
    first of maximal contourArea); the single box [0, 0, 0, 0] without foreground."""
    height, width = u8.shape
    _, binary = cv2.threshold(u8, level, 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [[0, 0, 0, 0]], [0, 0, 0, 0]
    found = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        found.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return found, found[max(range(len(contours)), key=lambda j: cv2.contourArea(contours[j]))]


@dataclass(frozen=True)
class LevelBoxes:
    """Boxes of every distinct binarisation level of one map (what thresholds share, computed once).

    levels:  (L,) int64, the distinct levels, increasing; inverse: (T,) the level index of each threshold.
    rows:    (N, 5) int64, `(level index, x0, y0, x1, y1)` of every contour box, levels without foreground
             having the single box [0, 0, 0, 0].
    largest: (L, 4) int64, the box of the largest contour of each level.
    """

    levels: np.ndarray
    inverse: np.ndarray
    rows: np.ndarray
    largest: np.ndarray


def level_box_sets(scoremap: np.ndarray, thresholds: np.ndarray) -> LevelBoxes:
    """Boxes of all contours and of the largest contour of every distinct level of the thresholds, exact, all
    levels in one compiled pass (`camloc.localize._level_sets`); OpenCV only for levels whose largest area is tied."""
    u8, distinct, inverse = uint8_levels(scoremap, thresholds)
    rows, largest, tie = level_contour_boxes(u8, distinct)
    for i in np.flatnonzero(tie).tolist():
        largest[i] = _opencv_level(u8, int(distinct[i]))[1]
    return LevelBoxes(levels=distinct, inverse=inverse, rows=rows, largest=largest)


def contour_box_sets(scoremap: np.ndarray, thresholds: np.ndarray) -> ContourBoxes:
    """Boxes of all contours and of the largest contour at each threshold, exact, all levels in one pass.

    scoremap: (H, W) float in [0, 1]; thresholds: (T,) floats (e.g. `np.arange(0, 1, 0.01)`).
    `largest` equals the reference loop's; per threshold, `boxes` holds the same multiset of boxes as the
    reference (not in findContours order).
    """
    found = level_box_sets(scoremap, thresholds)
    rows = found.rows[np.argsort(found.rows[:, 0], kind="stable")]
    per_level = np.split(rows[:, 1:], np.cumsum(np.bincount(rows[:, 0], minlength=len(found.levels)))[:-1])
    boxes = [per_level[i] for i in found.inverse]
    owner = np.repeat(np.arange(len(thresholds)), [len(b) for b in boxes])
    return ContourBoxes(largest=found.largest[found.inverse], boxes=np.concatenate(boxes), owner=owner)


def contour_boxes_reference(scoremap: np.ndarray, thresholds: np.ndarray) -> ContourBoxes:
    """The straightforward loop: threshold, findContours and boundingRect once per threshold (slow, for tests)."""
    u8 = to_uint8(scoremap)
    u8_max = int(u8.max())
    largest, boxes, owner = [], [], []
    for k, t in enumerate(thresholds):
        found, best = _opencv_level(u8, int(t * u8_max))
        largest.append(best)
        boxes.extend(found)
        owner.extend([k] * len(found))
    return ContourBoxes(
        largest=np.array(largest, dtype=np.int64),
        boxes=np.array(boxes, dtype=np.int64),
        owner=np.array(owner, dtype=np.int64),
    )
