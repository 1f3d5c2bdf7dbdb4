"""Localization and faithfulness of every map method on the default model, side by side, and what they cost.

    python benchmarks/bench_faithfulness.py table [--set .cache/locset|pasted76] [--methods cam gradcam ...]
        [--n-scorecam 8] [--n-perturb-first 16] [--n-perturb N] [--print]
    python benchmarks/bench_faithfulness.py speed [--method cam] [--n 100]
    python benchmarks/bench_faithfulness.py imputer

The image set (`--set`, benchmarks/locsets.py): by default the 431-image localization set of docs/resolution.md
(`make locset`); `pasted76` is the earlier 76-image set. The target class of an image is the model's top-1 class
on the isolated object, the same for every method. Maps come from `camloc.explain(model, images, targets=...,
method=NAME)` at the library's DEFAULT settings (the zoom, docs/resolution.md), 16 images per call, as a user runs
it; `--map-sizes 640` / `native` switch the zoom off for comparison.

`table`, per method and image (cached in `--out`/<set>/<method>.jsonl, so a cut run resumes where it stopped):
- GT-known loc: the box `explain` returns has IoU >= 0.5 with a box of the object; per group with 95% bootstrap
  intervals (2000 resamples of the group's images, as docs/resolution.md);
- MaxBoxAccV2 (all contours, IoU 30 / 50 / 70, mean) from `camloc.localize.metrics.BoxAccuracy` on the maps at the
  image's size, 2-fold: each half of the set (even / odd index) scored at the other half's best threshold;
- the pointing game (15 px) and its "difficult" subset (object under 1/4 of the image);
- `camloc.localize.faithfulness.faithfulness_scores` on the classification input (shorter side 224) with the map
  resized to it: deletion / insertion AUC (20 steps, RISE's baselines), average drop / increase in confidence (%),
  ROAD MoRF / LeRF mean softmax over 10-90% removed (noise 0.01, one seed per image);
- seconds per image of the maps (the explain call) and of each metric family.
Score-CAM (a forward pass per channel of the layer, at both passes of the zoom) runs on the first `--n-scorecam`
images of a seeded stratified order (the same fraction of every group); deletion / insertion and ROAD on the
first `--n-perturb` of the same order, image chunk by image chunk with every method inside a chunk, so a cut run
leaves the same images for every method (the table says how many). A method whose map of an image is identical,
bit for bit, to a map already scored (xgradcam and gradcam at this CAM-exact layer) reuses those scores and says so.

`speed`: the issue's cost target. n images of the set (the first n of the stratified order), one method: the maps
(explain at the default, batches of 16) timed against each metric family (deletion + insertion, average drop +
increase, ROAD, the pointing game), end to end in the same process, and the ratio metrics / maps.
"""

from __future__ import annotations

import argparse
import hashlib
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
    image_seed,
    object_fraction,
    pointing_hit,
)
from camloc.localize.metrics import IOU_LEVELS, BoxAccuracy, cam_thresholds
from camloc.methods.base import input_layout
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resolution import MAIN_GROUPS, boot_ci  # the groups and intervals of docs/resolution.md
from locsets import PASTED76, load_samples, stratified_order

METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "scorecam")
FAMILIES = {
    "deletion+insertion": ("deletion", "insertion"),
    "average-drop+increase": ("average-drop", "increase"),
    "road": ("road",),
}
CHEAP, PERTURB = ("average-drop+increase",), ("deletion+insertion", "road")
PER_IMAGE_KEYS = ("score", "correct", "deletion", "insertion", "drop", "absolute_drop", "increase")
ROAD_KEYS = ("road_morf", "road_lerf", "road_morf_correct", "road_lerf_correct")
THRESHOLDS = cam_thresholds(0.01)
CHUNK = 16


def sizes_arg(text: str) -> tuple[int, ...] | None:
    if text == "default":
        return None
    return () if text == "native" else tuple(int(s) for s in text.split(","))


def sizes_tag(sizes: tuple[int, ...] | None) -> str:
    return "zoom" if sizes is None else "native" if not sizes else "-".join(map(str, sizes))


