"""Why a probe's boxes miss small objects (issue 11, item 6): red discs vs blue squares, 40-80 px in 224 x 224.

    python benchmarks/probe_maps.py            # about a minute on 2 CPU cores
    python benchmarks/probe_maps.py --fits     # the refits tried (benchmarks/probe_cells.py), about 25 minutes
    python benchmarks/probe_maps.py --fits --only span    # the plain probe and the span classifier, 3 minutes
    python benchmarks/probe_maps.py --fits --only span,cells   # span, cells (and on span / true boxes): 15 min
    python benchmarks/probe_maps.py --contrast 0.3,0.7 --seeds 0,1,2,3,4,5  # contrast boxes of training images
    python benchmarks/probe_maps.py --fits --only span,cells --seeds 3,4,5   # other sets (docs/probe.md: what was chosen on which)

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
  their maps computed with the CAM formula at that layer (GAP + linear there is CAM-exact as well);
- how far the class reaches in the last feature map: a logistic regression on the 7 x 7 cells of the training
  images, each cell labelled with its image's class, then asked for the class of the test images' cells at least
  two cells (64 px) from the object: far above chance (50%) means every cell's features carry the object's class.

With --fits it prints, instead, the refits of benchmarks/probe_cells.py against the plain probe, explained with
the default settings, on three sets of the test's generator (per-pixel noise): the test's own (seed 0, 10 test
images) and seeds 1 and 2 (30 + 30 training, 20 test images each), so that a refit is not judged on 10 images.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.probe.test_probe_maps import CLASSES, SIDE, disc_or_square

import camloc
from camloc.boxes import box_iou, boxes_from_maps
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor
from camloc.probe import cells as cell_probe
from camloc.probe.auto import trial_summary
from camloc.probe.contrast import boxes_of, contrast_boxes, contrast_maps
from camloc.probe.fit import DEFAULT_CS, ProbeSet, extract_features, fit_auto, fit_linear, fit_probe
from camloc.probe.span import backbone_classifier, fit_span
from probe_cells import (
    CellFit,
    background_refit,
    cell_features,
    fit_cells,
    peak_crop_refit,
    pooled_at,
    set_head,
    window_refit,
)

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


def far_cells_carry_class(model: torch.nn.Module, train, labels, test, gt: torch.Tensor) -> tuple[int, int]:
    """(right, total): test cells at least two cells from the object whose class, by a logistic regression fitted
    on every cell of the training images labelled with its image's class, is the image's class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def cells(images) -> np.ndarray:  # (N, h * w, C)
        return np.stack([f.reshape(f.shape[0], -1).T for f in cell_features(model, [(im, SIDE) for im in images])])

    x = cells(train)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))
    clf.fit(x.reshape(-1, x.shape[-1]), np.repeat(labels, x.shape[1]))
    t = cells(test)
    side = math.isqrt(t.shape[1])
    pred = clf.predict(t.reshape(-1, t.shape[-1])).reshape(len(test), side, side)
    ys, xs = np.mgrid[:side, :side] + 0.5
    right = total = 0
    for i in range(len(test)):
        x0, y0, x1, y1 = (gt[i] * side / SIDE).tolist()
        far = (xs < x0 - 2) | (xs > x1 + 2) | (ys < y0 - 2) | (ys > y1 + 2)
        right += int((pred[i][far] == i % 2).sum())
        total += int(far.sum())
    return right, total


IMAGE_WEIGHTS = (0.0, 0.005, 0.02, 0.1, 1.0)  # the cell fit's weight of the images' term


def refits(
    train: list, labels: list[int], pooled: np.ndarray, boxes: list[list[int]] | None = None
) -> dict[str, Callable[[torch.nn.Module], object] | None]:
    """The procedures of the --fits table by name, each refitting a copy of the plain probe in place (None: the
    plain probe itself); `boxes`, the training images' true boxes, adds the oracle (a user has none)."""
    procedures: dict[str, Callable[[torch.nn.Module], object] | None] = {
        "plain (pooled, native)": None,
        "window refit (a, 2 rounds)": lambda m: window_refit(m, train, labels, pooled),
        "peak crops 64-160 px (a)": lambda m: peak_crop_refit(m, train, labels, pooled),
        "background class (b)": lambda m: background_refit(m, train, labels, pooled),
    }
    for lam in IMAGE_WEIGHTS:
        procedures[f"cell fit, image weight {lam:g} (c)"] = partial(
            fit_cells, images=train, labels=labels, pooled=pooled, fit=CellFit(image_weight=lam)
        )
    procedures["cell fit, image weight 0.02, one round (c)"] = partial(
        fit_cells, images=train, labels=labels, pooled=pooled, fit=CellFit(image_weight=0.02, rounds=1)
    )
    procedures["span classifier (d; `camloc probe fit --classifier span`)"] = lambda m: span_refit(m, labels, pooled)
    procedures["cells fit on the span probe's boxes (e, before)"] = lambda m: span_boxes_cells_refit(
        m, train, labels, pooled
    )
    procedures["cells classifier (e; `camloc probe fit --classifier cells`)"] = lambda m: cells_refit(
        m, train, labels, pooled
    )
    procedures["auto (the default of `camloc probe fit`)"] = lambda m: auto_refit(m, train, labels, pooled)
    if boxes is not None:
        procedures["cells labelled by the true boxes (e, oracle: uses boxes)"] = lambda m: boxed_cells_refit(
            m, train, labels, [[float(v) for v in box] for box in boxes]
        )
    # the same fit as "image weight 0.02" but for the pooled features' round-off: computed by the probe's own
    # extractor (batches of 32) instead of one batch of 60
    procedures["cell fit, image weight 0.02, pooled features in batches of 32 (c)"] = lambda m: fit_cells(
        m, train, labels, extract_features(m, train)[0], CellFit(image_weight=0.02)
    )
    return procedures


