"""wsolevaluation metadata (clovaai/wsolevaluation `metadata/<DATASET>/<split>/`).

Files, one record per line, comma-separated, image ids are paths relative to the image root:
  image_ids.txt     <image_id>
  class_labels.txt  <image_id>,<class>
  image_sizes.txt   <image_id>,<width>,<height>          (box datasets; optional for masks)
  localization.txt  <image_id>,<x0>,<y0>,<x1>,<y1>       (boxes; several lines for several boxes)
                or  <image_id>,<mask path>,<ignore path>  (masks, OpenImages: the ignore path only on the first
                                                           line of an image, relative to `mask_root`)
Class names are the class indices as strings (the metadata has no names).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camloc.data.base import (
    Dataset,
    Sample,
    check_box,
    parse_float,
    parse_int,
    read_lines,
    read_mask_file,
    register_format,
)
from camloc.errors import InputError


def _records(path: Path, fields: tuple[int, ...]) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-empty line whose field count is one of `fields`."""
    out = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) not in fields:
            want = " or ".join(str(f) for f in fields)
            raise InputError(f"{path}:{lineno}: expected {want} comma-separated fields, got {len(parts)}")
        out.append((lineno, parts))
    return out


def _mask_loader(mask_root: Path, mask_paths: list[str], ignore_path: str, where: str):
    def load() -> tuple[np.ndarray, np.ndarray | None]:
        masks = [read_mask_file(mask_root / p, where) for p in mask_paths]
        shapes = {m.shape for m in masks}
        if len(shapes) != 1:
            raise InputError(f"{where}: the instance masks of one image differ in size: {sorted(shapes)}")
        fg = np.logical_or.reduce(masks)
        ignore = read_mask_file(mask_root / ignore_path, where) if ignore_path else None
        return fg, ignore

    return load


@register_format("wsol")
def open_wsol(path: Path, images: str | Path | None = None, mask_root: str | Path | None = None) -> Dataset:
    """Open a wsolevaluation metadata folder. images: image root (for a model); mask_root: mask root."""
    if not path.is_dir():
        raise InputError(f"{path}: no such metadata folder")
    image_root = Path(images) if images is not None else None
    ids_file = path / "image_ids.txt"
    ids = [line.strip() for line in read_lines(ids_file)]
    if any(not i for i in ids):
        lineno = next(k for k, i in enumerate(ids, 1) if not i)
        raise InputError(f"{ids_file}:{lineno}: empty image id")
    known = set(ids)

    def check_id(image_id: str, file: Path, lineno: int) -> None:
        if image_id not in known:
            raise InputError(f"{file}:{lineno}: unknown image id '{image_id}' (not in image_ids.txt)")

    labels: dict[str, int] = {}
    labels_file = path / "class_labels.txt"
    for lineno, (image_id, label) in _records(labels_file, (2,)):
        check_id(image_id, labels_file, lineno)
        labels[image_id] = parse_int(label, labels_file, lineno, "class")
        if labels[image_id] < 0:
            raise InputError(f"{labels_file}:{lineno}: negative class {labels[image_id]}")

    sizes: dict[str, tuple[int, int]] = {}
    sizes_file = path / "image_sizes.txt"
    if sizes_file.exists():
        for lineno, (image_id, w, h) in _records(sizes_file, (3,)):
            check_id(image_id, sizes_file, lineno)
            sizes[image_id] = (parse_int(w, sizes_file, lineno, "width"), parse_int(h, sizes_file, lineno, "height"))
            if min(sizes[image_id]) <= 0:
                raise InputError(f"{sizes_file}:{lineno}: image size {sizes[image_id]} is not positive")

    loc_file = path / "localization.txt"
    records = _records(loc_file, (3, 5))
    is_mask = bool(records) and len(records[0][1]) == 3
    boxes: dict[str, list[np.ndarray]] = {}
    masks: dict[str, tuple[list[str], str, str]] = {}
    for lineno, parts in records:
        image_id = parts[0]
        check_id(image_id, loc_file, lineno)
        where = f"{loc_file}:{lineno}"
        if (len(parts) == 3) != is_mask:
            raise InputError(f"{where}: mixes box lines (5 fields) and mask lines (3 fields)")
        if is_mask:
            if image_id in masks:
                masks[image_id][0].append(parts[1])
                if parts[2]:
                    raise InputError(f"{where}: a second ignore mask for '{image_id}' (only the first line has one)")
            else:
                masks[image_id] = ([parts[1]], parts[2], where)
        else:
            if image_id not in sizes:
                raise InputError(f"{where}: no size for '{image_id}' in image_sizes.txt")
            box = [parse_float(v, loc_file, lineno, "coordinate") for v in parts[1:]]
            boxes.setdefault(image_id, []).append(check_box(box, sizes[image_id], where))
    if is_mask and mask_root is None:
        raise InputError(f"{loc_file}: lists masks; give their root folder (--mask-root)")

    samples = []
    for image_id in ids:
        if image_id not in labels:
            raise InputError(f"{labels_file}: no class for image '{image_id}'")
        if image_id not in boxes and image_id not in masks:
            raise InputError(f"{loc_file}: no box or mask for image '{image_id}'")
        loader = None
        if image_id in masks:
            paths, ignore, where = masks[image_id]
            assert mask_root is not None  # masks are only read when a mask root is given
            loader = _mask_loader(Path(mask_root), paths, ignore, where)
        b = np.array(boxes.get(image_id, np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        samples.append(
            Sample(
                image_id=image_id,
                image=None if image_root is None else image_root / image_id,
                label=labels[image_id],
                boxes=b,
                size=sizes.get(image_id),
                mask_loader=loader,
            )
        )
    n_classes = max(labels.values(), default=-1) + 1
    return Dataset(name=path.name, samples=samples, class_names=[str(i) for i in range(n_classes)])
