"""A disk cache of pooled (GAP) feature vectors, keyed by model, image and preprocessing.

One `.npy` file per image under `<root>/<model key>/<2 hex>/<image key>.npy`, written atomically; nothing is
pickled (`np.load(..., allow_pickle=False)`). The model key hashes the architecture, every weight tensor and the
preprocessing settings, so new weights or a new input size never reuse stale vectors; the image key hashes the
file's absolute path, size and modification time (or, for an in-memory image, its pixels).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from camloc.io import atomic_path
from camloc.preprocess import Preprocess

CACHE_VERSION = "gap-features-v1"  # bump when the way features are computed changes


def default_cache_dir() -> Path:
    """`$CAMLOC_CACHE`, else `$XDG_CACHE_HOME/camloc/features`, else `~/.cache/camloc/features`."""
    if os.environ.get("CAMLOC_CACHE"):
        return Path(os.environ["CAMLOC_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "camloc" / "features"


def weights_digest(model: nn.Module) -> str:
    """sha256 of the module's state dict (names, dtypes, shapes and bytes, in order)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_key(architecture: str, model: nn.Module, pre: Preprocess) -> str:
    """Key of a (model, preprocessing) pair: changes with the architecture, any weight or any setting."""
    text = json.dumps(
        {"v": CACHE_VERSION, "arch": architecture, "weights": weights_digest(model), "pre": pre.to_dict()},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def source_id(source: str | os.PathLike | Image.Image | np.ndarray) -> str:
    """Identity of an image: path + size + mtime for files (raises OSError if missing), pixels for in-memory
    images (PIL, or arrays of any shape and dtype, e.g. (H, W, 3) uint8: dtype and shape are part of it)."""
    if isinstance(source, np.ndarray):
        h = hashlib.sha256(f"{source.dtype}|{source.shape}|".encode())
        h.update(np.ascontiguousarray(source).tobytes())
        return "array:" + h.hexdigest()
    if isinstance(source, Image.Image):
        h = hashlib.sha256(f"{source.mode}|{source.size}|".encode())
        h.update(source.tobytes())
        return "pixels:" + h.hexdigest()
    path = Path(source).resolve()
    st = path.stat()
    return f"file:{path}|{st.st_size}|{st.st_mtime_ns}"


class FeatureCache:
    """Pooled features of one (model, preprocessing) pair on disk; `root=None` keeps nothing."""

    def __init__(self, root: str | os.PathLike | None, key: str) -> None:
        self.folder = None if root is None else Path(root) / key

    def _path(self, ident: str) -> Path:
        digest = hashlib.sha256(ident.encode()).hexdigest()
        assert self.folder is not None  # callers check `enabled` first
        return self.folder / digest[:2] / f"{digest}.npy"

    def get(self, ident: str) -> np.ndarray | None:
        """The cached (C,) float32 pooled vector of an image, or None (also for an unreadable cache file)."""
        if self.folder is None:
            return None
        path = self._path(ident)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, ident: str, vector: np.ndarray) -> None:
        """Store an image's (C,) pooled vector as given (atomically; nothing without a root)."""
        if self.folder is None:
            return
        path = self._path(ident)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(vector), allow_pickle=False)
