"""Throughput of camloc's CAM and Grad-CAM against a plain forward pass, pytorch-grad-cam and torchcam.

The default model (EfficientNet-Lite0, bundled ImageNet weights), a batch of 16 images (the pictures in examples/,
repeated, resized to 224 x 224), maps of the top-5 classes of each image. All contenders run in one process,
interleaved round by round in a new random order each round (so a busy machine slows them alike and no contender
always follows the same one); the median round is reported, in images/s, and for the pairs compared the share of
rounds in which the first was faster than the second in that same round.

    python benchmarks/bench_methods.py [--rounds 7] [--device cpu|cuda] [--batch 16] [--threads N]

What each contender returns (the work each must do for usable top-5 maps):
- forward: model(x) and the top-5 classes, nothing else (the floor); `channels-last` feeds the same batch in the
  NHWC layout that camloc's methods use on a CPU (`camloc.methods.base.input_layout`), to show what the layout
  alone is worth;
- camloc cam / gradcam: raw maps (B, 5, 7, 7) from `method.run` (Grad-CAM in closed form at the CAM-exact layer);
  `+norm` min-max normalises them at 7 x 7 (what torchcam returns); `+maps` adds camloc's upsampling to 224 and
  min-max normalisation of all 80 maps; `caller's layout` sets `channels_last = False`;
- camloc gradcam autograd: closed_form=False, one forward and one batched backward pass;
- pytorch-grad-cam GradCAM: 5 calls (one target class per image per call), each forward + backward, normalised
  maps resized to 224 (its only output);
- torchcam CAM / GradCAM: one forward, then 5 extractor calls (GradCAM: 5 backward passes), 7 x 7 maps, each
  min-max normalised; `channels-last input` gives torchcam the same NHWC batch camloc makes for itself.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

import camloc
from camloc.engine import normalize, upsample
from camloc.io import load_image
from camloc.methods import CAM, GradCAM
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor

ROOT = Path(__file__).resolve().parents[1]
TOP_K = 5


def batch_of(n: int, size: int, model: torch.nn.Module) -> torch.Tensor:
    pre = info_of(model).preprocess
    images = [load_image(p).resize((size, size), Image.BILINEAR) for p in sorted((ROOT / "examples").glob("*.jpg"))]
    return torch.stack([image_to_tensor(images[i % len(images)], size, pre) for i in range(n)])


def contenders(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    size = tuple(x.shape[-2:])
    out: dict[str, Callable[[], object]] = {}

    def forward():
        with torch.no_grad():
            return model(x).topk(TOP_K, dim=1).indices

    x_cl = x.contiguous(memory_format=torch.channels_last)

    def forward_cl():
        with torch.no_grad():
            return model(x_cl).topk(TOP_K, dim=1).indices

    out["forward"] = forward
    out["forward channels-last"] = forward_cl
    out["camloc cam"] = lambda: CAM().run(model, x, top_k=TOP_K)
    caller_layout = CAM()
    caller_layout.channels_last = False
    out["camloc cam caller's layout"] = lambda: caller_layout.run(model, x, top_k=TOP_K)
    out["camloc cam +norm"] = lambda: normalize(CAM().run(model, x, top_k=TOP_K)[2])
    out["camloc cam +maps"] = lambda: normalize(upsample(CAM().run(model, x, top_k=TOP_K)[2], size))
    out["camloc gradcam"] = lambda: GradCAM().run(model, x, top_k=TOP_K)
    out["camloc gradcam +maps"] = lambda: normalize(upsample(GradCAM().run(model, x, top_k=TOP_K)[2], size))
    autograd = GradCAM(closed_form=False)
    out["camloc gradcam autograd +maps"] = lambda: normalize(upsample(autograd.run(model, x, top_k=TOP_K)[2], size))
    try:
        from pytorch_grad_cam import GradCAM as PgcGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def pgc():
            classes = forward()
            with PgcGradCAM(model=model, target_layers=[model.bn2]) as cam:
                return [
                    cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes[:, j]])
                    for j in range(TOP_K)
                ]

        out["pytorch-grad-cam gradcam"] = pgc
    except ImportError:
        print("pytorch-grad-cam is not installed: skipped", file=sys.stderr)
    try:
        from torchcam.methods import CAM as TcCAM
        from torchcam.methods import GradCAM as TcGradCAM

        def tc_cam(inp: torch.Tensor = x):
            with TcCAM(model, target_layer="bn2", fc_layer="classifier") as extractor:
                with torch.no_grad():
                    classes = model(inp).topk(TOP_K, dim=1).indices
                return [extractor(class_idx=classes[:, j].tolist())[0] for j in range(TOP_K)]

        def tc_gradcam():
            with TcGradCAM(model, target_layer="bn2") as extractor:
                scores = model(x)
                classes = scores.topk(TOP_K, dim=1).indices
                return [
                    extractor(class_idx=classes[:, j].tolist(), scores=scores, retain_graph=j < TOP_K - 1)[0]
                    for j in range(TOP_K)
                ]

        out["torchcam cam"] = tc_cam
        out["torchcam cam channels-last input"] = lambda: tc_cam(x_cl)
        out["torchcam gradcam"] = tc_gradcam
    except ImportError:
        print("torchcam is not installed: skipped", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the per-round order")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("torchcam").setLevel(logging.ERROR)
    device = torch.device(args.device)
    model = camloc.load("default").to(device).eval()
    x = batch_of(args.batch, args.size, model).to(device)
    runs = contenders(model, x)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in runs.values():  # warm-up (and layer discovery, cached per model)
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    rng = random.Random(args.seed)
    for _ in range(args.rounds):
        order = list(runs)
        rng.shuffle(order)
        for name in order:
            fn = runs[name]
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    rate = {name: args.batch / statistics.median(t) for name, t in times.items()}
    print(
        f"# {info_of(model).name}, batch {args.batch} x {args.size}x{args.size}, top-{TOP_K} maps, "
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.rounds} rounds"
    )
    print(f"{'contender':36s} {'images/s':>10s} {'vs forward':>11s}   {'fastest / slowest round, s':>26s}")
    for name, r in rate.items():
        print(f"{name:36s} {r:10.1f} {r / rate['forward']:10.3f}x   {min(times[name]):12.3f} / {max(times[name]):.3f}")
    ratios = [
        ("camloc cam / forward", "camloc cam", "forward"),
        ("camloc cam / forward channels-last", "camloc cam", "forward channels-last"),
        ("camloc cam caller's layout / forward", "camloc cam caller's layout", "forward"),
        ("camloc cam / torchcam cam", "camloc cam", "torchcam cam"),
        ("camloc cam +norm / torchcam cam", "camloc cam +norm", "torchcam cam"),
        ("camloc cam caller's layout / torchcam cam", "camloc cam caller's layout", "torchcam cam"),
        ("camloc cam / torchcam cam channels-last input", "camloc cam", "torchcam cam channels-last input"),
        ("camloc gradcam +maps / pytorch-grad-cam", "camloc gradcam +maps", "pytorch-grad-cam gradcam"),
        (
            "camloc gradcam autograd +maps / pytorch-grad-cam",
            "camloc gradcam autograd +maps",
            "pytorch-grad-cam gradcam",
        ),
        ("camloc gradcam / torchcam gradcam", "camloc gradcam", "torchcam gradcam"),
    ]
    print(f"\n{'ratio of median rates':50s} {'ratio':>7s}   first faster in")
    for label, a, b in ratios:
        if a in rate and b in rate:
            wins = sum(ta < tb for ta, tb in zip(times[a], times[b], strict=False))
            print(f"{label:50s} {rate[a] / rate[b]:6.2f}x   {wins}/{args.rounds} rounds")


if __name__ == "__main__":
    main()
