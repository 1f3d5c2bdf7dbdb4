"""Which layer a map method explains, and how its output A (B, C, h, w) is recorded with the logits.

The default layer is the last module whose output is a spatial map (B, C, h, w), h * w > 1, in call order; it is
found once per model by recording one forward pass on a small probe input (the same probe as the head adapters):

- for a CAM-exact model (see `camloc.models.adapters`) it is the map that global average pooling and the linear
  layer classify; then A is read hook-free (timm: `forward_features` / `forward_head`) or through the adapter, and
  gradient methods may use the closed-form gradient dy_c/dA_k(x, y) = w_ck / (h w) instead of a backward pass;
- otherwise it is the last spatial map before the head (torchvision ResNet: `layer4`; DenseNet: `features`;
  VGG: `features`), as peers recommend (pytorch-grad-cam's `model.layer4[-1]`, torchcam's `locate_candidate_layer`).

Any other module is chosen by its `named_modules()` name. Its output is recorded with a forward hook that is
removed in `finally`; a module called several times in one forward pass gives its last call's output.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from camloc.errors import HeadError, InputError, LayerError
from camloc.models.adapters import (
    CamAdapter,
    _probe_input,
    as_logits,
    capture_output,
    eval_mode,
    get_adapter,
    get_module,
)

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
    if target.adapter is not None:
        return target.adapter.forward(x)
    with capture_output(model, target.name) as store:
        logits = as_logits(model(x))
    return check_spatial(store.get("out"), target.name, model), logits


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
    name, outputs, probe = _last_spatial_layer(model)
    if adapter is not None and adapter.use_timm:
        with eval_mode(model), torch.no_grad():
            feats = cast(Any, model).forward_features(probe)
        if feats.shape == outputs.shape and torch.allclose(feats, outputs, rtol=1e-4, atol=1e-5):
            return TargetLayer(name, adapter)
    return TargetLayer(name)


def _last_spatial_layer(model: nn.Module) -> tuple[str, Tensor, Tensor]:
    """(name, its output on the probe, the probe) of the last module called with a spatial 4-D output."""
    calls: list[tuple[str, Tensor]] = []
    handles = []

    def make_hook(mod_name: str):
        def hook(m: nn.Module, _inputs: tuple, output: object) -> None:
            if (
                isinstance(output, Tensor)
                and output.dim() == 4
                and output.shape[-1] * output.shape[-2] > 1
                and not isinstance(m, _PASS_THROUGH)
            ):
                calls.append((mod_name, output))

        return hook

    probe = _probe_input(model)
    try:
        for mod_name, m in model.named_modules():
            if mod_name:
                handles.append(m.register_forward_hook(make_hook(mod_name)))
        with eval_mode(model), torch.no_grad():
            model(probe)
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on the probe: one line
        raise LayerError(
            f"{type(model).__name__} failed on a probe input of shape {tuple(probe.shape)} "
            f"({type(exc).__name__}); name the layer to explain with layer="
        ) from None
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise LayerError(
            f"{type(model).__name__} has no layer with a spatial (batch, channels, h, w) output; "
            "name one with layer= / --layer"
        )
    return calls[-1][0], calls[-1][1], probe
