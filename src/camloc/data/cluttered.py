"""Cluttered Fashion-MNIST: one Fashion-MNIST item pasted at a random position and scale on a larger canvas,
among patches cut from other items, with its class, tight box and pixel mask as ground truth.

Every sample is a pure function of (seed, split, index), so the data can be generated on the fly in any order
(or cached as one compressed array file under `.cache/`). Splits (as Choe et al.'s train / train-fullsup / test):

- ``train``: items 0 .. N-V-1 of Fashion-MNIST's training files (labels only are meant for training);
- ``val``: the last V items of the training files, with boxes and masks, for choosing thresholds;
- ``test``: Fashion-MNIST's test files.

Images are (H, W, 3) uint8 (the gray canvas repeated, so RGB models and `camloc explain` take them as they are).
A sample's box is `[x0, y0, x1, y1]` in canvas pixels, x1/y1 exclusive: the tight box of its mask, the item's
own pixels (value >= `mask_level` after scaling).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from camloc.data.idx import find_idx_dir, load_split
from camloc.errors import InputError
from camloc.io import write_npz

if TYPE_CHECKING:
    from camloc.data.base import Dataset as EvalDataset

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SPLITS = ("train", "val", "test")
VAL_ITEMS = 5000  # items held out of Fashion-MNIST train for `val` (at most a tenth of a smaller source)
MEAN, STD = 0.1, 0.25  # input normalisation of nets trained on this data (gray values in [0, 1])
CACHE_DIR = Path(".cache/cluttered")


@dataclass(frozen=True)
class ClutterSpec:
    """How samples are drawn. Sizes are in canvas pixels; the item's side is 28 * scale."""

    canvas: int = 96
    scale: tuple[float, float] = (1.0, 2.0)
    clutter: int = 10  # patches cut from other items
    patch: tuple[int, int] = (8, 16)  # side range of a clutter patch
    mask_level: int = 32  # an item pixel belongs to the mask when its value is >= this
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi or 28 * hi > self.canvas:
            raise InputError(
                f"scale range {self.scale} must be positive, ordered, and fit the {self.canvas}px "
                "canvas (28 * max scale <= canvas)"
            )
        if self.clutter < 0 or not 1 <= self.patch[0] <= self.patch[1] <= 28 * lo:
            raise InputError(f"clutter patches {self.patch} must be 1 <= min <= max <= the smallest item side")
        if not 1 <= self.mask_level <= 255:
            raise InputError(f"mask_level must be in 1..255, got {self.mask_level}")

    def preprocess(self) -> dict:
        """The `preprocess` entry of the config of a net trained on this data."""
        return {"mean": [MEAN] * 3, "std": [STD] * 3, "input_size": self.canvas, "interpolation": "bilinear"}


class ClutteredSample(NamedTuple):
    """One sample in the dataset interface: image, id, class, GT boxes (n, 4) exclusive, mask."""

    image: np.ndarray  # (H, W, 3) uint8
    image_id: str
    label: int
    boxes: np.ndarray  # (1, 4) int64
    mask: np.ndarray  # (H, W) bool


def _resize(item: np.ndarray, side: int) -> np.ndarray:
    interp = cv2.INTER_LINEAR if side >= item.shape[0] else cv2.INTER_AREA
    return cv2.resize(item, (side, side), interpolation=interp)