def set_tag(where: str | Path) -> str:
    return PASTED76 if str(where) == PASTED76 else Path(where).name


def explain_batches(model, samples, method: str, sizes, batch: int = CHUNK) -> tuple[list, list, list[float]]:
    """Maps (H, W) at each image's size, boxes, and seconds per image (each call's time shared by its images)."""
    maps, boxes, seconds = [], [], []
    for a in range(0, len(samples), batch):
        chunk = samples[a : a + batch]
        t0 = time.perf_counter()
        res = camloc.explain(
            model, [s.image for s in chunk], targets=[[s.target] for s in chunk], method=method, map_sizes=sizes
        )
        dt = time.perf_counter() - t0
        maps += [m[0].float().cpu() for m in res.maps]
        boxes += [b[0].cpu() for b in res.boxes]
        seconds += [dt / len(chunk)] * len(chunk)
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


def per_image_scores(model, samples, inputs, family: str, group: int = CHUNK) -> tuple[list[dict], list[float]]:
    """faithfulness_scores of one metric family, images of one input shape per call -> per-image values, seconds
    per image (each call's time shared by its images)."""
    settings = FaithfulnessSettings(metrics=FAMILIES[family])
    values: list[dict] = [{} for _ in samples]
    seconds = [0.0] * len(samples)
    by_shape: dict = {}
    for i, (x, _) in enumerate(inputs):
        by_shape.setdefault(tuple(x.shape), []).append(i)
    for idx in by_shape.values():
        for a in range(0, len(idx), group):
            part = idx[a : a + group]
            x = torch.stack([inputs[i][0] for i in part])
            m = torch.stack([inputs[i][1] for i in part])
            t = torch.tensor([samples[i].target for i in part])
            t0 = time.perf_counter()
            out = faithfulness_scores(model, x, m, t, settings, seeds=[image_seed(samples[i].name) for i in part])
            dt = time.perf_counter() - t0
            for j, i in enumerate(part):
                values[i] = {k: v[j].tolist() for k, v in out.items() if k in PER_IMAGE_KEYS + ROAD_KEYS}
                seconds[i] = dt / len(part)
    return values, seconds


def map_digest(inp: tuple[torch.Tensor, torch.Tensor], target: int) -> str:
    return hashlib.sha1(inp[1].numpy().tobytes() + str(target).encode()).hexdigest()


