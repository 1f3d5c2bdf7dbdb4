"""Which layer a map method explains, and how its output A (B, C, h, w) is recorded with the logits.

The default layer is the last module whose output is a spatial map (B, C, h, w), h * w > 1, in call order; it is
found once per model by recording one forward pass on a small probe input (the same probe as the head adapters):

- for a CAM-exact model (see `camloc.models.adapters`) it is the map that global average pooling and the linear
  layer classify; then A is read hook-free (timm: `forward_features` / `forward_head`) or through the adapter, and
  gradient methods may use the closed-form gradient dy_c/dA_k(x, y) = w_ck / (h w) instead of a backward pass;
- otherwise, in a transformer (modules with an `attn` / `self_attention` child: timm ViT, DeiT, EVA, Swin;
  torchvision ViT, Swin) it is the first norm of the last attention block (`blocks.11.norm1`, `layers.3.blocks.1.
  norm1`, `encoder.layers.encoder_layer_11.ln_1`), pytorch-grad-cam's documented ViT / Swin layer: a class-token
  head reads the patch tokens only through the last block's attention, so after that attention their gradient is
  zero and before it they still carry the image's layout;
- otherwise it is the last spatial map before the head (torchvision ResNet: `layer4`; DenseNet: `features`;
  VGG: `features`), as peers recommend (pytorch-grad-cam's `model.layer4[-1]`, torchcam's `locate_candidate_layer`).

Any other module is chosen by its `named_modules()` name. Its output is recorded with a forward hook that is
removed in `finally`; a module called several times in one forward pass gives its last call's output. Token
(B, N, C) and channels-last (B, h, w, C) outputs are reshaped to (B, C, h, w) maps, prefix tokens dropped
(`camloc.models.tokens`); gradients are taken on the layer's own output and reshaped the same way.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from camloc.errors import HeadError, InputError, LayerError
from camloc.models.adapters import CamAdapter, as_logits, eval_mode, get_adapter, is_pooled_norm
from camloc.models.hooks import ModuleCall, capture_output, get_module, probe_input, record_calls
from camloc.models.tokens import MapLayout, infer_layout

# Modules that only pass a map through or shape it for the head: never the default layer.
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)


@dataclass(frozen=True)
class TargetLayer:
    """The layer a method explains.

    name: its `named_modules()` name. adapter: the model's CAM adapter when this layer's output is exactly the map
    that GAP + linear classify (closed-form gradients apply), else None.
    """

    name: str
    adapter: CamAdapter | None = None


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, Any]] = weakref.WeakKeyDictionary()


def resolve_layer(model: nn.Module, layer: str | None = None) -> TargetLayer:
    """The layer to explain: `layer` by name, or the default one (cached per model)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    per_model = _CACHE.setdefault(model, {})
    if layer is not None:
        get_module(model, layer)  # unknown name: an InputError listing similar names
        if ("layer", layer) not in per_model:
            try:
                default: TargetLayer | None = resolve_layer(model, None)
            except InputError:  # no default found (or the model fails on the probe): the named layer still works
                default = None
            same = default is not None and default.adapter is not None and default.name == layer
            per_model[("layer", layer)] = default if same else TargetLayer(layer)
        return per_model[("layer", layer)]
    if ("layer", None) not in per_model:
        per_model[("layer", None)] = _default_layer(model)
    return per_model[("layer", None)]


def default_layer_name(model: nn.Module) -> str:
    """`named_modules()` name of the layer gradient methods explain by default."""
    return resolve_layer(model, None).name


def forward_recorded(model: nn.Module, x: Tensor, target: TargetLayer) -> tuple[Tensor, Tensor]:
    """One forward pass: (A (B, C, h, w), logits (B, K)). No hook outlives the call."""
    raw, logits, layout = forward_recorded_raw(model, x, target)
    return layout.apply(raw), logits


def forward_recorded_raw(model: nn.Module, x: Tensor, target: TargetLayer) -> tuple[Tensor, Tensor, MapLayout]:
    """One forward pass: (the layer's own output, logits (B, K), how that output is a (B, C, h, w) map)."""
    if target.adapter is not None:
        return target.adapter.forward_raw(x)
    with capture_output(model, target.name) as store:
        logits = as_logits(model(x))
    out = store.get("out")
    where = f"layer '{target.name}' of {type(model).__name__}"
    if isinstance(out, Tensor) and out.dim() in (3, 4):
        try:
            layout = infer_layout(out, model, tuple(x.shape[-2:]), where)
        except InputError as exc:
            raise LayerError(str(exc)) from None
        check_spatial(layout.apply(out), target.name, model)
        return out, logits, layout
    check_spatial(out, target.name, model)
    raise AssertionError("unreachable")  # check_spatial raised


