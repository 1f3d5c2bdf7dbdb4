"""`camloc export`: a CAM-exact model as one ONNX graph (logits, top-k classes, scores, CAMs); parsing and
printing only, the work is `camloc.export.onnx`'s. Run the graph without PyTorch with `camloc-onnx`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from camloc.errors import InputError
from camloc.export.onnx import EXPORTER, OPSET, export_onnx
from camloc.models.zoo import load

# largest |onnxruntime - PyTorch| accepted on the check's logits, scores and raw CAMs, relative to the output's
# largest magnitude when that exceeds 1 (float32 round-off grows with the values)
MAX_DIFF = 1e-4


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `camloc export`, its options and help, on the subcommand parser `sub`."""
    p = sub.add_parser(
        "export",
        help="export a model with its CAMs as one ONNX graph",
        description="Export a CAM-exact classifier (GAP + one linear layer) as one ONNX graph whose outputs are the "
        "logits, the top-k classes, their scores and their class activation maps. Batch, height and width stay "
        f"dynamic unless --input-size fixes them. Exporter: PyTorch's TorchScript-based one, opset {OPSET}. The "
        "graph is checked against PyTorch with onnxruntime after writing. Run it without PyTorch: "
        "camloc-onnx MODEL.onnx IMAGES...",
    )
    p.add_argument("--model", default="default", help="'default', a checkpoint folder, or an architecture name")
    p.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    p.add_argument("--top-k", type=int, default=5, help="number of best classes the graph maps (default 5)")
    p.add_argument("--layer", default=None, help="feature layer, by its model.named_modules() name (default: found)")
    maps = p.add_mutually_exclusive_group()
    maps.add_argument(
        "--map-size", type=int, nargs=2, metavar=("H", "W"), default=None, help="CAMs resized in the graph to H x W"
    )
    maps.add_argument("--upsample", action="store_true", help="CAMs upsampled in the graph to the input's size")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="fix the input size (for models that need one); default: dynamic height and width",
    )
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs PyTorch check")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export the model to ONNX and check onnxruntime against PyTorch; 1 when the graph does not reproduce it."""
    if args.input_size is not None and min(args.input_size) < 32:
        raise InputError(f"--input-size: both sides must be at least 32, got {args.input_size[0]} {args.input_size[1]}")
    model = load(args.model)
    report = export_onnx(
        model,
        args.out,
        args.top_k,
        upsample=args.upsample,
        map_size=tuple(args.map_size) if args.map_size else None,
        input_size=tuple(args.input_size) if args.input_size else None,
        layer=args.layer,
        check=not args.no_check,
    )
    fixed = report.input_size
    shape = "dynamic batch, height and width" if fixed is None else f"dynamic batch, input {fixed[0]}x{fixed[1]}"
    print(f"camloc: wrote {report.path} ({EXPORTER} exporter, opset {OPSET}, top-{report.top_k}, {shape})")
    if args.no_check:
        return 0
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in report.max_diff.items() if k != "classes_out")
    print(f"camloc: onnxruntime vs PyTorch, largest differences: {diffs}; same classes: {report.same_classes}")
    worst = max(v / max(1.0, report.scale[k]) for k, v in report.max_diff.items() if k != "classes_out")
    if not report.same_classes or worst > MAX_DIFF:
        print(f"camloc: error: the graph does not reproduce PyTorch (tolerance {MAX_DIFF:g})", file=sys.stderr)
        return 1
    return 0