def _parse(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


class Cache:
    """Per-image records of one method, appended to a JSONL file; later lines update earlier ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                record = _parse(line)
                if record is not None:  # None: a line cut by a killed run (or being written), skipped
                    self._merge(record)

    def _merge(self, r: dict) -> None:
        old = self.records.setdefault(r["name"], {"faith": {}, "faith_s": {}})
        old.update({k: v for k, v in r.items() if k not in ("faith", "faith_s")})
        old["faith"].update(r.get("faith", {}))
        old["faith_s"].update(r.get("faith_s", {}))

    def add(self, record: dict) -> None:
        self._merge(record)
        cut = self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        with self.path.open("a") as f:
            f.write(("\n" if cut else "") + json.dumps(record) + "\n")

    def missing(self, name: str, families) -> list[str]:
        r = self.records.get(name)
        if r is None or "loc" not in r:
            return ["maps", *families]
        return [f for f in families if f not in r["faith"]]


def process(model, samples, indices, method: str, families, caches: dict[str, Cache], sizes) -> None:
    """Maps, localization and the given metric families of `method` on samples[indices], what is not cached."""
    cache = caches[method]
    todo = [i for i in indices if cache.missing(samples[i].name, families)]
    if not todo:
        return
    chunk = [samples[i] for i in todo]
    maps, boxes, map_s = explain_batches(model, chunk, method, sizes)
    inputs = model_inputs(model, chunk, maps)
    records = []
    for k, (i, s) in enumerate(zip(todo, chunk, strict=True)):
        gt = np.array(s.boxes, dtype=np.int64)
        acc = BoxAccuracy(THRESHOLDS, IOU_LEVELS)
        acc.accumulate(maps[k].numpy(), gt - np.array([0, 0, 1, 1]))  # inclusive boxes
        records.append(
            {
                "name": s.name,
                "index": i,
                "group": s.group,
                "map_s": map_s[k],
                "map_sha1": map_digest(inputs[k], s.target),
                "loc": bool(float(box_iou(boxes[k][None], torch.tensor(gt))[0].max()) >= 0.5),
                "maxbox": np.packbits(acc.hits.astype(bool).ravel()).tobytes().hex(),
                "pointing": pointing_hit(maps[k].numpy(), gt, tolerance=15.0),
                "difficult": object_fraction(s.image.size, gt) < 0.25,
                "faith": {},
                "faith_s": {},
            }
        )
    for fam in families:
        need = [k for k, r in enumerate(records) if fam not in cache.records.get(r["name"], {}).get("faith", {})]
        fresh = []
        for k in need:  # the same map already scored by another method: reuse (bit-identical maps only)
            r = records[k]
            donor = next(
                (
                    c.records[r["name"]]
                    for m, c in caches.items()
                    if m != method
                    and c.records.get(r["name"], {}).get("map_sha1") == r["map_sha1"]
                    and fam in c.records[r["name"]]["faith"]
                ),
                None,
            )
            if donor is None:
                fresh.append(k)
            else:
                r["faith"][fam] = donor["faith"][fam]
                r["faith_s"][fam] = donor["faith_s"][fam]
                r.setdefault("reused", []).append(fam)
        if fresh:
            vals, secs = per_image_scores(model, [chunk[k] for k in fresh], [inputs[k] for k in fresh], fam)
            for k, v, sec in zip(fresh, vals, secs, strict=True):
                records[k]["faith"][fam] = v
                records[k]["faith_s"][fam] = sec
    for r in records:
        cache.add(r)


def table(args) -> None:
    torch.set_num_threads(args.threads)
    model = camloc.load("default").eval()
    samples, desc = load_samples(model, args.set)
    order = stratified_order(samples, seed=0)[: args.n]
    out = args.out / f"{set_tag(args.set)}-{sizes_tag(args.map_sizes)}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "set.json").write_text(json.dumps({"description": desc, "order": [samples[i].name for i in order]}))
    caches = {m: Cache(out / f"{m}.jsonl") for m in args.methods}
    cheap = [m for m in args.methods if m != "scorecam"]
    t0 = time.time()
    for m in cheap:  # maps, localization and the cheap metrics on every image
        for a in range(0, len(order), CHUNK):
            process(model, samples, order[a : a + CHUNK], m, CHEAP, caches, args.map_sizes)
        print(f"{m}: localization + {CHEAP[0]} on {len(order)} images, {time.time() - t0:.0f} s", flush=True)

    def perturb(sub: list[int]) -> None:
        for a in range(0, len(sub), args.perturb_chunk):
            for m in cheap:
                process(model, samples, sub[a : a + args.perturb_chunk], m, PERTURB, caches, args.map_sizes)
            print(f"{' + '.join(PERTURB)}: {min(a + args.perturb_chunk, len(sub))} / {len(sub)} images, "
                  f"{time.time() - t0:.0f} s", flush=True)  # fmt: skip

    perturb(order[: min(args.n_perturb_first, args.n_perturb)])  # a first share, so that a cut run has some
    if "scorecam" in args.methods:
        sub = order[: args.n_scorecam]
        for a in range(0, len(sub), 2):
            process(model, samples, sub[a : a + 2], "scorecam", (*CHEAP, *PERTURB), caches, args.map_sizes)
            print(f"scorecam: {min(a + 2, len(sub))} / {len(sub)} images, {time.time() - t0:.0f} s", flush=True)
    perturb(order[: args.n_perturb])
    print_table(out, args.methods)


# ------------------------------------------------------------------ the table


def two_fold_v2(records: list[dict]) -> float:
    """MaxBoxAccV2 mean over IoU 30/50/70, each half (even / odd set index) at the other half's best threshold."""
    shape = (2, len(IOU_LEVELS), len(THRESHOLDS))
    halves = [np.zeros(shape, np.int64), np.zeros(shape, np.int64)]
    for r in records:
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(r["maxbox"]), np.uint8))[: np.prod(shape)]
        halves[r["index"] % 2] += bits.reshape(shape)
    hits = [sum(int(h[1, j, int(np.argmax(o[1, j]))]) for h, o in zip(halves, halves[::-1], strict=True))
            for j in range(len(IOU_LEVELS))]  # fmt: skip
    return 100.0 * float(np.mean(hits)) / len(records)


