"""The box-labelled sets the default-model benchmarks run on, behind one loader (`--set`).

- `.cache/locset` (the default; any folder with a `manifest.json` of `benchmarks/build_locset.py`): the 431-image
  localization set of docs/resolution.md, groups small / medium / large / whole-frame / real photos, built by
  `make locset` when missing (through `bench_resolution.load_set`).
- `pasted76`: the earlier 76-image set (four scikit-image objects at six scales on three textures, plus the four
  whole photos; built in memory, seed 0), kept reachable for comparison with the earlier tables. Its groups are by
  side: small (scale <= 0.2), medium (0.3-0.45), large (>= 0.65 and the whole frames).

The target class of an image is the model's top-1 class on the isolated object (the crop of its box in the
original photo), the same for every method, so the numbers measure localization and faithfulness alone.
`stratified_order` ranks the images so that every prefix holds about the same fraction of every group: a subset
of n images is the first n of that order (seeded).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import camloc

PASTED76 = "pasted76"


@dataclass
class Sample:
    """One image with its object's boxes (n, 4) x0, y0, x1, y1 exclusive, the target class and its group."""

    name: str
    image: Image.Image
    boxes: list[tuple[int, int, int, int]]
    target: int
    group: str
    index: int = -1  # position in the set (its even / odd halves calibrate MaxBoxAcc thresholds)


def load_samples(model: torch.nn.Module, where: str | Path) -> tuple[list[Sample], str]:
    """The set named by `where` (a locset folder or "pasted76") -> (samples, a one-line description)."""
    if str(where) == PASTED76:
        return _pasted76(model), "the earlier pasted-object set (76 images)"
    from bench_resolution import load_set

    root = Path(where)
    manifest = load_set(root)
    targets: dict[str, int] = {}
    for it in manifest["items"]:  # as bench_resolution.py: the class of the isolated object, from its photo's crop
        if it["group"] in ("whole-frame", "real photos") and it["object"] not in targets:
            crop = Image.open(root / it["file"]).convert("RGB").crop(tuple(it["crop_box"]))
            targets[it["object"]] = int(camloc.explain(model, crop, top_k=1, map_sizes=()).classes[0, 0])
    samples = [
        Sample(
            it["file"],
            Image.open(root / it["file"]).convert("RGB"),
            [tuple(b) for b in it["boxes"]],
            targets[it["object"]],
            it["group"],
            i,
        )
        for i, it in enumerate(manifest["items"])
    ]
    return samples, f"the localization set of docs/resolution.md ({len(samples)} images, {root})"


def stratified_order(samples: list[Sample], seed: int = 0) -> list[int]:
    """Indices of all samples, ranked so that any prefix has about the same fraction of every group: within a
    group a seeded permutation, then images ordered by (position + 0.5) / group size."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    ranked = []
    for g in sorted(groups):
        idx = groups[g]
        for pos, i in enumerate(rng.permutation(idx)):
            ranked.append(((pos + 0.5) / len(idx), g, int(i)))
    return [i for _, _, i in sorted(ranked)]


# ------------------------------------------------------------------ the earlier 76-image set

OBJECTS = {  # skimage data file -> object box (x0, y0, x1, y1), drawn by hand on the original photo
    "chelsea.png": (0, 0, 380, 300),
    "coffee.png": (30, 15, 545, 395),
    "rocket.jpg": (285, 90, 335, 427),
    "motorcycle_left.png": (70, 110, 690, 440),
}
BACKGROUNDS = ("grass.png", "gravel.png", "brick.png")
SCALES = (0.12, 0.2, 0.3, 0.45, 0.65, 0.9)  # object's longer side / canvas's shorter side
CANVASES = ((360, 480), (480, 360))  # (h, w)


def _group(scale: float) -> str:
    return "small" if scale <= 0.2 else "medium" if scale <= 0.45 else "large"


def _pasted76(model: torch.nn.Module, per_cell: int = 1, seed: int = 0) -> list[Sample]:
    """The set of the earlier bench_resolution.py (before the 431-image study), unchanged."""
    import skimage

    root = Path(skimage.__file__).parent / "data"
    rng = np.random.default_rng(seed)
    samples = []
    backgrounds = {
        (f, (h, w)): Image.open(root / f).convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
        for f in BACKGROUNDS
        for h, w in CANVASES
    }
    for obj_file, box in OBJECTS.items():
        photo = Image.open(root / obj_file).convert("RGB")
        crop = photo.crop(box)
        target = int(camloc.explain(model, crop, top_k=1, map_sizes=()).classes[0, 0])
        samples.append(Sample(f"{obj_file}:whole", photo, [box], target, "large"))
        for bg_file, scale, rep in itertools.product(BACKGROUNDS, SCALES, range(per_cell)):
            h, w = CANVASES[rep % len(CANVASES)]
            canvas = backgrounds[bg_file, (h, w)].copy()
            f = scale * min(h, w) / max(crop.size)
            ow, oh = max(2, round(crop.width * f)), max(2, round(crop.height * f))
            x0, y0 = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
            canvas.paste(crop.resize((ow, oh), Image.Resampling.LANCZOS), (x0, y0))
            name = f"{obj_file}:{bg_file}:{scale}"
            samples.append(Sample(name, canvas, [(x0, y0, x0 + ow, y0 + oh)], target, _group(scale)))
    for i, s in enumerate(samples):
        s.index = i
    return samples
