"""CUB-200-2011's own files (`cub:PATH`, PATH = the CUB_200_2011 folder).

  images.txt               <image_id> <relative path>
  image_class_labels.txt   <image_id> <class 1..200>
  bounding_boxes.txt       <image_id> <x> <y> <width> <height>     (floats)
  train_test_split.txt     <image_id> <1 = train, 0 = test>
  classes.txt              <class> <name>                        (optional, for names)
  images/<relative path>

Classes become 0..199 (file class - 1); boxes become x, y, x + width, y + height (what wsolevaluation's CUB
metadata holds). `split` chooses "test" (default), "train" or "all". Image sizes come from the image files.
"""

from __future__ import annotations

from pathlib import Path

from camloc.data.base import Dataset, Sample, check_box, parse_float, parse_int, read_lines, register_format
from camloc.errors import InputError


def _table(path: Path, n_fields: int) -> dict[int, tuple[int, list[str]]]:
    """id -> (line number, remaining fields) of a whitespace-separated CUB file."""
    out: dict[int, tuple[int, list[str]]] = {}
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=n_fields - 1) if n_fields == 2 else line.split()
        if len(parts) != n_fields:
            raise InputError(f"{path}:{lineno}: expected {n_fields} fields, got {len(parts)}")
        key = parse_int(parts[0], path, lineno, "image id")
        if key in out:
            raise InputError(f"{path}:{lineno}: image id {key} appears twice")
        out[key] = (lineno, parts[1:])
    return out


@register_format("cub")
def open_cub(path: Path, images: str | Path | None = None, split: str = "test") -> Dataset:
    """CUB-200-2011's own files (images.txt, bounding_boxes.txt, train_test_split.txt) as an evaluation dataset."""
    if split not in ("train", "test", "all"):
        raise InputError(f"cub: split must be train, test or all, got '{split}'")
    image_root = Path(images) if images is not None else path / "images"
    files = {
        name: path / f"{name}.txt" for name in ("images", "image_class_labels", "bounding_boxes", "train_test_split")
    }
    paths = _table(files["images"], 2)
    labels = _table(files["image_class_labels"], 2)
    boxes = _table(files["bounding_boxes"], 5)
    splits = _table(files["train_test_split"], 2)
    names_file = path / "classes.txt"
    names = (
        [line.split(maxsplit=1)[1] for line in read_lines(names_file) if line.strip()]
        if names_file.exists()
        else [str(i) for i in range(200)]
    )
    samples = []
    for key in sorted(paths):
        for name, table in (("image_class_labels", labels), ("bounding_boxes", boxes), ("train_test_split", splits)):
            if key not in table:
                raise InputError(f"{files[name]}: no line for image id {key} (listed in images.txt)")
        lineno, (is_train,) = splits[key]
        if is_train.strip() not in ("0", "1"):
            raise InputError(f"{files['train_test_split']}:{lineno}: expected 0 or 1, got '{is_train}'")
        if split != "all" and (is_train.strip() == "1") != (split == "train"):
            continue
        lineno, (label,) = labels[key]
        cls = parse_int(label.strip(), files["image_class_labels"], lineno, "class") - 1
        if not 0 <= cls < len(names):
            raise InputError(f"{files['image_class_labels']}:{lineno}: class {cls + 1} is not in 1..{len(names)}")
        lineno, xywh = boxes[key]
        x, y, w, h = (parse_float(v, files["bounding_boxes"], lineno, "box field") for v in xywh)
        box = check_box([x, y, x + w, y + h], None, f"{files['bounding_boxes']}:{lineno}")
        rel = paths[key][1][0].strip()
        samples.append(Sample(image_id=rel, image=image_root / rel, label=cls, boxes=box[None, :]))
    return Dataset(name=f"CUB-{split}", samples=samples, class_names=names)
