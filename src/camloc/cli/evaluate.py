"""`camloc evaluate`: localization metrics of score maps or of a model on a dataset (parsing and printing only)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from camloc.cli._options import add_box_rule_options, box_rule_from
from camloc.errors import InputError
from camloc.explainer.runner import check_batch_size
from camloc.io import write_json
from camloc.preprocess import parse_map_sizes

log = logging.getLogger("camloc")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `camloc evaluate`, its options and help, on the subcommand parser `sub`."""
    p = sub.add_parser(
        "evaluate",
        help="localization (MaxBoxAcc, PxAP, top-1/GT-known loc) and faithfulness metrics of score maps or a model",
        description="Evaluate weakly-supervised localization on a dataset. Maps come from a folder "
        "of <image_id>.npy files (--maps) or from a model (--model). Conventions: "
        "docs/evaluation.md.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="FORMAT:PATH with FORMAT one of wsol, ilsvrc, cub, voc, coco, "
        "cluttered (cluttered:test, or cluttered:IDX_DIR with --split)",
    )
    p.add_argument("--images", default=None, help="image root folder (needed with --model for wsol metadata)")
    p.add_argument("--mask-root", default=None, help="mask root folder (wsol metadata with masks: PxAP)")
    p.add_argument(
        "--split",
        default=None,
        help="split for cub (train/test/all), voc (ImageSets/Main name) and cluttered:IDX_DIR (train/val/test)",
    )
    p.add_argument("--class-map", default=None, help="file of 'dataset_class,model_index' lines (default: identity)")
    p.add_argument(
        "--class-names",
        default=None,
        help="voc: file of the dataset's class names, one a line (labelImg / labelme classes.txt; default: VOC's 20)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--maps", default=None, help="folder of <image_id>.npy score maps (2-D, any resolution)")
    src.add_argument(
        "--model", default=None, help="'default', a checkpoint folder, an architecture name or timm:NAME.TAG"
    )
    p.add_argument("--method", default="cam", help="map method with --model (default: cam)")
    p.add_argument("--map-sizes", default=None, help="map passes with --model, e.g. '224,448' or 'native'")
    p.add_argument("--save-maps", default=None, help="with --model: write the true class's maps as <image_id>.npy")
    p.add_argument("--interval", type=float, default=0.01, help="CAM threshold step (default 0.01; 0.001 finer)")
    p.add_argument(
        "--resolution",
        choices=["224", "native"],
        default="224",
        help="224: wsolevaluation's protocol (default); native: maps at the original image size",
    )
    p.add_argument(
        "--box-generator",
        choices=["paper", "release"],
        default="paper",
        help="top-k / GT-known loc boxes: the paper's rule (--threshold, --threshold-mode) or the original release's",
    )
    add_box_rule_options(p)
    p.add_argument(
        "--calibrate-on",
        default=None,
        help="FORMAT:PATH of another split (e.g. val): its best CAM thresholds are reported on --data",
    )
    p.add_argument("--report", default=None, help="write the JSON report here")
    p.add_argument("--coco-results", default=None, help="write per-image boxes as a COCO results JSON here")
    f = p.add_argument_group("faithfulness (docs/evaluation.md, 'Faithfulness')")
    f.add_argument(
        "--faithfulness",
        default=None,
        metavar="METRICS",
        help="comma-separated: deletion, insertion, average-drop, increase, road, pointing-game, or 'all' "
        "(all but pointing-game need --model)",
    )
    f.add_argument(
        "--baseline",
        choices=["rise", "blur", "mean", "zero"],
        default="rise",
        help="what deletion / insertion put in place of pixels: rise (default: black for deletion, blurred image "
        "for insertion), blur, mean (normalisation mean colour), zero (black)",
    )
    f.add_argument("--steps", type=int, default=20, help="deletion / insertion steps (default 20)")
    f.add_argument(
        "--faith-score",
        choices=["softmax", "logit"],
        default="softmax",
        help="target score of the perturbed inputs (default softmax probability)",
    )
    f.add_argument(
        "--faith-target",
        choices=["predicted", "true"],
        default="predicted",
        help="whose map is perturbed: the model's top-1 class (default) or the true class",
    )
    f.add_argument("--road-noise", type=float, default=0.01, help="ROAD imputation noise std (default 0.01)")
    f.add_argument("--pointing-tolerance", type=float, default=15.0, help="pointing game tolerance, px (default 15)")
    f.add_argument("--faith-batch-size", type=int, default=64, help="perturbed inputs per forward pass (default 64)")
    p.add_argument("--batch-size", type=int, default=16, help="images per model batch with --model (default 16)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty() or int(os.environ.get("RANK", "0")) > 0:
        return None
    from tqdm import tqdm

    return lambda items, n: tqdm(items, total=n, unit="img", file=sys.stderr)


def format_table(report: dict) -> str:
    """The report's numbers as a small text table."""
    lines = [f"images: {report['n_images']}"]
    for key in ("maxboxacc", "maxboxacc_v2"):
        if key in report:
            row = "  ".join(f"IoU{k}={v:6.2f}" if k != "mean" else f"mean={v:6.2f}" for k, v in report[key].items())
            lines.append(f"{key:<14}{row}")
    for key in ("calibrated",):
        if key in report:
            for sub, vals in report[key].items():
                lines.append(f"{sub + ' @cal':<14}" + "  ".join(f"{k}={v:6.2f}" for k, v in vals.items()))
    for key in ("pxap", "top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc"):
        if key in report:
            lines.append(f"{key:<14}{report[key]:6.2f}")  # noqa: PERF401
    faith = report.get("faithfulness", {})
    lines += [
        f"{key:<24}{faith[key]:8.4f}"
        for key in (
            "deletion_auc",
            "insertion_auc",
            "average_drop",
            "increase_in_confidence",
            "pointing_game",
            "pointing_game_difficult",
        )
        if key in faith
    ]
    if "road" in faith:
        road = faith["road"]
        lines.append(f"{'road morf / lerf':<24}{road['morf']:8.4f} / {road['lerf']:.4f}")
    problems = {k: v for k, v in report.get("problems", {}).items() if v}
    if problems:
        lines.append("problems: " + ", ".join(f"{k}={v}" for k, v in problems.items()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Open the data, evaluate the model or the saved maps, print the table and write the report / COCO results;
    1 if an output file could not be written (the table is printed first), else 0."""
    from camloc.data import FORMATS, open_dataset
    from camloc.data.base import accepts_option
    from camloc.distributed import pick_device
    from camloc.localize.evaluation import Settings, coco_results, evaluate
    from camloc.localize.faithfulness import FaithfulnessSettings, parse_metrics

    check_batch_size(args.batch_size)
    if args.report:
        check_writable_file(args.report)
    if args.coco_results:
        check_writable_file(args.coco_results)
    opts = {"images": args.images, "mask_root": args.mask_root, "split": args.split, "classes": args.class_names}
    dataset = open_dataset(args.data, class_map=args.class_map, **opts)
    if args.model is not None and args.class_map is None and args.data.startswith("voc:"):
        log.warning(
            "evaluating a VOC dataset without --class-map: dataset class i is scored as model output i, so "
            "top-1 / top-5 numbers mean nothing for an ImageNet model; give a 'dataset_class,model_index' file"
        )
    calibration = None
    if args.calibrate_on:  # shares the options that apply to its format
        fmt = args.calibrate_on.partition(":")[0]
        shared = {k: v for k, v in opts.items() if fmt in FORMATS and accepts_option(fmt, k)}
        calibration = open_dataset(args.calibrate_on, class_map=args.class_map, **shared)
    settings = Settings(
        interval=args.interval,
        resolution=args.resolution,
        box_generator=args.box_generator,
        box_rule=box_rule_from(args),
    )
    faith = None
    if args.faithfulness:
        faith = FaithfulnessSettings(
            metrics=parse_metrics(args.faithfulness),
            steps=args.steps,
            baseline=args.baseline,
            score=args.faith_score,
            target=args.faith_target,
            road_noise=args.road_noise,
            tolerance_px=args.pointing_tolerance,
            batch_size=args.faith_batch_size,
        )
        if faith.needs_model and args.model is None:
            raise InputError(
                f"--faithfulness {args.faithfulness}: perturbation metrics need --model (maps alone "
                "cannot be scored; pointing-game works with --maps)"
            )
    model = None
    map_sizes = None
    if args.model is not None:
        from camloc.models.zoo import load

        model = load(args.model)
        model = model.to(pick_device(args.device, int(os.environ.get("LOCAL_RANK", "0"))))  # torchrun: one GPU each
        map_sizes = parse_map_sizes(args.map_sizes)
    elif args.save_maps:
        raise InputError("--save-maps needs --model (maps given with --maps are already saved)")
    results: list = []
    report = evaluate(
        dataset,
        maps_dir=args.maps,
        model=model,
        settings=settings,
        calibration=calibration,
        save_maps=args.save_maps,
        batch_size=args.batch_size,
        method=args.method,
        map_sizes=map_sizes,
        progress=_progress(args.quiet),
        results=results,
        faithfulness=faith,
    )
    if int(os.environ.get("RANK", "0")) > 0:
        return 0
    print(format_table(report))
    status = 0
    for target, content in ((args.report, report), (args.coco_results, None)):
        if not target:
            continue
        try:
            write_json(target, content if content is not None else coco_results(results, dataset))
        except OSError as exc:  # the numbers are printed above: the evaluation is not lost
            print(
                f"camloc: error: cannot write {target} ({exc.strerror or exc}); the table above holds the result",
                file=sys.stderr,
            )
            status = 1
    if args.report and status == 0:
        print(f"report: {Path(args.report)}")
    return status


def check_writable_file(target: str) -> None:
    """Refuse, before hours of evaluation, an output file whose folder cannot take it."""
    folder = Path(target).parent
    if Path(target).is_dir():
        raise InputError(f"{target}: is a folder, not a file to write")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{target}: cannot write there ({probe} is not a writable folder)")
