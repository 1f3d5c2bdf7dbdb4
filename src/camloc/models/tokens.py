"""Layer outputs as (B, C, h, w) maps: patch tokens and channels-last maps reshaped automatically.

Transformers do not output NCHW maps: a ViT / DeiT / EVA block outputs tokens (B, N, C) whose first tokens are
prefix tokens (class, distillation, register) followed by the h x w patch grid in row-major order; a Swin block
and the inside of a ConvNeXt block are channels-last (B, h, w, C). `infer_layout` reads which of these a recorded
output is, from the model and the input size alone (no user `reshape_transform`):

- 3-D (B, N, C): the grid is the input size over the patch size (timm `patch_embed.dynamic_feat_size`, or a
  `patch_size` attribute); the prefix count is `num_prefix_tokens` (timm) or N - h w. Without a patch size the
  grid is the factorisation of N - prefix (prefix 0..8, fewest first) whose aspect matches the input's.
- 4-D: NCHW when dims 2, 3 have the input's aspect, NHWC when dims 1, 2 have it and dims 2, 3 do not (for a
  square input: NHWC when dims 1 and 2 are equal and dim 3 differs); a model whose own output format is 'NHWC'
  (timm Swin) decides the case both fit.

`MapLayout.apply` turns such a tensor, and any tensor of the same trailing shape with more leading dimensions
(gradients (B, k, ...) of it), into (..., C, h, w); prefix tokens are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from camloc.errors import InputError

MAX_PREFIX = 8  # class + distillation + register tokens seen in timm (ViT-reg4: 5)


@dataclass(frozen=True)
class MapLayout:
    """How a layer's output is a map: kind "nchw", "nhwc" or "tokens" (with `prefix` tokens before the grid)."""

    kind: str = "nchw"
    prefix: int = 0
    grid: tuple[int, int] = (0, 0)

    def apply(self, t: Tensor) -> Tensor:
        """(..., C, h, w) from a tensor of this layout: (..., C, h, w), (..., h, w, C) or (..., N, C)."""
        if self.kind == "nchw":
            return t
        if self.kind == "nhwc":
            return _channels_first(t)
        h, w = self.grid
        patches = t[..., self.prefix :, :]
        return _channels_first(patches.reshape(*patches.shape[:-2], h, w, patches.shape[-1]))

    def describe(self) -> str:
        """A short human-readable statement of the layout ("NCHW", "NHWC", "tokens: 1 prefix + 14x14 patches")."""
        if self.kind == "tokens":
            return f"tokens: {self.prefix} prefix + {self.grid[0]}x{self.grid[1]} patches"
        return self.kind.upper()


NCHW = MapLayout()


def _same_aspect(a: int, b: int, size: tuple[int, ...]) -> bool:
    """Is an (a, b) grid the (H, W) input seen at one stride (within the rounding of a small grid)?"""
    if a <= 0 or b <= 0:
        return False
    sa, sb = size[0] / a, size[1] / b
    return abs(sa - sb) <= 0.25 * max(sa, sb) + 1e-9


def _patch_grid(model: nn.Module, size: tuple[int, ...]) -> tuple[int, int] | None:
    pe = getattr(model, "patch_embed", None)
    if pe is not None and hasattr(pe, "dynamic_feat_size") and getattr(pe, "patch_size", None) is not None:
        gh, gw = pe.dynamic_feat_size((size[0], size[1]))
        return int(gh), int(gw)
    patch = getattr(model, "patch_size", None)  # torchvision VisionTransformer: an int
    if isinstance(patch, int) and patch > 0:
        return size[0] // patch, size[1] // patch
    return None