def check_spatial(out: object, name: str, model: nn.Module) -> Tensor:
    """The recorded output if it is a (B, C, h, w) map with h * w > 1, else a one-line `LayerError`."""
    where = f"layer '{name}' of {type(model).__name__}"
    if out is None:
        raise LayerError(f"{where} is not called in the forward pass; pick a layer the model uses")
    if not isinstance(out, Tensor):
        raise LayerError(f"{where} returns {type(out).__name__}, not a (batch, channels, h, w) tensor")
    if out.dim() != 4:
        raise LayerError(
            f"{where} outputs shape {tuple(out.shape)}, not a (batch, channels, h, w) feature map; "
            "pick a convolutional layer (see model.named_modules())"
        )
    if out.shape[-1] * out.shape[-2] <= 1:
        raise LayerError(
            f"{where} outputs a 1x1 map (shape {tuple(out.shape)}): no spatial extent to explain; "
            "pick an earlier layer or a larger input"
        )
    return out


# ----------------------------------------------------------------------------------------------- discovery


def _cam_adapter(model: nn.Module) -> CamAdapter | None:
    try:
        return get_adapter(model)
    except HeadError:
        return None


def _default_layer(model: nn.Module) -> TargetLayer:
    adapter = _cam_adapter(model)
    if adapter is not None and not adapter.use_timm and not adapter.post_relu:
        return TargetLayer(adapter.feature_layer, adapter)
    calls, probe = _recorded_outputs(model)
    size = tuple(probe.shape[-2:])
    if adapter is not None and adapter.use_timm:
        with eval_mode(model), torch.no_grad():
            feats = adapter.features(probe)
        for name, _m, out in reversed(calls):
            fmap = _as_map(out, model, size)
            if fmap is not None and fmap.shape == feats.shape and torch.allclose(fmap, feats, rtol=1e-4, atol=1e-5):
                return TargetLayer(name, adapter)
    block_norm = _last_block_norm(model, calls)
    if block_norm is not None:
        return TargetLayer(block_norm)
    spatial = [
        name
        for name, m, out in calls
        if out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1 and not isinstance(m, _PASS_THROUGH)
    ]
    if not spatial:
        raise LayerError(
            f"{type(model).__name__} has no layer with a spatial (batch, channels, h, w) output; "
            "name one with layer= / --layer"
        )
    return TargetLayer(spatial[-1])


def _as_map(out: Tensor, model: nn.Module, size: tuple[int, ...]) -> Tensor | None:
    try:
        return infer_layout(out, model, size).apply(out)
    except InputError:
        return None


def _last_block_norm(model: nn.Module, calls: list[tuple[str, nn.Module, Tensor]]) -> str | None:
    """Name of the first norm (`norm1` / `ln_1`) of the last attention block called, if the model has one."""
    modules = dict(model.named_modules())
    for name, m, _out in reversed(calls):
        if hasattr(m, "attn") or hasattr(m, "self_attention"):
            for child in ("norm1", "ln_1", "layernorm_before"):
                full = f"{name}.{child}" if name else child
                if full in modules and is_pooled_norm(modules[full]) and any(n == full for n, _, _ in calls):
                    return full
    return None


def _recorded_outputs(model: nn.Module) -> tuple[list[tuple[str, nn.Module, Tensor]], Tensor]:
    """(name, module, output) of every module call with a 3-D or 4-D tensor output on the probe, in completion
    order (a module called twice appears twice), and the probe."""

    def spatial(call: ModuleCall) -> bool:
        return call.output is not None and call.output.dim() in (3, 4) and not isinstance(call.module, _PASS_THROUGH)

    probe = probe_input(model)
    try:
        with record_calls(model, keep=spatial) as recorded, eval_mode(model), torch.no_grad():
            model(probe)
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on the probe: one line
        raise LayerError(
            f"{type(model).__name__} failed on a probe input of shape {tuple(probe.shape)} "
            f"({type(exc).__name__}); name the layer to explain with layer="
        ) from None
    return [(c.name, c.module, c.output) for c in recorded if c.output is not None], probe
