"""Tiny fake Fashion-MNIST IDX files written by the tests themselves (no dependence on the Debian package)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in IDX format."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def fake_items(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) items whose shape tells the class (10 classes): bright rectangles of class-dependent aspect
    plus a class-dependent stripe, on black."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, c in enumerate(labels):
        h, w = 6 + 2 * (c % 5), 20 - 2 * (c % 5)
        y, x = rng.integers(1, 28 - h), rng.integers(1, 28 - w)
        images[i, y : y + h, x : x + w] = rng.integers(120, 256)
        if c >= 5:
            images[i, y : y + h, x + w // 2] = 40
    return images, labels.astype(np.uint8)


def write_fake_fashion(directory: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """The four standard gzip IDX files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = fake_items(n, seed)
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return directory
