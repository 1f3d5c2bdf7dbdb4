"""COCO instance annotations (`coco:FILE.json`), boxes and polygon / RLE masks decoded with pycocotools.

Each image's class is the category of its largest (by area) non-crowd annotation; its GT boxes are all non-crowd
annotations of that category ([x, y, w, h] -> x, y, x + w, y + h) and its foreground mask their union; crowd
regions of that category form the ignore mask. Classes are the categories sorted by id (dataset index 0..K-1,
`category_ids` keeps the COCO ids for the results JSON). Images without annotations are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from camloc.data.base import Dataset, Sample, check_box, register_format
from camloc.errors import InputError


def _mask_loader(anns: list[dict], crowd: list[dict], height: int, width: int, where: str):
    def load() -> tuple[np.ndarray, np.ndarray | None]:
        from pycocotools import mask as mask_utils

        def decode(ann: dict) -> np.ndarray:
            seg = ann["segmentation"]
            try:
                if isinstance(seg, list):
                    rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
                elif isinstance(seg.get("counts"), list):
                    rle = mask_utils.frPyObjects(seg, height, width)
                else:
                    rle = seg
                return mask_utils.decode(rle).astype(bool)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise InputError(f"{where}: annotation {ann.get('id')}: bad segmentation ({exc})") from None

        fg = np.zeros((height, width), dtype=bool)
        for ann in anns:
            fg |= decode(ann)
        ignore = None
        if crowd:
            ignore = np.zeros((height, width), dtype=bool)
            for ann in crowd:
                ignore |= decode(ann)
        return fg, ignore

    return load


@register_format("coco")
def open_coco(path: Path, images: str | Path | None = None) -> Dataset:
    """A COCO instances JSON as an evaluation dataset: boxes (exclusive x0, y0, x1, y1) and polygon / RLE masks."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{path}: missing the '{key}' list")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    images_by_id = {im["id"]: im for im in data["images"]}
    anns_by_image: dict[int, list[dict]] = {}
    for k, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{k}]"
        if ann.get("image_id") not in images_by_id:
            raise InputError(f"{where}: unknown image id {ann.get('image_id')}")
        if ann.get("category_id") not in cat_index:
            raise InputError(f"{where}: unknown category id {ann.get('category_id')}")
        if not isinstance(ann.get("bbox"), list) or len(ann["bbox"]) != 4:
            raise InputError(f"{where}: 'bbox' must be [x, y, w, h]")
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    image_root = Path(images) if images is not None else path.parent
    samples = []
    for image_id in sorted(anns_by_image):
        im = images_by_id[image_id]
        width, height = int(im["width"]), int(im["height"])
        where = f"{path}: image {image_id}"
        anns = anns_by_image[image_id]
        solid = [a for a in anns if not a.get("iscrowd", 0)]
        if not solid:
            continue
        main = max(solid, key=lambda a: a.get("area", a["bbox"][2] * a["bbox"][3]))
        chosen = [a for a in solid if a["category_id"] == main["category_id"]]
        crowd = [a for a in anns if a.get("iscrowd", 0) and a["category_id"] == main["category_id"]]
        boxes = np.array(
            [
                check_box([x, y, x + w, y + h], (width, height), f"{where} annotation {a.get('id')}")
                for a in chosen
                for (x, y, w, h) in [a["bbox"]]
            ],
            dtype=np.float64,
        )
        has_seg = all("segmentation" in a for a in chosen)
        samples.append(
            Sample(
                image_id=str(image_id),
                image=image_root / im["file_name"],
                label=cat_index[main["category_id"]],
                boxes=boxes,
                size=(width, height),
                mask_loader=_mask_loader(chosen, crowd, height, width, where) if has_seg else None,
            )
        )
    return Dataset(
        name=path.stem, samples=samples, class_names=[c["name"] for c in cats], category_ids=[c["id"] for c in cats]
    )
