"""CAM and the gradient / score family side by side on the default ImageNet model: localization alone.

The set (`--set`, benchmarks/locsets.py): by default the 431-image localization set of docs/resolution.md
(`make locset`; groups small / medium / large / whole-frame / real photos); `pasted76` is the earlier 76-image
pasted-object set, kept for comparison. The target class of an image is the model's top-1 class on the isolated
object, the same for every method, so the numbers measure localization alone. `--n N` takes the first N images of
a seeded stratified order (the same fraction of every group; Score-CAM's subset in docs/methods.md).

Every method runs through `camloc.explain(model, image, targets=[[target]], method=NAME)`, the path
`camloc explain --method NAME` takes, one image per call, at the library's default map procedure (the zoom;
`--map-sizes native|640|...` switches it off). Per method:

- GT-known loc: the box `explain` returns (its default box rule) has IoU >= 0.5 with a box of the object
  (`camloc.boxes.box_iou`, x1 / y1 exclusive), overall and per group with 95% bootstrap intervals;
- MaxBoxAcc (largest contour, IoU 50) and MaxBoxAccV2 (all contours, IoU 30 / 50 / 70 and their mean) from
  `camloc.localize.metrics.BoxAccuracy` on `Result.maps` (min-max normalised, at the image's own size: the "native"
  variant of the protocol; GT boxes made inclusive, x1 - 1, y1 - 1). The CAM threshold is not chosen on the images
  it is reported on: the set is split in two halves (even / odd index), the best threshold of one half is applied
  to the other, and the hits of both halves are added ("2-fold"). The best threshold on all images (MaxBoxAcc's
  own definition, optimistic) is printed as well;
- seconds per image of the `explain` call (classification pass, maps, upsampling, boxes), after one untimed
  warm-up call.

    python benchmarks/compare_methods_imagenet.py [--set .cache/locset|pasted76] [--methods cam gradcam ...]
        [--n N] [--map-sizes default|native|640|...] [--out bench-results/methods-imagenet] [--table]

The same GT-known and MaxBoxAccV2 numbers come out of `bench_faithfulness.py table`, next to the faithfulness
metrics (docs/methods.md); this script is the localization-only check, one image per call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import camloc
from camloc.boxes import box_iou
from camloc.localize.metrics import IOU_LEVELS, BoxAccuracy, cam_thresholds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resolution import MAIN_GROUPS, boot_ci
from locsets import PASTED76, load_samples, stratified_order

METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "scorecam")


def sizes_arg(text: str) -> tuple[int, ...] | None:
    if text == "default":
        return None
    return () if text == "native" else tuple(int(s) for s in text.split(","))


def sizes_tag(sizes: tuple[int, ...] | None) -> str:
    return "zoom" if sizes is None else "native" if not sizes else "-".join(map(str, sizes))


def cross_calibrated(halves: list[BoxAccuracy]) -> dict:
    """Each half scored at the other half's best threshold (per variant and IoU level); hits added, in percent."""
    out: dict = {}
    n = sum(h.n for h in halves)
    for v, name in enumerate(("maxboxacc", "maxboxacc_v2")):
        scores = {}
        for j, level in enumerate(halves[0].iou_levels):
            hits = sum(
                int(h.hits[v, j, int(np.argmax(o.hits[v, j]))]) for h, o in zip(halves, halves[::-1], strict=False)
            )
            scores[str(level)] = 100.0 * hits / n
        scores["mean"] = float(np.mean([scores[str(level)] for level in halves[0].iou_levels]))
        out[name] = scores
    return out


