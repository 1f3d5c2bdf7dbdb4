"""Boxes from class activation maps: threshold, connected components, bounding boxes.

The paper's rule (Zhou et al. 2016, sec. 3): keep the pixels whose value is at least 20% of the map's maximum and
take the box around the largest connected component. "20% of the max" is ambiguous, so both readings are named:

- ``"max"`` (the default of `camloc.explain`): threshold the map itself, value >= t * max (the literal reading,
  on the raw CAM; negative evidence never passes);
- ``"minmax"``: threshold the min-max normalised map, i.e. value >= min + t * (max - min); the raw CAM's minimum
  is often very negative, so this region is usually much larger.

`BoxRule` holds the two settings (threshold, mode) as one value; `DEFAULT_BOX_RULE` (0.2, "max") was chosen by
measurement (docs/resolution.md, `make bench-resolution`) and is used by explain, evaluate, the benchmark and every
command. On min-max normalised maps (minimum 0) both readings agree.
Boxes are ``[x0, y0, x1, y1]`` in pixels with x1, y1 exclusive; a map with no pixel above the threshold (e.g. a
constant map after normalisation) gives the empty box ``[0, 0, 0, 0]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from camloc.errors import InputError

ThresholdMode = Literal["minmax", "max"]
THRESHOLD_MODES: tuple[str, ...] = ("minmax", "max")
EMPTY_BOX = np.zeros(4, dtype=np.int64)


@dataclass(frozen=True)
class BoxRule:
    """The paper's box rule as one value: keep pixels >= `threshold` of the map (under `mode`, see the module
    docstring) and box the largest 8-connected component. Invalid settings raise a one-line `InputError`."""

    threshold: float = 0.2
    mode: ThresholdMode = "max"

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise InputError(f"box threshold must be a finite number in [0, 1], got {self.threshold!r}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise InputError(f"box threshold must lie in [0, 1], got {self.threshold}")
        if self.mode not in THRESHOLD_MODES:
            raise InputError(f"unknown threshold mode '{self.mode}'; choose one of {', '.join(THRESHOLD_MODES)}")

    def describe(self) -> str:
        """A short human-readable statement of the rule, for reports."""
        reading = "of the max" if self.mode == "max" else "of the min-max range"
        return f"threshold {self.threshold:g} {reading}, largest 8-connected component"


DEFAULT_BOX_RULE = BoxRule()


def threshold_mask(heatmap: np.ndarray, rule: BoxRule = DEFAULT_BOX_RULE) -> np.ndarray:
    """Boolean (H, W) mask of the pixels of an (H, W) map kept by `rule` (see module docstring)."""
    maps = torch.from_numpy(np.asarray(heatmap, dtype=np.float64))
    return threshold_masks(maps, rule).numpy()


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


def box_from_map(heatmap: np.ndarray, rule: BoxRule = DEFAULT_BOX_RULE) -> np.ndarray:
    """The paper's box of an (H, W) map: around the largest connected component kept by `rule`. (4,) int64."""
    boxes, _ = component_boxes(threshold_mask(heatmap, rule))
    return boxes[0] if len(boxes) else EMPTY_BOX.copy()


def all_boxes_from_map(heatmap: np.ndarray, rule: BoxRule = DEFAULT_BOX_RULE) -> np.ndarray:
    """Every connected component kept by `rule` as its own box, largest first. (n, 4) int64."""
    return component_boxes(threshold_mask(heatmap, rule))[0]


def _limits(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-map minimum and maximum (..., 1, 1) of maps (..., H, W)."""
    lo, hi = torch.aminmax(maps.flatten(-2), dim=-1)
    return lo[..., None, None], hi[..., None, None]


def threshold_masks(
    maps: Tensor,
    rule: BoxRule = DEFAULT_BOX_RULE,
    lo: Tensor | None = None,
    hi: Tensor | None = None,
) -> Tensor:
    """`threshold_mask` for a stack of maps (..., H, W) at once, as one tensor operation -> bool tensor.

    `lo` / `hi` (..., 1, 1) may pass in the per-map minimum and maximum when the caller has them already.
    NaN pixels are never kept and +inf counts as the largest float (a map of NaN gives an empty mask).
    """
    if lo is None or hi is None:
        lo, hi = _limits(maps)
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):  # rare: clean the maps, then their limits
        maps = torch.nan_to_num(maps, nan=-torch.inf, neginf=-torch.inf, posinf=torch.finfo(maps.dtype).max)
        lo, hi = _limits(maps)
    t = rule.threshold
    if rule.mode == "minmax":
        cut = torch.where(hi > lo, lo + t * (hi - lo), torch.full_like(hi, torch.inf))
    else:  # "max" (BoxRule checked the mode)
        cut = torch.where(hi > 0, t * hi, torch.full_like(hi, torch.inf))
    return maps >= cut  # one comparison per pixel; a map without contrast compares with +inf


def boxes_from_maps(
    maps: Tensor | np.ndarray,
    rule: BoxRule = DEFAULT_BOX_RULE,
    lo: Tensor | None = None,
    hi: Tensor | None = None,
) -> Tensor:
    """Paper boxes for a stack of maps (..., H, W) -> (..., 4) int64 tensor (on the CPU).

    Thresholds every map in one tensor operation, then labels components map by map (OpenCV).
    """
    maps = maps if isinstance(maps, Tensor) else torch.from_numpy(np.asarray(maps))
    masks = threshold_masks(maps.detach(), rule, lo, hi)
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, *masks.shape[-2:]).cpu().numpy()
    out = np.zeros((len(flat), 4), dtype=np.int64)
    for i, mask in enumerate(flat):
        boxes, _ = component_boxes(mask)
        if len(boxes):
            out[i] = boxes[0]
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
