"""The coarse-to-fine zoom's array code, without torch: shared by `camloc.explain` (camloc/explainer/passes.py)
and the torch-free ONNX runtime (camloc/onnx_runtime.py), so that both look at the same windows and compose the
same maps and boxes.

The procedure (passes.py's module docstring has it in full): each class's classification-pass map, at the image's
size, gives a box; `zoom_windows` squares and widens it (`camloc.boxes.zoom_window`) and keeps the windows that
cover at most `Zoom.max_area` of the image; `share_windows` lets classes of one image whose windows overlap share
one window; the model maps each window again at shorter side `Zoom.size`, and `compose` pastes each fine map over
its window (every map divided by its largest magnitude) and offsets the fine boxes into the image.

The functions take numpy arrays or torch tensors alike (as `camloc.boxes.threshold_masks` does); only the
arithmetic's namespace differs, so both paths compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from camloc.boxes import Components, zoom_window
from camloc.errors import InputError

EPS = 1e-12
SHARE_WINDOW_IOU = 0.5  # classes of one image whose zoom windows overlap this much share one window

Window = tuple[int, int, int, int]  # (x0, y0, x1, y1) in image pixels, x1 / y1 exclusive; always a square


@dataclass(frozen=True)
class Zoom:
    """The coarse-to-fine procedure's settings (see the module docstring).

    expand: window side / the pass-1 box's longer side; max_area: no zoom when the window would cover more of the
    image (the object is large); size: shorter side of the window's pass; components: the box rule ("all": every
    kept pixel, "largest": the paper's largest component)."""

    expand: float = 1.0
    max_area: float = 0.5
    size: int = 320
    components: Components = "all"

    def __post_init__(self) -> None:
        if not (self.expand > 0 and 0 < self.max_area <= 1 and 32 <= self.size <= 4096):
            raise InputError(
                f"zoom: expand must be > 0, max_area in (0, 1], size in 32..4096; got expand={self.expand}, "
                f"max_area={self.max_area}, size={self.size}"
            )
        if self.components not in ("all", "largest"):
            raise InputError(f"zoom: components must be 'all' or 'largest', got '{self.components}'")


DEFAULT_ZOOM = Zoom()
# The map-size procedure's default (`zoom=False` / `--zoom off`), chosen on the localization set of
# benchmarks/bench_resolution.py (docs/resolution.md); here, torch-free, for `camloc.explain` and the ONNX runtime.
DEFAULT_MAP_SIZES: tuple[int, ...] = (640,)
SCORE_KINDS: tuple[str, ...] = ("softmax", "sigmoid")  # how a run turns logits into scores
ZOOM_HELP = (  # --zoom of `camloc explain` and `camloc-onnx`
    "the map procedure (default: 'on', the coarse-to-fine zoom measured in docs/resolution.md: "
    f"EXPAND,MAX_AREA,SIZE = {DEFAULT_ZOOM.expand},{DEFAULT_ZOOM.max_area},{DEFAULT_ZOOM.size}); "
    "'off' for map passes at --map-sizes; or EXPAND,MAX_AREA,SIZE[,largest|all] to set its parameters"
)


def zoom_setting(zoom: Zoom | bool | None, map_sizes: Sequence[int] | None) -> Zoom | None:
    """The zoom to run, or None for the map-size procedure: by default (both None) `DEFAULT_ZOOM`; map sizes
    turn it off; True / False / a `Zoom` choose explicitly (a zoom together with map sizes is an `InputError`)."""
    if zoom is None:
        return DEFAULT_ZOOM if map_sizes is None else None
    chosen: Zoom | None
    if isinstance(zoom, Zoom):
        chosen = zoom
    elif isinstance(zoom, bool):
        chosen = DEFAULT_ZOOM if zoom else None
    else:
        raise InputError(f"zoom must be a camloc.Zoom, True, False or None, got {zoom!r}")
    if chosen is not None and map_sizes is not None:
        raise InputError("give either a zoom or map sizes, not both (map sizes turn the zoom off)")
    return chosen


def run_settings(
    *,
    method: str,
    layer: str,
    zoom: Zoom | None,
    map_sizes: Sequence[int],
    relu: bool,
    threshold: float,
    threshold_mode: str,
    native_size: int,
    scores: str,
    fixed_input_size: Sequence[int] | None = None,
) -> dict[str, Any]:
    """`Result.settings` / the JSON's "settings": what ran, written once for `camloc.explain` and the ONNX runtime
    so that both record the same keys in the same order."""
    settings: dict[str, Any] = {
        "method": method,
        "layer": layer,
        "procedure": "zoom" if zoom else ("map sizes" if map_sizes else "classification pass"),
        "zoom": None if zoom is None else asdict(zoom),
        "map_sizes": list(map_sizes),
        "relu": relu,
        "threshold": threshold,
        "threshold_mode": threshold_mode,
        "native_size": native_size,
        "scores": scores,
    }
    if fixed_input_size is not None:
        settings["fixed_input_size"] = list(fixed_input_size)
    return settings


