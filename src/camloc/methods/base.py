"""The one interface every map method implements, and the registry that names them."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from camloc.errors import InputError

METHODS: dict[str, type[MapMethod]] = {}


def register_method(*names: str) -> Callable[[type[MapMethod]], type[MapMethod]]:
    """Class decorator: make a method available by these names (`method="..."`, `--method ...`)."""

    def wrap(cls: type[MapMethod]) -> type[MapMethod]:
        for name in names:
            METHODS[name] = cls
        return cls

    return wrap


class MapMethod(ABC):
    """Base class: computes raw maps of chosen classes for a batch.

    Subclasses implement `run`. `layer` names a module (by `named_modules()` name) for methods that need one.
    `channels_last`: on a CPU, run the model on a channels-last copy of the input (see `input_layout`); set it to
    False on an instance to keep the caller's layout.
    """

    name = "base"
    channels_last = True

    def __init__(self, layer: str | None = None) -> None:
        self.layer = layer

    @abstractmethod
    def run(
        self, model: nn.Module, x: Tensor, classes: Tensor | None = None, top_k: int = 5
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return (logits (B, K), classes (B, k), raw maps (B, k, h, w)).

        With `classes=None` the k = min(top_k, K) highest-scoring classes of each image are used, best first.
        """

    def layer_name(self, model: nn.Module) -> str:
        """`named_modules()` name of the layer this method explains on `model` (reported in `Result.settings`)."""
        from camloc.methods.layers import resolve_layer

        return resolve_layer(model, self.layer).name

    def maps_only(self, model: nn.Module, x: Tensor, classes: Tensor) -> Tensor:
        """Raw maps (B, k, h, w) of given classes (B, k) for x (B, C_in, H, W) (a pass at another input size);
        methods may skip work they don't need."""
        return self.run(model, x, classes)[2]


def input_layout(x: Tensor, channels_last: bool = True) -> Tensor:
    """The input batch in the memory layout the model runs fastest with: channels-last (NHWC) for a 4-D float
    batch on a CPU, where oneDNN's convolutions are faster in that layout (EfficientNet-Lite0: "forward
    channels-last" in benchmarks/bench_methods.py, docs/methods.md); unchanged elsewhere. Same values; outputs
    differ by the float round-off of other kernels. Differentiable (a copy). x (B, C, H, W) -> the same shape."""
    if channels_last and x.dim() == 4 and x.device.type == "cpu" and x.is_floating_point():
        return x.contiguous(memory_format=torch.channels_last)
    return x


def get_method(method: str | MapMethod | type[MapMethod], layer: str | None = None) -> MapMethod:
    """Resolve a method given by name, class or instance."""
    if isinstance(method, MapMethod):
        if layer is None or layer == method.layer:
            return method
        if method.layer is not None:
            raise InputError(f"two layers given: '{method.layer}' in the method and '{layer}'; give one")
        chosen = copy.copy(method)  # the caller's instance is left as it was
        chosen.layer = layer
        return chosen
    if isinstance(method, type) and issubclass(method, MapMethod):
        return method(layer=layer)
    key = str(method).lower()
    if key not in METHODS:
        raise InputError(f"unknown method '{method}'; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[key](layer=layer)


def select_classes(logits: Tensor, classes: Tensor | None, top_k: int) -> Tensor:
    """Classes (B, k) int64: explicit `classes` (B, k) (validated against logits (B, K)) or the top-k of each row
    of logits, best first (k = min(top_k, K))."""
    num_classes = logits.shape[1]
    if classes is None:
        return logits.topk(min(max(int(top_k), 1), num_classes), dim=1).indices
    classes = classes.to(device=logits.device, dtype=torch.long)
    if classes.shape[0] != logits.shape[0]:
        raise InputError(f"{classes.shape[0]} target lists for a batch of {logits.shape[0]} images")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise InputError(f"target class {int(classes[bad][0])} is out of range for a model with {num_classes} classes")
    return classes
