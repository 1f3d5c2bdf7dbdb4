"""Build the localization set of `make bench-resolution` from real photos available offline (nothing is fetched
from a hub; the Debian and PyPI archives are fetched by their ordinary clients into .cache/).

    python benchmarks/build_locset.py --out .cache/locset        (make locset)

Sources (each photo's source and licence is written into the manifest):
- scikit-image's bundled data (installed with the `bench` extra): cat, espresso cup, rocket, motorcycle; the
  grass, gravel and brick textures as backgrounds;
- Debian `opencv-doc` (OpenCV's samples/data): apple, orange, butterfly, squirrel, mandrill, dog (chicky_512),
  a soccer ball in a real photo (messi5); aerial city (aero1), street (leuvenA) and circuit board as backgrounds;
- Debian `labelme-examples`: a cat and a dog photo (classification example), and real multi-object photos with
  their annotated boxes and polygons (PASCAL VOC 2011 frames, a street video, an APC shelf);
- imgaug's quokka with its annotated box, read from the imgaug 0.4.0 wheel (`pip download imgaug==0.4.0 --no-deps`)
  without installing it.

The set: every object is cut out of its photo as the rectangle of its box (drawn by hand on the original) and
pasted, resized, at 9 areas from 5% to 90% of a 480x360 or 360x480 canvas (the orientation alternates; an area
the object's aspect cannot reach on the canvas is left out) onto 4 of the 6 real backgrounds, at seeded random
positions, so every box is exact; plus every object's original photo (whole-frame group) and the real
multi-object photos (their own group; a hit is IoU >= 0.5 with any box of the label).
Groups by the object's share of the image area: small (< 10%), medium, large (> 50%), whole-frame, real photos.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE = "scikit-image data (skimage/data, CC0 / public domain per its README and licence file)"
OPENCV = "Debian opencv-doc 4.6.0 (OpenCV samples/data; Apache-2.0 per debian/copyright)"
LABELME = "Debian labelme-examples 5.1.1 (GPL-3+ per debian/copyright; VOC frames: PASCAL VOC 2011, Flickr terms)"
IMGAUG = "imgaug 0.4.0 wheel, imgaug/quokka.jpg + quokka_annotations.json (MIT, the package's licence)"

# name -> (source key, path inside the source, hand-drawn box x0, y0, x1, y1 on the original photo)
OBJECTS: dict[str, tuple[str, str, tuple[int, int, int, int]]] = {
    "cat": ("skimage", "chelsea.png", (0, 0, 380, 300)),
    "espresso": ("skimage", "coffee.png", (30, 15, 545, 395)),
    "rocket": ("skimage", "rocket.jpg", (285, 90, 335, 427)),
    "motorcycle": ("skimage", "motorcycle_left.png", (70, 110, 690, 440)),
    "apple": ("opencv", "apple.jpg", (45, 10, 462, 492)),
    "orange": ("opencv", "orange.jpg", (37, 50, 461, 496)),
    "butterfly": ("opencv", "butterfly.jpg", (5, 20, 485, 315)),
    "squirrel": ("opencv", "squirrel_cls.jpg", (125, 100, 360, 350)),
    "mandrill": ("opencv", "baboon.jpg", (0, 0, 512, 512)),
    "pekinese": ("opencv", "chicky_512.png", (0, 0, 512, 512)),
    "kitten": ("labelme", "classification/data_annotated/0001.jpg", (85, 35, 597, 447)),
    "retriever": ("labelme", "classification/data_annotated/0002.jpg", (245, 35, 640, 480)),
    "quokka": ("imgaug", "quokka.jpg", (148, 50, 550, 642)),  # box from quokka_annotations.json
}
BACKGROUNDS = {
    "grass": ("skimage", "grass.png"),
    "gravel": ("skimage", "gravel.png"),
    "brick": ("skimage", "brick.png"),
    "aerial": ("opencv", "aero1.jpg"),
    "street": ("opencv", "leuvenA.jpg"),
    "circuit": ("opencv", "board.jpg"),
}
# real photos with several annotated objects: (source, image, labelme json or None, label, boxes if no json)
REAL = {
    "voc-bus": ("labelme", "bbox_detection/data_annotated/2011_000025.jpg", "bus"),
    "voc-people-2": ("labelme", "bbox_detection/data_annotated/2011_000003.jpg", "person"),
    "voc-people-4": ("labelme", "bbox_detection/data_annotated/2011_000006.jpg", "person"),
    "apc-tennis-ball": ("labelme", "tutorial/apc2016_obj3.jpg", "kong_air_dog_squeakair_tennis_ball"),
    **{f"street-truck-{i}": ("labelme", f"video_annotation/data_annotated/0000010{i}.jpg", "track") for i in range(5)},
}
REAL_BOXES = {"soccer-ball": ("opencv", "messi5.jpg", [(335, 288, 390, 336)])}  # hand-drawn
AREAS = (0.05, 0.08, 0.12, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9)  # object box / canvas area
CANVASES = ((360, 480), (480, 360))  # (h, w)
BACKGROUNDS_PER_CELL = 4


@dataclass
class Item:
    """One image of the set: its file, the object's boxes (any counts as a hit), group and provenance."""

    file: str
    object: str
    boxes: list[list[int]]
    area: float  # largest box / image area
    group: str
    source: str
    background: str | None = None
    crop_box: list[int] = field(default_factory=list)  # the object's box in its original photo (target class)
    object_file: str = ""


