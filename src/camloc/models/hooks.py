"""Looking inside a forward pass: the probe input used to discover heads and layers, one module's output, and a
record of every module call. Every hook is removed when the pass ends, whatever happens (no hook outlives a call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from camloc.errors import InputError
from camloc.models.tokens import fixed_input_size

PROBE_SIZE = 128  # side of the random input used to discover and verify heads and layers


def probe_input(model: nn.Module) -> Tensor:
    """A seeded random (2, 3, H, W) input on the model's device and dtype: PROBE_SIZE square, or the model's fixed
    input size (timm's `fixed_input_size`, a ViT's patch grid)."""
    fixed = fixed_input_size(model)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = int(cfg["input_size"][-1]) if cfg.get("fixed_input_size") and "input_size" in cfg else PROBE_SIZE
    h, w = fixed or (size, size)
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, h, w, generator=gen).to(device=device, dtype=dtype)


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` in `model.named_modules()`, or an InputError listing similar names."""
    modules = dict(model.named_modules())
    if name not in modules:
        near = [n for n in modules if n and (name in n or n in name)][:5]
        hint = f" (similar: {', '.join(near)})" if near else ""
        raise InputError(f"no layer named '{name}' in {type(model).__name__}{hint}")
    return modules[name]


@contextlib.contextmanager
def capture_output(model: nn.Module, layer: str) -> Iterator[dict[str, Any]]:
    """Record `layer`'s output (as store["out"]; a module called twice keeps its last call's) during a pass."""
    module = get_module(model, layer)
    store: dict[str, Any] = {}

    def hook(_m: nn.Module, _i: object, output: object) -> None:
        store["out"] = output

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@dataclass
class ModuleCall:
    """One module call of a recorded pass: its `named_modules()` name, the module, its first tensor input, its
    output (a tensor, or None for anything else)."""

    name: str
    module: nn.Module
    input: Tensor | None
    output: Tensor | None


@contextlib.contextmanager
def record_calls(
    model: nn.Module, keep: Callable[[ModuleCall], bool] | None = None, leaves_only: bool = False
) -> Iterator[list[ModuleCall]]:
    """Record every named module's calls (in completion order) during the passes run inside the block.

    keep: which calls to store (all by default); leaves_only: hook only modules without children.
    """
    calls: list[ModuleCall] = []

    def make_hook(mod_name: str) -> Callable[[nn.Module, tuple, object], None]:
        def hook(m: nn.Module, inputs: tuple, output: object) -> None:
            inp = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
            call = ModuleCall(mod_name, m, inp, output if isinstance(output, Tensor) else None)
            if keep is None or keep(call):
                calls.append(call)

        return hook

    handles = []
    try:
        for mod_name, m in model.named_modules():
            if mod_name and not (leaves_only and any(True for _ in m.children())):
                handles.append(m.register_forward_hook(make_hook(mod_name)))
        yield calls
    finally:
        for h in handles:
            h.remove()
