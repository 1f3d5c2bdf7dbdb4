"""Reader for the IDX files of (Fashion-)MNIST, and the lookup of the four standard files in a folder.

IDX: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one big-endian uint32 per
dimension and the row-major data. Files may be gzip-compressed (`*.gz`) or plain.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np

from camloc.errors import InputError

SPLIT_PREFIX = {"train": "train", "test": "t10k"}
DEFAULT_DIRS = (
    Path(".cache/fashion-mnist/usr/share/datasets/fashion-mnist"),
    Path(".cache/fashion-mnist"),
    Path("/usr/share/datasets/fashion-mnist"),
)

_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in one IDX file (gzip or plain), with the file's dimensions and dtype, e.g. (n, 28, 28)
    uint8 images or (n,) uint8 labels. Raises `InputError` naming the file if malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such IDX file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: not a readable gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise InputError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype: np.dtype = np.dtype(_DTYPES[raw[2]])  # the table holds valid dtypes
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(f"{path}: IDX data has {len(raw) - header} bytes, its header {shape} says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_dir(idx_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the four Fashion-MNIST files: `idx_dir` if given, else the first default that has them."""
    candidates = [Path(idx_dir)] if idx_dir is not None else list(DEFAULT_DIRS)
    for d in candidates:
        if d.is_dir() and _file(d, "train", "images") is not None:
            return d
    if idx_dir is not None:
        raise InputError(
            f"{idx_dir}: no train-images-idx3-ubyte(.gz) here; expected the four Fashion-MNIST "
            "IDX files (train/t10k images and labels)"
        )
    raise InputError(
        "Fashion-MNIST not found in .cache/fashion-mnist or /usr/share/datasets/fashion-mnist; "
        "run `make data` or pass --idx-dir FOLDER with the four *-idx?-ubyte.gz files"
    )


def _file(directory: Path, split: str, kind: str) -> Path | None:
    stem = f"{SPLIT_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def load_split(idx_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of the 'train' or 't10k' ('test') files in `idx_dir`."""
    if split not in SPLIT_PREFIX:
        raise InputError(f"unknown Fashion-MNIST split '{split}' (train or test)")
    directory = Path(idx_dir)
    paths = {kind: _file(directory, split, kind) for kind in ("images", "labels")}
    for kind, p in paths.items():
        if p is None:
            raise InputError(
                f"{directory}: missing {SPLIT_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte(.gz)"
            )
    images, labels = read_idx(cast(Path, paths["images"])), read_idx(cast(Path, paths["labels"]))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputError(f"{paths['images']}: expected (N, rows, cols) uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise InputError(f"{paths['labels']}: {labels.shape} labels do not match {len(images)} images")
    return images, labels.astype(np.int64)
