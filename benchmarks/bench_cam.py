"""Cost of CAMs over a plain forward pass, on the default model (`make bench` runs this).

Measured in one run, same input size, batches of 1 and 32:
  forward        model(x)
  cam+boxes      camloc.explain(model, x, top_k=5, map_sizes=()) : logits, top-5 CAMs, upsampled maps, boxes
  default        camloc.explain(model, x, top_k=5)               : the default settings (adds a pass at 640)
Prints images/s and the ratio to the forward pass. Target: cam+boxes costs under 5% over the forward pass.
"""

from __future__ import annotations

import argparse
import time

import torch

import camloc
from camloc.explainer.passes import DEFAULT_MAP_SIZES


def images_per_second(fns: list, x: torch.Tensor, repeats: int) -> list[float]:
    """Round-robin timing (each repeat runs every function once), best of `repeats`: robust to other load."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn(x)  # warm-up
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(x)
            times[k].append(time.perf_counter() - t0)
    return [x.shape[0] / min(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = camloc.load("default")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {args.size}x{args.size}, "
        f"default map sizes {DEFAULT_MAP_SIZES}"
    )
    print(f"{'batch':>5} {'forward img/s':>14} {'cam+boxes img/s':>16} {'ratio':>7} {'default img/s':>14} {'ratio':>7}")
    for b in (int(v) for v in args.batches.split(",")):
        x = torch.randn(b, 3, args.size, args.size)
        repeats = args.repeats if b > 1 else args.repeats * 4

        def forward(t: torch.Tensor) -> None:
            with torch.no_grad():
                model(t)

        def cam(t: torch.Tensor) -> None:
            camloc.explain(model, t, top_k=5, map_sizes=())

        def default(t: torch.Tensor) -> None:
            camloc.explain(model, t, top_k=5)

        f, c, d = images_per_second([forward, cam, default], x, repeats)
        print(f"{b:>5} {f:>14.1f} {c:>16.1f} {f / c:>7.3f} {d:>14.1f} {f / d:>7.3f}")
    print("ratio = time per image relative to the plain forward pass (1.05 = 5% slower)")


if __name__ == "__main__":
    main()
