"""Localization metrics as streaming, mergeable accumulators (constant memory in the number of images).

Everything here is counts: per-threshold hit counters and score histograms. Two accumulators of the same settings
merge by adding their `counts` vectors, which is how `torchrun` workers combine their shares exactly.

Protocols and their conventions (written once; docs/evaluation.md repeats them with the commands that check them):

**Choe et al. (CVPR 2020), reproduced as clovaai/wsolevaluation computes them** (`BoxAccuracy`, `PixelAP`):
  * maps and boxes live at 224 x 224 (`WSOL_SIZE`); GT boxes are rescaled by `int(x * 224 / width)` (truncation);
    a map of another size is resized with bicubic interpolation and min-max normalised first (`prepare_scoremap`);
  * CAM thresholds are `np.arange(0, 1, interval)` (interval 0.01 by default, 0.001 available);
  * a threshold `t` keeps the pixels `uint8(map * 255) > int(t * max(uint8(map * 255)))`;
  * contours by OpenCV (`RETR_TREE`, so hole borders count too); "largest" = first contour of maximal
    `contourArea`; box = `boundingRect` as `[x, y, x + w, y + h]`, x1 / y1 clipped to 223, read as INCLUSIVE
    coordinates: IoU uses widths `x1 - x0 + 1` (`wsol_iou`); a threshold with no contour predicts `[0, 0, 0, 0]`;
  * MaxBoxAcc: box of the largest contour, best threshold per IoU level; MaxBoxAccV2: best over the boxes of
    all contours, best threshold per IoU level (30, 50, 70) and their mean; a hit is `IoU >= level / 100` with
    any GT box;
  * PxAP: histograms of the float map at GT-foreground and GT-background pixels (ignore region left out), bin
    edges = thresholds + [1, 2, 3] (left-closed, like `np.histogram`), precision/recall from reversed cumulative
    sums, AP = sum(precision[1:] * diff(recall)) over points with predictions; masks are resized to 224 x 224 with
    nearest-neighbour, foreground = any instance mask > 0.5, ignore = ignore-box mask > 0.5 minus foreground.
  * "native" resolution (an option, clearly not the reference): the same rules on maps resized to the original
    image size, with GT boxes and masks left at their original size.

**Zhou et al. (2016), the paper's protocol** (`ClassLocAccuracy`): boxes by `camloc.boxes` (20% of the max,
largest connected component; or the original release's generator, `camloc.localize._release_boxes`), x1 / y1 exclusive,
IoU = intersection / union of the boxes as given, a hit is IoU >= 0.5 with some GT box; top-1 loc = top-1 class
right and its box hits; top-5 loc = some top-5 class is right and that class's box hits; GT-known loc = the box
of the true class hits.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from camloc import boxes
from camloc.localize._level_sets import best_iou_by_level
from camloc.localize._pixel_histograms import masked_histograms
from camloc.localize._wsol_boxes import level_box_sets

WSOL_SIZE = 224
IOU_LEVELS: tuple[int, ...] = (30, 50, 70)


def cam_thresholds(interval: float = 0.01) -> np.ndarray:
    """The reference's CAM threshold list, `np.arange(0, 1, interval)` (float64, T = ceil(1 / interval))."""
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


# ------------------------------------------------------------------------------------------------- boxes


def wsol_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of inclusive-coordinate boxes (the +1 convention): a (N, 4), b (M, 4) -> (N, M) float64.

    A pair whose union is not positive (degenerate boxes) has IoU 0, as in the reference.
    """
    a = np.asarray(a, dtype=np.int64)[:, None, :]
    b = np.asarray(b, dtype=np.int64)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    union = (
        (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
        + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
        - inter
    )
    ok = union > 0
    return np.where(ok, inter / np.where(ok, union, 1), 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes with x1 / y1 exclusive (areas (x1 - x0) * (y1 - y0)): a (N, 4), b (M, 4) -> (N, M) float64;
    `camloc.boxes.box_iou` on numpy arrays."""

    def as_boxes(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1, 4))

    return boxes.box_iou(as_boxes(a), as_boxes(b)).numpy()