def _factor_grid(n: int, size: tuple[int, ...]) -> tuple[int, int] | None:
    """The factorisation h * w = n closest to the input's aspect, if any is close."""
    best = None
    for h in range(1, math.isqrt(n) + 1):
        if n % h:
            continue
        for a, b in ((h, n // h), (n // h, h)):
            if _same_aspect(a, b, size):
                err = abs(math.log((size[0] / a) / (size[1] / b)))
                if best is None or err < best[0]:
                    best = (err, (a, b))
    return None if best is None else best[1]


def infer_layout(out: Tensor, model: nn.Module, size: tuple[int, ...], where: str = "") -> MapLayout:
    """The layout of `out`, a layer's output for an input of spatial size `size` (H, W). Raises `InputError`
    when it is not a spatial map or a token sequence that can be placed on a grid."""
    where = where or f"a layer of {type(model).__name__}"
    if out.dim() == 4:
        nchw, nhwc = _same_aspect(out.shape[2], out.shape[3], size), _same_aspect(out.shape[1], out.shape[2], size)
        if nhwc and (not nchw or getattr(model, "output_fmt", None) == "NHWC"):
            return MapLayout("nhwc")
        return NCHW
    if out.dim() != 3:
        raise InputError(f"{where} outputs shape {tuple(out.shape)}, not a (batch, channels, h, w) map or tokens")
    n = int(out.shape[1])
    grid = _patch_grid(model, size)
    if grid is not None:
        prefix = n - grid[0] * grid[1]
        declared = getattr(model, "num_prefix_tokens", None)
        if 0 <= prefix <= MAX_PREFIX and (declared is None or int(declared) == prefix):
            return MapLayout("tokens", prefix, grid)
    for prefix in range(min(MAX_PREFIX, n - 1) + 1):
        found = _factor_grid(n - prefix, size)
        if found is not None and found[0] * found[1] > 1:
            return MapLayout("tokens", prefix, found)
    raise InputError(
        f"{where} outputs {n} tokens, which do not form a patch grid for a {size[0]}x{size[1]} input; "
        "name another layer"
    )


def _channels_first(t: Tensor) -> Tensor:
    """(..., h, w, C) -> (..., C, h, w). Non-negative dims: the ONNX exporter writes movedim(-1, -3)'s negative
    dims into Transpose's perm, which ONNX does not allow (`camloc export` of a ViT failed to load)."""
    n = t.dim()
    return t.movedim(n - 1, n - 3)


def fixed_input_size(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) when the model accepts only that input size (timm ViT / DeiT / EVA / Swin built without
    `dynamic_img_size`, torchvision ViT), else None (convolutional nets, dynamic-size transformers)."""
    pe = getattr(model, "patch_embed", None)
    if pe is not None and getattr(pe, "strict_img_size", False) and not getattr(model, "dynamic_img_size", False):
        size = getattr(pe, "img_size", None)
        if size is not None:
            return int(size[0]), int(size[1])
    image_size = getattr(model, "image_size", None)  # torchvision VisionTransformer asserts its image_size
    if isinstance(image_size, int) and hasattr(model, "conv_proj"):
        return image_size, image_size
    return None


def size_multiple(model: nn.Module) -> tuple[int, int] | None:
    """(ph, pw) when the model takes any input size that is a multiple of its patch size (timm ViT with
    `dynamic_img_size` and no `dynamic_img_pad`), else None."""
    pe = getattr(model, "patch_embed", None)
    if pe is None or not getattr(model, "dynamic_img_size", False) or getattr(pe, "dynamic_img_pad", False):
        return None
    patch = getattr(pe, "patch_size", None)
    return None if patch is None else (int(patch[0]), int(patch[1]))


def input_size_for(model: nn.Module, height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    """The input size (h, w) for a picture of height x width that `scaled_size` puts at `size`: the model's fixed
    size if it has one, else `size` rounded to the nearest multiple of its patch size where it needs one."""
    fixed = fixed_input_size(model)
    if fixed is not None:
        return fixed
    multiple = size_multiple(model)
    if multiple is None:
        return size
    return tuple(max(m, round(s / m) * m) for s, m in zip(size, multiple, strict=True))  # type: ignore[return-value]
