"""Models for training by name: our GapNet family, GAP surgery of torchvision nets, and timm / torchvision
classifiers whose heads are already GAP + linear. Returns the module and the config its checkpoint records.

Initial weights only ever come from a path the user gives (`init`); nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from camloc.errors import InputError
from camloc.models.adapters import get_adapter
from camloc.models.gapnet import gapnet, gapnet_boxreg
from camloc.models.pretrained import LoadReport, load_matching
from camloc.models.registry import build_architecture
from camloc.models.surgery import gap_surgery, torchvision_base

SURGERY_PREFIX = "surgery:"


def model_for_training(
    arch: str,
    num_classes: int,
    *,
    final_stride: int = 8,
    widths: Sequence[int] = (32, 64, 96, 128),
    norm: str = "batch",
    init: str | os.PathLike | None = None,
) -> tuple[nn.Module, dict[str, Any], LoadReport | None]:
    """(model, {"architecture", "arch_kwargs"}, what `init` loaded) for `arch`:

    - "gapnet" / "gapnet_boxreg": our family (final_stride, widths, norm apply);
    - "surgery:<base>" (alexnet, vgg16, googlenet, ...): `init` is loaded into the torchvision base first, then
      the paper's surgery keeps its conv part;
    - any other timm or torchvision name, which must be CAM-exact (GAP + one linear layer).
    """
    report = None
    if arch in ("gapnet", "gapnet_boxreg"):
        kwargs: dict[str, Any] = {
            "num_classes": num_classes,
            "final_stride": final_stride,
            "widths": [int(w) for w in widths],
            "norm": norm,
        }
        model = (gapnet if arch == "gapnet" else gapnet_boxreg)(**kwargs)
        if init is not None:
            report = load_matching(model, init)
    elif arch.startswith(SURGERY_PREFIX):
        base_name = arch[len(SURGERY_PREFIX) :]
        base = torchvision_base(base_name)
        if init is not None:
            report = load_matching(base, init)
        model = gap_surgery(base, num_classes)
        arch, kwargs = "gap_surgery", {"base": base_name, "num_classes": num_classes}
    else:
        kwargs = {"num_classes": num_classes}
        try:
            model = build_architecture(arch, **kwargs)
        except TypeError as exc:
            raise InputError(f"architecture '{arch}' does not take num_classes ({exc})") from None
        if init is not None:
            report = load_matching(model, init)
        get_adapter(model)  # refuse heads CAM cannot read, saying why
    return model, {"architecture": arch, "arch_kwargs": kwargs}, report
