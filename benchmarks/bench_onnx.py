"""onnxruntime vs PyTorch on the CPU: images/s of the default model with maps and boxes (`make bench` runs this).

One run, the same threads for both (--threads, default 1: fair on a shared machine), round-robin timing, best of
--repeats. Two settings, both as `camloc explain` and `camloc-onnx` run them:

  zoom (default)  the classification pass at 224, then the coarse-to-fine zoom: windows around the small objects
                  passed again at 320 for the classes the first pass chose;
  zoom off        the classification pass at 224 and a map pass at 640 (`--zoom off`, `zoom=False`).

Two rows per path and setting:

  end to end   decoded example images -> classes, scores, maps at image size and boxes:
               `camloc.explain(model, images, zoom=...)` vs `camloc.onnx_runtime.OnnxCam(graph).explain(images,
               zoom=...)`;
  graph only   the exported computation alone (logits, top-5, CAMs at feature resolution) on the very batches
               (inputs and classes) the runtime fed its graph in that setting: PyTorch's `CamGraph` module vs
               `InferenceSession.run` -- the kernel's share of the end-to-end time.

Also prints whether both paths gave the same classes and boxes, and the machine's load average before and after.
The graph is exported to a temporary file first (its export time is printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

import camloc
from camloc.explainer.passes import DEFAULT_MAP_SIZES
from camloc.export import export_onnx
from camloc.export.onnx import EXPORTER, OPSET, CamGraph
from camloc.io import load_image, write_json
from camloc.methods.base import input_layout
from camloc.models.adapters import get_adapter
from camloc.onnx_runtime import OnnxCam
from camloc.zoom import DEFAULT_ZOOM

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def best_seconds(fns: dict, repeats: int) -> dict[str, float]:
    """Round-robin (each repeat runs every function once), best of `repeats`: robust to other load."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


SETTINGS = {"zoom": None, "zoom off": False}  # the `zoom` argument of both paths


def graph_batches(cam: OnnxCam, images: list, zoom: bool | None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The (input, classes) batches `cam.explain(images, zoom=zoom)` feeds its graph, recorded from one call."""
    calls: list[tuple[np.ndarray, np.ndarray | None]] = []
    run = cam.run

    def recording(x: np.ndarray, classes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        calls.append((x, classes))
        return run(x, classes)

    cam.run = recording  # type: ignore[method-assign]
    try:
        cam.explain(images, top_k=5, zoom=zoom)
    finally:
        del cam.run  # the class's method again
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--copies", type=int, default=2, help="each example image this many times per call")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model = camloc.load("default")
    images = [load_image(p) for p in sorted(EXAMPLES.glob("*.jpg"))] * args.copies
    n = len(images)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = export_onnx(model, Path(tmp) / "default.onnx", top_k=5)
        export_s = time.perf_counter() - t0
        cam = OnnxCam(report.path, threads=args.threads)
        graph = CamGraph(get_adapter(model), 5).eval()

        same: dict[str, bool] = {}
        fns: dict[str, Callable[[], object]] = {}
        for name, zoom in SETTINGS.items():
            ref = camloc.explain(model, images, top_k=5, zoom=zoom)
            got = cam.explain(images, top_k=5, zoom=zoom)
            same[name] = all(
                got[i].classes.tolist() == ref.classes[i].tolist() and got[i].boxes.tolist() == ref.boxes[i].tolist()
                for i in range(n)
            )
            batches = graph_batches(cam, images, zoom)
            # PyTorch gets the same batches: channels-last inputs (as camloc.explain runs them), classes padded
            # with -1 (= the top-k) to the graph's k, as OnnxCam.run pads them
            tensors = [
                (
                    input_layout(torch.from_numpy(x)),
                    torch.full((1, 5), -1, dtype=torch.long)
                    if c is None
                    else torch.from_numpy(np.pad(c, ((0, 0), (0, 5 - c.shape[1])), constant_values=-1)),
                )
                for x, c in batches
            ]

            def torch_graph(tensors=tensors) -> None:
                with torch.no_grad():
                    for t, c in tensors:
                        graph(t, c)

            def ort_graph(batches=batches) -> None:
                for x, c in batches:
                    cam.run(x, c)

            fns[f"pytorch end to end, {name}"] = partial(camloc.explain, model, images, top_k=5, zoom=zoom)
            fns[f"onnxruntime end to end, {name}"] = partial(cam.explain, images, top_k=5, zoom=zoom)
            fns[f"pytorch graph only, {name}"] = torch_graph
            fns[f"onnxruntime graph only, {name}"] = ort_graph
            print(f"{name}: {len(batches)} graph runs per call ({sum(len(x) for x, _ in batches)} inputs)")
        secs = best_seconds(fns, args.repeats)

    load_after = os.getloadavg()
    rate = {k: n / v for k, v in secs.items()}
    print(
        f"torch {torch.__version__}, onnxruntime via {EXPORTER} exporter (opset {OPSET}), threads {args.threads}, "
        f"{n} images ({len(images) // args.copies} examples x {args.copies}), zoom {DEFAULT_ZOOM} or passes at "
        f"{cam.preprocess.input_size} and {', '.join(map(str, DEFAULT_MAP_SIZES))}, best of {args.repeats}; "
        f"export took {export_s:.1f} s"
    )
    print(
        f"load average (1, 5, 15 min) before {', '.join(f'{v:.1f}' for v in load_before)}, "
        f"after {', '.join(f'{v:.1f}' for v in load_after)} on {os.cpu_count()} CPUs"
    )
    ratios = {}
    for name in SETTINGS:
        print(f"\n{name}: same classes and boxes on every image: {same[name]}")
        print(f"{'path':<26} {'images/s':>9} {'graph share':>12}")
        for path in ("pytorch", "onnxruntime"):
            share = secs[f"{path} graph only, {name}"] / secs[f"{path} end to end, {name}"]
            print(f"{path + ' end to end':<26} {rate[f'{path} end to end, {name}']:>9.2f} {share:>11.0%}")
            print(f"{path + ' graph only':<26} {rate[f'{path} graph only, {name}']:>9.2f}")
        e2e = rate[f"onnxruntime end to end, {name}"] / rate[f"pytorch end to end, {name}"]
        kernel = rate[f"onnxruntime graph only, {name}"] / rate[f"pytorch graph only, {name}"]
        ratios[name] = {"end_to_end": e2e, "graph_only": kernel}
        print(f"onnxruntime / pytorch: end to end {e2e:.2f}x, graph only {kernel:.2f}x")
    if args.out:
        write_json(
            args.out,
            {
                "threads": args.threads,
                "images": n,
                "seconds": secs,
                "images_per_second": rate,
                "ratios": ratios,
                "same_classes_and_boxes": same,
                "max_diff_at_export": report.max_diff,
                "export_seconds": export_s,
                "load_average_before": load_before,
                "load_average_after": load_after,
            },
        )


if __name__ == "__main__":
    main()
