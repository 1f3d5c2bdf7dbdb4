"""The box generator of the original CAM release (zhoubolei/CAM, `bboxgenerator/dt_box.cpp` + the MATLAB
scripts `generate_bbox.m`, `ILSVRC_evaluate_bbox.m`), which differs from the paper's text ("20% of the max,
largest connected component", `camloc.boxes`). Re-implemented from its description; behaviour, not code:

1. the heat map as an 8-bit image: `round(clip(map, 0, 1) * 255)` (the release wrote a JPEG; no JPEG loss here);
2. for each threshold in (20, 100, 110): foreground = pixels > threshold;
3. a relative erosion: the Euclidean distance of each foreground pixel to the nearest background pixel, scaled so
   the largest distance is 255 and rounded (`(int)(d * 255 / max + 0.5)`), is kept where > 10 (a mask without
   background or without foreground is left as is);
4. contours of the eroded mask (OpenCV RETR_CCOMP: outer and hole borders), each `boundingRect` clamped as the
   release does (x, y to [0, W - 5] / [0, H - 5]; width to `W - x - 5`, height to `H - y - 5`, which can go
   negative; the corners are then re-ordered as the MATLAB code does);
5. boxes of the three thresholds pooled, sorted by area (largest first; a stable sort, which is what the
   release's `std::sort` does for up to 16 boxes), then merged: walking i = 0, 1, ..., a later box j whose overlap
   with box i exceeds half the larger area is removed, and, as in the release's loop, the box that moves into
   slot j is not compared with box i;
6. ILSVRC combination: the five guesses are (top-1 class, box 1), (top-1, box 2), (top-2, box 1), (top-2, box 2),
   (top-3, box 1); top-1 localization scores the first guess. A class with a single box contributes one guess
   (the release would stop with an error); a map with no box gives [0, 0, 0, 0].
Boxes are [x0, y0, x1, y1] with x1 = x + width (exclusive, as `camloc.boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

RELEASE_THRESHOLDS: tuple[int, int, int] = (20, 100, 110)
EROSION_LEVEL = 10


def heatmap_to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) float map in [0, 1] -> uint8, rounding half up (MATLAB's im2uint8)."""
    return np.floor(np.clip(np.asarray(heatmap, dtype=np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)


def relative_erosion(mask: np.ndarray) -> np.ndarray:
    """Keep the pixels whose distance to the background is > 10/255 of the largest such distance (rounded)."""
    if mask.all() or not mask.any():
        return mask.copy()
    dist = distance_transform_edt(mask)
    scale = 255.0 / (dist.max() - dist.min())
    return np.minimum(np.floor(dist * scale + 0.5), 255) > EROSION_LEVEL


def _big_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Overlap area > int(0.5 * larger area), boxes as (x, y, w, h)."""
    t = int(max(a[2] * a[3], b[2] * b[3]) * 0.5)
    ow = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    oh = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ow * oh > t


def release_boxes(heatmap: np.ndarray, thresholds: Sequence[int] = RELEASE_THRESHOLDS) -> np.ndarray:
    """All boxes of the release's generator for one (H, W) map in [0, 1], best first. (n, 4) int64, n >= 0."""
    gray = heatmap_to_uint8(heatmap)
    height, width = gray.shape
    rects: list[np.ndarray] = []
    for th in thresholds:
        eroded = relative_erosion(gray > th).astype(np.uint8)
        contours = cv2.findContours(eroded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[0]
        for contour in contours:
            bx, by, bw, bh = cv2.boundingRect(contour)
            rects.append(
                np.array(
                    [
                        min(max(bx, 0), width - 5),
                        min(max(by, 0), height - 5),
                        min(max(bw, 0), width - bx - 5),
                        min(max(bh, 0), height - by - 5),
                    ]
                )
            )
    rects.sort(key=lambda r: -(r[2] * r[3]))  # stable: ties keep the pooling order
    i = 0
    while i < len(rects):
        j = i + 1
        while j < len(rects):
            if _big_overlap(rects[i], rects[j]):
                del rects[j]
            j += 1  # the release's loop also steps past the box that moved into slot j
        i += 1
    if not rects:
        return np.zeros((0, 4), dtype=np.int64)
    r = np.array(rects, dtype=np.int64)
    x0, y0, x1, y1 = r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]
    return np.stack([np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)], axis=1)


def release_box(heatmap: np.ndarray) -> np.ndarray:
    """The release's first box (its "bbox1"), or [0, 0, 0, 0] when there is none. (4,) int64."""
    boxes = release_boxes(heatmap)
    return boxes[0] if len(boxes) else np.zeros(4, dtype=np.int64)


def release_guesses(classes: Sequence[int] | np.ndarray, maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The release's ILSVRC combination from the maps of the top-3 classes -> (classes (g,), boxes (g, 4)), g <= 5."""
    out_cls, out_box = [], []
    for rank, (cls, heatmap) in enumerate(zip(classes[:3], maps[:3], strict=False)):
        boxes = release_boxes(heatmap)
        if not len(boxes):
            boxes = np.zeros((1, 4), dtype=np.int64)
        for b in boxes[: 1 if rank == 2 else 2]:
            out_cls.append(int(cls))
            out_box.append(b)
    return np.array(out_cls[:5], dtype=np.int64), np.array(out_box[:5], dtype=np.int64).reshape(-1, 4)
