"""Image folders in torchvision's ImageFolder layout: `root/<class name>/**/<image>`, classes in sorted order.

Images carry a class and no boxes (a classification set: enough to train a probe; localization metrics need
boxes from one of the other formats).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from camloc.io import IMAGE_SUFFIXES, InputError


@dataclass(frozen=True)
class FolderItem:
    """One image of an image folder: its path and class index."""

    path: Path
    label: int


@dataclass
class ImageFolder:
    """The images of `root/<class>/...`, class indices following the sorted sub-folder names.

    `empty_classes` names the class folders that hold no image file (kept, so class indices stay those of the
    layout; a user of the set decides whether that is an error).
    """

    root: Path
    classes: list[str]
    items: list[FolderItem]
    empty_classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> FolderItem:
        return self.items[index]


def open_folder(root: str | os.PathLike) -> ImageFolder:
    """Read an ImageFolder layout. Raises `InputError` for a missing root or one without class sub-folders."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (expected one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"{root}: no class sub-folders (expected the ImageFolder layout: "
                         f"{root}/<class name>/<image files>)")
    items: list[FolderItem] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            empty.append(name)
        items.extend(FolderItem(p, label) for p in files)
    return ImageFolder(root, classes, items, empty)
