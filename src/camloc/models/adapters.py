"""Find the two halves of a CAM-exact classifier: the feature map that is average-pooled, and the linear layer.

A classifier is CAM-exact when logits = W . mean_xy f(x, y) + b, i.e. global average pooling, optional dropout,
and one linear layer (or a 1x1 convolution). A LayerNorm (or RMSNorm) of the pooled vector between the two keeps
it exact per image: logit_c = mean_xy M_c(x, y) + b'_c with M_c = s(image) sum_k W'_ck f_k(x, y) (timm ConvNeXt's
`head.norm`, torchvision ConvNeXt's `classifier.0`, ViT / EVA with `fc_norm`; `engine.pooled_norm_weight`,
docs/methods.md). A per-position norm before the pooling (Swin's `norm`, ViT's `norm` with average pooling) is
part of the features. Token and channels-last features become (B, C, h, w) maps (`camloc.models.tokens`).
Three ways in:

- timm models: `forward_features` and `forward_head`, with `get_classifier()` as the linear layer;
- torchvision and other modules: the feature layer is found by recording one forward pass (the last module whose
  4-D output, average-pooled, equals the linear layer's input, or the input of a norm whose output it receives);
  DenseNet's functional ReLU is recognised;
- a user's module with `feature_layer=` / `linear_layer=` names from `named_modules()`.

Whatever the way, the adapter is verified numerically once per model (the model's own logits must equal the
GAP + linear computation); a head that fails gets a `HeadError` saying what is there and what to do instead.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camloc.engine import (
    all_class_activation_maps,
    class_activation_maps,
    pooled_norm_bias,
    pooled_norm_scale,
    pooled_norm_weight,
)
from camloc.errors import HeadError, InputError
from camloc.models.hooks import PROBE_SIZE, capture_output, get_module, probe_input, record_calls
from camloc.models.tokens import NCHW, MapLayout, infer_layout

ADVICE = (
    "CAM needs global average pooling followed by one linear layer (a LayerNorm of the pooled vector may sit "
    "between); use a gradient method (--method gradcam) or make the net CAM-ready with GAP surgery (a 3x3 conv, "
    "GAP and one linear layer)"
)
TOKEN_ADVICE = (
    "CAM is exact only for an average of the patch tokens (timm: global_pool='avg'); use a gradient method "
    "(--method gradcam, gradcam++, xgradcam, layercam or scorecam: the last block's first norm is explained, "
    "tokens reshaped to the patch grid)"
)


@dataclass
class CamAdapter:
    """A model seen as features (B, C, h, w) -> GAP -> [norm of the pooled vector] -> linear (K, C).

    `forward(x)` returns (features, logits) from one pass; logits are the model's own output. `maps` gives the
    CAMs, for which mean_xy CAM_c + cam_bias_c == logit_c holds whether or not a norm sits in the head.
    """

    model: nn.Module
    linear: nn.Module
    feature_layer: str  # named_modules() name of the layer whose output is pooled ("" = timm forward_features)
    post_relu: bool = False  # True when the net applies a functional ReLU between that layer and the pooling
    use_timm: bool = False
    norm: nn.Module | None = None  # LayerNorm / RMSNorm applied to the pooled vector before the linear layer

    @property
    def weight(self) -> Tensor:
        """(K, C) linear weights (a 1x1 convolution's kernel is squeezed)."""
        w = cast(Tensor, self.linear.weight)
        return w.flatten(1) if w.dim() == 4 else w

    @property
    def bias(self) -> Tensor | None:
        """(K,) the linear layer's bias, or None."""
        bias = cast("Tensor | None", self.linear.bias)
        return bias

    @property
    def num_classes(self) -> int:
        """K, the number of classes (rows of the linear weights)."""
        return int(self.weight.shape[0])

    @property
    def cam_weight(self) -> Tensor:
        """(K, C) weights of the CAM: the linear weights, or with a pooled-vector norm `pooled_norm_weight`."""
        if self.norm is None:
            return self.weight
        center, gamma, _beta, _eps = norm_parameters(self.norm)
        return pooled_norm_weight(self.weight, gamma, center)

    @property
    def cam_bias(self) -> Tensor | None:
        """(K,) the b_c of mean_xy CAM_c + b_c == logit_c (the linear bias plus W beta of a norm's shift)."""
        if self.norm is None:
            return self.bias
        return pooled_norm_bias(self.weight, self.bias, norm_parameters(self.norm)[2])

    def image_scale(self, features: Tensor) -> Tensor | None:
        """(B,) per-image factor 1 / sigma of a pooled-vector norm (None without one); features (B, C, h, w)."""
        if self.norm is None:
            return None
        center, _gamma, _beta, eps = norm_parameters(self.norm)
        return pooled_norm_scale(features, eps, center)

    def maps(self, features: Tensor, classes: Tensor | None = None) -> Tensor:
        """Raw CAMs (B, k, h, w) of `classes` (B, k), or of every class (B, K, h, w) when None."""
        weight = self.cam_weight
        if classes is None:
            raw = all_class_activation_maps(features, weight)
        else:
            raw = class_activation_maps(features, weight, classes)
        scale = self.image_scale(features)
        return raw if scale is None else raw * scale.to(raw.dtype)[:, None, None, None]

    def head_input(self, features: Tensor) -> Tensor:
        """(B, C) what the linear layer receives: the pooled vector, through the head's norm if it has one."""
        pooled = features.mean(dim=(2, 3))
        if self.norm is None:
            return pooled
        center, gamma, beta, eps = norm_parameters(self.norm)
        scale = pooled_norm_scale(features, eps, center)[:, None]
        out = (pooled - pooled.mean(dim=1, keepdim=True) if center else pooled) * scale
        out = out if gamma is None else out * gamma.to(out.dtype)
        return out if beta is None else out + beta.to(out.dtype)

    def forward_raw(self, x: Tensor) -> tuple[Tensor, Tensor, MapLayout]:
        """x (B, C_in, H, W) -> (the feature layer's own output, logits (B, K), its layout): the output as the
        layer gives it ((B, C, h, w), (B, h, w, C) or (B, N, C) tokens), the tensor autograd can differentiate."""
        if self.use_timm:
            timm_model: Any = self.model  # timm's forward_features / forward_head
            raw = timm_model.forward_features(x)
            logits = timm_model.forward_head(raw)
            return raw, logits, infer_layout(raw, self.model, tuple(x.shape[-2:]), "forward_features")
        with capture_output(self.model, self.feature_layer) as store:
            out = self.model(x)
        logits = as_logits(out)
        feats = store["out"]
        return (F.relu(feats) if self.post_relu else feats), logits, NCHW

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C_in, H, W) -> (features (B, C, h, w), the model's logits (B, K)) from one pass."""
        raw, logits, layout = self.forward_raw(x)
        return layout.apply(raw), logits

    def features(self, x: Tensor) -> Tensor:
        """Only the feature map (B, C, h, w) of x (B, C_in, H, W) (a later pass at another size needs no logits)."""
        if self.use_timm:
            raw = cast(Any, self.model).forward_features(x)
            return infer_layout(raw, self.model, tuple(x.shape[-2:]), "forward_features").apply(raw)
        return self.forward(x)[0]


def norm_parameters(norm: nn.Module) -> tuple[bool, Tensor | None, Tensor | None, float]:
    """(centers, gamma (C,), beta (C,), eps) of a LayerNorm (centers) or RMSNorm (does not) over channels."""
    eps = getattr(norm, "eps", None)
    eps = float(torch.finfo(torch.float32).eps if eps is None else eps)
    gamma = getattr(norm, "weight", None)
    beta = getattr(norm, "bias", None)
    return isinstance(norm, nn.LayerNorm), gamma, beta, eps


def is_pooled_norm(m: nn.Module) -> bool:
    """A norm CAM can pass: LayerNorm over the channels (also timm / torchvision LayerNorm2d) or RMSNorm."""
    if isinstance(m, nn.LayerNorm):
        return len(m.normalized_shape) == 1
    rms = getattr(nn, "RMSNorm", None)
    return (rms is not None and isinstance(m, rms)) or type(m).__name__ in ("RmsNorm", "RmsNorm2d")


def as_logits(out: object) -> Tensor:
    """A model's output as its (B, K) logits; anything else (a tuple, a dict, a 4-D tensor) is a `HeadError` saying
    to wrap the model."""
    if isinstance(out, Tensor) and out.dim() == 2:
        return out
    kind = type(out).__name__ if not isinstance(out, Tensor) else f"a tensor of shape {tuple(out.shape)}"
    raise HeadError(
        f"the model returns {kind}, not (batch, classes) logits; wrap it so that forward returns the logits tensor"
    )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own flag afterwards.

    Only the modules found in training mode are touched (a model already in eval mode costs one scan).
    """
    switched = [m for m in model.modules() if m.training]
    for m in switched:
        m.training = False
    try:
        yield model
    finally:
        for m in switched:
            m.training = True


# ----------------------------------------------------------------------------------------------- discovery

_CACHE: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def get_adapter(model: nn.Module, feature_layer: str | None = None, linear_layer: str | None = None) -> CamAdapter:
    """The verified CAM adapter of `model` (cached per model and layer choice). Raises `HeadError` if none."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    key = (feature_layer, linear_layer)
    per_model = _CACHE.setdefault(model, {})
    cached = per_model.get(key)
    if cached is None or not any(m is cached.linear for m in model.modules()):  # new or a replaced head
        with eval_mode(model), torch.no_grad():
            adapter = _find_adapter(model, feature_layer, linear_layer)
            _verify(adapter)
        per_model[key] = adapter
    return per_model[key]


def _find_adapter(model: nn.Module, feature_layer: str | None, linear_layer: str | None) -> CamAdapter:
    try:
        return _find_adapter_unchecked(model, feature_layer, linear_layer)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on the probe: say so in one line
        raise HeadError(
            f"{type(model).__name__} failed on a {PROBE_SIZE}x{PROBE_SIZE} probe input "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def _find_adapter_unchecked(model: nn.Module, feature_layer: str | None, linear_layer: str | None) -> CamAdapter:
    if feature_layer is None and linear_layer is None and _is_timm(model):
        return _timm_adapter(model)
    return _recorded_adapter(model, feature_layer, linear_layer)


def _is_timm(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("forward_features", "forward_head", "get_classifier"))


def _timm_adapter(model: nn.Module) -> CamAdapter:
    name = type(model).__name__
    timm_model: Any = model
    clf = timm_model.get_classifier()
    if isinstance(clf, nn.Identity) or clf is None:
        raise HeadError(f"{name} has no classifier (num_classes=0); {ADVICE}")
    if not _is_linear_like(clf):
        raise HeadError(f"{name}'s classifier is a {type(clf).__name__}, not one linear layer; {ADVICE}")
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str) or getattr(model, "attn_pool", None) is not None:  # token models (ViT, DeiT, EVA)
        if getattr(model, "attn_pool", None) is not None or pool == "map":
            raise HeadError(f"{name} pools its tokens with attention ('map'), not an average; {TOKEN_ADVICE}")
        if pool == "token":
            raise HeadError(f"{name} classifies its class token, not an average of the patch tokens; {TOKEN_ADVICE}")
        if pool != "avg":
            raise HeadError(f"{name} pools its tokens with '{pool}', not an average; {TOKEN_ADVICE}")
        if getattr(model, "pool_include_prefix", False):
            raise HeadError(f"{name} averages its prefix tokens with the patch tokens; {TOKEN_ADVICE}")
    else:
        pool = getattr(pool, "pool_type", None) or getattr(getattr(model, "head", None), "global_pool", None)
        pool = getattr(pool, "pool_type", pool)
        if pool not in ("avg", "", None):
            raise HeadError(f"{name} pools with '{pool}', not an average; {ADVICE}")
    probe = probe_input(model)
    raw = timm_model.forward_features(probe)
    try:
        infer_layout(raw, model, tuple(probe.shape[-2:]), f"{name}.forward_features")
    except InputError as exc:
        raise HeadError(f"{exc}; {ADVICE}") from None
    norms, extra = _head_modules(model, raw, clf)
    if extra:
        raise HeadError(f"{name} is not CAM-exact: its head applies {', '.join(extra)} besides pooling; {ADVICE}")
    if len(norms) > 1:
        raise HeadError(f"{name} is not CAM-exact: its head has {len(norms)} norms; {ADVICE}")
    return CamAdapter(model, clf, "", use_timm=True, norm=norms[0] if norms else None)


# Modules a GAP head may call besides one pooled-vector norm and the classifier (pooling, shape, dropout).
_HEAD_PASS = (nn.Identity, nn.Dropout, nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)


def _head_modules(model: nn.Module, feats: Tensor, clf: nn.Module) -> tuple[list[nn.Module], list[str]]:
    """(the norms, 'name (Type)' of any other computing module) called by timm's `forward_head`."""
    with record_calls(model, leaves_only=True) as calls:
        cast(Any, model).forward_head(feats)
    called = [(c.name, c.module) for c in calls]
    norms = [m for _, m in called if is_pooled_norm(m)]
    extra = [
        f"{n} ({type(m).__name__})"
        for n, m in called
        if m is not clf and not is_pooled_norm(m) and not isinstance(m, _HEAD_PASS) and not _is_pool(m)
    ]
    return norms, extra


def _is_pool(m: nn.Module) -> bool:
    """timm's average-pooling leaves (the pooled result is checked numerically anyway)."""
    return type(m).__name__ in ("FastAdaptiveAvgPool", "AdaptiveAvgPool2d", "AdaptiveAvgPool1d")


def _is_linear_like(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1)


def _recorded_adapter(model: nn.Module, feature_layer: str | None, linear_layer: str | None) -> CamAdapter:
    """Record one forward pass, then pick the linear layer and the feature map it average-pools."""
    name = type(model).__name__
    with record_calls(model) as recorded:
        out = model(probe_input(model))
    as_logits(out)
    calls = [(c.name, c.module, c.input, c.output) for c in recorded]  # (name, module, input, output)

    if linear_layer is not None:
        linear = get_module(model, linear_layer)
        if not _is_linear_like(linear):
            raise HeadError(f"layer '{linear_layer}' is a {type(linear).__name__}, not nn.Linear or a 1x1 conv")
        lin_idx = max((i for i, c in enumerate(calls) if c[1] is linear), default=None)
        if lin_idx is None:
            raise HeadError(f"layer '{linear_layer}' is not called in {name}'s forward pass")
    else:
        lin_idx = max((i for i, c in enumerate(calls) if isinstance(c[1], nn.Linear)), default=None)
        if lin_idx is None:
            raise HeadError(f"{name} has no nn.Linear classifier; pass linear_layer= to name one; {ADVICE}")
        linear = calls[lin_idx][1]
    lin_name, _, lin_in, _ = calls[lin_idx]
    if lin_in is None:
        raise HeadError(f"could not read the input of '{lin_name}' in {name}")
    pooled = lin_in.flatten(1) if lin_in.dim() == 4 else lin_in
    norm = None
    if feature_layer is None:
        norm_idx = _norm_feeding(calls[:lin_idx], pooled)
        if norm_idx is not None:  # "pool -> LayerNorm -> linear" (torchvision ConvNeXt): the norm's input is pooled
            _name, norm, norm_in, _out = calls[norm_idx]
            assert norm_in is not None  # _norm_feeding only returns calls with a recorded input
            pooled = norm_in.flatten(1)
            lin_idx = norm_idx

    candidates = calls[:lin_idx]
    if feature_layer is not None:
        get_module(model, feature_layer)
        candidates = [c for c in candidates if c[0] == feature_layer]
        if not candidates:
            raise HeadError(f"layer '{feature_layer}' is not called before '{lin_name}' in {name}")
    for mod_name, _m, _inp, out in reversed(candidates):
        if out is None or out.dim() != 4 or out.shape[-1] * out.shape[-2] <= 1:
            continue
        for post_relu in (False, True):
            fmap = F.relu(out) if post_relu else out
            if fmap.shape[1] == pooled.shape[1] and torch.allclose(fmap.mean(dim=(2, 3)), pooled, rtol=1e-4, atol=1e-5):
                return CamAdapter(model, linear, mod_name, post_relu=post_relu, norm=norm)
        if feature_layer is not None:
            raise HeadError(f"the average of '{feature_layer}' is not what '{lin_name}' receives in {name}; {ADVICE}")
    last_map = max(
        (
            i
            for i, c in enumerate(calls[:lin_idx])
            if c[3] is not None and c[3].dim() == 4 and c[3].shape[-1] * c[3].shape[-2] > 1
        ),
        default=-1,
    )
    n_linear_after = sum(1 for c in calls[last_map + 1 :] if isinstance(c[1], nn.Linear))
    what = (
        f"its head has {n_linear_after} linear layers (an MLP)"
        if n_linear_after > 1
        else "something other than an average (a norm, max pooling or extra layers) sits between its last "
        "feature map and its linear layer"
    )
    raise HeadError(f"{name} is not CAM-exact: {what}; {ADVICE}")


def _norm_feeding(calls: list, pooled: Tensor) -> int | None:
    """Index of the last pooled-vector norm call whose output is what the linear layer receives, if any."""
    for i in range(len(calls) - 1, -1, -1):
        _name, m, inp, out = calls[i]
        if out is None or inp is None or not is_pooled_norm(m) or out.numel() != pooled.numel():
            continue
        vector = inp.dim() == 2 or (inp.dim() == 4 and inp.shape[-1] * inp.shape[-2] == 1)
        if vector and torch.allclose(out.reshape(pooled.shape), pooled, rtol=1e-4, atol=1e-5):
            return i
    return None


def _verify(adapter: CamAdapter) -> None:
    """The model's logits must be mean_xy CAM + b' of the adapter's maps (else the CAM would lie)."""
    feats, logits = adapter.forward(probe_input(adapter.model))
    if feats.shape[1] != adapter.weight.shape[1]:
        raise HeadError(
            f"{type(adapter.model).__name__} is not CAM-exact: its feature map has {feats.shape[1]} "
            f"channels but its linear layer takes {adapter.weight.shape[1]} (layers sit between the "
            f"pooling and the classifier); {ADVICE}"
        )
    bias = adapter.cam_bias
    expected = adapter.maps(feats).mean(dim=(2, 3)) + (0 if bias is None else bias.to(feats.dtype))
    scale = logits.abs().max().clamp(min=1.0)
    if logits.shape != expected.shape or not torch.allclose(logits, expected, rtol=1e-4, atol=1e-4 * float(scale)):
        raise HeadError(
            f"{type(adapter.model).__name__} is not CAM-exact: its logits differ from global average "
            f"pooling + its linear layer; {ADVICE}"
        )
