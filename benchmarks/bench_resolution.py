"""Which map sizes, box rule and ReLU setting localize best with the default model? (`make bench-resolution`)

The localization set is built here from scikit-image's bundled photos (CC0 / public domain, installed with the
`bench` extra; nothing is downloaded): four real objects (cat, espresso cup, rocket, motorcycle) cut out as
rectangles and pasted at six scales, at seeded random positions, onto three real texture photos (grass, gravel,
brick), so every box is exact; plus the four whole-frame photos with hand-drawn boxes (large objects).

For every image the target class is the model's top-1 class on the isolated object, so the study measures
localization alone (GT-known accuracy: IoU >= 0.5 between the box of that class's map and the object's box).
Raw maps are computed once per image and size, then every setting is derived from them through the library's own
`combine_passes` and `boxes_from_maps`, the same code `camloc.explain` runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import camloc
from camloc.boxes import box_iou, boxes_from_maps
from camloc.engine import combine_passes, upsample
from camloc.methods import CAM
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor

# skimage data file -> object box (x0, y0, x1, y1), drawn by hand on the original photo
OBJECTS = {
    "chelsea.png": (0, 0, 380, 300),
    "coffee.png": (30, 15, 545, 395),
    "rocket.jpg": (285, 90, 335, 427),
    "motorcycle_left.png": (70, 110, 690, 440),
}
BACKGROUNDS = ("grass.png", "gravel.png", "brick.png")
SCALES = (0.12, 0.2, 0.3, 0.45, 0.65, 0.9)  # object's longer side / canvas's shorter side
CANVASES = ((360, 480), (480, 360))  # (h, w)
SIZES = (224, 320, 448, 512, 640, 800)
SIZE_SETS = ((224,), (320,), (448,), (512,), (640,), (800,), (224, 448), (448, 640), (448, 800), (224, 448, 640))


@dataclass
class Sample:
    image: Image.Image
    box: tuple[int, int, int, int]
    target: int
    scale: float  # object side / image side; 1.0 for the whole-frame photos
    name: str


def data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def build_set(model: torch.nn.Module, per_cell: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    root = data_dir()
    samples = []
    backgrounds = {
        (f, (h, w)): Image.open(root / f).convert("RGB").resize((w, h), Image.BICUBIC)
        for f in BACKGROUNDS
        for h, w in CANVASES
    }  # decoded and resized once
    for obj_file, box in OBJECTS.items():
        photo = Image.open(root / obj_file).convert("RGB")
        crop = photo.crop(box)
        target = int(camloc.explain(model, crop, top_k=1, map_sizes=()).classes[0, 0])
        samples.append(Sample(photo, box, target, 1.0, f"{obj_file}:whole"))
        for bg_file, scale, rep in itertools.product(BACKGROUNDS, SCALES, range(per_cell)):
            h, w = CANVASES[rep % len(CANVASES)]
            canvas = backgrounds[bg_file, (h, w)].copy()
            side = scale * min(h, w)
            f = side / max(crop.size)
            ow, oh = max(2, round(crop.width * f)), max(2, round(crop.height * f))
            x0, y0 = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
            canvas.paste(crop.resize((ow, oh), Image.LANCZOS), (x0, y0))
            samples.append(Sample(canvas, (x0, y0, x0 + ow, y0 + oh), target, scale, f"{obj_file}:{bg_file}:{scale}"))
    return samples


def raw_maps(model: torch.nn.Module, sample: Sample) -> dict[int, torch.Tensor]:
    """Upsampled raw CAM of the target class at every studied size -> {size: (1, H, W)}."""
    pre = info_of(model).preprocess
    classes = torch.tensor([[sample.target]])
    out = {}
    for s in SIZES:
        x = image_to_tensor(sample.image, s, pre)[None]
        raw = CAM().maps_only(model, x, classes)
        out[s] = upsample(raw.float(), (sample.image.height, sample.image.width))[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-cell", type=int, default=1, help="images per (object, background, scale)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-results/resolution.json"))
    args = parser.parse_args()
    t0 = time.time()
    model = camloc.load("default")
    samples = build_set(model, args.per_cell, args.seed)
    maps = [raw_maps(model, s) for s in samples]
    gts = torch.tensor([s.box for s in samples])
    groups = {
        "small (<=0.2)": [s.scale <= 0.2 for s in samples],
        "medium (0.3-0.45)": [0.2 < s.scale <= 0.45 for s in samples],
        "large (>=0.65)": [s.scale > 0.45 for s in samples],
    }
    rows = []
    for sizes, mode, relu in itertools.product(SIZE_SETS, ("minmax", "max"), (False, True)):
        hits = []
        for m, gt in zip(maps, gts, strict=False):
            combined = combine_passes([m[s] for s in sizes], relu=relu)
            box = boxes_from_maps(combined, 0.2, mode)
            hits.append(float(box_iou(box, gt[None])[0, 0]) >= 0.5)
        hits_arr = np.array(hits)
        row = {"map_sizes": list(sizes), "threshold_mode": mode, "relu": relu, "all": 100 * hits_arr.mean()}
        row.update({g: 100 * hits_arr[np.array(mask)].mean() for g, mask in groups.items()})
        rows.append(row)
    rows.sort(key=lambda r: -r["all"])
    counts = {g: int(sum(mask)) for g, mask in groups.items()}
    print(f"{len(samples)} images ({counts}); GT-known loc (IoU>=0.5, threshold 0.2), %; {time.time() - t0:.0f}s")
    header = f"| map sizes | threshold mode | relu | all | {' | '.join(groups)} |"
    print(header)
    print("|" + "---|" * (4 + len(groups)))
    for r in rows:
        print(
            f"| {','.join(map(str, r['map_sizes']))} | {r['threshold_mode']} | {r['relu']} | {r['all']:.1f} | "
            + " | ".join(f"{r[g]:.1f}" for g in groups)
            + " |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n_images": len(samples), "groups": counts, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
