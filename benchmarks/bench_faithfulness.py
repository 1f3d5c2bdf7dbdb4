"""Faithfulness next to localization for every map method on the default model, and what it costs.

    python benchmarks/bench_faithfulness.py table [--methods cam gradcam ...] [--map-sizes 640|native]
    python benchmarks/bench_faithfulness.py speed [--method cam] [--n 100]
    python benchmarks/bench_faithfulness.py imputer

The image set is the pasted-object set of `bench_resolution.py` (imported, not copied; 76 images with exact
boxes; the same set as docs/resolution.md and the methods tables of docs/methods.md). The target class of an image
is the model's top-1 class on the isolated object, the same for every method; maps come from
`camloc.explain(model, images, targets=..., method=NAME, map_sizes=...)` in batches, as `camloc evaluate` runs it.

`table`: per method, GT-known loc (the box `explain` returns, IoU >= 0.5), the pointing game (15 px) and its
"difficult" subset (object under 25% of the image), and `camloc.localize.faithfulness.faithfulness_scores` on
the classification input (shorter side 224) with the map resized to it: deletion / insertion AUC (20 steps, RISE
baselines: black / blurred), average drop and increase in confidence (softmax, %), ROAD MoRF / LeRF mean softmax
over 10-90% removed (noise 0.01). Seconds per image of the maps and of the faithfulness metrics.

`speed`: the issue's cost target. n images (the set built with 2 images per cell, a seeded random n), one method:
the maps (explain, batches of 16) timed against each metric family (deletion + insertion, average drop +
increase, ROAD, the pointing game), end to end in the same process, and the ratio faithfulness / maps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import camloc
from camloc.boxes import box_iou
from camloc.localize.faithfulness import (
    FaithfulnessAccumulator,
    FaithfulnessSettings,
    faithfulness_scores,
    object_fraction,
    pointing_hit,
)
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resolution import build_set  # the localization set of docs/resolution.md

METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "scorecam")
FAMILIES = {
    "deletion+insertion": ("deletion", "insertion"),
    "average-drop+increase": ("average-drop", "increase"),
    "road": ("road",),
}


def sizes_arg(text: str) -> tuple[int, ...]:
    return () if text == "native" else tuple(int(s) for s in text.split(","))


def explain_batches(model, samples, method: str, sizes, batch: int = 16) -> tuple[list[torch.Tensor], list, float]:
    """Maps (H, W) at each image's size and boxes, in batches of `batch`; seconds spent (after a warm-up call)."""
    camloc.explain(model, samples[0].image, targets=[[samples[0].target]], method=method, map_sizes=sizes)
    maps, boxes, seconds = [], [], 0.0
    for a in range(0, len(samples), batch):
        chunk = samples[a : a + batch]
        t0 = time.perf_counter()
        res = camloc.explain(
            model, [s.image for s in chunk], targets=[[s.target] for s in chunk], method=method, map_sizes=sizes
        )
        seconds += time.perf_counter() - t0
        maps += [m[0].float().cpu() for m in res.maps]
        boxes += [b[0].cpu() for b in res.boxes]
    return maps, boxes, seconds