def faith_report(records: list[dict], family: str) -> dict:
    acc = FaithfulnessAccumulator(FaithfulnessSettings(metrics=FAMILIES[family]))
    vals = [r["faith"][family] for r in records]
    acc.add_scores({k: torch.tensor([v[k] for v in vals]) for k in vals[0]})
    return acc.report()


def summarise(records: list[dict], common: dict[str, set[str]]) -> dict:
    """One row of the table from a method's per-image records; the perturbation columns on `common[family]`."""
    rng = np.random.default_rng(0)
    hits = np.array([r["loc"] for r in records], dtype=float)
    row: dict = {"n": len(records), "loc": 100 * hits.mean(), "loc ci": boot_ci(hits, rng)}
    for g in MAIN_GROUPS:
        gh = np.array([r["loc"] for r in records if r["group"] == g], dtype=float)
        row[g] = (100 * gh.mean() if len(gh) else float("nan"), *boot_ci(gh, rng), len(gh))
    row["v2"] = two_fold_v2(records)
    pg = np.array([r["pointing"] for r in records], dtype=float)
    diff = np.array([r["difficult"] for r in records], dtype=bool)
    row["pointing"], row["pointing difficult"], row["n difficult"] = 100 * pg.mean(), 100 * pg[diff].mean(), diff.sum()
    row["map_s"] = float(np.mean([r["map_s"] for r in records]))
    faith_s = 0.0
    for fam in FAMILIES:
        done = [r for r in records if fam in r["faith"] and r["name"] in common[fam]]
        if done:
            row[fam] = faith_report(done, fam)
            row[fam + " n"] = len(done)
            row[fam + " reused"] = sum(fam in r.get("reused", []) for r in done)
            faith_s += float(np.mean([r["faith_s"][fam] for r in done]))
    row["faith_s"] = faith_s
    return row


def print_table(out: Path, methods) -> None:
    caches = {m: Cache(out / f"{m}.jsonl") for m in methods}
    caches = {m: c for m, c in caches.items() if c.records}
    if not caches:
        print(f"nothing measured in {out}")
        return
    desc = json.loads((out / "set.json").read_text())["description"]
    common = {}  # per family, the images every method but Score-CAM has: rows compare like with like
    for fam in FAMILIES:
        sets = [{n for n, r in c.records.items() if fam in r["faith"]} for m, c in caches.items() if m != "scorecam"]
        common[fam] = set.intersection(*sets) if sets else set()
    own = {fam: set(caches["scorecam"].records) if "scorecam" in caches else set() for fam in FAMILIES}
    rows = {m: summarise(list(c.records.values()), own if m == "scorecam" else common) for m, c in caches.items()}
    print_rows(rows, f"# efficientnet-lite0, {desc}, maps from {out.name.split('-')[-1]}, "
               f"{torch.get_num_threads()} threads")  # fmt: skip
    rows["paired"] = print_paired(caches, common)
    rows["cost"] = print_cost(caches)
    subset = (
        {n for n, r in caches["scorecam"].records.items() if "road" in r["faith"]} if "scorecam" in caches else set()
    )
    if subset:  # every method on Score-CAM's images, every column on the same images
        same = dict.fromkeys(FAMILIES, subset)
        sub_rows = {
            m: summarise([r for n, r in c.records.items() if n in subset], same)
            for m, c in caches.items()
            if subset <= set(c.records)
        }
        print_rows(sub_rows, f"\n# the same, on Score-CAM's {len(subset)} images (stratified subset)")
        rows["scorecam subset"] = sub_rows
    (out / "table.json").write_text(json.dumps(rows, indent=1, default=float))