def group_of(area: float) -> str:
    return "small" if area < 0.10 else ("large" if area > 0.50 else "medium")


def sources(cache: Path) -> dict[str, tuple[Path, str]]:
    """Root folder and licence line of every source, fetching the Debian packages and the imgaug wheel once."""
    import skimage

    debs = cache / "debs"
    root = debs / "x"
    if not (root / "usr/share/doc/opencv-doc").is_dir() or not (root / "usr/share/doc/labelme-examples").is_dir():
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "opencv-doc", "labelme-examples"], cwd=debs, check=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    wheel_dir = cache / "wheels"
    quokka = wheel_dir / "q" / "imgaug"
    if not (quokka / "quokka.jpg").is_file():
        wheels = sorted(wheel_dir.glob("imgaug-0.4.0-*.whl"))
        if not wheels:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "imgaug==0.4.0", "--no-deps", "-d", str(wheel_dir), "-q"],
                check=True,
            )
            wheels = sorted(wheel_dir.glob("imgaug-0.4.0-*.whl"))
        with zipfile.ZipFile(wheels[0]) as z:
            for name in ("imgaug/quokka.jpg", "imgaug/quokka_annotations.json"):
                z.extract(name, wheel_dir / "q")
    return {
        "skimage": (Path(skimage.__file__).parent / "data", SKIMAGE),
        "opencv": (root / "usr/share/doc/opencv-doc/examples/data", OPENCV),
        "labelme": (root / "usr/share/doc/labelme-examples/examples", LABELME),
        "imgaug": (quokka, IMGAUG),
    }


def cover(img: Image.Image, h: int, w: int) -> Image.Image:
    """Resize to cover (h, w) and centre-crop: no distortion."""
    s = max(w / img.width, h / img.height)
    big = img.resize((max(w, round(img.width * s)), max(h, round(img.height * s))), Image.BICUBIC)
    x0, y0 = (big.width - w) // 2, (big.height - h) // 2
    return big.crop((x0, y0, x0 + w, y0 + h))


def labelme_boxes(path: Path, label: str) -> list[list[int]]:
    """Boxes (x0, y0, x1, y1; exclusive) of every shape with `label` in a labelme json (rectangles, polygons)."""
    shapes = json.loads(path.read_text())["shapes"]
    out = []
    for s in shapes:
        if s["label"] != label:
            continue
        pts = np.asarray(s["points"], dtype=float)
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        out.append([int(x0), int(y0), int(x1), int(y1)])
    return out


