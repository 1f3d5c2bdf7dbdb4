"""The registry of model architectures by name: camloc's own (registered by the modules that define them), then
timm's and torchvision's. `camloc.models.zoo` imports camloc's own builders, so every name is known once it is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from camloc.errors import InputError

DEFAULT_MODEL = "tf_efficientnet_lite0"  # timm name of the built-in default model's architecture

# Builders of our own architectures (GAP nets, surgery results, probes): name -> callable(**kwargs) -> Module.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make `name` loadable by `camloc.load(name)` and from checkpoints whose config names it."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHITECTURES[name] = builder
        return builder

    return wrap


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """An untrained module by name: ours first, then timm, then torchvision."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name](**kwargs)
    import timm

    if timm.is_model(name):
        return timm.create_model(name, pretrained=False, **kwargs)
    import torchvision

    if name in torchvision.models.list_models():
        return torchvision.models.get_model(name, weights=None, **kwargs)
    raise InputError(
        f"unknown model '{name}': not 'default', a checkpoint path, or an architecture name "
        "known to camloc, timm or torchvision"
    )
