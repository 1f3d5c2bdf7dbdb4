"""The CAM math, as pure tensor functions (no hooks, no state).

Zhou et al. 2016: for features f_k(x, y) pooled by a global average and one linear layer with weights w_ck and
bias b_c, the class activation map is CAM_c(x, y) = sum_k w_ck f_k(x, y), and

    mean_xy CAM_c(x, y) + b_c == logit_c                                   (the identity `check_identity` tests)

With a LayerNorm / RMSNorm of the pooled vector between the pooling and the linear layer (ConvNeXt, ViT / EVA with
`fc_norm`) the identity still holds per image, with row-centred weights W' = `pooled_norm_weight`, the image's
factor 1 / sigma = `pooled_norm_scale` on the map and b' = `pooled_norm_bias` (derivation: docs/methods.md).

Every class of every image comes from one einsum. Post-processing is explicit and in this order:
optional ReLU -> bilinear upsampling -> per-map min-max normalisation.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-12


def class_activation_maps(features: Tensor, weight: Tensor, classes: Tensor) -> Tensor:
    """CAMs of the chosen classes of each image, in one tensor operation.

    features: (B, C, h, w) last feature maps; weight: (K, C) linear weights; classes: (B, k) class indices.
    Returns (B, k, h, w) raw (unnormalised) maps in the features' dtype.
    """
    if classes.dim() != 2 or classes.shape[0] != features.shape[0]:
        raise ValueError(f"classes must be (B, k) with B={features.shape[0]}, got {tuple(classes.shape)}")
    chosen = weight.to(features.dtype)[classes]  # (B, k, C)
    return torch.einsum("bchw,bkc->bkhw", features, chosen)


def all_class_activation_maps(features: Tensor, weight: Tensor) -> Tensor:
    """CAMs of every class: (B, C, h, w) x (K, C) -> (B, K, h, w)."""
    return torch.einsum("bchw,kc->bkhw", features, weight.to(features.dtype))


def logits_from_features(features: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """What a GAP + linear head computes: (B, C, h, w) -> (B, K)."""
    return F.linear(
        features.mean(dim=(2, 3)), weight.to(features.dtype), None if bias is None else bias.to(features.dtype)
    )


def pooled_norm_weight(weight: Tensor, gamma: Tensor | None, center: bool) -> Tensor:
    """The CAM weights (K, C) of a head "mean over positions -> norm of the pooled vector -> linear (K, C)".

    LayerNorm (center=True): W' = W diag(gamma) with each row minus its mean, so that sum_k W'_ck f_k(x, y) is
    sum_k W_ck gamma_k (f_k(x, y) - mean_j f_j(x, y)). RMSNorm (center=False): W diag(gamma). docs/methods.md
    derives both; `pooled_norm_scale` gives the per-image factor that completes the map.
    """
    w = weight if gamma is None else weight * gamma.to(weight.dtype)[None, :]
    return w - w.mean(dim=1, keepdim=True) if center else w


def pooled_norm_scale(features: Tensor, eps: float, center: bool) -> Tensor:
    """(B,) factor 1 / sigma of each image: sigma = sqrt(var_k(p) + eps) (LayerNorm, biased variance as torch) or
    sqrt(mean_k(p^2) + eps) (RMSNorm) of the pooled vector p = mean_xy f (B, C); features (B, C, h, w)."""
    pooled = features.mean(dim=(2, 3))
    second = pooled.var(dim=1, unbiased=False) if center else pooled.pow(2).mean(dim=1)
    return torch.rsqrt(second + eps)


def pooled_norm_bias(weight: Tensor, bias: Tensor | None, beta: Tensor | None) -> Tensor | None:
    """b' = b + W beta (K,): the norm's shift, passed through the linear layer (None when both are absent)."""
    if beta is None:
        return bias
    shifted = weight @ beta.to(weight.dtype)
    return shifted if bias is None else bias + shifted


def check_identity(raw: Tensor, logits: Tensor, classes: Tensor, bias: Tensor | None) -> Tensor:
    """Largest |mean_xy CAM_c + b_c - logit_c| over the batch (should be float round-off), a scalar tensor.

    raw (B, k, h, w) CAMs of classes (B, k) int64; logits (B, K); bias (K,) or None."""
    b = 0 if bias is None else bias.detach().to(raw.dtype)[classes]
    return (raw.mean(dim=(2, 3)) + b - logits.gather(1, classes)).abs().max()


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (..., h, w) maps to (..., H, W): `F.interpolate(mode="bilinear",
    align_corners=False)` (as torchvision/OpenCV), computed as two matrix products R_y @ maps @ R_x^T with the
    interpolation weights as matrices: the same numbers up to float round-off, 3-5x faster on a CPU for maps
    upsampled to photo size (benchmarks/bench_cam.py, docs/speed.md). Differentiable."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    dtype = maps.dtype if maps.is_floating_point() else torch.float32
    rows = interpolation_matrix(int(size[0]), maps.shape[-2], dtype, maps.device)
    cols = interpolation_matrix(int(size[1]), maps.shape[-1], dtype, maps.device)
    return torch.matmul(rows, torch.matmul(maps.to(dtype), cols.T))


@functools.lru_cache(maxsize=128)
def interpolation_matrix(n_out: int, n_in: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation from n_in to n_out samples, as PyTorch's bilinear mode
    with align_corners=False: source position (i + 0.5) * n_in / n_out - 0.5, clamped to the edge samples."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    index = torch.arange(n_out)
    weights.index_put_((index, lo), 1 - frac, accumulate=True)
    weights.index_put_((index, hi), frac, accumulate=True)
    return weights.to(dtype=dtype, device=device)


def combine_passes(maps: list[Tensor], relu: bool = False) -> Tensor:
    """Combine maps of the same classes from passes at several input sizes, already upsampled to one size:
    n passes of (..., H, W) maps (e.g. (B, k, H, W)) -> one (..., H, W) map stack, same dtype.

    Each pass is ReLU'd if asked and divided by its largest magnitude (so every pass weighs the same and the sign
    and zero level survive), then the passes are averaged. One pass is returned as is (ReLU'd if asked): the
    normalisation and both threshold rules ignore a positive factor.
    """
    if len(maps) == 1:
        return maps[0].clamp(min=0) if relu else maps[0]
    total: Tensor | None = None
    for m in maps:
        m = m.clamp(min=0) if relu else m
        m = m / m.flatten(-2).abs().amax(-1).clamp(min=EPS)[..., None, None]
        total = m if total is None else total + m
    assert total is not None  # maps is not empty
    return total / len(maps)


def min_max(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-map minimum and maximum of (..., H, W) maps, shaped (..., 1, 1) for broadcasting."""
    flat = maps.flatten(-2)
    # two reductions: torch.aminmax is several times slower than amin + amax on a CPU (5x on 5x1411x1411 maps)
    return flat.amin(-1)[..., None, None], flat.amax(-1)[..., None, None]


def normalize(
    maps: Tensor,
    relu: bool = False,
    eps: float = EPS,
    lo: Tensor | None = None,
    hi: Tensor | None = None,
    inplace: bool = False,
) -> Tensor:
    """Per-map min-max normalisation to [0, 1] over the last two dimensions.

    relu=True clips negative evidence to 0 first (so the minimum becomes max(min, 0)). A constant map (including
    an all-negative map after ReLU) has no contrast and normalises to all zeros, never NaN. `lo` / `hi` may pass
    precomputed per-map extremes (see `min_max`; only without relu). `inplace=True` overwrites `maps` (without
    relu): no new tensor, which matters for maps at photo size (a fresh allocation costs its page faults).
    """
    if relu:
        maps = maps.clamp(min=0)
        lo = hi = None
    if lo is None or hi is None:
        lo, hi = min_max(maps)
    span = hi - lo
    scale = torch.where(span > eps, 1.0 / span.clamp(min=eps), torch.zeros_like(span))
    if inplace and not relu:
        return maps.sub_(lo).mul_(scale)
    return torch.sub(maps, lo).mul_(scale)  # in place after the first op: one allocation
