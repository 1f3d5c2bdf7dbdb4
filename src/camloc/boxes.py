"""Boxes from class activation maps: threshold, connected components, bounding boxes.

The paper's rule (Zhou et al. 2016, sec. 3): keep the pixels whose value is at least 20% of the map's maximum and
take the box around the largest connected component. "20% of the max" is ambiguous, so both readings are named:

- ``"max"`` (the default of `camloc.explain`): threshold the map itself, value >= t * max (the literal reading,
  on the raw CAM; negative evidence never passes);
- ``"minmax"``: threshold the min-max normalised map, i.e. value >= min + t * (max - min); the raw CAM's minimum
  is often very negative, so this region is usually much larger.

The default was chosen by measurement (docs/resolution.md, `make bench-resolution`). The functions here default
to "minmax" because they are also used on maps that are already normalised, where both readings agree.
Boxes are ``[x0, y0, x1, y1]`` in pixels with x1, y1 exclusive; a map with no pixel above the threshold (e.g. a
constant map after normalisation) gives the empty box ``[0, 0, 0, 0]``.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

ThresholdMode = Literal["minmax", "max"]
THRESHOLD_MODES: tuple[str, ...] = ("minmax", "max")
EMPTY_BOX = np.zeros(4, dtype=np.int64)


def threshold_mask(heatmap: np.ndarray, threshold: float = 0.2, mode: ThresholdMode = "minmax") -> np.ndarray:
    """Boolean (H, W) mask of the pixels kept by the paper's rule under `mode` (see module docstring)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if not np.isfinite(heatmap).all():
        heatmap = np.nan_to_num(heatmap, nan=-np.inf, neginf=-np.inf, posinf=np.finfo(np.float64).max)
    lo, hi = float(heatmap.min()), float(heatmap.max())
    if mode == "minmax":
        if not hi > lo:
            return np.zeros(heatmap.shape, dtype=bool)
        return heatmap >= lo + threshold * (hi - lo)
    if mode == "max":
        if not hi > 0:
            return np.zeros(heatmap.shape, dtype=bool)
        return heatmap >= threshold * hi
    raise ValueError(f"unknown threshold mode '{mode}'; choose one of {', '.join(THRESHOLD_MODES)}")


def component_boxes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) and pixel areas (n,) of the 8-connected components of a boolean mask, largest first."""
    mask_u8 = mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8)
    n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(mask_u8, connectivity=8)
    if n <= 1:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
    stats = stats[1:]  # row 0 is the background
    x, y, w, h, area = (stats[:, i].astype(np.int64) for i in range(5))
    boxes = np.stack([x, y, x + w, y + h], axis=1)
    order = np.argsort(-area, kind="stable")
    return boxes[order], area[order]


def box_from_map(heatmap: np.ndarray, threshold: float = 0.2, mode: ThresholdMode = "minmax") -> np.ndarray:
    """The paper's box: around the largest connected component of the thresholded map. (4,) int64."""
    boxes, _ = component_boxes(threshold_mask(heatmap, threshold, mode))
    return boxes[0] if len(boxes) else EMPTY_BOX.copy()


def all_boxes_from_map(heatmap: np.ndarray, threshold: float = 0.2, mode: ThresholdMode = "minmax") -> np.ndarray:
    """Every connected component as its own box, largest first. (n, 4) int64."""
    return component_boxes(threshold_mask(heatmap, threshold, mode))[0]


def threshold_masks(maps: Tensor, threshold: float = 0.2, mode: ThresholdMode = "minmax",
                    lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """`threshold_mask` for a stack of maps (..., H, W) at once, as one tensor operation -> bool tensor.

    `lo` / `hi` (..., 1, 1) may pass in the per-map minimum and maximum when the caller has them already.
    NaN maps give empty masks.
    """
    if lo is None or hi is None:
        lo, hi = (v[..., None, None] for v in torch.aminmax(maps.flatten(-2), dim=-1))
    if mode == "minmax":
        cut = torch.where(hi > lo, lo + threshold * (hi - lo), torch.full_like(hi, torch.inf))
    elif mode == "max":
        cut = torch.where(hi > 0, threshold * hi, torch.full_like(hi, torch.inf))
    else:
        raise ValueError(f"unknown threshold mode '{mode}'; choose one of {', '.join(THRESHOLD_MODES)}")
    return maps >= cut  # one comparison per pixel; a map without contrast compares with +inf


def boxes_from_maps(maps: Tensor | np.ndarray, threshold: float = 0.2, mode: ThresholdMode = "minmax",
                    lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """Paper boxes for a stack of maps (..., H, W) -> (..., 4) int64 tensor (on the CPU).

    Thresholds every map in one tensor operation, finds each mask's extent (the rows and columns with any pixel
    kept) in two more, then labels components map by map (OpenCV) on that crop only.
    """
    maps = maps if isinstance(maps, Tensor) else torch.from_numpy(np.asarray(maps))
    masks_t = threshold_masks(maps.detach(), threshold, mode, lo, hi)
    lead = masks_t.shape[:-2]
    flat_t = masks_t.reshape(-1, *masks_t.shape[-2:])
    rows = flat_t.any(dim=-1).cpu().numpy()  # (N, H)
    cols = flat_t.any(dim=-2).cpu().numpy()  # (N, W)
    flat = flat_t.cpu().numpy()
    out = np.zeros((len(flat), 4), dtype=np.int64)
    for i, mask in enumerate(flat):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        boxes, _ = component_boxes(mask[y0:y1, x0:x1])
        out[i] = boxes[0] + np.array([x0, y0, x0, y0])
    return torch.from_numpy(out.reshape(*lead, 4))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes a (N, 4) and b (M, 4), x1/y1 exclusive -> (N, M). Empty boxes have IoU 0."""
    a, b = a.double(), b.double()
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