def span_refit(model: torch.nn.Module, labels: list[int], pooled: np.ndarray) -> None:
    """The library's span classifier (camloc/probe/span.py) on the plain probe's training features, in place: what
    `fit_probe(..., classifier="span")` fits, with its default C values and folds."""
    span, _, _ = fit_span(pooled, labels, *backbone_classifier(camloc.load("default")), DEFAULT_CS["span"], 5)
    set_head(model, span.weight, span.bias)


def cells_refit(model: torch.nn.Module, train: list, labels: list[int], pooled: np.ndarray) -> None:
    """The library's cells classifier (camloc/probe/cells.py), in place: the contrast boxes of the training images
    label their cells, then the rows on the cells (what `fit_probe(..., classifier="cells")` fits)."""
    per_image = cell_probe.labelled_cells(model, train, labels, len(CLASSES))
    set_head(model, *cell_probe.fit_image_cells(per_image, len(CLASSES), cell_probe.DEFAULT_CELLS.C))


def auto_refit(model: torch.nn.Module, train: list, labels: list[int], pooled: np.ndarray) -> None:
    """The library's default classifier (camloc/probe/auto.py), in place: what `fit_probe(...)` fits by default;
    prints its trial on stderr."""
    fit = fit_auto(model, pooled, train, labels, len(CLASSES), None, 5)
    print(f"auto: {fit.classifier}; {trial_summary(fit.settings)}", file=sys.stderr, flush=True)
    set_head(model, fit.weight, fit.bias)


def boxed_cells_refit(model: torch.nn.Module, train: list, labels: list[int], boxes: list[list[float]]) -> None:
    """The cells classifier's fit with the given boxes of the training images in place of its contrast boxes."""
    per_image = [
        cell_probe.image_cells(model, im, (box[0], box[1], box[2], box[3]), c, len(CLASSES), cell_probe.DEFAULT_CELLS)
        for im, box, c in zip(train, boxes, labels, strict=True)
    ]
    set_head(model, *cell_probe.fit_image_cells(per_image, len(CLASSES), cell_probe.DEFAULT_CELLS.C))


def span_boxes_cells_refit(model: torch.nn.Module, train: list, labels: list[int], pooled: np.ndarray) -> None:
    """The cells fit on the span probe's boxes of the training images (explain's default for each image's class):
    the cells classifier before the contrast boxes."""
    span_refit(model, labels, pooled)
    boxes = camloc.explain(model, train, targets=[[c] for c in labels]).boxes
    assert boxes is not None
    boxed_cells_refit(model, train, labels, boxes[:, 0].double().tolist())


def contrast_box_hits(found: np.ndarray, boxes: list[list[int]]) -> str:
    """How many of the training images' contrast boxes `found` (camloc/probe/contrast.py) hit the true box, mean
    IoU, and the median box area over the object's."""
    truth = torch.tensor(boxes).double()
    iou = box_iou(torch.from_numpy(found).double(), truth).diagonal()
    area = np.prod(found[:, 2:] - found[:, :2], axis=1) / np.prod((truth[:, 2:] - truth[:, :2]).numpy(), axis=1)
    return (
        f"{int((iou >= 0.5).sum())}/{len(found)} at IoU >= 0.5, mean IoU {float(iou.mean()):.2f}, "
        f"box area / object area {float(np.median(area)):.1f} (median)"
    )


def contrast_table(seeds: tuple[int, ...], thresholds: tuple[float, ...]) -> None:
    """The contrast boxes of each set's training images at each threshold (what labels the cells classifier): the
    score maps once per set, boxed at every threshold."""
    backbone = camloc.load("default")
    for seed in seeds:
        rng = np.random.default_rng(seed)
        boxed = [disc_or_square(rng, label) for label in (0, 1) for _ in range(30)]
        maps = contrast_maps(backbone, [im for im, _ in boxed], [0] * 30 + [1] * 30)
        for threshold in thresholds:
            hits = contrast_box_hits(boxes_of(maps, threshold), [b for _, b in boxed])
            print(f"seed {seed}, threshold {threshold:g}: {hits}", flush=True)


