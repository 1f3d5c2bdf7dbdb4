"""Cost of CAMs over a plain forward pass, on the default model (`make bench` runs this).

Part 1, real photos of mixed sizes from files (the pictures in examples/ and scikit-image's photos, 11 in all,
384x255 to 1000x872 pixels), the whole native path. All contenders run in one process, interleaved round by round
in a new random order each round; the median round and the best round of each are reported (the best round is
the least disturbed by other load on the machine), with the share of rounds explain lost:
  forward        model(x) on the preprocessed inputs (shorter side 224, aspect kept, one batch per shape): the kernel
  classify       decode + preprocess + model(x): what classifying the same files costs
  explain        camloc.explain(model, paths, top_k=5, map_sizes=()): decode, preprocess, logits, top-5 CAMs
                 upsampled to each photo's full size, normalised, and a box per map
Target (issue 11, item 5): explain within 1.25x of the forward pass at the same input size on the same images.
Then one profiled run of the explain path splits its time into stages (and adds the CLI's writers).

Part 2, random tensors at one input size (224 x 224), batches of 1 and 32:
  forward        model(x)
  cam+boxes      camloc.explain(model, x, top_k=5, map_sizes=()) : logits, top-5 CAMs, upsampled maps, boxes
  default        camloc.explain(model, x, top_k=5)               : the default settings (adds the map passes)

    python benchmarks/bench_cam.py [--rounds 15] [--threads N] [--skip-tensors]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

import camloc
from camloc.boxes import DEFAULT_BOX_RULE, boxes_from_maps
from camloc.engine import min_max, normalize, upsample
from camloc.explainer import writers
from camloc.explainer.passes import _group_by_shape
from camloc.io import load_image
from camloc.methods import CAM
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor

ROOT = Path(__file__).resolve().parents[1]
TOP_K = 5
# scikit-image's colour photos (and its grayscale camera man); with the four in examples/: 11 photos
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "camera")


def photo_files(folder: Path) -> list[Path]:
    """The photos as JPEG files in `folder` (examples/ as they are; scikit-image's written at quality 92)."""
    import skimage.data

    paths = sorted((ROOT / "examples").glob("*.jpg"))
    for name in SKIMAGE_PHOTOS:
        arr = getattr(skimage.data, name)()
        path = folder / f"{name}.jpg"
        Image.fromarray(arr).convert("RGB").save(path, quality=92)
        paths.append(path)
    return paths


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per round of each function; every round runs each once, in a new random order (after a warm-up)."""
    for fn in fns.values():
        fn()
    rng = random.Random(seed)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def photos_section(model: torch.nn.Module, rounds: int) -> None:
    pre = info_of(model).preprocess
    native = pre.input_size
    with tempfile.TemporaryDirectory() as tmp:
        paths = photo_files(Path(tmp))
        images = [load_image(p) for p in paths]
        sizes = sorted({im.size for im in images}, key=lambda s: s[0] * s[1])
        buckets = _group_by_shape(
            [image_to_tensor(im, native, pre) for im in images], torch.device("cpu"), torch.float32
        )
        print(
            f"{len(paths)} photos, {len(buckets)} input shapes at {native}, sizes {sizes[0][0]}x{sizes[0][1]} to "
            f"{sizes[-1][0]}x{sizes[-1][1]} ({sum(w * h for w, h in (im.size for im in images)) / 1e6:.1f} Mpixel)"
        )

        def forward() -> None:
            with torch.no_grad():
                for _, x in buckets:
                    model(x)

        def classify() -> None:
            tensors = [image_to_tensor(load_image(p), native, pre) for p in paths]
            with torch.no_grad():
                for _, x in _group_by_shape(tensors, torch.device("cpu"), torch.float32):
                    model(x)

        def explain() -> None:
            camloc.explain(model, paths, top_k=TOP_K, map_sizes=())

        times = interleaved({"forward": forward, "classify": classify, "explain": explain}, rounds)
        n = len(paths)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"median of {rounds} interleaved rounds, ms per photo:")
        for k, t in med.items():
            print(f"  {k:<9} {1e3 * t / n:8.1f}")
        best = {k: min(v) for k, v in times.items()}
        for base in ("forward", "classify"):
            ratios = sorted(e / b for e, b in zip(times["explain"], times[base], strict=True))
            slower = sum(r > 1.25 for r in ratios)
            print(
                f"  explain / {base:<9} {med['explain'] / med[base]:.3f}x median, {best['explain'] / best[base]:.3f}x "
                f"best rounds  (over 1.25x in {slower}/{rounds} rounds; per-round ratios "
                f"{ratios[0]:.2f}..{ratios[-1]:.2f}, median {statistics.median(ratios):.2f})"
            )
        profile_stages(model, paths, Path(tmp) / "out")


def profile_stages(model: torch.nn.Module, paths: list[Path], out: Path, repeats: int = 3) -> None:
    """The explain path split into its stages, best of `repeats`, ms per photo (one batch per shape, as explain)."""
    pre = info_of(model).preprocess
    cam = CAM()
    stage: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        best, result = float("inf"), None
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t0)
        stage[name] = best
        return result

    images = timed("decode", lambda: [load_image(p) for p in paths])
    tensors = timed("preprocess", lambda: [image_to_tensor(im, pre.input_size, pre) for im in images])
    buckets = _group_by_shape(tensors, torch.device("cpu"), torch.float32)
    runs = timed("forward + CAMs", lambda: [(idx, cam.run(model, x, None, TOP_K)) for idx, x in buckets])
    raw = {i: r[2][j] for idx, r in runs for j, i in enumerate(idx)}
    ups = timed(
        "upsample", lambda: [upsample(raw[i][None].float(), (im.height, im.width)) for i, im in enumerate(images)]
    )
    limits = timed("min/max", lambda: [min_max(u) for u in ups])
    timed("normalise", lambda: [normalize(u, lo=lo, hi=hi) for u, (lo, hi) in zip(ups, limits, strict=True)])
    timed(
        "boxes",
        lambda: [boxes_from_maps(u, DEFAULT_BOX_RULE, lo, hi) for u, (lo, hi) in zip(ups, limits, strict=True)],
    )
    res = camloc.explain(model, paths, top_k=TOP_K, map_sizes=())
    timed(
        "writers (CLI: PNGs + JSON)",
        lambda: [
            (writers.write_pictures(res, i, im, out, f"p{i}"), writers.write_record(res, i, out, f"p{i}", str(p)))
            for i, (im, p) in enumerate(zip(images, paths, strict=True))
        ],
    )
    n = len(paths)
    total = sum(v for k, v in stage.items() if not k.startswith("writers"))
    print(f"explain's stages (best of {repeats}, ms per photo; share of their sum {1e3 * total / n:.1f} ms):")
    for k, v in stage.items():
        share = f"{100 * v / total:5.1f}%" if not k.startswith("writers") else "  (CLI)"
        print(f"  {k:<28} {1e3 * v / n:7.1f}  {share}")


def tensor_section(model: torch.nn.Module, size: int, batches: list[int], rounds: int) -> None:
    print(f"\nrandom tensors {size}x{size}, default settings (the zoom), median of {rounds} rounds")
    print(f"{'batch':>5} {'forward img/s':>14} {'cam+boxes img/s':>16} {'ratio':>7} {'default img/s':>14} {'ratio':>7}")
    for b in batches:
        x = torch.randn(b, 3, size, size)

        def forward(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                model(x)

        times = interleaved(
            {
                "forward": forward,
                "cam": lambda x=x: camloc.explain(model, x, top_k=TOP_K, map_sizes=()),
                "default": lambda x=x: camloc.explain(model, x, top_k=TOP_K),
            },
            rounds if b > 1 else rounds * 4,
        )
        f, c, d = (b / statistics.median(times[k]) for k in ("forward", "cam", "default"))
        print(f"{b:>5} {f:>14.1f} {c:>16.1f} {f / c:>7.3f} {d:>14.1f} {f / d:>7.3f}")
    print("ratio = time per image relative to the plain forward pass (1.05 = 5% slower)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-tensors", action="store_true", help="photos only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = camloc.load("default")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    photos_section(model, args.rounds)
    if not args.skip_tensors:
        tensor_section(model, args.size, [int(v) for v in args.batches.split(",")], max(3, args.rounds // 2))


if __name__ == "__main__":
    main()