def model_inputs(model, samples, maps) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input (3, h, w) at the classification size, the map resized to it and min-max normalised) per image."""
    pre = info_of(model).preprocess
    out = []
    for s, m in zip(samples, maps, strict=True):
        x = image_to_tensor(s.image, pre.input_size, pre)
        r = F.interpolate(m[None, None], size=x.shape[-2:], mode="bilinear", antialias=True)[0, 0]
        out.append((x, (r - r.min()) / (r.max() - r.min()).clamp(min=1e-12)))
    return out


def score_all(model, samples, inputs, settings: FaithfulnessSettings, group: int = 16) -> tuple[dict, float]:
    """faithfulness_scores over the set, `group` images of one input shape per call; report and seconds."""
    acc = FaithfulnessAccumulator(settings)
    by_shape: dict = {}
    for i, (x, _) in enumerate(inputs):
        by_shape.setdefault(tuple(x.shape), []).append(i)
    t0 = time.perf_counter()
    for idx in by_shape.values():
        for a in range(0, len(idx), group):
            part = idx[a : a + group]
            x = torch.stack([inputs[i][0] for i in part])
            m = torch.stack([inputs[i][1] for i in part])
            t = torch.tensor([samples[i].target for i in part])
            acc.add_scores(faithfulness_scores(model, x, m, t, settings, seeds=part))
    return acc.report(), time.perf_counter() - t0


def pointing(samples, maps, tolerance: float = 15.0) -> tuple[float, float, int, float]:
    """Pointing game % (all, difficult), the difficult count, seconds."""
    t0 = time.perf_counter()
    hits, difficult = [], []
    for s, m in zip(samples, maps, strict=True):
        box = np.array([s.box])
        hits.append(pointing_hit(m.numpy(), box, tolerance=tolerance))
        difficult.append(object_fraction(s.image.size, box) < 0.25)
    hits, difficult = np.array(hits), np.array(difficult)
    return 100 * hits.mean(), 100 * hits[difficult].mean(), int(difficult.sum()), time.perf_counter() - t0


def table(args) -> None:
    model = camloc.load("default")
    samples = build_set(model, per_cell=1, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "native" if not args.map_sizes else "-".join(map(str, args.map_sizes))
    for method in args.methods:
        t0 = time.time()
        maps, boxes, map_s = explain_batches(model, samples, method, args.map_sizes)
        loc = 100 * np.mean(
            [float(box_iou(b[None], torch.tensor([s.box]))[0, 0]) >= 0.5 for s, b in zip(samples, boxes, strict=True)]
        )
        t1 = time.perf_counter()
        inputs = model_inputs(model, samples, maps)
        seconds = {"inputs + resized maps": time.perf_counter() - t1}
        pg, pg_diff, n_diff, seconds["pointing-game"] = pointing(samples, maps)
        path = args.out / f"{method}-{tag}.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        rep: dict = old.get("faithfulness", {})
        seconds = {**old.get("seconds", {}), **seconds}
        for name in args.families:  # timed family by family (each repeats the 1-pass input score)
            metrics = FAMILIES[name]
            part, seconds[name] = score_all(model, samples, inputs, FaithfulnessSettings(metrics=metrics))
            rep.update(part)
            print(f"  {method} {name}: {seconds[name]:.0f} s", flush=True)
        faith_s = sum(v for k, v in seconds.items() if k != "maps")
        row = {
            "method": method,
            "map_sizes": list(args.map_sizes),
            "n_images": len(samples),
            "gt_known_loc": loc,
            "pointing_game": pg,
            "pointing_game_difficult": pg_diff,
            "n_difficult": n_diff,
            "faithfulness": rep,
            "map_seconds_per_image": map_s / len(samples),
            "faithfulness_seconds_per_image": faith_s / len(samples),
            "seconds": {**seconds, "maps": map_s},
            "threads": torch.get_num_threads(),
        }
        path.write_text(json.dumps(row, indent=1))
        print(f"{method}: {time.time() - t0:.0f} s", flush=True)
    print_table(args.out, args.methods, tag)


def print_table(out: Path, methods, tag: str) -> None:
    print(f"\n# efficientnet-lite0, pasted-object set (bench_resolution.py), map sizes {tag}")
    print(
        "| method | GT-known loc | pointing game (difficult) | deletion AUC (lower better) | insertion AUC | "
        "average drop % | increase % | ROAD MoRF / LeRF | s / image maps | s / image faithfulness |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for m in methods:
        path = out / f"{m}-{tag}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        f = r["faithfulness"]
        road = f"{f['road']['morf']:.3f} / {f['road']['lerf']:.3f}" if "road" in f else "(not run)"
        print(
            f"| {m} | {r['gt_known_loc']:.1f} | {r['pointing_game']:.1f} ({r['pointing_game_difficult']:.1f}) | "
            f"{f['deletion_auc']:.4f} | {f['insertion_auc']:.4f} | {f['average_drop']:.1f} | "
            f"{f['increase_in_confidence']:.1f} | {road} | "
            f"{r['map_seconds_per_image']:.2f} | {r['faithfulness_seconds_per_image']:.2f} |"
        )


def speed(args) -> None:
    model = camloc.load("default")
    pool = build_set(model, per_cell=2, seed=0)
    pick = np.sort(np.random.default_rng(0).choice(len(pool), size=min(args.n, len(pool)), replace=False))
    samples = [pool[i] for i in pick]
    maps, _, map_s = explain_batches(model, samples, args.method, args.map_sizes)
    t0 = time.perf_counter()
    inputs = model_inputs(model, samples, maps)
    prep_s = time.perf_counter() - t0
    rows = {"inputs + resized maps": prep_s}
    for name, metrics in FAMILIES.items():
        _, rows[name] = score_all(model, samples, inputs, FaithfulnessSettings(metrics=metrics))
    rows["pointing-game"] = pointing(samples, maps)[3]
    total = sum(rows.values())
    tag = "native" if not args.map_sizes else "-".join(map(str, args.map_sizes))
    print(
        f"# {len(samples)} images, method {args.method}, map sizes {tag}, efficientnet-lite0, cpu, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"{'part':<26}{'seconds':>9}{'s / image':>11}{'x maps':>9}")
    print(f"{'maps (explain)':<26}{map_s:9.1f}{map_s / len(samples):11.3f}{1:9.2f}")
    for name, sec in rows.items():
        print(f"{name:<26}{sec:9.1f}{sec / len(samples):11.3f}{sec / map_s:9.2f}")
    print(f"{'all faithfulness metrics':<26}{total:9.1f}{total / len(samples):11.3f}{total / map_s:9.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"n": len(samples), "method": args.method, "maps": map_s, **rows}, indent=1))


def imputer(args) -> None:
    """ROAD's imputation of one 224 x 298 photo (skimage's chelsea) under a smooth map, 10 / 50 / 90% removed:
    pytorch-grad-cam's reference (direct sparse solve) and camloc's solver one after the other, time and gap."""
    import skimage.data
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from camloc.localize.faithfulness import noisy_linear_impute, removal_keep

    torch.manual_seed(0)
    img = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float() / 255
    x = (F.interpolate(img[None], size=(224, 298), mode="bilinear") - 0.45) / 0.225
    m = F.interpolate(torch.rand(1, 1, 7, 9), size=(224, 298), mode="bilinear")[0]
    print(f"# ROAD imputation, 3 x 224 x 298, noise 0, {torch.get_num_threads()} threads")
    print(f"{'removed':>8}{'reference s':>13}{'camloc s':>10}{'ratio':>7}{'max |diff|':>12}")
    for frac in (0.1, 0.5, 0.9):
        keep = removal_keep(m, frac, True)
        t0 = time.perf_counter()
        ref = NoisyLinearImputer(noise=0)(x[0], keep[0].float())
        t1 = time.perf_counter()
        ours = noisy_linear_impute(x, keep, noise=0)[0]
        t2 = time.perf_counter()
        gap = float((ours - ref).abs().max())
        print(f"{frac:>8.0%}{t1 - t0:>13.3f}{t2 - t1:>10.3f}{(t1 - t0) / (t2 - t1):>6.1f}x{gap:>12.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("table")
    t.add_argument("--methods", nargs="+", default=list(METHODS[:5]))
    t.add_argument("--map-sizes", type=sizes_arg, default=(640,), help="'640' (default) or 'native'")
    t.add_argument("--out", type=Path, default=Path("bench-results/faithfulness"))
    t.add_argument("--print", action="store_true", help="only print the table of saved results")
    t.add_argument(
        "--families",
        nargs="+",
        choices=list(FAMILIES),
        default=list(FAMILIES),
        help="metric families to (re)compute; the others' saved numbers are kept (ROAD is the costly one)",
    )
    s = sub.add_parser("speed")
    s.add_argument("--method", default="cam")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--map-sizes", type=sizes_arg, default=(640,))
    s.add_argument("--out", type=Path, default=Path("bench-results/faithfulness-speed.json"))
    sub.add_parser("imputer")
    args = ap.parse_args()
    if args.mode == "imputer":
        imputer(args)
    elif args.mode == "table" and args.print:
        print_table(args.out, args.methods, "native" if not args.map_sizes else "-".join(map(str, args.map_sizes)))
    elif args.mode == "table":
        table(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