def render(
    item: np.ndarray, others: list[np.ndarray], rng: np.random.Generator, spec: ClutterSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste `item` (28x28 uint8) among patches of `others` on a black canvas.

    Returns (canvas (H, W) uint8, mask (H, W) bool, box (4,) int64). Compositing is a pixelwise maximum, the item
    last, so the item is never hidden; the mask holds the item's own pixels only.
    """
    size = spec.canvas
    canvas = np.zeros((size, size), dtype=np.uint8)
    for other in others:
        src = _resize(other, round(28 * rng.uniform(*spec.scale)))
        p = int(rng.integers(spec.patch[0], spec.patch[1] + 1))
        best: np.ndarray | None = None
        for _ in range(4):  # prefer a patch with some ink in it
            y, x = rng.integers(0, src.shape[0] - p + 1, size=2)
            crop = src[y : y + p, x : x + p]
            if best is None or crop.mean() > best.mean():
                best = crop
            if best.mean() > 40:
                break
        cy, cx = rng.integers(0, size - p + 1, size=2)
        assert best is not None
        np.maximum(canvas[cy : cy + p, cx : cx + p], best, out=canvas[cy : cy + p, cx : cx + p])
    side = round(28 * rng.uniform(*spec.scale))
    obj = _resize(item, side)
    oy, ox = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    region = canvas[oy : oy + side, ox : ox + side]
    np.maximum(region, obj, out=region)
    own = obj >= spec.mask_level
    if not own.any():  # a nearly black item: fall back to any ink, then to its whole square
        own = obj > 0 if (obj > 0).any() else np.ones_like(own)
    mask = np.zeros((size, size), dtype=bool)
    mask[oy : oy + side, ox : ox + side] = own
    return canvas, mask, mask_box(mask)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box [x0, y0, x1, y1] (exclusive), (4,) int64, of a non-empty (H, W) boolean mask."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.int64)


class ClutteredFashionMNIST(Dataset):
    """Cluttered Fashion-MNIST split as a torch `Dataset` of `ClutteredSample`s, generated on the fly.

    `size` defaults to the number of source items of the split; a larger size reuses items (drawn again at new
    positions). `idx_dir` is a folder with the four Fashion-MNIST IDX files (default: `make data`'s cache or the
    Debian package's folder).
    """

    classes = CLASSES

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        spec: ClutterSpec = ClutterSpec(),
        idx_dir: str | os.PathLike | None = None,
    ) -> None:
        if split not in SPLITS:
            raise InputError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
        self.split, self.spec = split, spec
        self.idx_dir = find_idx_dir(idx_dir)
        images, labels = load_split(self.idx_dir, "test" if split == "test" else "train")
        if split != "test":
            n_val = min(VAL_ITEMS, len(images) // 10)
            if n_val < 1:
                raise InputError(f"{self.idx_dir}: too few training items ({len(images)}) to hold out a val split")
            part = slice(len(images) - n_val, None) if split == "val" else slice(0, len(images) - n_val)
            images, labels = images[part], labels[part]
        self.items, self.labels = images, labels
        self.size = len(images) if size is None else int(size)
        if self.size < 1:
            raise InputError(f"split size must be at least 1, got {self.size}")
        self._split_id = SPLITS.index(split)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> ClutteredSample:
        if not -self.size <= index < self.size:
            raise IndexError(index)
        index %= self.size
        rng = np.random.default_rng([self.spec.seed, self._split_id, index])
        item = index % len(self.items)
        picks = rng.integers(0, len(self.items), size=self.spec.clutter)
        others = [self.items[j] for j in picks]
        canvas, mask, box = render(self.items[item], others, rng, self.spec)
        return ClutteredSample(
            np.repeat(canvas[:, :, None], 3, axis=2),
            f"{self.split}/{index:06d}",
            int(self.labels[item]),
            box[None, :],
            mask,
        )

    def fingerprint(self) -> str:
        """A short hash of everything the samples depend on (spec, split, size and the source items)."""
        h = hashlib.sha1(json.dumps([asdict(self.spec), self.split, self.size]).encode())
        h.update(self.items.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]

    def arrays(self, cache_dir: str | os.PathLike | None = CACHE_DIR) -> ClutteredArrays:
        """All samples as arrays, read from (or written to) `cache_dir/<split>-<fingerprint>.npz` when given."""
        path = None if cache_dir is None else Path(cache_dir) / f"{self.split}-{self.fingerprint()}.npz"
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return ClutteredArrays(
                        z["images"],
                        z["labels"],
                        z["boxes"],
                        np.unpackbits(z["masks"], axis=-1, count=self.spec.canvas).astype(bool),
                    )
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is regenerated below
        n, s = self.size, self.spec.canvas
        images, masks = np.zeros((n, s, s), np.uint8), np.zeros((n, s, s), bool)
        labels, boxes = np.zeros(n, np.int64), np.zeros((n, 4), np.int64)
        for i in range(n):
            smp = self[i]
            images[i], masks[i], labels[i], boxes[i] = smp.image[:, :, 0], smp.mask, smp.label, smp.boxes[0]
        if path is not None:
            write_npz(path, images=images, labels=labels, boxes=boxes, masks=np.packbits(masks, axis=-1))
        return ClutteredArrays(images, labels, boxes, masks)


@dataclass
class ClutteredArrays:
    """A whole split in memory: images (N, H, W) uint8, labels (N,), boxes (N, 4), masks (N, H, W) bool."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


class TensorView(Dataset):
    """Training view of a split: (normalised (3, H, W) float input, class, box) with batched access."""

    def __init__(self, arrays: ClutteredArrays) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(arrays.images))
        self.labels = torch.from_numpy(arrays.labels)
        self.boxes = torch.from_numpy(arrays.boxes)

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Inputs (B, 3, H, W), labels (B,), boxes (B, 4) of the given sample indices."""
        x = (self.images[indices].float() / 255.0 - MEAN) / STD
        return x[:, None].expand(-1, 3, -1, -1).contiguous(), self.labels[indices], self.boxes[indices]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        x, y, b = self.get_batch(torch.tensor([index]))
        return x[0], y[0], b[0]


# ------------------------------------------------------------------------------ evaluation format `cluttered:`


def open_cluttered(
    path: Path,
    split: str = "test",
    size: int | str | None = None,
    seed: int | str = 0,
    canvas: int | str = 96,
    **_ignored: object,
) -> EvalDataset:
    """`cluttered:SPLIT` (data from `make data`'s folder) or `cluttered:IDX_DIR` (with `split=`) as an evaluation
    dataset: images as arrays, boxes exclusive, masks of the item's pixels (no ignore region)."""
    from camloc.data.base import Dataset as EvalDataset  # imported here: camloc.data.base registers the formats
    from camloc.data.base import Sample

    name = str(path)
    if name in SPLITS:
        split, idx_dir = name, None
    else:
        idx_dir = path
    spec = ClutterSpec(canvas=int(canvas), seed=int(seed))
    ds = ClutteredFashionMNIST(split, None if size is None else int(size), spec, idx_dir)
    arr = ds.arrays()
    side = spec.canvas

    def loader(i: int):
        return lambda: (arr.masks[i], None)

    samples = [
        Sample(
            f"{split}/{i:06d}",
            np.broadcast_to(arr.images[i][:, :, None], (side, side, 3)),
            int(arr.labels[i]),
            arr.boxes[i : i + 1].astype(np.float64),
            (side, side),
            loader(i),
        )
        for i in range(len(arr))
    ]
    return EvalDataset(f"cluttered-fashion-mnist/{split}", samples, list(CLASSES))


def _register() -> None:
    from camloc.data.base import register_format

    register_format("cluttered")(open_cluttered)


_register()
