"""Dataset formats: each read from a tiny fixture written here; bad input names the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc.data import FORMATS, open_dataset
from camloc.errors import InputError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def wsol_boxes(root: Path, loc: str = "a/1.jpg,10,20,110,80\na/1.jpg,0,0,5,5\nb/2.jpg,1,2,3,4\n") -> Path:
    write(root / "image_ids.txt", "a/1.jpg\nb/2.jpg\n")
    write(root / "class_labels.txt", "a/1.jpg,0\nb/2.jpg,3\n")
    write(root / "image_sizes.txt", "a/1.jpg,200,100\nb/2.jpg,50,60\n")
    write(root / "localization.txt", loc)
    return root


def test_wsol_boxes(tmp_path):
    ds = open_dataset(f"wsol:{wsol_boxes(tmp_path / 'm')}", images=tmp_path / "img")
    assert len(ds) == 2 and ds.class_names == ["0", "1", "2", "3"]
    s = ds[0]
    assert s.image_id == "a/1.jpg" and s.label == 0 and s.size == (200, 100)
    assert s.boxes.tolist() == [[10, 20, 110, 80], [0, 0, 5, 5]]
    assert s.image == tmp_path / "img" / "a/1.jpg" and s.masks() is None


def test_an_option_the_format_does_not_take_is_an_error(tmp_path):
    """A given option (e.g. --split) is never dropped silently; None means "not given"."""
    with pytest.raises(InputError, match=r"--split does not apply to the 'wsol' format"):
        open_dataset(f"wsol:{wsol_boxes(tmp_path / 'm')}", split="val")
    assert len(open_dataset(f"wsol:{wsol_boxes(tmp_path / 'm')}", split=None)) == 2


def test_wsol_masks(tmp_path):
    meta = tmp_path / "meta"
    write(meta / "image_ids.txt", "x.jpg\n")
    write(meta / "class_labels.txt", "x.jpg,0\n")
    write(meta / "localization.txt", "x.jpg,m1.png,ig.png\nx.jpg,m2.png,\n")
    m1 = np.zeros((6, 8), np.uint8)
    m1[0, 0] = 255
    m2 = np.zeros((6, 8), np.uint8)
    m2[5, 7] = 255
    ig = np.zeros((6, 8), np.uint8)
    ig[:2, :] = 255
    (tmp_path / "masks").mkdir()
    for name, arr in (("m1", m1), ("m2", m2), ("ig", ig)):
        Image.fromarray(arr).save(tmp_path / "masks" / f"{name}.png")
    ds = open_dataset(f"wsol:{meta}", mask_root=tmp_path / "masks")
    fg, ignore = ds[0].masks()
    assert fg.sum() == 2 and fg[0, 0] and fg[5, 7] and ignore.sum() == 16
    with pytest.raises(InputError, match="--mask-root"):
        open_dataset(f"wsol:{meta}")


@pytest.mark.parametrize(
    ("loc", "message"),
    [
        ("a/1.jpg,10,20,110\n", r"localization.txt:1: expected 3 or 5 comma-separated fields, got 4"),
        ("a/1.jpg,10,20,110,80\nzzz.jpg,1,1,2,2\n", r"localization.txt:2: unknown image id 'zzz.jpg'"),
        ("a/1.jpg,10,20,210,80\n", r"localization.txt:1: box .* outside the 200x100 image"),
        ("a/1.jpg,50,20,10,80\n", r"localization.txt:1: box .* x1 < x0"),
        ("a/1.jpg,5,x,10,80\n", r"localization.txt:1: coordinate 'x' is not a number"),
        ("a/1.jpg,1,1,2,2\n", r"localization.txt: no box or mask for image 'b/2.jpg'"),
    ],
)
def test_wsol_bad_lines(tmp_path, loc, message):
    with pytest.raises(InputError, match=message):
        open_dataset(f"wsol:{wsol_boxes(tmp_path / 'm', loc)}")


def test_ilsvrc_layout(tmp_path):
    write(tmp_path / "LOC_synset_mapping.txt", "n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n")
    write(
        tmp_path / "LOC_val_solution.csv",
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000002,n01443537 5 6 70 80 n01443537 1 1 9 9 n01440764 0 0 4 4 \n"
        "ILSVRC2012_val_00000001,n01484850 10 20 30 40 \n",
    )
    ds = open_dataset(f"ilsvrc:{tmp_path}")
    assert [s.image_id for s in ds] == ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"]
    assert ds[0].label == 2 and ds[1].label == 1 and ds.class_names[1] == "n01443537"
    assert ds[1].boxes.tolist() == [[5, 6, 70, 80], [1, 1, 9, 9]]  # only the boxes of the image's synset
    assert ds[1].image.name == "ILSVRC2012_val_00000002.JPEG"
    write(tmp_path / "LOC_val_solution.csv", "ImageId,PredictionString\nX,n09999999 1 2 3 4\n")
    with pytest.raises(InputError, match=r"LOC_val_solution.csv:2: synset 'n09999999'"):
        open_dataset(f"ilsvrc:{tmp_path}")


def test_cub_files(tmp_path):
    write(tmp_path / "images.txt", "1 001.A/a.jpg\n2 002.B/b.jpg\n3 002.B/c.jpg\n")
    write(tmp_path / "image_class_labels.txt", "1 1\n2 2\n3 2\n")
    write(tmp_path / "bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 1 2 3 4\n3 0 0 10 10\n")
    write(tmp_path / "train_test_split.txt", "1 0\n2 1\n3 0\n")
    ds = open_dataset(f"cub:{tmp_path}")
    assert [s.image_id for s in ds] == ["001.A/a.jpg", "002.B/c.jpg"]
    assert ds[0].boxes.tolist() == [[60, 27, 385, 331]]  # x, y, x + w, y + h (wsolevaluation's CUB metadata)
    assert ds[1].label == 1 and ds[0].image == tmp_path / "images" / "001.A/a.jpg"
    assert len(open_dataset(f"cub:{tmp_path}", split="train")) == 1
    write(tmp_path / "bounding_boxes.txt", "1 60.0 27.0 325.0\n")
    with pytest.raises(InputError, match=r"bounding_boxes.txt:1: expected 5 fields, got 4"):
        open_dataset(f"cub:{tmp_path}")


VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>100</width><height>80</height></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>10</xmin><ymin>5</ymin><xmax>60</xmax><ymax>70</ymax>
</bndbox></object>
<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
<object><name>dog</name><bndbox><xmin>70</xmin><ymin>5</ymin><xmax>{xmax}</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def test_voc_xml(tmp_path):
    write(tmp_path / "Annotations" / "000001.xml", VOC_XML.format(name="000001", xmax=99))
    write(tmp_path / "ImageSets" / "Main" / "val.txt", "000001\n")
    ds = open_dataset(f"voc:{tmp_path}")
    s = ds[0]
    assert ds.class_names[s.label] == "dog" and s.size == (100, 80)
    assert s.boxes.tolist() == [[10, 5, 60, 70], [70, 5, 99, 30]]
    assert s.image == tmp_path / "JPEGImages" / "000001.jpg"
    write(tmp_path / "Annotations" / "000001.xml", VOC_XML.format(name="000001", xmax=120))
    with pytest.raises(InputError, match=r"000001.xml: object 3 .* outside the 100x80 image"):
        open_dataset(f"voc:{tmp_path}")


def test_coco_boxes_polygons_and_rle(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils

    rle_mask = np.zeros((40, 50), np.uint8, order="F")
    rle_mask[30:35, 40:45] = 1
    rle = mask_utils.encode(rle_mask)
    rle["counts"] = rle["counts"].decode()
    data = {
        "images": [{"id": 7, "file_name": "seven.jpg", "width": 50, "height": 40}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 18,
                "bbox": [0, 0, 10, 10],
                "area": 100,
                "iscrowd": 0,
                "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]],
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 18,
                "bbox": [40, 30, 5, 5],
                "area": 25,
                "iscrowd": 0,
                "segmentation": rle,
            },
            {
                "id": 3,
                "image_id": 7,
                "category_id": 3,
                "bbox": [20, 20, 5, 5],
                "area": 25,
                "iscrowd": 0,
                "segmentation": [[20, 20, 25, 20, 25, 25]],
            },
        ],
    }
    path = write(tmp_path / "ann.json", json.dumps(data))
    ds = open_dataset(f"coco:{path}")
    s = ds[0]
    assert ds.class_names == ["car", "dog"] and ds.category_ids == [3, 18]
    assert s.label == 1 and s.boxes.tolist() == [[0, 0, 10, 10], [40, 30, 45, 35]]
    fg, ignore = s.masks()
    assert fg.shape == (40, 50) and ignore is None
    assert fg[30:35, 40:45].all() and fg[2, 2] and not fg[22, 22]
    data["annotations"][0]["bbox"] = [45, 0, 10, 10]
    write(tmp_path / "ann.json", json.dumps(data))
    with pytest.raises(InputError, match=r"ann.json: image 7 annotation 1: box .* outside the 50x40 image"):
        open_dataset(f"coco:{path}")


def test_spec_registry_and_class_map(tmp_path):
    assert {"wsol", "ilsvrc", "cub", "voc", "coco"} <= set(FORMATS)
    with pytest.raises(InputError, match="expected FORMAT:PATH"):
        open_dataset("nope:/x")
    meta = wsol_boxes(tmp_path / "m")
    write(tmp_path / "map.txt", "0,10\n1,11\n2,12\n3,13\n")
    ds = open_dataset(f"wsol:{meta}", class_map=tmp_path / "map.txt")
    assert ds.to_model(ds[1].label) == 13
    write(tmp_path / "map.txt", "0,10\n1,x\n")
    with pytest.raises(InputError, match=r"map.txt:2: model index 'x' is not an integer"):
        open_dataset(f"wsol:{meta}", class_map=tmp_path / "map.txt")
    write(tmp_path / "map.txt", "0,10\n")
    with pytest.raises(InputError, match="no model index for dataset class 1"):
        open_dataset(f"wsol:{meta}", class_map=tmp_path / "map.txt")
