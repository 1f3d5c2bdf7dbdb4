"""Robust image decoding, atomic file writes and checkpoints (safetensors + JSON config).

Everything that touches the file system for reading images or writing results goes through here, so that
bad input fails the same way everywhere (an `InputError` naming the file) and no output is ever half written.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from camloc.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
MAX_PIXELS = 100_000_000  # refuse larger images: decoding them would take gigabytes (decompression bombs)
MIN_SIDE = 1

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


# ----------------------------------------------------------------------------------------------- images


def load_image(path: str | os.PathLike, exif_orientation: bool = True) -> Image.Image:
    """Decode an image file into an RGB PIL image in the orientation a viewer shows (EXIF applied; with
    `exif_orientation=False` the stored pixel grid, which dataset boxes refer to).

    Handles grayscale, RGBA/LA (composited on white), palette, 16-bit and 32-bit integer or float, and CMYK.
    Raises `InputError` with the file name for missing, empty, truncated, non-image or oversized files.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise InputError(f"{path}: image too large to decode safely ({w}x{h} pixels)")
                if w < MIN_SIDE or h < MIN_SIDE:
                    raise InputError(f"{path}: image has zero size")
                img.load()
                return to_rgb(ImageOps.exif_transpose(img) if exif_orientation else img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: image too large to decode safely") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from None


def as_rgb_image(source: str | os.PathLike | Image.Image | np.ndarray, exif_orientation: bool = True) -> Image.Image:
    """Any image input camloc takes (a file path, a PIL image, an (H, W) / (H, W, 3|4) uint8 array) -> RGB PIL image.

    The one decoder of the explain path, the runner and evaluate: files go through `load_image`'s checks.
    """
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return to_rgb(Image.fromarray(source))
    return load_image(source, exif_orientation)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white, high bit depths are rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if img.mode.startswith("I;16") else (float(arr.min()), float(arr.max()))
        scaled = np.clip((arr - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def iter_image_paths(inputs: list[str | os.PathLike]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into image paths; files given by name are kept as-is
    whatever their suffix, so that a bad file is reported rather than silently skipped."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield child
        else:
            yield p


# -------------------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (UTF-8, indented)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_image(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array as PNG, atomically. zlib level 1: heat-map overlays compress poorly
    anyway, and level 1 encodes about 3x faster than Pillow's default 6 for files about 12% larger (PNG encoding
    was 90% of the CLI's writing time; benchmarks/bench_cam.py, docs/speed.md)."""
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write a compressed .npz atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle


# ----------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(directory: str | os.PathLike, state_dict: dict, config: dict) -> Path:
    """Save a model as `directory/model.safetensors` + `directory/config.json` (both written atomically).

    `config` must name the `architecture` (a key of `camloc.models.registry.ARCHITECTURES`, a timm or a
    torchvision name) and may carry `arch_kwargs`, `num_classes`, `labels` and `preprocess`.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp))
    write_json(directory / CONFIG_NAME, {"format": "camloc-checkpoint-v1", **config})
    return directory


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a checkpoint folder (or its .safetensors file with config.json beside it): (state_dict, config).

    Never unpickles: weights come from safetensors only.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    directory = path if path.is_dir() else path.parent
    weights = path if path.is_file() else directory / WEIGHTS_NAME
    config_path = directory / CONFIG_NAME
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint")
    if not weights.is_file():
        raise InputError(f"{directory}: no {WEIGHTS_NAME} in the checkpoint folder")
    if not config_path.is_file():
        raise InputError(f"{directory}: no {CONFIG_NAME} beside the weights")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise InputError(f"{config_path}: missing the 'architecture' key")
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{weights}: not a readable safetensors file ({exc})") from None
    return state_dict, config
