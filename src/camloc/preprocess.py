"""Images to model input, keeping the aspect ratio (the net runs fully convolutionally; nothing is squashed or
cropped, so maps and boxes cover the whole picture).

Importing this module needs no torch (`image_to_array` is what the torch-free ONNX runtime feeds its graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from camloc.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_ASPECT = 4.0  # the long side is capped at MAX_ASPECT x the short side (panoramas would explode the input)
MIN_SIDE = 32

_PIL_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass
class Preprocess:
    """How an image becomes the model's input: normalisation and the native (classification) size."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224  # shorter side at which the model classifies
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in a checkpoint's config.json (`from_dict` reads it back)."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """From `to_dict`'s form or a timm pretrained config (missing keys take the ImageNet defaults; an input
        size (3, H, W) gives its shorter side)."""
        size = d.get("input_size", 224)
        if isinstance(size, (list, tuple)):
            size = int(min(size[-2:]))
        return cls(
            tuple(d.get("mean", IMAGENET_MEAN)),
            tuple(d.get("std", IMAGENET_STD)),
            int(size),
            str(d.get("interpolation", "bilinear")),
        )


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(h, w) with the shorter side = `short_side`, aspect kept (long side capped at MAX_ASPECT x)."""
    scale = short_side / min(height, width)
    h = max(MIN_SIDE, round(height * scale))
    w = max(MIN_SIDE, round(width * scale))
    cap = int(MAX_ASPECT * short_side)
    return min(h, cap), min(w, cap)


def image_to_tensor(img: Image.Image, short_side: int, pre: Preprocess, size: tuple[int, int] | None = None) -> Tensor:
    """An RGB PIL image -> normalised (3, h, w) float tensor at `short_side`, or at exactly `size` (h, w) for a
    model that takes one input size only (a fixed-size ViT: the picture is resized whole, not cropped)."""
    import torch

    return torch.from_numpy(image_to_array(img, short_side, pre, size))


def image_to_array(
    img: Image.Image, short_side: int, pre: Preprocess, size: tuple[int, int] | None = None
) -> np.ndarray:
    """`image_to_tensor` as a float32 numpy array (3, h, w), without torch (the ONNX runtime's input)."""
    h, w = size if size is not None else scaled_size(img.height, img.width, short_side)
    resized = img.resize((w, h), _PIL_FILTERS.get(pre.interpolation, Image.Resampling.BILINEAR))
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


MAP_SIZE_RANGE = (32, 4096)  # shorter sides a map pass may use (4096: a 4096 x 16384 input at most)


def parse_map_sizes(text: str | None) -> tuple[int, ...] | None:
    """The `--map-sizes` option of every command: '224,448' -> (224, 448); 'native' -> () (the classification
    pass alone); None -> None (the default). Sizes outside MAP_SIZE_RANGE are an `InputError`."""
    if text is None:
        return None
    if text.strip().lower() == "native":
        return ()
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--map-sizes: '{text}' is not a comma-separated list of integers or 'native'") from None
    lo, hi = MAP_SIZE_RANGE
    if not sizes or any(not lo <= s <= hi for s in sizes):
        raise InputError(f"--map-sizes: sizes must be integers in {lo}..{hi} (or 'native'), got '{text}'")
    return sizes


def resize_exact(x: Tensor, size: tuple[int, int]) -> Tensor:
    """A preprocessed (3, h, w) or (B, 3, h, w) tensor resized (bilinear, antialiased) to exactly `size` (h, w)."""
    import torch.nn.functional as F

    batch = x if x.dim() == 4 else x[None]
    out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out if x.dim() == 4 else out[0]
