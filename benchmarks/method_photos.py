"""Maps of one photo by every method, from the default model (`make docs-method-photos`; docs/methods.md).

Random-weight transformers give meaningless maps, so the pictures come from the built-in EfficientNet-Lite0 (the
README's architecture table is about correctness, tested with random weights). One row of overlays: the photo's
top-1 class, mapped by each method through `camloc.explain`, the path `camloc explain --method NAME` takes, with
the box of the default rule. Score-CAM runs at the 224 classification pass (one forward pass per channel); the
others at the default map size. Prints a markdown table (method, layer, class, box, seconds).

    python benchmarks/method_photos.py [--image examples/cat.jpg] [--out docs/img/methods-cat.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import camloc
from camloc import viz
from camloc.io import load_image, write_image

METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "scorecam")
PANEL = 256  # shorter side of each overlay in the figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="examples/cat.jpg")
    parser.add_argument("--out", default="docs/img/methods-cat.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = camloc.load("default")
    image = load_image(args.image)
    target = int(camloc.explain(model, image, top_k=1, map_sizes=()).classes[0, 0])
    rgb = np.asarray(image.resize((round(PANEL * image.width / image.height), PANEL)))
    panels, rows = [], []
    for name in METHODS:
        start = time.perf_counter()
        res = camloc.explain(
            model, image, targets=[[target]], method=name, map_sizes=() if name == "scorecam" else None
        )
        seconds = time.perf_counter() - start
        heat = res.maps[0, 0].float().cpu().numpy()
        scale = PANEL / image.height
        box = (res.boxes[0, 0].cpu().numpy() * scale).round().astype(int)
        small = torch.nn.functional.interpolate(
            torch.from_numpy(heat)[None, None], size=rgb.shape[:2], mode="bilinear", align_corners=False
        )[0, 0].numpy()
        panels.append(viz.overlay(rgb, small, box, name))
        rows.append((name, res.settings["layer"], res.labels(0)[0], res.boxes[0, 0].tolist(), seconds))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_image(Path(args.out), np.concatenate(panels, axis=1))
    print(f"{args.image}, default model, class '{rows[0][2]}' (top-1), figure {args.out}\n")
    print("| method | layer | box [x0, y0, x1, y1] | seconds |")
    print("| --- | --- | --- | --- |")
    for name, layer, _label, box, seconds in rows:
        print(f"| {name} | `{layer}` | {box} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
