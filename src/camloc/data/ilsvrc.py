"""The ILSVRC (ImageNet) localization validation layout of the Kaggle release.

  LOC_synset_mapping.txt   "<wnid> <names>" per line; this order IS the standard 1000-class index order
  LOC_val_solution.csv     header "ImageId,PredictionString", then "<id>,<wnid> x0 y0 x1 y1 <wnid> x0 y0 x1 y1 ..."
  images: <images>/<id>.JPEG (default <root>/ILSVRC/Data/CLS-LOC/val)

`ilsvrc:PATH` takes the folder holding both files. An image's class is the synset of its first box; its boxes
are the boxes of that synset. Image sizes come from the image files when a model reads them, so boxes are
checked for order and sign only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camloc.data.base import Dataset, Sample, check_box, parse_float, read_lines, register_format
from camloc.errors import InputError


def read_synsets(path: Path) -> list[str]:
    """wnids in file order (= model class index order)."""
    wnids = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        wnid = line.split()[0]
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise InputError(f"{path}:{lineno}: '{wnid}' is not a WordNet id like n01440764")
        wnids.append(wnid)
    return wnids


@register_format("ilsvrc")
def open_ilsvrc(path: Path, images: str | Path | None = None) -> Dataset:
    """ImageNet's localization validation set (LOC_val_solution.csv + LOC_synset_mapping.txt)."""
    mapping = path / "LOC_synset_mapping.txt"
    solution = path / "LOC_val_solution.csv"
    wnids = read_synsets(mapping)
    index = {w: i for i, w in enumerate(wnids)}
    image_root = Path(images) if images is not None else path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    lines = read_lines(solution)
    if not lines or not lines[0].startswith("ImageId"):
        raise InputError(f"{solution}:1: expected the header 'ImageId,PredictionString'")
    samples = []
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        image_id, sep, pred = line.partition(",")
        fields = pred.split()
        if not sep or not image_id or not fields or len(fields) % 5:
            raise InputError(f"{solution}:{lineno}: expected '<id>,<wnid> x0 y0 x1 y1 ...' (groups of 5 fields)")
        label, boxes = None, []
        for k in range(0, len(fields), 5):
            wnid = fields[k]
            if wnid not in index:
                raise InputError(f"{solution}:{lineno}: synset '{wnid}' is not in {mapping.name}")
            label = index[wnid] if label is None else label
            if index[wnid] != label:
                continue
            box = [parse_float(v, solution, lineno, "coordinate") for v in fields[k + 1 : k + 5]]
            boxes.append(check_box(box, None, f"{solution}:{lineno}"))
        assert label is not None  # every line names at least one synset (checked above)
        samples.append(
            Sample(
                image_id=image_id,
                image=image_root / f"{image_id}.JPEG",
                label=label,
                boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
            )
        )
    samples.sort(key=lambda s: s.image_id)
    return Dataset(name="ILSVRC-val", samples=samples, class_names=wnids)
