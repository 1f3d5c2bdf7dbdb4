"""Resumable training state: model, optimizer and progress in ONE safetensors file (written atomically), with a
readable JSON copy of the progress beside it.

`train_state.safetensors` holds the tensors `model.<name>` and `optim.<param index>.<name>`, and in its metadata
the JSON of everything else (epoch, step, history, optimizer hyper-parameters, scaler, model config). Because it
is one file replaced atomically, a run killed at any moment leaves either the previous state or the new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camloc.errors import InputError
from camloc.io import atomic_path, write_json

STATE_NAME = "train_state.safetensors"
STATE_JSON = "train_state.json"
META_KEY = "camloc_train_state"


def save_state(
    directory: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, progress: dict[str, Any]
) -> Path:
    """Write the resume state of `model` / `optimizer` / `progress` (JSON-able) into `directory`."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in opt["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    meta = {**progress, "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars}}
    with atomic_path(directory / STATE_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    write_json(directory / STATE_JSON, {k: v for k, v in meta.items() if k != "optimizer"})
    return directory / STATE_NAME


def read_state(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, progress) of a run folder; `InputError` if there is none or it is damaged."""
    return _read(directory, with_tensors=True)


def read_progress(directory: str | os.PathLike) -> dict[str, Any]:
    """The progress record of a run folder (epoch, finished, configs, ...), without reading any tensor."""
    return _read(directory, with_tensors=False)[1]


def _read(directory: str | os.PathLike, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / STATE_NAME
    if not path.is_file():
        raise InputError(
            f"{directory}: no {STATE_NAME} to resume from (not a training run folder, or the run "
            "stopped before its first checkpoint: start it again without --resume)"
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})[META_KEY])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()} if with_tensors else {}  # noqa: SIM118 - safe_open is not iterable
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: damaged training state ({type(exc).__name__}); start the run again") from None
    return tensors, meta


def restore(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    where: str,
) -> None:
    """Load saved tensors ("model.<name>" and "optim.<param index>.<name>" keys, any shape each) into `model` and
    `optimizer` (in place); weights that do not fit are an `InputError` naming `where`."""
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise InputError(f"{where}: saved weights do not fit the model ({detail})") from None
    opt_meta = meta["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in opt_meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise InputError(f"{where}: saved optimizer state does not fit ({exc})") from None