def fits_table(only: str | None = None, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """The refits of benchmarks/probe_cells.py on three sets (module docstring): classes right, box hits
    (IoU >= 0.5) of discs and squares, mean IoU, fit seconds."""
    print("| set | probe | classes right | disc hits | square hits | mean IoU | refit s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    totals: dict[str, list[int]] = {}
    contrast_notes: list[str] = []
    for seed in seeds:
        n_test = 10 if seed == 0 else 20  # seed 0: the test's set
        rng = np.random.default_rng(seed)
        boxed = [disc_or_square(rng, label) for label in (0, 1) for _ in range(30)]
        train, boxes = [im for im, _ in boxed], [box for _, box in boxed]
        labels = [0] * 30 + [1] * 30
        test = [disc_or_square(rng, i % 2) for i in range(n_test)]
        images, gt = [im for im, _ in test], torch.tensor([box for _, box in test])
        truth = np.array([i % 2 for i in range(n_test)])
        probe = fit_probe(ProbeSet(list(train), labels, CLASSES), "default", classifier="logreg")
        pooled = pooled_at(probe.model, train, SIDE)
        wanted = only.split(",") if only else []
        procedures = {
            k: v
            for k, v in refits(train, labels, pooled, boxes).items()
            if v is None or not wanted or any(w in k for w in wanted)
        }
        name = "the test's (seed 0)" if seed == 0 else f"seed {seed}"
        if any("cells classifier" in k for k in procedures):
            found = contrast_boxes(camloc.load("default"), train, labels)
            contrast_notes.append(f"{name}: {contrast_box_hits(found, boxes)}")
        for proc, refit in procedures.items():
            model = copy.deepcopy(probe.model)
            t0 = time.perf_counter()
            if refit is not None:
                refit(model)
            seconds = time.perf_counter() - t0
            res = camloc.explain(model, images, top_k=1)
            iou = box_iou(res.boxes[:, 0].cpu(), gt).diagonal().numpy()
            right = int((res.classes[:, 0].numpy() == truth).sum())
            hits = [int((iou[truth == c] >= 0.5).sum()) for c in (0, 1)]
            half = n_test // 2
            print(
                f"| {name} | {proc} | {right}/{n_test} | {hits[0]}/{half} | {hits[1]}/{half} | {iou.mean():.2f} | "
                f"{seconds:.0f} |",
                flush=True,
            )
            total = totals.setdefault(proc, [0, 0, 0])
            total[0] += right
            total[1] += hits[0] + hits[1]
            total[2] += n_test
    print(
        f"\n| probe | classes right | box hits (all {sum(10 if seed == 0 else 20 for seed in seeds)} test images) |\n|---|---:|---:|"
    )
    for proc, (right, hit, n) in totals.items():
        print(f"| {proc} | {right}/{n} | {hit}/{n} |")
    if contrast_notes:
        print("\nthe contrast boxes of the training images (what labels the cells classifier's cells):")
        print("\n".join(f"- {note}" for note in contrast_notes))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fits", action="store_true", help="the refits of benchmarks/probe_cells.py instead")
    p.add_argument(
        "--only",
        default=None,
        help="with --fits: only the refits whose name contains one of these (comma-separated; and plain)",
    )
    p.add_argument(
        "--seeds", default="0,1,2", help="with --fits: the sets' seeds (default 0,1,2; 0 is the test's set, 10 images)"
    )
    p.add_argument(
        "--contrast",
        default=None,
        help="instead: the contrast boxes of the training images of --seeds at these thresholds (e.g. 0.3,0.7)",
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    if args.contrast:
        contrast_table(tuple(int(v) for v in args.seeds.split(",")), tuple(float(v) for v in args.contrast.split(",")))
        return
    if args.fits:
        fits_table(args.only, tuple(int(v) for v in args.seeds.split(",")))
        return
    for name, background in (("per-pixel noise (the test)", "pixels"), ("smooth noise", "smooth")):
        rng = np.random.default_rng(0)
        train = [disc_or_square(rng, label, background)[0] for label in (0, 1) for _ in range(30)]
        labels = [0] * 30 + [1] * 30
        probe = fit_probe(ProbeSet(list(train), labels, CLASSES), "default", classifier="logreg")
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
        right, total = far_cells_carry_class(backbone, train, labels, images, gt)
        print(
            f"test cells two or more cells from the object classified as the image by a fit on the training images' "
            f"cells (each labelled with its image's class): {right}/{total} ({100 * right / total:.0f}%; chance 50%)"
        )
        print(
            f"classes right when the image is given at 448 x 448: {int((at448.classes[:, 0].numpy() == truth).sum())}/10"
        )


if __name__ == "__main__":
    main()
