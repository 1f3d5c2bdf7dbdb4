"""onnxruntime vs PyTorch on the CPU: images/s of the default model with maps and boxes (`make bench` runs this).

One run, the same threads for both (--threads, default 1: fair on a shared machine), round-robin timing, best of
--repeats. Two rows per path:

  end to end   decoded example images -> classes, scores, maps at image size and boxes, with camloc explain's
               passes (classification pass at 224, map pass at 640, i.e. `zoom=False`, which is what the runtime
               does): `camloc.explain(model, images, zoom=False)` vs
               `camloc.onnx_runtime.OnnxCam(graph).explain(images)`;
  graph only   the exported computation alone (logits, top-5, CAMs at feature resolution) on the preprocessed
               inputs of those passes: PyTorch's `CamGraph` module vs `InferenceSession.run` -- the kernel's
               share of the end-to-end time.

Also prints whether both paths gave the same classes and boxes. The graph is exported to a temporary file first
(its export time is printed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
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
from camloc.onnx_runtime import OnnxCam, _groups

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--copies", type=int, default=2, help="each example image this many times per call")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = camloc.load("default")
    images = [load_image(p) for p in sorted(EXAMPLES.glob("*.jpg"))] * args.copies
    n = len(images)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = export_onnx(model, Path(tmp) / "default.onnx", top_k=5)
        export_s = time.perf_counter() - t0
        cam = OnnxCam(report.path, threads=args.threads)

        ref = camloc.explain(model, images, top_k=5, zoom=False)
        got = cam.explain(images, top_k=5)
        same = all(
            got[i].classes.tolist() == ref.classes[i].tolist() and got[i].boxes.tolist() == ref.boxes[i].tolist()
            for i in range(n)
        )

        # graph-only inputs: the preprocessed batches of both passes, grouped by shape as both paths batch them
        native = cam.preprocess.input_size
        arrays = []
        for s in (native, *DEFAULT_MAP_SIZES):
            prepared = [cam.prepare(im, s) for im in images]
            arrays.extend(np.stack([prepared[i] for i in idx]) for idx in _groups([x.shape for x in prepared]))
        graph = CamGraph(get_adapter(model), 5).eval()
        no_classes = torch.full((1, 5), -1, dtype=torch.long)
        tensors = [input_layout(torch.from_numpy(a)) for a in arrays]  # channels-last, as camloc.explain runs

        def torch_graph() -> None:
            with torch.no_grad():
                for t in tensors:
                    graph(t, no_classes)

        def ort_graph() -> None:
            for a in arrays:
                cam.session.run(None, {"image": a})

        secs = best_seconds(
            {
                "pytorch end to end": lambda: camloc.explain(model, images, top_k=5, zoom=False),
                "onnxruntime end to end": lambda: cam.explain(images, top_k=5),
                "pytorch graph only": torch_graph,
                "onnxruntime graph only": ort_graph,
            },
            args.repeats,
        )

    rate = {k: n / v for k, v in secs.items()}
    print(
        f"torch {torch.__version__}, onnxruntime via {EXPORTER} exporter (opset {OPSET}), threads {args.threads}, "
        f"{n} images ({len(images) // args.copies} examples x {args.copies}), passes at {native} and "
        f"{', '.join(map(str, DEFAULT_MAP_SIZES))}, best of {args.repeats}; export took {export_s:.1f} s"
    )
    print(f"same classes and boxes on every image: {same}")
    print(f"{'path':<26} {'images/s':>9} {'graph share':>12}")
    for path in ("pytorch", "onnxruntime"):
        share = secs[f"{path} graph only"] / secs[f"{path} end to end"]
        print(f"{path + ' end to end':<26} {rate[f'{path} end to end']:>9.2f} {share:>11.0%}")
        print(f"{path + ' graph only':<26} {rate[f'{path} graph only']:>9.2f}")
    e2e = rate["onnxruntime end to end"] / rate["pytorch end to end"]
    kernel = rate["onnxruntime graph only"] / rate["pytorch graph only"]
    print(f"onnxruntime / pytorch: end to end {e2e:.2f}x, graph only {kernel:.2f}x")
    if args.out:
        write_json(
            args.out,
            {
                "threads": args.threads,
                "images": n,
                "seconds": secs,
                "images_per_second": rate,
                "ratio_end_to_end": e2e,
                "ratio_graph_only": kernel,
                "same_classes_and_boxes": same,
                "max_diff_at_export": report.max_diff,
                "export_seconds": export_s,
            },
        )


if __name__ == "__main__":
    main()
