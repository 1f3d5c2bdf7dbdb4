"""One ONNX graph that classifies and maps: logits, the top-k classes, their scores and their CAMs.

Graph (names are the ONNX input / output names):

- input ``image``: (B, 3, H, W) float32, preprocessed as camloc does (`camloc.preprocess.image_to_array`);
  B, H and W are dynamic unless the export fixes the input size (`input_size=(H, W)`);
- input ``classes``: (B, k) int64, optional: its default (an initializer of -1s, shape (1, k)) maps the top-k
  classes; entries >= 0 name the classes to map instead (a second pass at another size maps the classes the
  first pass chose, as `camloc.explain` does);
- outputs ``logits`` (B, K), ``classes`` (B, k) int64 best first, ``scores`` (B, k) softmax probabilities and
  ``cams`` (B, k, h, w) raw CAMs: at feature resolution (the CAM identity mean(CAM_c) + b_c = logit_c holds),
  or upsampled in the graph (bilinear, half-pixel centres = PyTorch's align_corners=False) to the input size
  (`upsample=True`) or to a fixed `map_size`.

The exporter is PyTorch's TorchScript-based one (`torch.onnx.export(dynamo=False)`, opset 17). The example batch
has two images: a batch of one lets the tracer treat the batch size as a constant. What camloc needs to run the
graph without PyTorch (labels, preprocessing, model name) is stored as JSON in the model's metadata under
``camloc`` (read by `camloc.onnx_runtime`).
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camloc.errors import InputError
from camloc.io import atomic_path
from camloc.methods.cam import CAM
from camloc.models.adapters import CamAdapter, eval_mode, get_adapter
from camloc.models.tokens import fixed_input_size
from camloc.models.zoo import info_of

OPSET = 17
EXPORTER = "torchscript"
METADATA_KEY = "camloc"
FORMAT_VERSION = 1
INPUT_NAMES = ["image", "classes"]
OUTPUT_NAMES = ["logits", "classes_out", "scores", "cams"]


class CamGraph(nn.Module):
    """The module that is exported: (image (B, 3, H, W), classes (B, k) int64, -1 = top-k) ->
    (logits (B, K), classes (B, k), scores (B, k), cams (B, k, h, w))."""

    def __init__(
        self, adapter: CamAdapter, top_k: int, upsample: bool = False, map_size: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.adapter = adapter
        self.model = adapter.model  # registered, so that its parameters are the graph's initializers
        self.top_k = top_k
        self.upsample = upsample
        self.map_size = map_size

    def forward(self, image: Tensor, classes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """image (B, 3, H, W), classes (B, k) int64 (-1: the top-k) -> logits (B, K), classes (B, k), softmax
        scores (B, k), CAMs (B, k, h, w) (at the input's (H, W) with `upsample`, at `map_size` if set)."""
        features, logits = self.adapter.forward(image)
        top = logits.topk(self.top_k, dim=1).indices
        chosen = torch.where(classes < 0, top, classes)
        scores = logits.softmax(dim=1).gather(1, chosen)
        cams = self._maps(features, chosen)
        if self.upsample:
            cams = F.interpolate(cams, size=image.shape[-2:], mode="bilinear", align_corners=False)
        elif self.map_size is not None:
            cams = F.interpolate(cams, size=self.map_size, mode="bilinear", align_corners=False)
        return logits, chosen, scores, cams

    def _maps(self, features: Tensor, chosen: Tensor) -> Tensor:
        """Raw CAMs (B, k, h, w) as camloc's CAM computes them (`CamAdapter.maps`: heads with a norm of the pooled
        vector scale each image's maps)."""
        return self.adapter.maps(features, chosen)


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime reproduces PyTorch on the check inputs."""

    path: Path
    top_k: int
    num_classes: int
    dynamic: bool
    max_diff: dict[str, float]  # output name -> largest |onnxruntime - PyTorch| over the check inputs
    scale: dict[str, float]  # output name -> largest |PyTorch| over the check inputs (for relative tolerances)
    same_classes: bool
    input_size: tuple[int, int] | None = None  # the fixed (H, W), or None when height and width are dynamic


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    top_k: int = 5,
    *,
    upsample: bool = False,
    map_size: tuple[int, int] | None = None,
    input_size: tuple[int, int] | None = None,
    layer: str | None = None,
    check: bool = True,
) -> ExportReport:
    """Export `model` (CAM-exact: GAP + one linear layer) to `out` as one ONNX graph (see the module docstring).

    input_size: (H, W) fixes the input size; None keeps B, H, W dynamic, except for a model that takes one
    input size only (a ViT without dynamic_img_size, a timm config with fixed_input_size): then that size.
    upsample / map_size: CAMs at the input size / at a fixed (h, w) instead of the feature resolution.
    check: run onnxruntime on random inputs (batch 1 and 3; square and non-square unless the size is fixed) and
    report the largest differences from PyTorch. The file is written atomically.
    """
    if upsample and map_size is not None:
        raise InputError("give either upsample or map_size, not both")
    _require("onnx", "onnxruntime")
    info = info_of(model)
    p = next(iter(model.parameters()), None)
    if p is not None and (p.device.type != "cpu" or p.dtype != torch.float32):
        model = copy.deepcopy(model).float().cpu()  # the caller's model stays where and what it was
    adapter = get_adapter(model, feature_layer=layer)
    num_classes = adapter.num_classes
    if not 1 <= top_k <= num_classes:
        raise InputError(f"--top-k must lie in 1..{num_classes} for a model with {num_classes} classes")
    if map_size is not None and min(map_size) < 1:
        raise InputError(f"map size must be positive, got {map_size}")
    needed = fixed_input_size(model) or _config_input_size(model)
    if needed is not None and input_size is None:
        input_size = needed  # a ViT-like model takes this size only: the graph does too
    elif needed is not None and input_size is not None and tuple(input_size) != needed and fixed_input_size(model):
        raise InputError(f"{info.name} takes {needed[0]}x{needed[1]} inputs only, not {input_size[0]}x{input_size[1]}")
    graph = CamGraph(adapter, top_k, upsample=upsample, map_size=map_size)
    # torch.onnx.export ends with graph.train(graph.training), recursively: the wrapper alone says "eval" (a new
    # module says "train"), and eval_mode below restores the model's own flags
    graph.training = False
    native = info.preprocess.input_size
    example_hw = input_size or (native, native + native // 4)  # non-square: no square-only shortcut traced in
    example = _random_image(2, *example_hw, seed=0)  # batch 2: a batch of 1 could be traced as a constant
    example_classes = torch.full((2, top_k), -1, dtype=torch.long)
    dynamic_axes = {"image": {0: "batch"}, "classes": {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}}
    if input_size is None:
        dynamic_axes["image"].update({2: "height", 3: "width"})
        if upsample:
            dynamic_axes["cams"].update({2: "height", 3: "width"})
        elif map_size is None:
            dynamic_axes["cams"].update({2: "map_height", 3: "map_width"})
    out = Path(out)
    metadata = {
        "format_version": FORMAT_VERSION,
        "name": info.name,
        "labels": list(info.labels),
        "preprocess": info.preprocess.to_dict(),
        "top_k": top_k,
        "num_classes": num_classes,
        "layer": CAM(layer=layer).layer_name(model),  # what camloc explain reports as settings["layer"]
        "input_size": list(input_size) if input_size else None,
        "maps": "input" if upsample else (list(map_size) if map_size else "features"),
        "exporter": EXPORTER,
        "opset": OPSET,
    }
    with eval_mode(model), torch.no_grad(), atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python values and the exporter's deprecation
        torch.onnx.export(
            graph,
            (example, example_classes),
            str(tmp),
            dynamo=False,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
        )
        _finish(Path(tmp), top_k, metadata)
    report = ExportReport(out, top_k, num_classes, input_size is None, {}, {}, True, input_size)
    if check:
        with eval_mode(model), torch.no_grad():
            _check(graph, out, report, input_size or None, native)
    return report


def _require(*modules: str) -> None:
    """A one-line error naming the extra to install when the ONNX packages are missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"ONNX export needs {', '.join(missing)}: pip install 'camloc[onnx]'")


