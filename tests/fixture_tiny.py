"""A tiny GAP CNN checkpoint (random weights, 4 classes, 64-pixel input) and generated photos: batch-run tests
exercise files, names and signals, not the model, so they use a model that runs in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from camloc.io import save_checkpoint
from camloc.models.gapnet import gapnet

TINY_CONFIG = {
    "architecture": "gapnet",
    "arch_kwargs": {"num_classes": 4, "final_stride": 8, "widths": [8, 16, 16]},
    "labels": ["a", "b", "c", "d"],
    "preprocess": {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": 64, "interpolation": "bilinear"},
}


def tiny_checkpoint(folder: Path) -> Path:
    """Save the tiny model (seeded weights) as a camloc checkpoint folder and return it."""
    torch.manual_seed(0)
    net = gapnet(**TINY_CONFIG["arch_kwargs"])
    return save_checkpoint(folder, net.state_dict(), TINY_CONFIG)


def photo(path: Path, seed: int = 0, size: tuple[int, int] = (48, 40)) -> Path:
    """A small random RGB picture (width, height) in the format the suffix says."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)
    return path
