"""Why a probe's boxes miss small objects (issue 11, item 6): red discs vs blue squares, 40-80 px in 224 x 224.

    python benchmarks/probe_maps.py            # about 3 minutes on 2 CPU cores

The images are those of `tests/probe/test_probe_maps.py` (30 training images per class, 10 test images; per-pixel
noise with six random rectangles of clutter), and the same layout on smooth noise (random 28 x 28 colours upsampled
bicubically) to separate what the noise does. For each background and each probe it prints box hits (IoU >= 0.5)
per class and the mean ratio box side / object side, for the native pass, the default (zoom) and map passes at
448 and 640, plus:

- the map's level away from the object (cells at least two cells from it, over the peak): the constant w.mu that
  standardisation folds into the bias would show there;
- whether the probe still picks the right class when the image itself is given at 448 (the map passes and the
  zoom magnify the image);
- probes fitted at earlier, finer layers of the same frozen backbone (blocks.2, stride 8; blocks.4, stride 16),
  their maps computed with the CAM formula at that layer (GAP + linear there is CAM-exact as well).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.probe.test_probe_maps import CLASSES, SIDE, disc_or_square

import camloc
from camloc.boxes import box_iou, boxes_from_maps
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor
from camloc.probe.fit import ProbeSet, fit_linear, fit_probe

PROCEDURES = {
    "native": {"map_sizes": ()},
    "default (zoom)": {},
    "448": {"map_sizes": (448,)},
    "640": {"map_sizes": (640,)},
}


def summary(boxes: torch.Tensor, gt: torch.Tensor, labels: np.ndarray) -> str:
    """Hits per class (disc / square) and the mean box side over object side."""
    iou = box_iou(boxes.cpu(), gt).diagonal().numpy()
    side = (
        (boxes[:, 2] - boxes[:, 0] + boxes[:, 3] - boxes[:, 1]) / (gt[:, 2] - gt[:, 0] + gt[:, 3] - gt[:, 1])
    ).numpy()
    hits = [int((iou[labels == c] >= 0.5).sum()) for c in (0, 1)]
    return f"{hits[0]}/{(labels == 0).sum()} | {hits[1]}/{(labels == 1).sum()} | {side.mean():.2f}"


def background_level(raw: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean |map| over cells at least two cells from the object, over the map's peak, averaged over images."""
    n, h, w = raw.shape
    cell = SIDE / w
    levels = []
    for i in range(n):
        x0, y0, x1, y1 = (gt[i] / cell).tolist()
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        far = (xs < x0 - 2) | (xs > x1 + 2) | (ys < y0 - 2) | (ys > y1 + 2)
        if far.any():
            levels.append(float(raw[i][far].abs().mean() / raw[i].max()))
    return float(np.mean(levels))


def layer_probe(model: torch.nn.Module, train, labels, test, block: int) -> tuple[torch.Tensor, np.ndarray]:
    """A probe on GAP of the backbone's blocks[block] output; its maps of the true classes at 224 (10, 1, 224, 224)
    and its predictions."""
    pre = info_of(model).preprocess

    def features(images) -> torch.Tensor:
        x = torch.stack([image_to_tensor(im, SIDE, pre) for im in images])
        with torch.no_grad():
            x = model.bn1(model.conv_stem(x))
            for b in model.blocks[: block + 1]:
                x = b(x)
        return x

    fit = fit_linear(features(train).mean((2, 3)).numpy(), labels)
    f = features(test)
    cams = torch.einsum("kc,bchw->bkhw", torch.from_numpy(fit.weight), f)
    pred = (cams.mean((2, 3)) + torch.from_numpy(fit.bias)).argmax(1).numpy()
    true = torch.tensor([i % 2 for i in range(len(test))])
    maps = cams[torch.arange(len(test)), true][:, None]
    return F.interpolate(maps, size=(SIDE, SIDE), mode="bilinear", align_corners=False), pred


def main() -> None:
    torch.set_num_threads(2)
    for name, background in (("per-pixel noise (the test)", "pixels"), ("smooth noise", "smooth")):
        rng = np.random.default_rng(0)
        train = [disc_or_square(rng, label, background)[0] for label in (0, 1) for _ in range(30)]
        labels = [0] * 30 + [1] * 30
        probe = fit_probe(ProbeSet(list(train), labels, CLASSES), "default")
        test = [disc_or_square(rng, i % 2, background) for i in range(10)]
        images, gt = [im for im, _ in test], torch.tensor([box for _, box in test])
        truth = np.array([i % 2 for i in range(10)])
        print(f"\n## {name}\n")
        print("| probe | procedure | classes right | disc hits | square hits | box side / object side |")
        print("|---|---|---:|---:|---:|---:|")
        native = None
        for proc, kwargs in PROCEDURES.items():
            res = camloc.explain(probe.model, images, top_k=1, **kwargs)
            native = res if proc == "native" else native
            right = int((res.classes[:, 0].numpy() == truth).sum())
            print(f"| GAP of bn2 (7x7) | {proc} | {right}/10 | {summary(res.boxes[:, 0], gt, truth)} |")
        pre = info_of(probe.model).preprocess
        big = torch.stack([image_to_tensor(im, 448, pre) for im in images])
        at448 = camloc.explain(probe.model, big, top_k=1, map_sizes=())
        backbone = camloc.load("default")
        for block, label in ((2, "GAP of blocks.2 (28x28)"), (4, "GAP of blocks.4 (14x14)")):
            maps, pred = layer_probe(backbone, train, labels, images, block)
            boxes = boxes_from_maps(maps)[:, 0]
            print(f"| {label} | native | {int((pred == truth).sum())}/10 | {summary(boxes, gt, truth)} |")
        assert native is not None
        print(
            f"\nmap level two cells or more from the object, over the peak (native): "
            f"{background_level(native.raw[:, 0], gt):.3f}"
        )
        print(f"first test image's native map (object box {gt[0].tolist()}, 32 px cells):")
        print(np.array2string(native.raw[0, 0].numpy(), precision=1, suppress_small=True))
        print(
            f"classes right when the image is given at 448 x 448: {int((at448.classes[:, 0].numpy() == truth).sum())}/10"
        )


if __name__ == "__main__":
    main()