def resize_boxes_wsol(
    boxes: np.ndarray, size: tuple[int, int], new_size: tuple[int, int] = (WSOL_SIZE, WSOL_SIZE)
) -> np.ndarray:
    """Rescale (n, 4) boxes from an image of size (width, height) to new_size, truncating to int like the
    reference (`int(x * new_w / w)`). Returns (n, 4) int64."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = float(size[0]), float(size[1])
    nw, nh = float(new_size[0]), float(new_size[1])
    scale = np.array([nw, nh, nw, nh])
    return (b * scale / np.array([w, h, w, h])).astype(np.int64)


# -------------------------------------------------------------------------------------------- score maps


def normalize_scoremap(scoremap: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Min-max normalise like the reference: NaN anywhere or a constant map -> all zeros.

    Returns (map float64, problem) where problem is None, "nan_map" or "constant_map".
    """
    m = np.asarray(scoremap, dtype=np.float64)
    if np.isnan(m).any():
        return np.zeros_like(m), "nan_map"
    lo, hi = m.min(), m.max()
    if lo == hi:
        return np.zeros_like(m), "constant_map"
    m = m - lo
    return m / m.max(), None


def prepare_scoremap(
    scoremap: np.ndarray, size: tuple[int, int] = (WSOL_SIZE, WSOL_SIZE)
) -> tuple[np.ndarray, str | None]:
    """A 2-D map of any resolution -> (H, W) = size[::-1] float64 map in [0, 1], and a problem tag or None.

    A map already of that size with values in [0, 1] is used as is (the reference's evaluator does not
    renormalise); anything else is resized (bicubic, OpenCV) and min-max normalised (the reference's CAM path).
    """
    m = np.asarray(scoremap, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a score map must be 2-D, got shape {m.shape}")
    if m.shape == (size[1], size[0]) and not np.isnan(m).any() and m.min() >= 0 and m.max() <= 1:
        if m.min() == m.max():
            return m, "constant_map"
        return m, None
    if np.isnan(m).any():
        return np.zeros((size[1], size[0])), "nan_map"
    if m.shape != (size[1], size[0]):
        m = cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_CUBIC).astype(np.float64)
    return normalize_scoremap(m)


# ----------------------------------------------------------------------------------------- accumulators


class BoxAccuracy:
    """MaxBoxAcc (largest contour) and MaxBoxAccV2 (all contours), per CAM threshold and IoU level.

    counts: (2, n_iou, T) int64 hits ([0] largest contour, [1] all contours) and `n` images.
    """

    def __init__(self, thresholds: np.ndarray, iou_levels: Sequence[int] = IOU_LEVELS) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.iou_levels = tuple(int(i) for i in iou_levels)
        self.hits = np.zeros((2, len(self.iou_levels), len(self.thresholds)), dtype=np.int64)
        self.n = 0

    def accumulate(self, scoremap: np.ndarray, gt_boxes: np.ndarray) -> None:
        """scoremap: (H, W) in [0, 1]; gt_boxes: (G, 4) inclusive boxes in the map's pixels (already rescaled)."""
        found = level_box_sets(scoremap, self.thresholds)
        gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
        best_all = best_iou_by_level(found.rows, len(found.levels), gt)[found.inverse]
        best_largest = best_iou_by_level(
            np.column_stack([np.arange(len(found.levels)), found.largest]), len(found.levels), gt
        )[found.inverse]
        for j, level in enumerate(self.iou_levels):
            self.hits[0, j] += best_largest >= level / 100
            self.hits[1, j] += best_all >= level / 100
        self.n += 1

    # merging (sums of counters)
    def counts(self) -> np.ndarray:
        """The counters as one (2 * n_iou * T + 1,) int64 vector: hits (2, n_iou, T) raveled, then n."""
        return np.concatenate([self.hits.ravel(), [self.n]])

    def set_counts(self, vector: np.ndarray) -> None:
        """Replace the counters by a `counts()` vector (2 * n_iou * T + 1,)."""
        self.hits = np.asarray(vector[:-1], dtype=np.int64).reshape(self.hits.shape).copy()
        self.n = int(vector[-1])

    def merge(self, other: BoxAccuracy) -> None:
        """Add another accumulator's counters (same thresholds and IoU levels)."""
        self.set_counts(self.counts() + other.counts())

    # results
    def accuracy(self) -> np.ndarray:
        """(2, n_iou, T) box accuracy in percent at every threshold (zeros with no image)."""
        return self.hits * 100.0 / max(self.n, 1)

    def summary(self, fixed_index: dict[str, dict[str, int]] | None = None) -> dict:
        """{"maxboxacc": {...}, "maxboxacc_v2": {...}, "best_threshold": {...}} in percent.

        fixed_index: {"maxboxacc": {"50": k, ...}, ...} reports the accuracy at threshold index k instead of the
        best threshold (calibration on another split).
        """
        acc = self.accuracy()
        out: dict = {"best_threshold": {}}
        for v, name in enumerate(("maxboxacc", "maxboxacc_v2")):
            scores, best = {}, {}
            for j, level in enumerate(self.iou_levels):
                k = int(np.argmax(acc[v, j])) if fixed_index is None else fixed_index[name][str(level)]
                scores[str(level)] = float(acc[v, j, k])
                best[str(level)] = k
            scores["mean"] = float(np.mean([scores[str(level)] for level in self.iou_levels]))
            out[name] = scores
            out["best_threshold"][name] = best
        return out


