"""Does per-pixel noise around a small object defeat the default model's maps? The control experiment of issue
11, item 6 (docs/probe.md): the probe's test puts 40-80 px objects on per-pixel noise, and its boxes are poor.

    python benchmarks/small_on_noise.py        # about 6 minutes on one CPU thread; needs `make locset`

Every small image of the localization set (object under 10% of the area, pasted on a real background) is explained
twice with the ImageNet head of the default model, for its target class (`locsets.load_samples`): as it is, and
with everything outside the object's box replaced by uniform per-pixel noise (seeded), the probe test's
background. It prints GT-known hits (IoU >= 0.5) for explain's default (the zoom) and for the classification pass
alone. If the noise were the cause, the ImageNet head would lose its boxes on it too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import camloc
from camloc.boxes import box_iou
from locsets import Sample, load_samples


def on_noise(sample: Sample, rng: np.random.Generator) -> Image.Image:
    """The sample's image with everything outside its first box replaced by uniform per-pixel noise."""
    a = np.asarray(sample.image).copy()
    x0, y0, x1, y1 = sample.boxes[0]
    noise = rng.integers(0, 256, a.shape).astype(np.uint8)
    inside = np.zeros(a.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    a[~inside] = noise[~inside]
    return Image.fromarray(a)


def hits(model: torch.nn.Module, samples: list[Sample], images: list[Image.Image], **settings: object) -> int:
    """Images whose box for the target class reaches IoU 0.5 with the object's box."""
    targets = torch.tensor([[s.target] for s in samples])
    res = camloc.explain(model, images, targets=targets, **settings)
    gt = torch.tensor([s.boxes[0] for s in samples])
    return int((box_iou(res.boxes[:, 0].cpu(), gt).diagonal() >= 0.5).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default=".cache/locset", help="the localization set (make locset)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = camloc.load("default")
    samples = [s for s in load_samples(model, args.set)[0] if s.group == "small"]
    rng = np.random.default_rng(0)
    backgrounds = {
        "real background": [s.image for s in samples],
        "per-pixel noise": [on_noise(s, rng) for s in samples],
    }
    print(f"{len(samples)} small objects of {args.set}, the default model's ImageNet head, GT-known hits (IoU >= 0.5)")
    print("| background | default (zoom) | classification pass only |")
    print("|---|---:|---:|")
    for name, images in backgrounds.items():
        zoom, native = hits(model, samples, images), hits(model, samples, images, map_sizes=())
        print(f"| {name} | {zoom}/{len(samples)} | {native}/{len(samples)} |", flush=True)


if __name__ == "__main__":
    main()
