"""`camloc train`: train a GAP net on Cluttered Fashion-MNIST (single process, or DDP under torchrun)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from camloc.errors import InputError


def parse_ints(text: str, what: str) -> list[int]:
    """'32,64,96' -> [32, 64, 96]; an `InputError` naming the option `what` otherwise."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what}: '{text}' is not a comma-separated list of integers") from None


def parse_range(text: str, what: str) -> tuple[float, float]:
    """'LOW,HIGH' -> (LOW, HIGH), one number x -> (x, x); an `InputError` naming the option `what` otherwise."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise InputError(f"{what}: '{text}' is not 'LOW,HIGH' or one number")
    return (parts[0], parts[-1])


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the Cluttered Fashion-MNIST data (shared with `camloc bench`)."""
    p.add_argument(
        "--idx-dir",
        default=None,
        help="folder with the four Fashion-MNIST *-idx?-ubyte.gz files "
        "(default: .cache/fashion-mnist from `make data`, or /usr/share/datasets/fashion-mnist)",
    )
    p.add_argument("--canvas", type=int, default=96, help="canvas side in pixels (default 96)")
    p.add_argument("--scale", default="1.0,2.0", help="item scale range LOW,HIGH (item side = 28 * scale)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated data (default 0)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `camloc train`, its options and help, on the subcommand parser `sub`."""
    p = sub.add_parser(
        "train",
        help="train a GAP net (CAM-ready) on Cluttered Fashion-MNIST",
        description="Train a GAP classifier on Cluttered Fashion-MNIST and write a checkpoint "
        "(model.safetensors + config.json) that camloc explain/evaluate load by path. "
        "Under `torchrun --nproc_per_node=N` the same command trains with DDP.",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint and resume state)")
    p.add_argument(
        "--arch",
        default="gapnet",
        help="gapnet (default), gapnet_boxreg, surgery:<alexnet|vgg16|"
        "googlenet|...>, or a CAM-exact timm / torchvision name (e.g. resnet18)",
    )
    p.add_argument("--final-stride", type=int, default=8, help="gapnet: feature map = input / stride (default 8)")
    p.add_argument("--widths", default="32,64,96,128", help="gapnet: channels of the stem and stages")
    p.add_argument("--norm", choices=["batch", "group", "none"], default="batch", help="gapnet normalisation")
    p.add_argument(
        "--init",
        default=None,
        help="initial weights from YOUR checkpoint folder or .safetensors file "
        "(nothing is downloaded); tensors matching by name and shape are loaded",
    )
    add_data_arguments(p)
    p.add_argument("--train-size", type=int, default=None, help="training samples (default: all 55000)")
    p.add_argument("--val-size", type=int, default=None, help="val samples checked each epoch (default: all 5000)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="effective batch over all processes (default 64)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and sample order")
    p.add_argument(
        "--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (default: at epoch ends only)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train (or `--resume`) a net on generated Cluttered Fashion-MNIST (DDP under torchrun), checkpoint and
    training state in `--out`; prints the last epoch's numbers as one JSON line; 0."""
    from camloc import distributed as D
    from camloc.data.cluttered import CLASSES, ClutteredFashionMNIST, ClutterSpec, TensorView
    from camloc.models.builder import model_for_training
    from camloc.training.loop import TrainConfig, fit

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epochs < 1 or args.batch_size < 1:
        raise InputError("--epochs and --batch-size must be at least 1")
    spec = ClutterSpec(canvas=args.canvas, scale=parse_range(args.scale, "--scale"), seed=args.data_seed)
    ctx = D.setup(args.device)
    try:
        train_ds = ClutteredFashionMNIST("train", args.train_size, spec, args.idx_dir)
        val_ds = ClutteredFashionMNIST("val", args.val_size, spec, args.idx_dir)
        if ctx.is_main:  # one process writes the cache, the others then read it
            train_arr, val_arr = train_ds.arrays(), val_ds.arrays()
        D.barrier(ctx)
        if not ctx.is_main:
            train_arr, val_arr = train_ds.arrays(), val_ds.arrays()
        torch.manual_seed(args.seed)
        model, arch_config, report = model_for_training(
            args.arch,
            len(CLASSES),
            final_stride=args.final_stride,
            widths=parse_ints(args.widths, "--widths"),
            norm=args.norm,
            init=args.init,
        )
        if report is not None and ctx.is_main and not args.quiet:
            print(f"camloc: --init {args.init}: {report.summary()}", file=sys.stderr)
        config = {
            **arch_config,
            "labels": CLASSES,
            "preprocess": spec.preprocess(),
            "name": f"{args.arch} on Cluttered Fashion-MNIST",
            "data": {
                "dataset": "cluttered-fashion-mnist",
                "canvas": spec.canvas,
                "scale": list(spec.scale),
                "seed": spec.seed,
            },
        }
        cfg = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            seed=args.seed,
            amp=not args.no_amp,
            checkpoint_every=args.checkpoint_every,
        )
        progress = fit(
            model,
            config,
            TensorView(train_arr),
            args.out,
            cfg,
            val=TensorView(val_arr),
            resume=args.resume,
            quiet=args.quiet,
            ctx=ctx,
        )
        if ctx.is_main:
            last = progress["history"][-1] if progress["history"] else {}
            print(
                json.dumps(
                    {
                        "out": str(args.out),
                        "epochs": progress["epoch"],
                        **last,
                        "train_seconds": round(progress["train_seconds"], 1),
                        "processes": ctx.world,
                    }
                )
            )
    finally:
        D.teardown(ctx)
    return 0