class PixelAP:
    """PxAP: histograms of map values at foreground / background pixels; counts (2, T + 2) int64."""

    def __init__(self, thresholds: np.ndarray) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.hist = np.zeros((2, len(self.edges) - 1), dtype=np.int64)

    def accumulate(self, scoremap: np.ndarray, foreground: np.ndarray, ignore: np.ndarray | None = None) -> None:
        """scoremap (H, W) in [0, 1]; foreground, ignore: (H, W) bool; ignore pixels count for neither class."""
        self.hist += masked_histograms(scoremap, foreground, ignore, self.edges)

    def counts(self) -> np.ndarray:
        """The histograms (2, T + 2) raveled: a (2 * (T + 2),) int64 vector."""
        return self.hist.ravel().copy()

    def set_counts(self, vector: np.ndarray) -> None:
        """Replace the histograms (2, T + 2) by a raveled `counts()` vector."""
        self.hist = np.asarray(vector, dtype=np.int64).reshape(self.hist.shape).copy()

    def merge(self, other: PixelAP) -> None:
        """Add another accumulator's histograms (same thresholds)."""
        self.hist += other.hist

    def value(self) -> float | None:
        """Average precision in percent, or None when there is no foreground pixel or no prediction at all."""
        true_h, false_h = self.hist.astype(np.float64)
        tp = true_h[::-1].cumsum()
        fn = true_h.sum() - tp
        fp = false_h[::-1].cumsum()
        if ((tp + fn) <= 0).all() or ((tp + fp) <= 0).all():
            return None
        predicted = (tp + fp) != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
        return float((precision[1:] * np.diff(recall))[predicted[1:]].sum() * 100)


class ClassLocAccuracy:
    """The paper's counters: top-1 / top-5 classification and localization, GT-known localization."""

    KEYS = ("top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc")

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold
        self.hits = np.zeros(len(self.KEYS), dtype=np.int64)
        self.n = 0
        self.n_classified = 0

    def accumulate(
        self,
        gt_label: int,
        gt_boxes: np.ndarray,
        gt_known_box: np.ndarray,
        classes: np.ndarray | None = None,
        guess_classes: np.ndarray | None = None,
        guess_boxes: np.ndarray | None = None,
    ) -> None:
        """gt_boxes (G, 4), boxes with x1 exclusive, all in the same pixels; gt_label and classes are model indices.

        classes: (k,) predicted classes best first (classification); guess_classes (g,) / guess_boxes (g, 4): the
        localization guesses in rank order (the paper: one per top-5 class; the release: its combination).
        Top-1 loc scores the first guess, top-5 loc any of the first five.
        """
        gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        self.hits[4] += bool(box_iou(np.reshape(gt_known_box, (1, 4)), gt).max() >= self.iou_threshold)
        self.n += 1
        if classes is None:
            return
        classes = np.asarray(classes)
        self.hits[0] += bool(classes[0] == gt_label)
        self.hits[1] += bool((classes[:5] == gt_label).any())
        g_cls = np.asarray(guess_classes)[:5]
        hit = box_iou(np.asarray(guess_boxes).reshape(-1, 4)[:5], gt).max(axis=1) >= self.iou_threshold
        good = (g_cls == gt_label) & hit
        self.hits[2] += bool(good[:1].any())
        self.hits[3] += bool(good.any())
        self.n_classified += 1

    def counts(self) -> np.ndarray:
        """The counters as one (7,) int64 vector: the 5 `KEYS` hits, n, n_classified."""
        return np.concatenate([self.hits, [self.n, self.n_classified]])

    def set_counts(self, vector: np.ndarray) -> None:
        """Replace the counters by a (7,) `counts()` vector."""
        self.hits = np.asarray(vector[:-2], dtype=np.int64).copy()
        self.n, self.n_classified = int(vector[-2]), int(vector[-1])

    def merge(self, other: ClassLocAccuracy) -> None:
        """Add another accumulator's counters."""
        self.set_counts(self.counts() + other.counts())

    def summary(self) -> dict[str, float]:
        """Percentages; the classification-dependent keys only when classes were given."""
        out = {"gt_known_loc": float(self.hits[4] * 100.0 / max(self.n, 1))}
        if self.n_classified:
            for i, key in enumerate(self.KEYS[:4]):
                out[key] = float(self.hits[i] * 100.0 / self.n_classified)
        return out
