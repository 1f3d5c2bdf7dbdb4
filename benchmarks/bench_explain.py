"""Throughput and memory of `camloc explain` over many photo-sized files (`make bench-explain`).

Generates N JPEG photos (1280x960, seeded noise and shapes) under .cache/bench-explain/, then, in one run:
  1. one process, in-process `explain_files` with the default settings over the N photos: images/s end to end, and
     the share of the time in decode (worker threads, overlapped with the model: their summed time), model
     (`camloc.explain` less its boxes), boxes and writing; peak RSS of that process (a child process per row, so
     each peak is its own);
  2. memory over a long run: the same at N and at 10 N images of `--rss-size` (inputs are symbolic links to N
     generated images in separate folders): equal peaks at both counts mean memory does not grow with the count.
     The images are smaller than photos only to keep 10 N images within an hour on 2 CPU cores: what could grow
     with the count (the input walk, per-image records, the writer pool) does not depend on the image size;
  3. end to end through the command line: one process vs `torchrun --nproc_per_node=2` on the N photos.
The default run uses 500 photos and 500 / 5,000 images for memory and takes long on a CPU; `--quick` (20 / 100)
is for a first look.
Set OMP_NUM_THREADS to share the machine fairly; the numbers depend on it, and it is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CACHE = Path(".cache/bench-explain")


def make_photos(folder: Path, n: int, size: tuple[int, int] = (1280, 960)) -> list[Path]:
    """n seeded JPEG photos (kept between runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"photo{i:05d}.jpg"
        if not path.exists():
            rng = np.random.default_rng(i)
            small = (rng.random((size[1] // 16, size[0] // 16, 3)) * 255).astype(np.uint8)
            img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
            img.save(path, quality=90)
        paths.append(path)
    return paths


def linked_inputs(photos: list[Path], count: int, folder: Path) -> Path:
    """`count` inputs as symbolic links to the photos, 500 per sub-folder (distinct output names)."""
    if folder.exists():
        shutil.rmtree(folder)
    for i in range(count):
        sub = folder / f"part{i // len(photos):03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / photos[i % len(photos)].name).symlink_to(photos[i % len(photos)].resolve())
    return folder


def child(inputs: Path, out: Path) -> None:
    """One in-process run with timers around each stage; prints a JSON line."""
    import camloc.explainer.passes as passes
    import camloc.explainer.runner as runner
    from camloc.explainer.inputs import iter_sources
    from camloc.models.zoo import load

    spent = {"decode": 0.0, "explain": 0.0, "boxes": 0.0, "write": 0.0}

    def timed(key: str, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0

        return wrapper

    runner.load_image = timed("decode", runner.load_image)
    passes.boxes_from_maps = timed("boxes", passes.boxes_from_maps)
    runner.ExplainOptions.run = timed("explain", runner.ExplainOptions.run)  # type: ignore[method-assign]
    runner.write_outputs = timed("write", runner.write_outputs)
    model = load("default")
    t0 = time.perf_counter()
    summary = runner.explain_files(
        model, iter_sources([inputs], exclude=[out]), runner.ExplainOptions(), runner.OutputOptions(out_dir=out)
    )
    wall = time.perf_counter() - t0
    spent["model"] = spent.pop("explain") - spent["boxes"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(
        json.dumps({"n": summary.done, "failed": len(summary.failed), "wall": wall, "spent": spent, "peak_mib": peak})
    )


def run_child(inputs: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(inputs), str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli_wall(cmd: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 and 100 images instead of 500 and 5,000")
    parser.add_argument(
        "--rss-size", default="320x240", help="WxH of the images of the memory rows (default 320x240; photos: 1280x960)"
    )
    parser.add_argument("--cli-only", action="store_true", help="only the command-line rows (one process vs torchrun)")
    parser.add_argument("--child", nargs=2, metavar=("INPUTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return
    small, large = (20, 100) if args.quick else (500, 5000)
    rss_w, rss_h = (int(v) for v in args.rss_size.lower().split("x"))
    photos = make_photos(CACHE / "photos", small)
    threads = os.environ.get("OMP_NUM_THREADS")
    print(f"# camloc explain, default settings; OMP_NUM_THREADS={threads}; load average {os.getloadavg()[0]:.1f}")
    print("| images | size | images/s | decode (threads) | model | boxes | write | peak RSS |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    rows = [(photos, small, "1280x960", CACHE / f"inputs-{small}")]
    if (rss_w, rss_h) != (1280, 960):
        small_images = make_photos(CACHE / f"images-{rss_w}x{rss_h}", small, (rss_w, rss_h))
        rows.append((small_images, small, args.rss_size, CACHE / f"inputs-{rss_w}x{rss_h}-{small}"))
        rows.append((small_images, large, args.rss_size, CACHE / f"inputs-{rss_w}x{rss_h}-{large}"))
    else:
        rows.append((photos, large, "1280x960", CACHE / f"inputs-{large}"))
    for images, count, size, folder in [] if args.cli_only else rows:
        r = run_child(linked_inputs(images, count, folder), CACHE / "out")
        s = r["spent"]
        share = {k: 100 * v / r["wall"] for k, v in s.items()}
        print(
            f"| {r['n']} | {size} | {r['n'] / r['wall']:.2f} | {share['decode']:.0f}% | {share['model']:.0f}% | "
            f"{share['boxes']:.0f}% | {share['write']:.0f}% | {r['peak_mib']:.0f} MiB |",
            flush=True,
        )
    camloc = [sys.executable, "-m", "camloc", "explain", str(CACHE / "photos"), "--quiet"]
    one = cli_wall([*camloc, "--out", str(CACHE / "out1")], CACHE / "out1")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    two = cli_wall(
        [torchrun, "--standalone", "--nproc_per_node=2", *camloc[1:], "--out", str(CACHE / "out2")], CACHE / "out2"
    )
    print(f"\ncommand line, {small} photos of 1280x960, end to end (model loading included):")
    print(f"  one process          {small / one:.2f} images/s ({one:.1f} s)")
    print(f"  torchrun, 2 ranks    {small / two:.2f} images/s ({two:.1f} s), {one / two:.2f}x one process")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
