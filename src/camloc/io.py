"""Robust image decoding, atomic file writes and checkpoints (safetensors + JSON config).

Everything that touches the file system for reading images or writing results goes through here, so that
bad input fails the same way everywhere (an `InputError` naming the file) and no output is ever half written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from camloc.errors import ImageTooLargeError, InputError, NotAnImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
MAX_PIXELS = 100_000_000  # refuse larger images: decoding them would take gigabytes (decompression bombs)
MIN_SIDE = 1

CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")
WEIGHTS_NAME = "model.safetensors"


# ----------------------------------------------------------------------------------------------- images


def load_image(
    path: str | os.PathLike, exif_orientation: bool = True, max_side: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode an image file into an RGB PIL image in the orientation a viewer shows (EXIF applied; with
    `exif_orientation=False` the stored pixel grid, which dataset boxes refer to).

    max_side: decode a larger image at most this long on its longer side (JPEGs are decoded at a reduced scale
    directly, so a 9000x9000 photo never exists in memory at full size); the full (oriented) size is then in
    `image.info["camloc_full_size"]` as (width, height).

    Handles grayscale, RGBA/LA (composited on white), palette, 16-bit and 32-bit integer or float, and CMYK.
    Raises `InputError` with the file name for missing, empty, truncated, non-image or oversized files (more
    than `max_pixels`, default `MAX_PIXELS`).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    return _decode(path, str(path), exif_orientation, max_pixels, max_side)


def decode_image_bytes(
    data: bytes, name: str, exif_orientation: bool = True, max_pixels: int | None = None
) -> Image.Image:
    """`load_image` for bytes already in memory (an upload): the same checks and conversions, the same errors.

    `name` only labels the error messages; it is never opened.
    """
    if not data:
        raise InputError(f"{name}: empty file")
    return _decode(BytesIO(data), name, exif_orientation, max_pixels)


def _decode(
    source: Path | BinaryIO, name: str, exif_orientation: bool, max_pixels: int | None, max_side: int | None = None
) -> Image.Image:
    """Open, check the pixel count before decoding, decode (reduced to `max_side` if given) and convert to RGB;
    errors name `name`."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageTooLargeError(
                        f"{name}: image too large to decode safely ({w}x{h} pixels, the limit is {max_pixels:,})"
                    )
                if w < MIN_SIDE or h < MIN_SIDE:
                    raise InputError(f"{name}: image has zero size")
                if max_side is not None and max(w, h) > max_side:
                    f = max_side / max(w, h)
                    img.draft("RGB", (max(1, round(w * f)), max(1, round(h * f))))  # JPEG: decode at 1/2..1/8
                img.load()
                stored = img.size
                out = to_rgb(ImageOps.exif_transpose(img) if exif_orientation else img)
                if max_side is not None and max(w, h) > max_side:
                    full = (h, w) if out.size != stored else (w, h)  # EXIF turned it a quarter
                    if max(out.size) > max_side:
                        out.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
                    out.info["camloc_full_size"] = full
                return out
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{name}: image too large to decode safely") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: corrupt or truncated image ({exc})") from None


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


_staged: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("_staged", default=None)


def _file_mode() -> int:
    """The mode `open()` would give a new file (0644 under the usual umask 022), not mkstemp's private 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed over `path` (atomic on POSIX).

    Inside `staged_writes()` the rename waits for the end of that block, so that several files appear together.
    The file gets the mode a plain `open()` would give (readable by the team under the usual umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    staged = _staged.get()
    kept = False
    try:
        os.chmod(tmp, _file_mode())
        yield Path(tmp)
        if staged is None:
            os.replace(tmp, path)
        else:
            staged.append((Path(tmp), path))
            kept = True
    finally:
        if not kept and os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def staged_writes() -> Iterator[None]:
    """Group the `atomic_path` writes of the block: all of them are renamed into place when the block ends, or,
    if it raises (a write error, an interrupt), none is and every temporary file is removed."""
    staged: list[tuple[Path, Path]] = []
    token = _staged.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    finally:
        _staged.reset(token)
    try:
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check that a file can be written in it; an `InputError` line otherwise."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder}: the output folder is a file")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".camloc-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write outputs there ({exc.strerror or exc})") from None
    return folder


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
    if path.suffix.lower() in PICKLE_SUFFIXES or (
        path.is_dir()
        and not (path / WEIGHTS_NAME).exists()
        and any((path / f"model{s}").is_file() for s in PICKLE_SUFFIXES)
    ):
        raise InputError(
            f"{path}: pickled checkpoints are not loaded (unpickling can run code); convert it to a camloc checkpoint "
            "with camloc.io.save_checkpoint(folder, torch.load(file, weights_only=True), "
            "{'architecture': NAME}) in a session you trust"
        )
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
    if not isinstance(config["architecture"], str) or not isinstance(config.get("arch_kwargs", {}), dict):
        raise InputError(f"{config_path}: 'architecture' must be a name and 'arch_kwargs' an object")
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{weights}: not a readable safetensors file ({exc})") from None
    return state_dict, config
