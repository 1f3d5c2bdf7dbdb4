"""Image folders in torchvision's ImageFolder layout (`folder:PATH`): `PATH/<class name>/**/<image>`.

Classes are the sub-folder names in sorted order; images carry a class and no boxes (a classification set: enough
to train a probe; localization metrics need a format with boxes). A class folder without images is kept, so class
indices stay those of the layout; whoever uses the set decides whether that is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camloc.data.base import Dataset, Sample, register_format
from camloc.errors import InputError
from camloc.io import IMAGE_SUFFIXES


@register_format("folder")
def open_folder(path: Path) -> Dataset:
    """Read an ImageFolder layout. Raises `InputError` for a missing root or one without class sub-folders."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (expected one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(
            f"{root}: no class sub-folders (expected the ImageFolder layout: {root}/<class name>/<image files>)"
        )
    samples = []
    no_boxes = np.zeros((0, 4), dtype=np.float64)
    for label, name in enumerate(classes):
        for p in sorted((root / name).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                samples.append(Sample(image_id=str(p.relative_to(root)), image=p, label=label, boxes=no_boxes))  # noqa: PERF401
    return Dataset(name=root.name or str(root), samples=samples, class_names=classes, source=f"folder:{root}")
