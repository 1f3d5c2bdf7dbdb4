"""`camloc explain`: maps, boxes and pictures for image files and folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from camloc import writers
from camloc.boxes import THRESHOLD_MODES
from camloc.distributed import pick_device
from camloc.explainer import DEFAULT_MAP_SIZES, DEFAULT_THRESHOLD, DEFAULT_THRESHOLD_MODE, explain
from camloc.io import InputError, iter_image_paths, load_image
from camloc.methods import METHODS
from camloc.models.zoo import load
from camloc.viz import COLORMAPS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="class activation maps, boxes and pictures for images",
        description="Classify images and explain the top classes with class activation maps and "
        "boxes. Folders are searched recursively.",
    )
    p.add_argument("inputs", nargs="+", help="image files and folders")
    p.add_argument("--model", default="default", help="'default', a checkpoint folder, or an architecture name")
    p.add_argument("--top-k", type=int, default=5, help="number of best classes to map (default 5)")
    p.add_argument(
        "--classes", default=None, help="explicit class indices for every image instead of the top-k, e.g. '281,285'"
    )
    p.add_argument(
        "--method",
        default="cam",
        help="map method: cam (default; one forward pass, needs a GAP + linear head), "
        f"{', '.join(n for n in method_names() if n != 'cam')} (any CNN; docs/methods.md)",
    )
    p.add_argument(
        "--layer",
        default=None,
        help="layer to explain, by its model.named_modules() name (default: the last spatial map)",
    )
    p.add_argument("--out", default="results", type=Path, help="output folder (default: results/)")
    p.add_argument(
        "--format",
        choices=["none", "json", "jsonl"],
        default="none",
        help="json: <stem>.json per image in --out; jsonl: one JSON object per image on stdout",
    )
    p.add_argument("--no-images", action="store_true", help="skip the overlay and grid PNGs")
    p.add_argument("--save-maps", action="store_true", help="write <stem>.npz with classes, maps and raw CAMs")
    p.add_argument(
        "--map-sizes",
        default=None,
        help="shorter sides of the map passes, e.g. '224,448'; 'native' for the classification pass only "
        f"(default: {','.join(map(str, DEFAULT_MAP_SIZES))})",
    )
    p.add_argument("--relu", action="store_true", help="clip negative evidence before normalising maps")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="box threshold (default 0.2)")
    p.add_argument(
        "--threshold-mode",
        choices=THRESHOLD_MODES,
        default=DEFAULT_THRESHOLD_MODE,
        help="'minmax': fraction of the normalised map; 'max': fraction of the raw map's maximum",
    )
    p.add_argument("--colormap", choices=sorted(COLORMAPS), default="inferno")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def method_names() -> list[str]:
    """Each registered method's main name (aliases such as 'grad-cam' also work)."""
    return sorted({cls.name for cls in METHODS.values()})


def parse_map_sizes(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip().lower() == "native":
        return ()
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--map-sizes: '{text}' is not a comma-separated list of integers or 'native'") from None
    if any(s < 32 or s > 4096 for s in sizes):
        raise InputError(f"--map-sizes: sizes must lie in 32..4096, got '{text}'")
    return sizes


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names: the file stem, with a counter when two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}-{n}")
    return stems


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise InputError("--top-k must be at least 1")
    map_sizes = parse_map_sizes(args.map_sizes)
    targets = None
    if args.classes:
        try:
            targets = [int(c) for c in args.classes.split(",") if c.strip()]
        except ValueError:
            raise InputError(f"--classes: '{args.classes}' is not a comma-separated list of integers") from None
    model = load(args.model).to(pick_device(args.device))
    paths = list(iter_image_paths(args.inputs))
    if not paths:
        raise InputError(f"no images found in {', '.join(args.inputs)}")
    stems = unique_stems(paths)
    quiet = args.quiet or not sys.stderr.isatty()
    failures = 0
    with tqdm(total=len(paths), desc="explain", unit="img", disable=quiet, file=sys.stderr) as bar:
        for start in range(0, len(paths), args.batch_size):
            batch = []
            for path, stem in zip(paths[start : start + args.batch_size], stems[start : start + args.batch_size]):
                try:
                    batch.append((path, stem, load_image(path)))
                except InputError as exc:
                    failures += 1
                    print(f"camloc: skipped {exc}", file=sys.stderr)
                    bar.update(1)
            failures += explain_batch(model, batch, targets, map_sizes, args)
            bar.update(len(batch))
    if not args.quiet and (not args.no_images or args.format == "json" or args.save_maps):
        print(f"camloc: wrote results for {len(paths) - failures} image(s) to {args.out}/", file=sys.stderr)
    if failures:
        print(f"camloc: {failures} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failures else 0


def explain_batch(model, batch: list, targets: list[int] | None, map_sizes, args: argparse.Namespace) -> int:
    """Explain and write one batch (`explain` batches images of any sizes itself). If the batch fails as a whole
    for a reason that is not a setting (say, memory), say so and retry image by image, so that one image cannot
    take down the others. Returns failures."""
    if not batch:
        return 0
    images = [im for _, _, im in batch]
    try:
        res = explain(
            model,
            images,
            top_k=args.top_k,
            targets=None if targets is None else [targets] * len(images),
            method=args.method,
            layer=args.layer,
            map_sizes=map_sizes,
            relu=args.relu,
            threshold=args.threshold,
            threshold_mode=args.threshold_mode,
        )
    except InputError:
        raise  # a setting that is wrong for every image (bad class, bad method, head): stop with its message
    except Exception as exc:  # noqa: BLE001 - one image must not take down the batch
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if len(batch) == 1:
            print(f"camloc: skipped {batch[0][0]}: {reason}", file=sys.stderr)
            return 1
        print(f"camloc: a batch of {len(batch)} images failed ({reason}); retrying them one at a time", file=sys.stderr)
        return sum(explain_batch(model, [item], targets, map_sizes, args) for item in batch)
    for i, (path, stem, image) in enumerate(batch):
        if not args.no_images:
            writers.write_pictures(res, i, image, args.out, stem, colormap=args.colormap)
        if args.format == "json":
            writers.write_record(res, i, args.out, stem, str(path))
        elif args.format == "jsonl":
            sys.stdout.write(json.dumps(writers.record(res, i, str(path))) + "\n")
            sys.stdout.flush()
        if args.save_maps:
            writers.write_maps(res, i, args.out, stem)
    return 0
