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

Importing this module needs no torch: the rule (`threshold_masks`) takes numpy arrays or torch tensors alike, so
the torch-free ONNX runtime (`camloc.onnx_runtime`) boxes its maps with the very code `camloc.explain` uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

from camloc.errors import InputError

ThresholdMode = Literal["minmax", "max"]
THRESHOLD_MODES: tuple[str, ...] = ("minmax", "max")
Components = Literal["largest", "all"]
COMPONENTS: tuple[str, ...] = ("largest", "all")
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
    return threshold_masks(np.asarray(heatmap, dtype=np.float64), rule)


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


def largest_component_box(mask: np.ndarray) -> np.ndarray:
    """Box (4,) int64 of the largest 8-connected component of a boolean (H, W) mask, [0, 0, 0, 0] for an empty
    mask: `component_boxes(mask)[0][0]` (ties included), computed faster.

    The components' outer borders come from OpenCV's border following (`findContours`, RETR_CCOMP: one top-level
    border per component, holes one level down), which visits only border pixels after one raster scan; the box of
    a lone component is its border's box. Several components need their pixel areas: OpenCV's labelling without
    statistics and a count per label (the statistics pass is most of `connectedComponentsWithStats`' time).
    """
    mask_u8 = mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8)
    contours, hierarchy = cv2.findContours(mask_u8, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    outer = [c for c, h in zip(contours, hierarchy[0] if hierarchy is not None else (), strict=True) if h[3] < 0]
    if not outer:
        return EMPTY_BOX.copy()
    if len(outer) == 1:
        chosen = outer[0]
    else:
        _, labels = cv2.connectedComponents(mask_u8, connectivity=8, ltype=cv2.CV_32S)
        areas = np.bincount(labels.ravel())
        areas[0] = 0  # the background
        best = int(np.argmax(areas))  # the lowest label of equal areas, as component_boxes' stable sort
        chosen = next(c for c in outer if labels[c[0, 0, 1], c[0, 0, 0]] == best)
    x, y, w, h = cv2.boundingRect(chosen)
    return np.array([x, y, x + w, y + h], dtype=np.int64)


def box_from_map(heatmap: np.ndarray, rule: BoxRule = DEFAULT_BOX_RULE) -> np.ndarray:
    """The paper's box of an (H, W) map: around the largest connected component kept by `rule`. (4,) int64."""
    return largest_component_box(threshold_mask(heatmap, rule))


def all_boxes_from_map(heatmap: np.ndarray, rule: BoxRule = DEFAULT_BOX_RULE) -> np.ndarray:
    """Every connected component kept by `rule` as its own box, largest first. (n, 4) int64."""
    return component_boxes(threshold_mask(heatmap, rule))[0]


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
    flat = maps.flatten(-2)  # amin + amax: torch.aminmax is several times slower on a CPU (camloc.engine.min_max)
    return flat.amin(-1)[..., None, None], flat.amax(-1)[..., None, None]


def threshold_masks(maps: Any, rule: BoxRule = DEFAULT_BOX_RULE, lo: Any | None = None, hi: Any | None = None) -> Any:
    """`threshold_mask` for a stack of maps (..., H, W) at once, as one array operation -> bool array.

    `maps` is a numpy array or a torch tensor; the mask is of the same kind, and the arithmetic is the same in
    both (in the maps' dtype), so numpy callers (`camloc.onnx_runtime`) get the masks `camloc.explain` gets.
    `lo` / `hi` (..., 1, 1) may pass in the per-map minimum and maximum when the caller has them already.
    NaN pixels are never kept and +inf counts as the largest float (a map of NaN gives an empty mask).
    """
    xp = _namespace(maps)
    if lo is None or hi is None:
        lo, hi = _limits(maps)
    if not (xp.isfinite(lo).all() and xp.isfinite(hi).all()):  # rare: clean the maps, then their limits
        maps = xp.nan_to_num(maps, nan=-np.inf, neginf=-np.inf, posinf=float(xp.finfo(maps.dtype).max))
        lo, hi = _limits(maps)
    t = rule.threshold
    minmax = rule.mode == "minmax"  # else "max" (BoxRule checked the mode)
    cut = xp.where(hi > lo, lo + t * (hi - lo), np.inf) if minmax else xp.where(hi > 0, t * hi, np.inf)
    return maps >= cut  # one comparison per pixel; a map without contrast compares with +inf


def mask_boxes(masks: Any) -> Any:
    """The box around all kept pixels of each mask (..., H, W) -> (..., 4) int64 ([0, 0, 0, 0] for an empty mask):
    the union of every connected component's box, with no labelling needed. A numpy mask gives a numpy array, a
    torch mask a CPU tensor (computed on the mask's device)."""
    xp = _namespace(masks)
    rows, cols = masks.any(-1), masks.any(-2)  # (..., H), (..., W)
    h, w = masks.shape[-2:]

    def extent(any_: Any, n: int) -> tuple[Any, Any]:
        idx = np.arange(n) if xp is np else xp.arange(n, device=any_.device)
        return xp.amin(xp.where(any_, idx, n), -1), xp.amax(xp.where(any_, idx, -1), -1) + 1

    y0, y1 = extent(rows, h)
    x0, x1 = extent(cols, w)
    boxes = xp.stack([x0, y0, x1, y1], -1)
    boxes = xp.where(rows.any(-1)[..., None], boxes, xp.zeros_like(boxes))
    return boxes.astype(np.int64) if xp is np else boxes.long().cpu()


def boxes_of_masks(masks: np.ndarray, components: Components = "largest") -> np.ndarray:
    """Boxes (..., 4) int64 of boolean masks (..., H, W) under a components rule: "largest" the paper's box around
    the largest 8-connected component, "all" the box around every kept pixel (numpy; `boxes_from_maps` is the
    same for tensors)."""
    if components == "all":
        return mask_boxes(masks)
    if components != "largest":
        raise ValueError(f"unknown components rule '{components}'; choose one of {', '.join(COMPONENTS)}")
    return first_component_boxes(masks)


def first_component_boxes(masks: np.ndarray) -> np.ndarray:
    """The box of the largest 8-connected component of each mask (..., H, W) bool -> (..., 4) int64 (OpenCV)."""
    flat = masks.reshape(-1, *masks.shape[-2:])
    out = np.zeros((len(flat), 4), dtype=np.int64)
    for i, mask in enumerate(flat):
        out[i] = largest_component_box(mask)
    return out.reshape(*masks.shape[:-2], 4)


def boxes_from_maps(
    maps: Tensor | np.ndarray,
    rule: BoxRule = DEFAULT_BOX_RULE,
    lo: Tensor | None = None,
    hi: Tensor | None = None,
    components: Components = "largest",
) -> Tensor:
    """Paper boxes for a stack of maps (..., H, W) -> (..., 4) int64 tensor (on the CPU).

    Thresholds every map in one tensor operation, then labels components map by map (OpenCV).
    components="largest" is the paper's box around the largest connected component; "all" boxes every kept pixel
    (the union of the components: an object the threshold splits into parts keeps one box; docs/resolution.md).
    """
    import torch

    maps = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))
    masks = threshold_masks(maps.detach(), rule, lo, hi)
    if components == "all":
        return mask_boxes(masks)  # on the masks' device: no copy of image-sized masks to the CPU
    return torch.from_numpy(boxes_of_masks(masks.cpu().numpy(), components))


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


def zoom_window(
    box: Tensor | np.ndarray | tuple[int, int, int, int],
    height: int,
    width: int,
    expand: float = 1.5,
    min_side: float = 0.25,
) -> tuple[int, int, int, int]:
    """The square window a coarse-to-fine pass looks at again: centred on `box`, side = `expand` x the box's
    longer side (at least `min_side` x the image's shorter side, at most the shorter side), shifted inside the
    image. Square, so that every window preprocesses to the same input shape and windows batch together.
    Returns (x0, y0, x1, y1), x1/y1 exclusive."""
    x0, y0, x1, y1 = (float(v) for v in (box if isinstance(box, tuple) else box.tolist()))
    short = min(height, width)
    side = max(round(min(max(expand * max(x1 - x0, y1 - y0), min_side * short), short)), 1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = round(min(max(cx - side / 2, 0), width - side))
    top = round(min(max(cy - side / 2, 0), height - side))
    return left, top, left + side, top + side
