"""`camloc explain`: maps, boxes and pictures for image files and folders (parsing and printing only; the work is
`camloc.explainer.runner`'s)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from tqdm import tqdm

from camloc.cli._options import add_box_rule_options, box_rule_from, parse_zoom
from camloc.distributed import barrier, setup, teardown
from camloc.errors import InputError
from camloc.explainer.inputs import iter_sources
from camloc.explainer.passes import DEFAULT_MAP_SIZES
from camloc.explainer.runner import ExplainOptions, OutputOptions, RunSummary, check_batch_size, explain_files
from camloc.explainer.shards import RecordSink, merge, rank_summary
from camloc.explainer.stop import StopOnSignals
from camloc.io import check_output_folder, write_json
from camloc.methods import METHODS
from camloc.models.zoo import load
from camloc.preprocess import parse_map_sizes
from camloc.viz import COLORMAPS
from camloc.zoom import ZOOM_HELP


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `camloc explain`, its options and help, on the subcommand parser `sub`."""
    p = sub.add_parser(
        "explain",
        help="class activation maps, boxes and pictures for images",
        description="Classify images and explain the top classes with class activation maps and "
        "boxes. Folders are searched recursively.",
    )
    p.add_argument("inputs", nargs="*", help="image files and folders (folders are walked lazily, recursively)")
    p.add_argument(
        "--from-list",
        default=None,
        metavar="FILE",
        help="also explain the paths in FILE, one a line ('-': read them from stdin; '#' lines are skipped)",
    )
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
    p.add_argument(
        "--out",
        default="results",
        type=Path,
        help="output folder (default: results/); outputs keep the inputs' folder structure, and the folder is "
        "never read as input",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip the images whose outputs in --out are complete (each file checked) and do the rest",
    )
    p.add_argument(
        "--format",
        choices=["none", "json", "jsonl"],
        default="none",
        help="json: <stem>.json per image in --out; jsonl: one JSON object per image on stdout",
    )
    p.add_argument("--no-images", action="store_true", help="skip the overlay and grid PNGs")
    p.add_argument("--save-maps", action="store_true", help="write <stem>.npz with classes, maps and raw CAMs")
    p.add_argument(
        "--zoom",
        default=None,
        help=ZOOM_HELP,
    )
    p.add_argument(
        "--map-sizes",
        default=None,
        help="instead of the zoom: shorter sides of map passes, e.g. '224,448'; 'native' for the classification "
        f"pass only (with --zoom off and no sizes: {','.join(map(str, DEFAULT_MAP_SIZES))})",
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
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="images per model batch (default 16; a batch also stops at 8 megapixels in all)",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="threads decoding images while the model runs (default 2; 0: none)"
    )
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
    """SIGINT / SIGTERM from here on stop the run after the current batch, with a summary line."""
    with StopOnSignals() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: StopOnSignals) -> int:
    options = ExplainOptions(
        top_k=args.top_k,
        targets=parse_classes(args.classes),
        method=args.method,
        layer=args.layer,
        map_sizes=parse_map_sizes(args.map_sizes),
        zoom=parse_zoom(args.zoom),
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
        resume=args.resume,
    )
    check_batch_size(args.batch_size)
    if args.workers < 0:
        raise InputError(f"--workers must be 0 or more, got {args.workers}")
    if not args.inputs and args.from_list is None:
        raise InputError("no inputs: give image files or folders, or --from-list FILE")
    for given in args.inputs:
        if Path(given).is_dir() and not os.access(given, os.R_OK | os.X_OK):
            raise InputError(f"{given}: cannot read the folder (permission denied)")
    ctx = setup(args.device)
    sharded = ctx.world > 1
    if outputs.writes_files or sharded:
        check_output_folder(args.out)
        check_run_settings(args.out, run_settings(args, options, outputs), resume=args.resume, write=ctx.is_main)
    model = load(args.model).to(ctx.device)
    sources = iter_sources(args.inputs, args.from_list, exclude=[args.out])
    quiet = args.quiet or not sys.stderr.isatty() or not ctx.is_main

    sink = RecordSink(args.out, ctx.rank) if sharded else None

    def print_record(index: int, record: dict) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    on_record = sink if sink is not None else print_record if args.format == "jsonl" else None
    with tqdm(desc="explain", unit="img", disable=quiet, file=sys.stderr) as bar:
        try:
            summary = explain_files(
                model,
                sources,
                options,
                outputs,
                batch_size=args.batch_size,
                workers=args.workers,
                rank=ctx.rank,
                world=ctx.world,
                stop=stop,
                on_record=on_record,
                on_error=lambda reason: print(f"camloc: skipped {reason}", file=sys.stderr),
                progress=bar.update,
            )
        finally:
            if sink is not None:
                sink.close()
    if sharded:
        write_json(rank_summary(args.out, ctx.rank), summary.as_dict())
        if summary.interrupted is None:
            barrier(ctx)
            if ctx.is_main:
                records, merged = merge(args.out, ctx.world)
                if args.format == "jsonl":
                    print(f"camloc: records of all {ctx.world} ranks in {records}", file=sys.stderr)
                total = json.loads(merged.read_text(encoding="utf-8"))
                print(
                    f"camloc: {ctx.world} processes explained {total['done']} image(s), skipped "
                    f"{total['skipped']} already complete, {total['failed']} failed; summary in {merged}",
                    file=sys.stderr,
                )
        teardown(ctx)
        if not (summary.stopped or summary.interrupted):
            return 0  # per-image failures are in the merged summary; a non-zero rank would make torchrun abort
    return report(args, summary, outputs, show=not sharded)


