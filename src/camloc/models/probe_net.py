"""The "probe" architecture: a backbone GAP net whose classifier is replaced by a new linear layer.

A probe checkpoint names its backbone by recipe (`{"architecture", "arch_kwargs"}`, the same pair a checkpoint
config holds), so `camloc.load("probe/")` rebuilds the backbone's architecture, swaps in a `num_classes`-way head
and loads the saved weights. The result is the backbone module itself: `get_adapter` sees a GAP + linear net.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from torch import Tensor, nn

from camloc.errors import InputError
from camloc.io import CONFIG_NAME
from camloc.models.adapters import get_adapter
from camloc.models.registry import DEFAULT_MODEL, build_architecture, register_architecture


@register_architecture("probe")
def build_probe(backbone: dict[str, Any], num_classes: int) -> nn.Module:
    """An untrained probe: the backbone's architecture (random weights) with a `num_classes`-way linear head."""
    if not isinstance(backbone, dict) or "architecture" not in backbone:
        raise InputError("a probe's 'backbone' must be a recipe {'architecture': ..., 'arch_kwargs': {...}}")
    model = build_architecture(backbone["architecture"], **dict(backbone.get("arch_kwargs", {})))
    return replace_head(model, num_classes)


def backbone_recipe(spec: str) -> dict[str, Any]:
    """How to rebuild the architecture of the model that `camloc.load(spec)` returns (weights aside)."""
    if spec == "default":
        return {"architecture": DEFAULT_MODEL, "arch_kwargs": {}}
    path = Path(spec)
    if path.exists():
        config_path = (path if path.is_dir() else path.parent) / CONFIG_NAME
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{config_path}: cannot read the backbone's config ({exc})") from None
        return {"architecture": config["architecture"], "arch_kwargs": dict(config.get("arch_kwargs", {}))}
    return {"architecture": spec, "arch_kwargs": {}}


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the model's CAM-exact linear layer (found by `get_adapter`) by a new one with `num_classes` outputs,
    in place; a 1x1-convolution head stays a 1x1 convolution; the new layer always has a bias. Returns the model."""
    if num_classes < 1:
        raise InputError(f"a probe needs at least one class, got {num_classes}")
    old = get_adapter(model).linear
    name = next(n for n, m in model.named_modules() if m is old)
    in_features = int(get_adapter(model).weight.shape[1])
    if isinstance(old, nn.Conv2d):
        new: nn.Module = nn.Conv2d(in_features, num_classes, kernel_size=1)
    else:
        new = nn.Linear(in_features, num_classes)
    p = cast(Tensor, old.weight)
    new = new.to(device=p.device, dtype=p.dtype)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    if isinstance(getattr(model, "num_classes", None), int):
        setattr(model, "num_classes", num_classes)  # noqa: B010 - timm models keep it; keep it truthful
    return model
