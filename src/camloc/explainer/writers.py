"""Per-image outputs of `explain`: the JSON record, overlay and grid PNGs, and the .npz of maps.

Shared by the CLI, the web server and the torch-free ONNX runtime (`camloc.onnx_runtime`, through `image_record`
and `write_picture_arrays`, which take plain arrays), so that every front end writes the same things. Importing
this module needs no torch. Files are atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from camloc import viz
from camloc.io import write_image, write_json, write_npz

if TYPE_CHECKING:
    from torch import Tensor

    from camloc.explainer.result import Result


def record(result: Result, i: int, image_name: str) -> dict[str, Any]:
    """The JSON object of image i: {"image", "width", "height", "model", "predictions": [...]} (see README)."""
    height, width = result.sizes[i]
    classes = result.classes[i].tolist()
    return image_record(
        image_name,
        width,
        height,
        result.info.name,
        classes,
        result.scores[i].tolist(),
        result.logits[i].tolist(),
        boxes_of(result, i).tolist(),
        [result.info.label(int(c)) for c in classes],
        result.settings,
    )


def image_record(
    image_name: str,
    width: int,
    height: int,
    model_name: str,
    classes: Sequence[int],
    scores: Sequence[float],
    logits: Sequence[float],
    boxes: Sequence[Sequence[int]],
    labels: Sequence[str],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """`record` from plain per-class sequences (k entries each, best first; boxes (k, 4) [x0, y0, x1, y1])."""
    preds = [
        {
            "rank": rank,
            "class_index": int(c),
            "label": str(lab),
            "score": float(s),
            "logit": float(lg),
            "box": [int(v) for v in box],
        }
        for rank, (c, s, lg, box, lab) in enumerate(
            zip(classes, scores, logits, boxes, labels, strict=True),
            start=1,
        )
    ]
    return {
        "image": image_name,
        "width": int(width),
        "height": int(height),
        "model": model_name,
        "predictions": preds,
        "settings": settings,
    }


def boxes_of(result: Result, i: int) -> Tensor:
    """(k, 4) int64 boxes [x0, y0, x1, y1) of image i; a result made with boxes=False has none to write."""
    if result.boxes is None:
        raise ValueError("this Result has no boxes (camloc.explain ran with boxes=False)")
    return result.boxes[i]


def maps_of(result: Result, i: int) -> np.ndarray:
    """(k, H, W) float32 normalised maps of image i, on the CPU."""
    return result.maps[i].detach().float().cpu().numpy()


def raw_of(result: Result, i: int) -> np.ndarray:
    """(k, h, w) float32 raw CAMs of image i, on the CPU."""
    return result.raw[i].detach().float().cpu().numpy()


def write_pictures(
    result: Result, i: int, image: Image.Image, out_dir: Path, stem: str, colormap: str = "inferno"
) -> list[Path]:
    """`<stem>_overlay.png` (top class) and `<stem>_grid.png` (every mapped class, with label and score)."""
    titles = picture_titles(result.labels(i), result.scores[i].tolist())
    rgb = np.asarray(image.convert("RGB"))
    return write_picture_arrays(
        rgb, maps_of(result, i), boxes_of(result, i).cpu().numpy(), titles, out_dir, stem, colormap
    )


def picture_titles(labels: Sequence[str], scores: Sequence[float]) -> list[str]:
    """The panel titles: '<label> <score as a percentage>'."""
    return [f"{lab} {s:.1%}" for lab, s in zip(labels, scores, strict=True)]


def write_picture_arrays(
    rgb: np.ndarray,
    maps: np.ndarray,
    boxes: np.ndarray,
    titles: list[str],
    out_dir: Path,
    stem: str,
    colormap: str = "inferno",
) -> list[Path]:
    """`write_pictures` from arrays: rgb (H, W, 3) uint8, maps (k, H, W) in [0, 1], boxes (k, 4)."""
    overlay_path, grid_path = out_dir / f"{stem}_overlay.png", out_dir / f"{stem}_grid.png"
    write_image(overlay_path, viz.overlay(rgb, maps[0], boxes[0], titles[0], colormap=colormap))
    write_image(grid_path, viz.grid(rgb, maps, boxes, titles, colormap=colormap))
    return [overlay_path, grid_path]


def write_record(result: Result, i: int, out_dir: Path, stem: str, image_name: str) -> Path:
    """`<stem>.json`: image i's record (see `record`), written atomically."""
    path = out_dir / f"{stem}.json"
    write_json(path, record(result, i, image_name))
    return path


def write_maps(result: Result, i: int, out_dir: Path, stem: str) -> Path:
    """`<stem>.npz`: classes (k,), maps (k, H, W) float32 in [0, 1] at image size, raw (k, h, w) float32."""
    path = out_dir / f"{stem}.npz"
    write_npz(
        path, classes=result.classes[i].cpu().numpy().astype(np.int64), maps=maps_of(result, i), raw=raw_of(result, i)
    )
    return path