def report(args: argparse.Namespace, summary: RunSummary, outputs: OutputOptions, show: bool) -> int:
    """The closing lines on stderr and the exit status: 0 all done, 1 some images failed or the run stopped on an
    output error, 128 + the signal's number when interrupted. Under torchrun (show=False) the counts are rank 0's
    merged summary line instead, and per-image failures exit 0 (they are in explain-summary.json)."""
    where = f" to {args.out}/" if outputs.writes_files else ""
    if summary.stopped:
        print(f"camloc: error: {summary.stopped}; stopped after {summary.done} image(s)", file=sys.stderr)
        return 1
    if summary.interrupted:
        print(
            f"camloc: interrupted by {summary.interrupted} after {summary.done} image(s){where}; "
            "no file is half written; rerun with --resume to finish",
            file=sys.stderr,
        )
        return 128 + int(getattr(signal, summary.interrupted, signal.SIGINT))
    if show and not args.quiet:
        if summary.seen == 0:
            print("camloc: no images found in the inputs", file=sys.stderr)
        elif outputs.writes_files:
            skipped = f" ({summary.skipped} already complete, skipped)" if summary.skipped else ""
            print(f"camloc: wrote results for {summary.done} image(s){where}{skipped}", file=sys.stderr)
    if summary.failed and show:
        print(f"camloc: {len(summary.failed)} of {summary.seen} image(s) failed", file=sys.stderr)
    if summary.seen == 0:
        return 1
    return 1 if summary.failed else 0


def run_settings(args: argparse.Namespace, options: ExplainOptions, outputs: OutputOptions) -> dict:
    """What makes two runs' outputs comparable: the model and every setting that changes a file."""
    return {
        "model": str(args.model),
        "top_k": options.top_k,
        "targets": list(options.targets) if options.targets is not None else None,
        "method": options.method,
        "layer": options.layer,
        "map_sizes": list(options.map_sizes) if options.map_sizes is not None else None,
        "relu": options.relu,
        "scores": options.scores,
        "min_score": options.min_score,
        "threshold": options.box_rule.threshold,
        "threshold_mode": options.box_rule.mode,
        "pictures": outputs.pictures,
        "json": outputs.json,
        "save_maps": outputs.save_maps,
        "colormap": outputs.colormap,
    }


RUN_FILE = ".camloc-run"  # JSON; no .json suffix, so that globs for records skip it


def check_run_settings(out: Path, settings: dict, resume: bool, write: bool) -> None:
    """With --resume, refuse to mix outputs of other settings into `out`; then record this run's settings there."""
    path = out / RUN_FILE
    if resume and path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = {}
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            k = changed[0]
            raise InputError(
                f"--resume: {out} holds a run with other settings ({k}: {before.get(k)!r} then, {settings[k]!r} "
                "now); use another --out, or rerun without --resume to redo every image"
            )
    if write:
        write_json(path, settings)