def _config_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The input size of a timm model whose config says `fixed_input_size` (else None)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("fixed_input_size") and "input_size" in cfg:
        return int(cfg["input_size"][-2]), int(cfg["input_size"][-1])
    return None


def _random_image(batch: int, height: int, width: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=gen)


def _finish(path: Path, top_k: int, metadata: dict) -> None:
    """Make `classes` optional (an initializer of -1s, shape (1, k), broadcast over the batch), give its batch
    axis its own name, and store camloc's metadata. Rewrites the file in place."""
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    classes_input = next(i for i in graph.input if i.name == "classes")
    dim0 = classes_input.type.tensor_type.shape.dim[0]
    dim0.Clear()
    dim0.dim_param = "class_rows"  # 1 (the default, broadcast) or the batch size
    graph.initializer.append(onnx.numpy_helper.from_array(np.full((1, top_k), -1, dtype=np.int64), "classes"))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.producer_name = "camloc"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _check(graph: CamGraph, path: Path, report: ExportReport, input_size: tuple[int, int] | None, native: int) -> None:
    """Run PyTorch and onnxruntime on random inputs; record the largest differences per output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the overridable `classes` initializer is by design; no warning for it
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shapes = [(1, *input_size), (3, *input_size)] if input_size else [(1, native, native), (3, native, native + 37)]
    diffs = dict.fromkeys(OUTPUT_NAMES, 0.0)
    scale = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for i, (b, h, w) in enumerate(shapes):
        x = _random_image(b, h, w, seed=1 + i)
        ref = graph(x, torch.full((1, graph.top_k), -1, dtype=torch.long))
        got = session.run(None, {"image": x.numpy()})
        for name, r, g in zip(OUTPUT_NAMES, ref, got, strict=True):
            if r.shape != g.shape:
                raise InputError(f"{path}: onnxruntime's '{name}' has shape {g.shape}, PyTorch's {tuple(r.shape)}")
            diffs[name] = max(diffs[name], float(np.abs(g.astype(np.float64) - r.double().numpy()).max()))
            scale[name] = max(scale[name], float(r.double().abs().max()))
        report.same_classes &= bool(np.array_equal(got[1], ref[1].numpy()))
    report.max_diff, report.scale = diffs, scale
