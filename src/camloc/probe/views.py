"""Feature maps of image views, preprocessed as explain's passes: what the cell fit (`camloc.probe.cells`) and the
contrast boxes (`camloc.probe.contrast`) read."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import numpy as np
import torch
from PIL import Image
from torch import nn

from camloc.models.adapters import eval_mode, get_adapter
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor

ImageSource = str | PathLike | Image.Image | np.ndarray  # what `camloc.io.as_rgb_image` decodes


def cell_features(model: nn.Module, views: Sequence[tuple[Image.Image, int]]) -> list[np.ndarray]:
    """Feature maps (C, h, w) float32 of each (image, shorter side) view, preprocessed as explain's passes; views
    of equal input shape run as one batch."""
    adapter = get_adapter(model)
    pre = info_of(model).preprocess
    tensors = [image_to_tensor(im, size, pre) for im, size in views]
    out: list[np.ndarray] = [np.empty(0, np.float32)] * len(views)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    device, dtype = adapter.weight.device, adapter.weight.dtype
    with eval_mode(model), torch.no_grad():
        for idx in groups.values():
            x = torch.stack([tensors[i] for i in idx]).to(device=device, dtype=dtype)
            for i, f in zip(idx, adapter.features(x).float().cpu().numpy(), strict=True):
                out[i] = f
    return out
