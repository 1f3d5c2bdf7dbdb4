"""Pictures a person reads at a glance: heat-map overlays with a box and label, and a grid of the top-k classes.

Colours come from a perceptual colormap (inferno by default: monotonic in lightness, readable in grayscale).
All functions take and return (H, W, 3) uint8 RGB arrays.
"""

from __future__ import annotations

import functools
import operator

import cv2
import numpy as np

COLORMAPS = {
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "cividis": cv2.COLORMAP_CIVIDIS,
    "turbo": cv2.COLORMAP_TURBO,
}
BOX_COLOR = (0, 255, 127)
TEXT_COLOR = (255, 255, 255)
PANEL_WIDTH = 320
PANEL_MAX_HEIGHT = 640


def colorize(heatmap: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """A [0, 1] (H, W) map -> (H, W, 3) uint8 RGB through the named colormap."""
    levels = np.clip(np.nan_to_num(heatmap) * 255.0, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, COLORMAPS[colormap])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    box: np.ndarray | None = None,
    label: str | None = None,
    alpha: float = 0.5,
    colormap: str = "inferno",
) -> np.ndarray:
    """Blend the coloured map over the image, then draw the box ([x0, y0, x1, y1], x1/y1 exclusive) and label.

    image (H, W, 3) uint8 RGB, heatmap (H, W) in [0, 1], box (4,) -> (H, W, 3) uint8 RGB.

    The map's weight at a pixel is `alpha` times its value there: where the map is 0 the photo shows untouched,
    where it is 1 photo and colour mix half and half (alpha 0.5), so low values never tint the whole picture.
    """
    heat = colorize(heatmap, colormap)
    weight = (alpha * np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0))[..., None]
    out = np.rint(image * (1.0 - weight) + heat * weight).astype(np.uint8)
    scale = max(image.shape[:2]) / 400.0
    thickness = max(1, round(2 * scale))
    if box is not None and box[2] > box[0] and box[3] > box[1]:
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), BOX_COLOR, thickness, lineType=cv2.LINE_AA)
    if label:
        draw_label(out, label, 0.5 * max(scale, 0.6), max(1, round(scale)))
    return out


def draw_label(img: np.ndarray, text: str, font_scale: float, thickness: int) -> None:
    """Write `text` in the top-left corner of img (H, W, 3) uint8 on a dark band so that it reads on any
    background (in place)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), base = cv2.getTextSize(text, font, font_scale, thickness)
    pad = max(2, h // 3)
    cv2.rectangle(img, (0, 0), (min(img.shape[1] - 1, w + 2 * pad), h + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(img, text, (pad, h + pad), font, font_scale, TEXT_COLOR, thickness, cv2.LINE_AA)


def grid(
    image: np.ndarray,
    heatmaps: np.ndarray,
    boxes: np.ndarray,
    titles: list[str],
    columns: int = 5,
    colormap: str = "inferno",
) -> np.ndarray:
    """One panel per class (like the paper's figure): overlay, box and title, `columns` panels per row.

    image (H, W, 3) uint8 RGB, heatmaps (k, H, W) in [0, 1], boxes (k, 4) [x0, y0, x1, y1) in image pixels, k titles
    -> one (H', W', 3) uint8 RGB picture, panels at most PANEL_WIDTH x PANEL_MAX_HEIGHT, white gaps."""
    k = len(heatmaps)
    # panels fit in PANEL_WIDTH x PANEL_MAX_HEIGHT (a 1 x 500 image must not give a 160000-pixel-high grid)
    scale = min(PANEL_WIDTH / image.shape[1], PANEL_MAX_HEIGHT / image.shape[0])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    panels = []
    for m, b, t in zip(heatmaps, boxes, titles, strict=True):
        m_small = cv2.resize(np.asarray(m, dtype=np.float32), size, interpolation=cv2.INTER_LINEAR)
        b_small = np.round(np.asarray(b, dtype=np.float64) * scale).astype(int)
        panels.append(overlay(small, m_small, b_small, t, colormap=colormap))
    cols = max(1, min(columns, k))
    rows = -(-k // cols)
    blank = np.full_like(panels[0], 255)
    panels += [blank] * (rows * cols - k)
    gap = 4
    row_imgs: list[np.ndarray] = [
        np.concatenate(
            functools.reduce(
                operator.iadd,
                ([p, np.full((p.shape[0], gap, 3), 255, np.uint8)] for p in panels[r * cols : (r + 1) * cols]),
                [],
            )[:-1],
            axis=1,
        )
        for r in range(rows)
    ]
    sep = np.full((gap, row_imgs[0].shape[1], 3), 255, np.uint8)
    return np.concatenate(functools.reduce(operator.iadd, ([r, sep] for r in row_imgs), [])[:-1], axis=0)
