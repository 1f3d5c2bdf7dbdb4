"""Pascal VOC XML annotations (`voc:PATH`, PATH = a VOC year folder with Annotations/, JPEGImages/ and
ImageSets/Main/<split>.txt, or a folder of .xml files).

Each image's class is the class of its first non-difficult object (VOC has several classes per image; the
localization protocol scores one); its boxes are all objects of that class (difficult ones included as GT).
Classes are the 20 VOC names in their usual order unless `classes=` gives a file of names, one per line.
Boxes are the xmin, ymin, xmax, ymax numbers of the XML, checked against the <size> element.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from camloc.data.base import Dataset, Sample, check_box, read_lines, register_format
from camloc.errors import InputError

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise InputError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: <{tag}> '{text}' is not a number") from None


def read_voc_xml(path: Path, class_index: dict[str, int]) -> tuple[str, int, np.ndarray, tuple[int, int]]:
    """(file name, class, boxes (n, 4) of that class, (width, height)) of one annotation file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: not a readable XML file ({exc})") from None
    filename = _text(root, "filename", str(path))
    size_node = root.find("size")
    if size_node is None:
        raise InputError(f"{path}: missing <size>")
    size = (int(_number(size_node, "width", str(path))), int(_number(size_node, "height", str(path))))
    objects = []
    for k, obj in enumerate(root.iter("object")):
        where = f"{path}: object {k + 1} (line {getattr(obj, 'sourceline', '?')})"
        name = _text(obj, "name", where)
        if name not in class_index:
            raise InputError(f"{where}: unknown class '{name}'; give the dataset's class names with --class-names FILE")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise InputError(f"{where}: missing <bndbox>")
        box = check_box([_number(bnd, t, where) for t in ("xmin", "ymin", "xmax", "ymax")], size, where)
        difficult = obj.find("difficult")
        objects.append((class_index[name], box, difficult is not None and (difficult.text or "0").strip() == "1"))
    if not objects:
        raise InputError(f"{path}: no <object>")
    label = next((c for c, _, d in objects if not d), objects[0][0])
    boxes = np.array([b for c, b, _ in objects if c == label], dtype=np.float64)
    return filename, label, boxes, size


@register_format("voc")
def open_voc(
    path: Path, images: str | Path | None = None, split: str | None = None, classes: str | Path | None = None
) -> Dataset:
    """split: an ImageSets/Main name (None: 'val' when that file exists, else every .xml); classes: a file of class
    names, one a line (labelImg's / labelme's classes.txt; default: the 20 VOC names)."""
    if classes is not None and not Path(classes).is_file():
        raise InputError(f"--class-names {classes}: no such file")
    names = [n.strip() for n in read_lines(Path(classes)) if n.strip()] if classes else VOC_CLASSES
    if not names:
        raise InputError(f"--class-names {classes}: the file names no class")
    class_index = {n: i for i, n in enumerate(names)}
    ann_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    if not ann_dir.is_dir():
        raise InputError(f"{path}: no such folder")
    split_file = path / "ImageSets" / "Main" / f"{split or 'val'}.txt"
    if split is not None and not split_file.is_file():
        raise InputError(f"voc: no split '{split}' ({split_file} does not exist)")
    if split_file.exists():
        xmls = [ann_dir / f"{line.split()[0]}.xml" for line in read_lines(split_file) if line.strip()]
    else:
        xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise InputError(f"{ann_dir}: no .xml annotation files")
    image_root = Path(images) if images is not None else path / "JPEGImages"
    samples = []
    for xml in xmls:
        filename, label, boxes, size = read_voc_xml(xml, class_index)
        samples.append(Sample(image_id=xml.stem, image=image_root / filename, label=label, boxes=boxes, size=size))
    return Dataset(name=f"VOC-{path.name}", samples=samples, class_names=names)