def parse_zoom(text: str | None) -> Zoom | bool | None:
    """--zoom of every command: None (the default), 'on', 'off', or 'EXPAND,MAX_AREA,SIZE[,largest|all]' (a
    `Zoom`)."""
    if text is None:
        return None
    key = text.strip().lower()
    if key in ("on", "off"):
        return key == "on"
    parts = [t.strip() for t in key.split(",")]
    try:
        if len(parts) not in (3, 4):
            raise ValueError
        expand, max_area, size = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise InputError(
            f"--zoom: '{text}' is not 'on', 'off' or EXPAND,MAX_AREA,SIZE[,largest|all] (e.g. 1.0,0.5,320)"
        ) from None
    components = parts[3] if len(parts) == 4 else DEFAULT_ZOOM.components
    return Zoom(expand, max_area, size, components)  # type: ignore[arg-type]  # Zoom checks the value


def zoom_windows(boxes: Any, height: int, width: int, expand: float, max_area: float) -> list[Window | None]:
    """Where the zoom looks again, per class: boxes (k, 4) of the classification-pass maps (largest component) of
    an image of (height, width) -> k square windows (`camloc.boxes.zoom_window` around each box), None where the
    box is empty or the window would cover more than `max_area` of the image (a large object: the coarse map
    already serves)."""
    out: list[Window | None] = []
    for box in boxes:
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            out.append(None)
            continue
        window = zoom_window((x0, y0, x1, y1), height, width, expand)
        side = window[2] - window[0]
        out.append(window if side * side <= max_area * height * width else None)
    return out


def window_iou(a: Window, b: Window) -> float:
    """IoU of two boxes (x1, y1 exclusive), in double precision as `camloc.boxes.box_iou` computes it."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = float(iw * ih)
    union = float(max(a[2] - a[0], 0) * max(a[3] - a[1], 0) + max(b[2] - b[0], 0) * max(b[3] - b[1], 0)) - inter
    return inter / max(union, 1e-12) if union > 0 else 0.0


def share_windows(windows: Sequence[Window | None]) -> list[tuple[Window, list[int]]]:
    """The windows one image is passed at: a class's window joins the first earlier window that overlaps it by
    IoU >= SHARE_WINDOW_IOU (that window's crop serves both), else opens its own. -> [(window, member classes)]
    in order of first appearance."""
    shared: list[tuple[Window, list[int]]] = []
    for c, window in enumerate(windows):
        if window is None:
            continue
        owner = next((s for s in shared if window_iou(s[0], window) >= SHARE_WINDOW_IOU), None)
        if owner is None:
            shared.append((window, [c]))
        else:
            owner[1].append(c)
    return shared


def peak_scaled(maps: Any) -> Any:
    """Maps (..., H, W) each divided by its largest magnitude (at least EPS): the sign and zero level survive and
    maps of different passes become comparable. numpy array or torch tensor in, same kind out."""
    if isinstance(maps, np.ndarray):
        peak = np.abs(maps).reshape(*maps.shape[:-2], -1).max(-1)
        return maps / np.maximum(peak, np.asarray(EPS, dtype=maps.dtype))[..., None, None]
    return maps / maps.flatten(-2).abs().amax(-1).clamp(min=EPS)[..., None, None]


def compose(
    coarse: Any,
    boxes: Any | None,
    windows: Sequence[tuple[Window, list[int]]],
    fines: Sequence[Any],
    fine_boxes: Sequence[Any] | None = None,
) -> Any:
    """One image's zoom result from its passes: coarse (k, H, W) classification-pass maps at the image size,
    boxes (k, 4) int their boxes, and per shared window its fine maps (k, side, side) upsampled to the window and
    their boxes (k, 4) in window pixels.

    Returns the composite (k, H, W): each coarse map divided by its largest magnitude, with every member class's
    window replaced by its fine map divided by the fine map's largest magnitude (not yet min-max normalised).
    `boxes` is updated in place: a member class's box becomes its fine box offset into the image, unless the fine
    map has no box (boxes and fine_boxes None: maps only). numpy arrays or torch tensors, all of one kind."""
    out = peak_scaled(coarse)
    for w, (((x0, y0, x1, y1), members), fine) in enumerate(zip(windows, fines, strict=True)):
        scaled = peak_scaled(fine)
        for c in members:
            if boxes is not None and fine_boxes is not None and fine_boxes[w][c][2] > fine_boxes[w][c][0]:
                boxes[c, 0::2] = fine_boxes[w][c, 0::2] + x0
                boxes[c, 1::2] = fine_boxes[w][c, 1::2] + y0
            out[c, y0:y1, x0:x1] = scaled[c]
    return out