def box_area(b: list[int]) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def build(out: Path, cache: Path, seed: int) -> list[Item]:
    src = sources(cache)
    rng = np.random.default_rng(seed)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []

    def save(img: Image.Image, name: str) -> str:
        rel = f"images/{name}.png"
        img.save(out / rel, compress_level=1)
        return rel

    bgs = {}
    for name, (key, rel) in BACKGROUNDS.items():
        photo = Image.open(src[key][0] / rel).convert("RGB")
        bgs[name] = {hw: cover(photo, *hw) for hw in CANVASES}
    bg_names = list(BACKGROUNDS)
    for o, (name, (key, rel, box)) in enumerate(OBJECTS.items()):
        photo = Image.open(src[key][0] / rel).convert("RGB")
        area = box_area(list(box)) / (photo.width * photo.height)
        items.append(
            Item(save(photo, f"{name}-whole"), name, [list(box)], area, "whole-frame", f"{src[key][1]}: {rel}", None,
                 list(box), rel)
        )  # fmt: skip
        crop = photo.crop(box)
        for a, target_area in enumerate(AREAS):
            for j in range(BACKGROUNDS_PER_CELL):
                bg = bg_names[(o + a + j) % len(bg_names)]
                placed = None
                for c in range(len(CANVASES)):  # the alternating orientation first, the other if it cannot fit
                    h, w = CANVASES[(o + a + j + c) % len(CANVASES)]
                    f = np.sqrt(target_area * h * w / (crop.width * crop.height))
                    ow, oh = round(crop.width * f), round(crop.height * f)
                    if ow <= w and oh <= h:
                        placed = (h, w, ow, oh)
                        break
                if placed is None:
                    continue
                h, w, ow, oh = placed
                x0, y0 = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
                canvas = bgs[bg][(h, w)].copy()
                canvas.paste(crop.resize((ow, oh), Image.LANCZOS), (x0, y0))
                b = [x0, y0, x0 + ow, y0 + oh]
                real_area = box_area(b) / (h * w)
                items.append(
                    Item(save(canvas, f"{name}-{target_area:.2f}-{bg}-{j}"), name, [b], real_area,
                         group_of(real_area), f"{src[key][1]}: {rel} on {src[BACKGROUNDS[bg][0]][1]}: "
                         f"{BACKGROUNDS[bg][1]}", bg, list(box), rel)
                )  # fmt: skip
    for name, (key, rel, label) in REAL.items():
        photo = Image.open(src[key][0] / rel).convert("RGB")
        boxes = labelme_boxes((src[key][0] / rel).with_suffix(".json"), label)
        boxes.sort(key=lambda b: -box_area(b))
        items.append(
            Item(save(photo, name), label, boxes, box_area(boxes[0]) / (photo.width * photo.height), "real photos",
                 f"{src[key][1]}: {rel}", None, boxes[0], rel)
        )  # fmt: skip
    for name, (key, rel, boxes) in REAL_BOXES.items():
        photo = Image.open(src[key][0] / rel).convert("RGB")
        bl = [list(b) for b in boxes]
        items.append(
            Item(save(photo, name), name, bl, box_area(bl[0]) / (photo.width * photo.height), "real photos",
                 f"{src[key][1]}: {rel} (box drawn by hand)", None, bl[0], rel)
        )  # fmt: skip
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".cache/locset"))
    parser.add_argument("--cache", type=Path, default=Path(".cache"), help="where the Debian/PyPI archives go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    items = build(args.out, args.cache, args.seed)
    digest = hashlib.sha256()
    for it in items:
        digest.update((args.out / it.file).read_bytes())
    manifest = {
        "seed": args.seed,
        "sha256": digest.hexdigest(),
        "groups": {g: sum(it.group == g for it in items) for g in dict.fromkeys(it.group for it in items)},
        "items": [asdict(it) for it in items],
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(items)} images {manifest['groups']} -> {args.out}/manifest.json (sha256 {digest.hexdigest()[:12]})")


if __name__ == "__main__":
    main()
