"""Initial weights for fine-tuning, from the user's files only (nothing is downloaded).

A camloc checkpoint folder or a plain `.safetensors` state dict is loaded into a module; tensors whose name and
shape match are taken, the rest (typically the old classifier) are reported, and loading nothing is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from camloc.errors import InputError
from camloc.io import load_checkpoint


@dataclass
class LoadReport:
    """What `load_matching` took and left."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in the file, but missing or of another shape in the model
    missing: list[str] = field(default_factory=list)  # in the model, not given by the file

    def summary(self) -> str:
        """One line of counts: tensors loaded, skipped from the file, left at their initial values."""
        return (
            f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)} from the file, "
            f"{len(self.missing)} left at their initial values"
        )


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors of a checkpoint folder (safetensors + config.json) or of a bare .safetensors file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors" and not (path.parent / "config.json").is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    return load_checkpoint(path)[0]


def load_matching(model: nn.Module, path: str | os.PathLike, prefix: str = "") -> LoadReport:
    """Copy the tensors of `path` (keys optionally prefixed with `prefix`) into `model` where names and shapes
    match. Raises `InputError` when nothing matches (weights of another architecture)."""
    source = read_state_dict(path)
    target = model.state_dict()
    report, take = LoadReport(), {}
    for key, tensor in source.items():
        name = prefix + key
        if name in target and target[name].shape == tensor.shape:
            take[name] = tensor
            report.loaded.append(name)
        else:
            report.skipped.append(key)
    if not take:
        raise InputError(
            f"{path}: none of its {len(source)} tensors fits {type(model).__name__} (weights of another architecture?)"
        )
    report.missing = [k for k in target if k not in take]
    model.load_state_dict(take, strict=False)
    return report
