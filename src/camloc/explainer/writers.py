"""Per-image outputs of `explain`: the JSON record, overlay and grid PNGs, and the .npz of maps.

Shared by the CLI and (later) the web server, so that every front end writes the same things. Files are atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from camloc import viz
from camloc.explainer.result import Result
from camloc.io import write_image, write_json, write_npz


def record(result: Result, i: int, image_name: str) -> dict[str, Any]:
    """The JSON object of image i: {"image", "width", "height", "model", "predictions": [...]} (see README)."""
    height, width = result.sizes[i]
    preds = []
    for rank, (c, s, lg, box) in enumerate(
        zip(
            result.classes[i].tolist(),
            result.scores[i].tolist(),
            result.logits[i].tolist(),
            result.boxes[i].tolist(),
            strict=True,
        ),
        start=1,
    ):
        preds.append(
            {
                "rank": rank,
                "class_index": int(c),
                "label": result.info.label(int(c)),
                "score": float(s),
                "logit": float(lg),
                "box": [int(v) for v in box],
            }
        )
    return {
        "image": image_name,
        "width": int(width),
        "height": int(height),
        "model": result.info.name,
        "predictions": preds,
        "settings": result.settings,
    }


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
    rgb = np.asarray(image.convert("RGB"))
    maps = maps_of(result, i)
    boxes = result.boxes[i].cpu().numpy()
    labels = result.labels(i)
    scores = result.scores[i].tolist()
    titles = [f"{lab} {s:.1%}" for lab, s in zip(labels, scores, strict=True)]
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
