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

Importing this module needs no torch: the rule (`threshold_masks`) takes numpy arrays or torch tensors alike, so
the torch-free ONNX runtime (`camloc.onnx_runtime`) boxes its maps with the very code `camloc.explain` uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

ThresholdMode = Literal["minmax", "max"]
THRESHOLD_MODES: tuple[str, ...] = ("minmax", "max")
EMPTY_BOX = np.zeros(4, dtype=np.int64)


def threshold_mask(heatmap: np.ndarray, threshold: float = 0.2, mode: ThresholdMode = "minmax") -> np.ndarray:
    """Boolean (H, W) mask of the pixels kept by the paper's rule under `mode` (see module docstring)."""
    return threshold_masks(np.asarray(heatmap, dtype=np.float64), threshold, mode)


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


def _namespace(maps: Any) -> Any:
    """numpy for numpy arrays, torch for tensors (imported only when a tensor is given)."""
    if isinstance(maps, np.ndarray):
        return np
    import torch

    return torch


def _limits(maps: Any) -> tuple[Any, Any]:
    """Per-map minimum and maximum (..., 1, 1) of maps (..., H, W) (numpy arrays or tensors)."""
    if isinstance(maps, np.ndarray):
        flat = maps.reshape(*maps.shape[:-2], -1)
        return flat.min(axis=-1)[..., None, None], flat.max(axis=-1)[..., None, None]
    import torch

    lo, hi = torch.aminmax(maps.flatten(-2), dim=-1)
    return lo[..., None, None], hi[..., None, None]


def threshold_masks(
    maps: Any,
    threshold: float = 0.2,
    mode: ThresholdMode = "minmax",
    lo: Any | None = None,
    hi: Any | None = None,
) -> Any:
    """`threshold_mask` for a stack of maps (..., H, W) at once, as one array operation -> bool array.

    `maps` is a numpy array or a torch tensor (the result is of the same kind, same arithmetic in the maps'
    dtype). `lo` / `hi` (..., 1, 1) may pass in the per-map minimum and maximum when the caller has them already.
    NaN pixels are never kept and +inf counts as the largest float (a map of NaN gives an empty mask).
    """
    xp = _namespace(maps)
    if lo is None or hi is None:
        lo, hi = _limits(maps)
    if not (xp.isfinite(lo).all() and xp.isfinite(hi).all()):  # rare: clean the maps, then their limits
        maps = xp.nan_to_num(maps, nan=-np.inf, neginf=-np.inf, posinf=float(xp.finfo(maps.dtype).max))
        lo, hi = _limits(maps)
    if mode == "minmax":
        cut = xp.where(hi > lo, lo + threshold * (hi - lo), np.inf)
    elif mode == "max":
        cut = xp.where(hi > 0, threshold * hi, np.inf)
    else:
        raise ValueError(f"unknown threshold mode '{mode}'; choose one of {', '.join(THRESHOLD_MODES)}")
    return maps >= cut  # one comparison per pixel; a map without contrast compares with +inf


def first_component_boxes(masks: np.ndarray) -> np.ndarray:
    """The box of the largest 8-connected component of each mask (..., H, W) bool -> (..., 4) int64 (OpenCV)."""
    flat = masks.reshape(-1, *masks.shape[-2:])
    out = np.zeros((len(flat), 4), dtype=np.int64)
    for i, mask in enumerate(flat):
        boxes, _ = component_boxes(mask)
        if len(boxes):
            out[i] = boxes[0]
    return out.reshape(*masks.shape[:-2], 4)


def boxes_from_maps(
    maps: Tensor | np.ndarray,
    threshold: float = 0.2,
    mode: ThresholdMode = "minmax",
    lo: Tensor | None = None,
    hi: Tensor | None = None,
) -> Tensor:
    """Paper boxes for a stack of maps (..., H, W) -> (..., 4) int64 tensor (on the CPU).

    Thresholds every map in one tensor operation, then labels components map by map (OpenCV).
    """
    import torch

    maps = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))
    masks = threshold_masks(maps.detach(), threshold, mode, lo, hi)
    return torch.from_numpy(first_component_boxes(masks.cpu().numpy()))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes a (N, 4) and b (M, 4), x1/y1 exclusive -> (N, M). Empty boxes have IoU 0."""
    import torch

    a, b = a.double(), b.double()
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
