"""Images to model input, keeping the aspect ratio (the net runs fully convolutionally; nothing is squashed or
cropped, so maps and boxes cover the whole picture).

Importing this module needs no torch (`image_to_array` is what the torch-free ONNX runtime feeds its graph).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torch import Tensor

    from camloc.models.zoo import Preprocess

MAX_ASPECT = 4.0  # the long side is capped at MAX_ASPECT x the short side (panoramas would explode the input)
MIN_SIDE = 32

_PIL_FILTERS = {
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "nearest": Image.NEAREST,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(h, w) with the shorter side = `short_side`, aspect kept (long side capped at MAX_ASPECT x)."""
    scale = short_side / min(height, width)
    h = max(MIN_SIDE, round(height * scale))
    w = max(MIN_SIDE, round(width * scale))
    cap = int(MAX_ASPECT * short_side)
    return min(h, cap), min(w, cap)


def image_to_tensor(img: Image.Image, short_side: int, pre: Preprocess) -> Tensor:
    """An RGB PIL image -> normalised (3, h, w) float tensor at `short_side`."""
    import torch

    return torch.from_numpy(image_to_array(img, short_side, pre))


def image_to_array(
    img: Image.Image, short_side: int | None, pre: Preprocess, size: tuple[int, int] | None = None
) -> np.ndarray:
    """An RGB PIL image -> normalised (3, h, w) float32 array at `short_side` (or at exactly `size` = (h, w))."""
    h, w = size if size is not None else scaled_size(img.height, img.width, short_side)
    resized = img.resize((w, h), _PIL_FILTERS.get(pre.interpolation, Image.BILINEAR))
    arr = (np.asarray(resized, dtype=np.float32) / 255.0).transpose(2, 0, 1)
    mean = np.asarray(pre.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(pre.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((arr - mean) / std)


def resize_batch(x: Tensor, short_side: int) -> Tensor:
    """A preprocessed (B, 3, H, W) batch resized (bilinear) so that its shorter side is `short_side`."""
    import torch.nn.functional as F

    h, w = scaled_size(x.shape[-2], x.shape[-1], short_side)
    if (h, w) == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
