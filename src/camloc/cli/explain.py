"""`camloc explain`: maps, boxes and pictures for image files and folders (parsing and printing only; the work is
`camloc.explainer.runner`'s)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from camloc.cli._options import add_box_rule_options, box_rule_from, parse_map_sizes
from camloc.distributed import pick_device
from camloc.errors import InputError
from camloc.explainer.passes import DEFAULT_MAP_SIZES
from camloc.explainer.runner import ExplainOptions, OutputOptions, explain_files
from camloc.io import iter_image_paths
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
    p.add_argument(
        "--model",
        default="default",
        help="'default', a checkpoint folder, an architecture name (random weights), or timm:NAME.TAG "
        "(timm's pretrained weights, e.g. timm:convnext_tiny.fb_in1k; needs the network or timm's cache)",
    )
    p.add_argument("--top-k", type=int, default=5, help="number of best classes to map (default 5)")
    p.add_argument(
        "--classes", default=None, help="explicit class indices for every image instead of the top-k, e.g. '281,285'"
    )
    p.add_argument(
        "--method",
        default="cam",
        help="map method: cam (default; one forward pass, needs a CAM-exact head: GAP [+ LayerNorm] + linear), "
        f"{', '.join(n for n in method_names() if n != 'cam')} (any CNN or vision transformer; docs/methods.md)",
    )
    p.add_argument(
        "--layer",
        default=None,
        help="layer to explain, by its model.named_modules() name (default: the pooled map of a CAM-exact head, "
        "the last attention block's first norm of other transformers, else the last spatial map)",
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
    p.add_argument(
        "--scores",
        choices=["softmax", "sigmoid"],
        default="softmax",
        help="class scores: softmax (one label per image, default) or sigmoid (multi-label models)",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="map every class whose score reaches this probability (best first) instead of the top-k",
    )
    p.add_argument("--relu", action="store_true", help="clip negative evidence before normalising maps")
    add_box_rule_options(p)
    p.add_argument("--colormap", choices=sorted(COLORMAPS), default="inferno", help="colour map of the heat maps")
    p.add_argument("--batch-size", type=int, default=16, help="images per model batch (default 16)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def method_names() -> list[str]:
    """Each registered method's main name (aliases such as 'grad-cam' also work)."""
    return sorted({cls.name for cls in METHODS.values()})


def parse_classes(text: str | None) -> tuple[int, ...] | None:
    """'281,285' -> (281, 285); None -> None (the top-k)."""
    if not text:
        return None
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise InputError(f"--classes: '{text}' is not a comma-separated list of integers") from None


def run(args: argparse.Namespace) -> int:
    options = ExplainOptions(
        top_k=args.top_k,
        targets=parse_classes(args.classes),
        method=args.method,
        layer=args.layer,
        map_sizes=parse_map_sizes(args.map_sizes),
        relu=args.relu,
        box_rule=box_rule_from(args),
        scores=args.scores,
        min_score=args.min_score,
    )
    outputs = OutputOptions(
        out_dir=args.out,
        pictures=not args.no_images,
        json=args.format == "json",
        save_maps=args.save_maps,
        colormap=args.colormap,
    )
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = load(args.model).to(pick_device(args.device))
    paths = list(iter_image_paths(args.inputs))
    if not paths:
        raise InputError(f"no images found in {', '.join(args.inputs)}")
    quiet = args.quiet or not sys.stderr.isatty()

    def print_record(record: dict) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    with tqdm(total=len(paths), desc="explain", unit="img", disable=quiet, file=sys.stderr) as bar:
        summary = explain_files(
            model,
            paths,
            options,
            outputs,
            batch_size=args.batch_size,
            on_record=print_record if args.format == "jsonl" else None,
            on_error=lambda reason: print(f"camloc: skipped {reason}", file=sys.stderr),
            progress=bar.update,
        )
    if not args.quiet and outputs.writes_files and summary.done:
        print(f"camloc: wrote results for {summary.done} image(s) to {args.out}/", file=sys.stderr)
    if summary.failed:
        print(f"camloc: {len(summary.failed)} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if summary.failed else 0