PAIRED = {  # column -> (family or None, per-image value)
    "GT-known loc": (None, lambda r: 100.0 * r["loc"]),
    "pointing game": (None, lambda r: 100.0 * r["pointing"]),
    "deletion": ("deletion+insertion", lambda r: r["faith"]["deletion+insertion"]["deletion"]),
    "insertion": ("deletion+insertion", lambda r: r["faith"]["deletion+insertion"]["insertion"]),
    "average drop %": ("average-drop+increase", lambda r: 100.0 * r["faith"]["average-drop+increase"]["drop"]),
    "ROAD MoRF": ("road", lambda r: float(np.mean(r["faith"]["road"]["road_morf"]))),
    "ROAD LeRF": ("road", lambda r: float(np.mean(r["faith"]["road"]["road_lerf"]))),
}


def print_paired(caches: dict[str, Cache], common: dict[str, set[str]], base: str = "cam") -> dict:
    """Each method minus `base` on the same images: the mean difference and its 95% paired bootstrap interval
    (2000 resamples of the images), per column; the intervals say which differences the set can resolve."""
    if base not in caches:
        return {}
    rng = np.random.default_rng(0)
    ref = caches[base].records
    out: dict = {}
    print(f"\n# method - {base}, same images, mean difference [95% paired bootstrap interval] (n images)")
    print("| method | " + " | ".join(PAIRED) + " |")
    print("|---|" + "---|" * len(PAIRED))
    for m, c in caches.items():
        if m == base:
            continue
        cells, out[m] = [], {}
        for col, (fam, value) in PAIRED.items():
            names = [n for n in c.records if n in ref and (fam is None or (fam in c.records[n]["faith"] and
                     fam in ref[n]["faith"] and (m == "scorecam" or n in common[fam])))]  # fmt: skip
            if not names:
                cells.append("-")
                continue
            d = np.array([value(c.records[n]) - value(ref[n]) for n in names])
            boot = d[rng.integers(0, len(d), (2000, len(d)))].mean(1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            out[m][col] = [float(d.mean()), float(lo), float(hi), len(d)]
            digits = 4 if col in ("deletion", "insertion", "ROAD MoRF", "ROAD LeRF") else 1
            cells.append(f"{d.mean():+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] ({len(d)})")
        print(f"| {m} | " + " | ".join(cells) + " |")
    return out


def print_cost(caches: dict[str, Cache]) -> dict:
    """Per method, on the images that have every metric family: the maps' and each family's seconds per image,
    measured on the same image chunk one after the other in one process (so under the same load), and the ratio
    all metrics / maps (the issue's 10x target)."""
    print("\n# cost on the images with every metric (maps and metrics of the same chunk, back to back), s / image")
    print("| method | n | maps | " + " | ".join(FAMILIES) + " | all metrics | all / maps |")
    print("|---|---:|---:|" + "---:|" * (len(FAMILIES) + 2))
    out = {}
    for m, c in caches.items():
        done = [
            r for r in c.records.values() if all(f in r["faith"] and f not in r.get("reused", []) for f in FAMILIES)
        ]
        if not done:
            continue
        maps = float(np.mean([r["map_s"] for r in done]))
        fam = {f: float(np.mean([r["faith_s"][f] for r in done])) for f in FAMILIES}
        total = sum(fam.values())
        out[m] = {"n": len(done), "maps": maps, **fam, "ratio": total / maps}
        cells = " | ".join(f"{v:.2f}" for v in fam.values())
        print(f"| {m} | {len(done)} | {maps:.3f} | {cells} | {total:.2f} | {total / maps:.3g}x |")
    return out


def print_rows(rows: dict, title: str) -> None:
    print(title)
    print(
        "| method | n | GT-known loc [95% CI] | "
        + " | ".join(MAIN_GROUPS)
        + " | MaxBoxAccV2 | pointing game (difficult) | deletion | insertion | avg drop % | increase % | "
        "ROAD MoRF / LeRF | s / image maps | s / image metrics |"
    )
    print("|---|---:|---|" + "---|" * len(MAIN_GROUPS) + "---:|---|---:|---:|---:|---:|---|---:|---:|")
    for m, r in rows.items():
        groups = " | ".join(f"{r[g][0]:.1f} [{r[g][1]:.0f}-{r[g][2]:.0f}]" if r[g][3] else "-" for g in MAIN_GROUPS)
        pd = "-" if r["n difficult"] == 0 else f"{r['pointing difficult']:.1f}"
        di, ad, road = r.get("deletion+insertion"), r.get("average-drop+increase"), r.get("road")
        print(
            f"| {m} | {r['n']} | {r['loc']:.1f} [{r['loc ci'][0]:.0f}-{r['loc ci'][1]:.0f}] | {groups} | "
            f"{r['v2']:.1f} | {r['pointing']:.1f} ({pd}) | "
            + (f"{di['deletion_auc']:.4f} | {di['insertion_auc']:.4f} | " if di else "- | - | ")
            + (f"{ad['average_drop']:.1f} | {ad['increase_in_confidence']:.1f} | " if ad else "- | - | ")
            + (f"{road['road']['morf']:.3f} / {road['road']['lerf']:.3f} | " if road else "- | ")
            + f"{r['map_s']:.3f} | {r['faith_s']:.2f} |"
        )
    print("\nimages per column (n; reused = scores taken from a bit-identical map of another method):")
    for m, r in rows.items():
        parts = [f"{fam} {r[fam + ' n']} (reused {r[fam + ' reused']})" for fam in FAMILIES if fam + " n" in r]
        groups = ", ".join(f"{g} {r[g][3]}" for g in MAIN_GROUPS)
        print(f"- {m}: localization {r['n']} ({groups}); difficult {r['n difficult']}; " + "; ".join(parts))


# ------------------------------------------------------------------ the cost target


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    model = camloc.load("default").eval()
    samples, desc = load_samples(model, args.set)
    samples = [samples[i] for i in stratified_order(samples, seed=0)[: args.n]]
    camloc.explain(model, samples[0].image, targets=[[samples[0].target]], method=args.method, map_sizes=args.map_sizes)
    maps, _, map_s = explain_batches(model, samples, args.method, args.map_sizes)
    maps_total = sum(map_s)
    t0 = time.perf_counter()
    inputs = model_inputs(model, samples, maps)
    rows = {"inputs + resized maps": time.perf_counter() - t0}
    forward = 0.0  # the unit the metrics are made of: one forward pass of each input, in batches as they run
    with torch.inference_mode():
        by_shape: dict = {}
        for x, _ in inputs:
            by_shape.setdefault(tuple(x.shape), []).append(x)
        for xs in by_shape.values():
            for a in range(0, len(xs), 64):
                t0 = time.perf_counter()
                model(input_layout(torch.stack(xs[a : a + 64])))
                forward += time.perf_counter() - t0
    for name in FAMILIES:
        rows[name] = sum(per_image_scores(model, samples, inputs, name)[1])
    t0 = time.perf_counter()
    for s, m in zip(samples, maps, strict=True):
        pointing_hit(m.numpy(), np.array(s.boxes), tolerance=15.0)
    rows["pointing-game"] = time.perf_counter() - t0
    total = sum(rows.values())
    print(
        f"# {len(samples)} images of {desc}, method {args.method}, maps {sizes_tag(args.map_sizes)}, "
        f"efficientnet-lite0, cpu, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"{'part':<26}{'seconds':>9}{'s / image':>11}{'x maps':>9}")
    print(f"{'maps (explain)':<26}{maps_total:9.1f}{maps_total / len(samples):11.3f}{1:9.2f}")
    for name, sec in rows.items():
        print(f"{name:<26}{sec:9.1f}{sec / len(samples):11.3f}{sec / maps_total:9.2f}")
    print(f"{'all faithfulness metrics':<26}{total:9.1f}{total / len(samples):11.3f}{total / maps_total:9.2f}")
    print(f"{'(one forward pass, 224)':<26}{forward:9.1f}{forward / len(samples):11.3f}{forward / maps_total:9.2f}")
    fs = FaithfulnessSettings()
    passes = {
        "deletion+insertion": 2 * fs.steps + 1,
        "average-drop+increase": 2,
        "road": 2 * len(fs.road_fractions) + 1,
    }
    print("forward passes per image (the floor of each family, whatever the implementation): " + ", ".join(
        f"{k} {n} = {n * forward / maps_total:.1f}x maps" for k, n in passes.items()))  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"n": len(samples), "method": args.method, "maps": maps_total, "forward": forward, **rows}, indent=1
            )
        )


