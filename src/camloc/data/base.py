"""The dataset interface every format implements, and the registry `open_dataset` resolves specs with.

A sample is an image (path or array), its id, its class (the dataset's index), GT boxes (n, 4) as x0, y0, x1, y1
in original pixels (the numbers the format's files give: CUB and COCO x + w, VOC and ILSVRC xmax), the image size
when the metadata knows it, and optionally a mask loader (foreground, ignore). The mapping from dataset classes to
model classes is explicit: `Dataset.model_index` (identity unless a map is given).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from camloc.errors import InputError

MaskLoader = Callable[[], tuple[np.ndarray, "np.ndarray | None"]]


@dataclass(frozen=True)
class Sample:
    """One evaluation image. boxes: (n, 4) float64; size: (width, height) or None; masks() -> (fg, ignore)."""

    image_id: str
    image: Path | np.ndarray | None
    label: int
    boxes: np.ndarray
    size: tuple[int, int] | None = None
    mask_loader: MaskLoader | None = field(default=None, compare=False, repr=False)

    def masks(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(foreground (H, W) bool, ignore (H, W) bool or None) at the mask files' size, or None without masks."""
        return None if self.mask_loader is None else self.mask_loader()


@dataclass
class Dataset:
    """A list of samples with class names and the dataset -> model class mapping."""

    name: str
    samples: list[Sample]
    class_names: list[str]
    source: str = ""
    model_index: np.ndarray | None = None  # (n_classes,) model class of each dataset class; None = identity
    category_ids: list[int] | None = None  # the format's own class ids (COCO), for results files

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def has_masks(self) -> bool:
        return any(s.mask_loader is not None for s in self.samples)

    def to_model(self, label: int) -> int:
        """The model's class index of dataset class `label`."""
        return int(label) if self.model_index is None else int(self.model_index[label])

    def shard(self, rank: int, world: int) -> Dataset:
        """Every world-th sample starting at rank (for torchrun workers); shares the class mapping."""
        return Dataset(
            self.name, self.samples[rank::world], self.class_names, self.source, self.model_index, self.category_ids
        )


# ------------------------------------------------------------------------------------------- registry

Opener = Callable[..., Dataset]
FORMATS: dict[str, Opener] = {}


def register_format(name: str) -> Callable[[Opener], Opener]:
    """Decorator: make `name:PATH` specs open with the decorated function `(path, **opts) -> Dataset`."""

    def deco(fn: Opener) -> Opener:
        FORMATS[name] = fn
        return fn

    return deco


def accepts_option(fmt: str, key: str) -> bool:
    """Whether the opener of format `fmt` takes the keyword option `key` (e.g. "split")."""
    import camloc.data  # noqa: F401  (registers the built-in formats)

    params = inspect.signature(FORMATS[fmt]).parameters
    return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def open_dataset(spec: str, class_map: str | os.PathLike | None = None, **opts) -> Dataset:
    """Open `FORMAT:PATH` (formats: see `FORMATS`) and apply an optional class map file. Returns a `Dataset` of
    `Sample`s (GT boxes (n, 4) float64 [x0, y0, x1, y1] in original pixels, masks (H, W) bool where given).

    class_map: a text file of `dataset_index,model_index` lines (or `class_name,model_index`).
    Other keyword options go to the format's opener (e.g. `images=`, `mask_root=`, `split=`); a given (not None)
    option the format does not take is an error, never silently dropped.
    """
    import camloc.data  # noqa: F401  (registers the built-in formats)

    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in FORMATS:
        known = ", ".join(f"{k}:" for k in sorted(FORMATS))
        raise InputError(f"--data '{spec}': expected FORMAT:PATH with FORMAT one of {known}")
    if not path:
        raise InputError(f"--data '{spec}': the path after '{fmt}:' is empty")
    opts = {k: v for k, v in opts.items() if v is not None}
    for key in opts:
        if not accepts_option(fmt, key):
            raise InputError(f"--{key.replace('_', '-')} does not apply to the '{fmt}' format ({spec})")
    ds = FORMATS[fmt](Path(path), **opts)
    ds.source = spec
    if class_map is not None:
        ds.model_index = read_class_map(Path(class_map), ds.class_names)
    return ds


def read_class_map(path: Path, class_names: Sequence[str]) -> np.ndarray:
    """`dataset_class,model_index` per line (class as index or name) -> (n_classes,) int64; every class mapped."""
    index = {name: i for i, name in enumerate(class_names)}
    out = np.full(len(class_names), -1, dtype=np.int64)
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 2:
            raise InputError(f"{path}:{lineno}: expected 'dataset_class,model_index', got '{line}'")
        key, value = parts[0].strip(), parts[1].strip()
        cls = index.get(key)
        if cls is None:
            cls = parse_int(key, path, lineno, "dataset class")
            if not 0 <= cls < len(class_names):
                raise InputError(f"{path}:{lineno}: dataset class {cls} is not in 0..{len(class_names) - 1}")
        out[cls] = parse_int(value, path, lineno, "model index")
    missing = np.flatnonzero(out < 0)
    if len(missing):
        raise InputError(f"{path}: no model index for dataset class {missing[0]} ({class_names[missing[0]]})")
    return out


# ------------------------------------------------------------------------------------ parsing helpers


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file without line ends; InputError naming the file if it cannot be read."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def parse_int(text: str, path: Path, lineno: int, what: str) -> int:
    """`text` as an int, or an `InputError` naming the file, line and field."""
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{path}:{lineno}: {what} '{text}' is not an integer") from None


def parse_float(text: str, path: Path, lineno: int, what: str) -> float:
    """`text` as a finite float, or an `InputError` naming the file, line and field."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}:{lineno}: {what} '{text}' is not a number") from None
    if not np.isfinite(value):
        raise InputError(f"{path}:{lineno}: {what} '{text}' is not finite")
    return value


def check_box(box: Sequence[float], size: tuple[int, int] | None, where: str) -> np.ndarray:
    """Validate one x0, y0, x1, y1 box (non-negative, x0 <= x1, y0 <= y1, inside the image when its size is
    known); returns it as float64 (4,). `where` is 'file:line' for the message."""
    b = np.asarray(box, dtype=np.float64)
    x0, y0, x1, y1 = b
    if x0 < 0 or y0 < 0:
        raise InputError(f"{where}: box {b.tolist()} has a negative coordinate")
    if x1 < x0 or y1 < y0:
        raise InputError(f"{where}: box {b.tolist()} has x1 < x0 or y1 < y0")
    if size is not None and (x1 > size[0] or y1 > size[1]):
        raise InputError(f"{where}: box {b.tolist()} lies outside the {size[0]}x{size[1]} image")
    return b


def read_mask_file(path: Path, where: str = "") -> np.ndarray:
    """A mask image (any mode) -> (H, W) bool of pixels > 0.5 of the grayscale values (the reference's rule)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"{path}: no such mask file{' (' + where + ')' if where else ''}")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode mask ({exc})") from None
    return arr > 0.5