def run_method(model: torch.nn.Module, samples: list, method: str, sizes: tuple[int, ...] | None) -> dict:
    thresholds = cam_thresholds(0.01)
    halves = [BoxAccuracy(thresholds, IOU_LEVELS), BoxAccuracy(thresholds, IOU_LEVELS)]
    hits, seconds = [], 0.0
    first = samples[0]  # untimed warm-up: layer discovery and the first call's one-off set-up
    camloc.explain(model, first.image, targets=[[first.target]], method=method, map_sizes=sizes)
    for s in samples:
        t0 = time.perf_counter()
        res = camloc.explain(model, s.image, targets=[[s.target]], method=method, map_sizes=sizes)
        seconds += time.perf_counter() - t0
        gt = torch.tensor(s.boxes)
        hits.append(float(box_iou(res.boxes[0, :1].cpu(), gt)[0].max()) >= 0.5)
        halves[s.index % 2].accumulate(res.maps[0, 0].float().cpu().numpy(), np.array(s.boxes) - np.array([0, 0, 1, 1]))
    both = BoxAccuracy(thresholds, IOU_LEVELS)
    both.set_counts(halves[0].counts() + halves[1].counts())
    return {
        "method": method,
        "map_sizes": "zoom" if sizes is None else list(sizes),
        "n_images": len(samples),
        "gt_known_loc": 100.0 * float(np.mean(hits)),
        "groups": per_group(samples, hits),
        "hits": hits,
        "two_fold": cross_calibrated(halves),
        "best_on_all": {k: v for k, v in both.summary().items() if k != "best_threshold"},
        "seconds_per_image": seconds / len(samples),
        "threads": torch.get_num_threads(),
    }


def per_group(samples: list, hits: list[bool]) -> dict:
    """GT-known loc % per group with its 95% bootstrap interval and the group's size."""
    rng = np.random.default_rng(0)
    out = {}
    for g in dict.fromkeys(s.group for s in samples):
        h = np.array([hit for s, hit in zip(samples, hits, strict=True) if s.group == g], dtype=float)
        out[g] = [100 * float(h.mean()), *boot_ci(h, rng), len(h)]
    return out


def print_table(out: Path, methods: list[str], tag: str) -> None:
    print(
        "| method | n | GT-known loc | "
        + " | ".join(MAIN_GROUPS)
        + " | MaxBoxAcc 50 | MaxBoxAccV2 30 / 50 / 70 (2-fold) | mean | mean, best on all | s / image |"
    )
    print("|---|---:|---:|" + "---|" * len(MAIN_GROUPS) + "---:|---|---:|---:|---:|")
    for m in methods:
        path = out / f"{m}-{tag}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        a, v = r["two_fold"]["maxboxacc"], r["two_fold"]["maxboxacc_v2"]
        gs = r.get("groups", {})
        cells = " | ".join(f"{gs[g][0]:.1f} [{gs[g][1]:.0f}-{gs[g][2]:.0f}]" if g in gs else "-" for g in MAIN_GROUPS)
        print(
            f"| {m} | {r['n_images']} | {r['gt_known_loc']:.1f} | {cells} | {a['50']:.1f} | {v['30']:.1f} / {v['50']:.1f} / {v['70']:.1f} | "
            f"{v['mean']:.1f} | {r['best_on_all']['maxboxacc_v2']['mean']:.1f} | {r['seconds_per_image']:.2f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--set", default=".cache/locset", help=f"a locset folder (default) or '{PASTED76}'")
    ap.add_argument("--n", type=int, default=None, help="the first n images of the stratified order")
    ap.add_argument(
        "--map-sizes", type=sizes_arg, default=None, help="'default' (the zoom; default), 'native' or e.g. '640'"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench-results/methods-imagenet"))
    ap.add_argument("--table", action="store_true", help="only print the table of saved results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tag = sizes_tag(args.map_sizes)
    args.out = args.out / (PASTED76 if args.set == PASTED76 else Path(args.set).name) / f"n{args.n or 'all'}"
    desc = ""
    if not args.table:
        args.out.mkdir(parents=True, exist_ok=True)
        model = camloc.load("default").eval()
        samples, desc = load_samples(model, args.set)
        samples = [samples[i] for i in sorted(stratified_order(samples, seed=0)[: args.n])]
        for m in args.methods:
            t0 = time.time()
            r = run_method(model, samples, m, args.map_sizes)
            (args.out / f"{m}-{tag}.json").write_text(json.dumps(r, indent=1))
            print(f"{m} (map sizes {tag}): {len(samples)} images, {time.time() - t0:.0f} s", flush=True)
    print(f"\n# efficientnet-lite0, {desc or args.set}, maps {tag}, {torch.get_num_threads()} threads")
    print_table(args.out, args.methods, tag)


if __name__ == "__main__":
    main()