def imputer(args) -> None:
    """ROAD's imputation of one 224 x 298 photo (skimage's chelsea) under a smooth map, 10 / 50 / 90% removed:
    pytorch-grad-cam's reference (direct sparse solve) and camloc's solver one after the other, time and gap."""
    import skimage.data
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from camloc.localize.faithfulness import ROAD_FRACTIONS, noisy_linear_impute, removal_keep

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
    # what ROAD runs per image: the 18 imputations (9 fractions, MoRF and LeRF) in one call
    keep = torch.stack([removal_keep(m, f, o)[0] for f in ROAD_FRACTIONS for o in (True, False)])
    xs = x.expand(len(keep), -1, -1, -1).contiguous()
    impls = {
        "camloc": noisy_linear_impute,
        "pytorch-grad-cam's reference, one direct solve each": lambda xs, keep, noise: [
            NoisyLinearImputer(noise=noise)(xi, ki.float()) for xi, ki in zip(xs, keep, strict=True)
        ],
    }
    if args.against:  # another version of faithfulness.py, e.g. `git show REV:src/camloc/localize/faithfulness.py`
        import importlib.util

        spec = importlib.util.spec_from_file_location("faithfulness_against", args.against)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = other
        spec.loader.exec_module(other)
        impls[f"{args.against}"] = other.noisy_linear_impute
    totals = dict.fromkeys(impls, 0.0)
    for _ in range(args.repeats):  # interleaved, so both see the same load
        for name, fn in impls.items():
            t0 = time.perf_counter()
            fn(xs, keep, noise=0)
            totals[name] += time.perf_counter() - t0
    print(f"\nthe 18 imputations of one image in one call, mean of {args.repeats} interleaved runs:")
    for name, total in totals.items():
        print(f"  {name}: {total / args.repeats:.2f} s ({total / totals['camloc']:.2f}x camloc's)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("table", "speed"):
        p = sub.add_parser(name)
        p.add_argument("--set", default=".cache/locset", help=f"a locset folder (default) or '{PASTED76}'")
        p.add_argument(
            "--map-sizes", type=sizes_arg, default=None, help="'default' (the zoom; default), '640', 'native'"
        )
        p.add_argument("--threads", type=int, default=1)
    t = sub.choices["table"]
    t.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    t.add_argument("--n-perturb-first", type=int, default=16, help="these before Score-CAM, the rest after")
    t.add_argument("--n-scorecam", type=int, default=8, help="Score-CAM on this many images (stratified)")
    t.add_argument("--n-perturb", type=int, default=10**6, help="deletion / insertion and ROAD on this many")
    t.add_argument("--perturb-chunk", type=int, default=8, help="images per chunk of the perturbation phase")
    t.add_argument("--n", type=int, default=None, help="only the first n images of the stratified order")
    t.add_argument("--out", type=Path, default=Path("bench-results/faithfulness"))
    t.add_argument("--print", action="store_true", help="only print the table of saved results")
    s = sub.choices["speed"]
    s.add_argument("--method", default="cam")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--out", type=Path, default=Path("bench-results/faithfulness-speed.json"))
    i = sub.add_parser("imputer")
    i.add_argument("--against", type=Path, default=None, help="another faithfulness.py to time side by side")
    i.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.mode == "imputer":
        imputer(args)
    elif args.mode == "table" and args.print:
        print_table(args.out / f"{set_tag(args.set)}-{sizes_tag(args.map_sizes)}", args.methods)
    elif args.mode == "table":
        table(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
