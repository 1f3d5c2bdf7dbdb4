"""`camloc probe fit`: a linear probe on the pooled features of a frozen GAP net, saved as a loadable model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from camloc.distributed import pick_device
from camloc.errors import InputError
from camloc.explainer.runner import check_batch_size
from camloc.probe.auto import DEFAULT_AUTO, trial_summary
from camloc.probe.contrast import DEFAULT_CONTRAST, contrast_settings
from camloc.probe.features_cache import default_cache_dir
from camloc.probe.fit import CLASSIFIERS, DEFAULT_CS, fit_probe, open_probe_set


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `camloc probe`, its options and help, on the subcommand parser `sub`."""
    # (one subcommand today: `camloc probe fit`)
    p = sub.add_parser(
        "probe",
        help="linear probes on a frozen GAP net (CAMs for new classes)",
        description="Train a linear classifier on the globally average-pooled features of a frozen "
        "net; the result is a GAP net for the new classes that explain/evaluate load.",
    )
    probe_sub = p.add_subparsers(dest="probe_command", metavar="SUBCOMMAND", required=True)
    f = probe_sub.add_parser(
        "fit",
        help="extract features, fit the classifier, save the probe",
        description="Extract GAP features (cached), fit a linear classifier on them (by default logistic "
        "regression or the cells classifier, whichever the training images favour), save safetensors + config.json.",
    )
    f.add_argument(
        "--data", required=True, help="training images: a folder with one sub-folder per class, or FORMAT:PATH"
    )
    f.add_argument("--split", default="train", help="split to train on, for formats that have splits (default: train)")
    f.add_argument("--images", default=None, help="image folder, for formats whose images live apart")
    f.add_argument(
        "--backbone",
        default="default",
        help="frozen net: 'default', a checkpoint folder, or an architecture name (random weights)",
    )
    f.add_argument("--out", required=True, type=Path, help="output checkpoint folder")
    f.add_argument(
        "--classifier",
        choices=CLASSIFIERS,
        default="auto",
        help="auto (default: cells unless it classifies the training images significantly worse than logreg "
        "in cross-validation, then logreg), logreg (logistic regression), svm (linear SVM, as in the paper), span "
        "(each class a non-negative mix of the backbone's own classifier rows) or cells (rows fitted on feature "
        "cells labelled by boxes the training images draw themselves: the tightest maps of small objects); "
        "docs/probe.md",
    )
    f.add_argument(
        "--C",
        dest="cs",
        default=None,
        help="comma-separated C values to cross-validate (default: "
        + "; ".join(f"{k}: {','.join(f'{c:g}' for c in v)}" for k, v in DEFAULT_CS.items())
        + ")",
    )
    f.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    f.add_argument(
        "--contrast-threshold",
        type=float,
        default=None,
        help="cells and auto: the contrast boxes' threshold, a fraction of the score's max (default 0.7, measured on "
        "objects of one or two feature cells; 0.3 on the photos of docs/probe.md)",
    )
    f.add_argument("--batch-size", type=int, default=32, help="images per backbone batch (default 32)")
    f.add_argument(
        "--cache-dir", type=Path, default=None, help=f"feature cache (default: $CAMLOC_CACHE or {default_cache_dir()})"
    )
    f.add_argument("--no-cache", action="store_true", help="neither read nor write cached features")
    f.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    f.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    f.set_defaults(run=run_fit)


def parse_cs(text: str | None) -> list[float] | None:
    """`--C 0.1,1,10` -> [0.1, 1.0, 10.0] (None: the fit's default grid); positive numbers only."""
    if text is None:
        return None
    try:
        cs = [float(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise InputError(f"--C: '{text}' is not a comma-separated list of numbers") from None
    if not cs or any(c <= 0 for c in cs):
        raise InputError(f"--C: values must be positive, got '{text}'")
    return cs


def run_fit(args: argparse.Namespace) -> int:
    """`camloc probe fit`: fit a linear probe on the backbone's pooled features of the data (cached), save it as
    a checkpoint folder in `--out`; 0."""
    if args.folds < 2:
        raise InputError("--folds must be at least 2")
    cs = parse_cs(args.cs)
    if args.contrast_threshold is not None and args.classifier not in ("cells", "auto"):
        raise InputError("--contrast-threshold applies to --classifier cells or auto only")
    contrast = DEFAULT_CONTRAST if args.contrast_threshold is None else contrast_settings(args.contrast_threshold)
    check_batch_size(args.batch_size)
    data = open_probe_set(args.data, split=args.split, images=args.images)
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    quiet = args.quiet or not sys.stderr.isatty()
    probe = fit_probe(
        data,
        args.backbone,
        classifier=args.classifier,
        Cs=cs,
        contrast=contrast,
        folds=args.folds,
        batch_size=args.batch_size,
        cache_dir=cache_dir,
        device=pick_device(args.device),
        progress=not quiet,
    )
    probe.save(args.out)
    if not args.quiet:
        fit = probe.fit
        trial = trial_summary(fit.settings)
        chosen = " chosen by auto" if trial else ""
        print(
            f"camloc: probe ({fit.classifier}{chosen}, C={fit.C:g}) on {probe.n_images} image(s) of "
            f"{len(probe.classes)} classes: cross-validated accuracy {fit.cv_accuracy:.3f} ({fit.folds} folds); "
            f"saved to {args.out}/",
            file=sys.stderr,
        )
        if trial:
            rule = (
                f" (cells unless p < {DEFAULT_AUTO.alpha:g}; docs/probe.md)" if "auto_p_value" in fit.settings else ""
            )
            print(f"camloc: {trial}{rule}", file=sys.stderr)
        if probe.n_skipped:
            print(f"camloc: {probe.n_skipped} unreadable image(s) skipped", file=sys.stderr)
    return 0
