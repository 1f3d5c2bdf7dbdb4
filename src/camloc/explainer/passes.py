"""`camloc.explain`: classes, scores, maps and boxes for a batch of images, through one path.

Two passes at most, both visible settings:
1. the classification pass at the model's native size (shorter side = its input size, aspect kept) gives the
   logits, the chosen classes and `raw`, the maps at feature resolution for which the CAM identity holds;
2. map passes at the sizes in `map_sizes` (shorter sides; a size equal to the native one reuses pass 1) give
   `maps`: each pass is upsampled to the image size (ReLU'd if asked) and divided by its largest magnitude; the
   passes are averaged, and `maps` is that average min-max normalised. Boxes threshold the average: at a fraction
   of its range ("minmax") or of its maximum ("max"); with one pass these are the two readings of the paper's
   "20% of the max" on the raw CAM. `map_sizes=()` uses pass 1 alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Literal

import torch
from PIL import Image
from torch import Tensor, nn

from camloc.boxes import DEFAULT_BOX_RULE, BoxRule, boxes_from_maps
from camloc.engine import combine_passes, min_max, normalize, upsample
from camloc.errors import InputError
from camloc.explainer.result import Result
from camloc.io import as_rgb_image
from camloc.methods import MapMethod, get_method
from camloc.models.adapters import as_logits, eval_mode
from camloc.models.tokens import fixed_input_size, input_size_for
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor, resize_batch, scaled_size

ImageInput = str | PathLike | Image.Image
Inputs = Tensor | ImageInput | Sequence[ImageInput]

# Defaults chosen by measurement on the localization set of benchmarks/bench_resolution.py (docs/resolution.md).
DEFAULT_MAP_SIZES: tuple[int, ...] = (640,)
DEFAULT_RELU = False
ScoreKind = Literal["softmax", "sigmoid"]
SCORE_KINDS: tuple[str, ...] = ("softmax", "sigmoid")


def explain(
    model: nn.Module,
    inputs: Inputs,
    top_k: int = 5,
    targets: Tensor | Sequence[Sequence[int]] | None = None,
    *,
    method: str | MapMethod = "cam",
    layer: str | None = None,
    map_sizes: Sequence[int] | None = None,
    relu: bool = DEFAULT_RELU,
    box_rule: BoxRule = DEFAULT_BOX_RULE,
    scores: ScoreKind = "softmax",
    min_score: float | None = None,
) -> Result:
    """Classify and explain images with class activation maps and boxes.

    inputs: file paths, PIL images, or a preprocessed (B, 3, H, W) tensor (used as is: no hidden preprocessing).
    top_k: how many of the best classes to map; `targets` instead gives explicit classes, one list per image
    (or a (B, k) tensor). map_sizes: shorter sides of the map passes (None: the measured default; () : the
    classification pass only). relu: clip negative evidence before normalising. box_rule: the
    threshold rule of the boxes (`camloc.boxes.BoxRule`). scores: "softmax" (one label per image) or "sigmoid"
    (multi-label models: each class its own probability). min_score: map every class whose score reaches it, best
    first (the best class alone when none does) instead of the top-k; images may then get different numbers of
    classes, and the per-class fields become lists of per-image tensors. The model is left as found (train/eval
    flags restored).
    """
    if scores not in SCORE_KINDS:
        raise InputError(f"scores must be one of {', '.join(SCORE_KINDS)}, got '{scores}'")
    if min_score is not None and (targets is not None or not 0.0 <= float(min_score) <= 1.0):
        raise InputError("min_score must lie in [0, 1] and cannot be combined with explicit target classes")
    info = info_of(model)
    mapper = get_method(method, layer=layer)
    sizes_setting = DEFAULT_MAP_SIZES if map_sizes is None else tuple(int(s) for s in map_sizes)
    fixed = fixed_input_size(model)
    native = info.preprocess.input_size if fixed is None else min(fixed)
    if fixed is not None:  # a ViT / Swin built for one input size: every image is resized whole to it
        if map_sizes is not None and any(s != native for s in sizes_setting):
            raise InputError(
                f"{info.name} takes {fixed[0]}x{fixed[1]} inputs only, so map passes at other sizes "
                f"({', '.join(map(str, sizes_setting))}) cannot run; use map sizes 'native' or build the model "
                "with dynamic_img_size=True"
            )
        sizes_setting = ()
    settings = {
        "method": getattr(mapper, "name", str(method)),
        "layer": mapper.layer_name(model),
        "map_sizes": list(sizes_setting),
        "relu": relu,
        "threshold": box_rule.threshold,
        "threshold_mode": box_rule.mode,
        "native_size": native,
        "scores": scores,
    }
    if min_score is not None:
        settings["min_score"] = float(min_score)
    if fixed is not None:
        settings["fixed_input_size"] = list(fixed)
    images, batch = _as_batch(inputs)
    n = len(images) if images is not None else len(batch) if batch is not None else 0
    if fixed is not None and batch is not None and tuple(batch.shape[-2:]) != fixed:
        raise InputError(
            f"{info.name} takes {fixed[0]}x{fixed[1]} inputs only, got a {batch.shape[-2]}x{batch.shape[-1]} "
            "tensor; resize it or build the model with dynamic_img_size=True"
        )
    target_tensor = _targets_tensor(targets, n)
    device, dtype = _device_dtype(model)

    with eval_mode(model):
        if images is None:
            assert batch is not None
            groups = [(list(range(n)), batch.to(device))]
        else:
            tensors = [image_to_tensor(im, native, info.preprocess, _size_for(model, im, native)) for im in images]
            groups = _group_by_shape(tensors, device, dtype)
        parts = []
        for group_idx, group_x in groups:
            subgroups: list[tuple[list[int], Tensor, Tensor | None]]
            if min_score is None:
                chosen = None if target_tensor is None else target_tensor[group_idx].to(device)
                subgroups = [(group_idx, group_x, chosen)]
            else:
                subgroups = _classes_above(model, group_x, group_idx, scores, float(min_score))
            for idx, x, chosen_targets in subgroups:
                logits, classes, raw = mapper.run(model, x, chosen_targets, top_k)
                out_size = (int(x.shape[-2]), int(x.shape[-1])) if images is None else None
                combined = _map_passes(
                    model, mapper, x, classes, raw, images, idx, native, sizes_setting, relu, out_size
                )
                maps, boxes = _maps_and_boxes(combined, box_rule)
                parts.append((idx, logits, classes, raw, maps, boxes.to(device)))

    out_classes: Tensor | list[Tensor]  # a list of (k_i,) when images have different numbers of classes
    out_boxes: Tensor | list[Tensor]
    if len(parts) == 1:  # one shape: the batched tensors are the result, no re-stacking
        _, all_logits, out_classes, raw, maps, out_boxes = parts[0]
    else:
        order = {i: (p, j) for p, part in enumerate(parts) for j, i in enumerate(part[0])}
        pick = [order[i] for i in range(n)]
        all_logits = torch.stack([parts[p][1][j] for p, j in pick])
        out_classes = _stack_if_same([parts[p][2][j] for p, j in pick])
        raw = _stack_if_same([parts[p][3][j] for p, j in pick])  # type: ignore[assignment]  # Result takes either
        maps = _stack_if_same([parts[p][4][j] for p, j in pick])
        out_boxes = _stack_if_same([parts[p][5][j] for p, j in pick])
    sizes = [tuple(m.shape[-2:]) for m in maps]
    probs = _probabilities(all_logits, scores)
    return Result(
        classes=out_classes,
        scores=_gather(probs, out_classes),
        logits=_gather(all_logits, out_classes),
        raw=raw,
        maps=maps,
        boxes=out_boxes,
        all_logits=all_logits,
        sizes=sizes,
        info=info,
        settings=settings,
    )


def _probabilities(logits: Tensor, kind: ScoreKind) -> Tensor:
    """(B, K) class probabilities: softmax over classes, or each class's sigmoid (multi-label)."""
    return logits.sigmoid() if kind == "sigmoid" else logits.softmax(dim=1)


def _gather(values: Tensor, classes: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
    """values (B, K) at classes (B, k), or per image when each image has its own number of classes."""
    if isinstance(classes, Tensor):
        return values.gather(1, classes)
    return [values[i, c] for i, c in enumerate(classes)]


def _classes_above(
    model: nn.Module, x: Tensor, idx: list[int], kind: ScoreKind, min_score: float
) -> list[tuple[list[int], Tensor, Tensor | None]]:
    """(image indices, their inputs, their classes (b, k)) per number k of classes whose score reaches
    `min_score` (best first; the best class alone when none does), from one classification pass."""
    with torch.no_grad():
        probs = _probabilities(as_logits(model(x)).float(), kind)
    by_count: dict[int, list[tuple[int, Tensor]]] = {}
    for j in range(len(idx)):
        order = probs[j].argsort(descending=True)
        k = max(1, int((probs[j] >= min_score).sum()))
        by_count.setdefault(k, []).append((j, order[:k]))
    out: list[tuple[list[int], Tensor, Tensor | None]] = []
    for rows in by_count.values():
        local = [j for j, _ in rows]
        out.append(([idx[j] for j in local], x[local], torch.stack([c for _, c in rows])))
    return out


def _maps_and_boxes(combined: Tensor | list[Tensor], rule: BoxRule) -> tuple[Tensor | list[Tensor], Tensor]:
    """Normalised maps and boxes of combined maps (a batched tensor, or a list when sizes differ)."""
    if isinstance(combined, Tensor):
        lo, hi = min_max(combined)
        return normalize(combined, lo=lo, hi=hi), boxes_from_maps(combined, rule, lo, hi)
    boxes = torch.stack([boxes_from_maps(m, rule) for m in combined])
    return [normalize(m) for m in combined], boxes


def _map_passes(
    model: nn.Module,
    mapper: MapMethod,
    x: Tensor,
    classes: Tensor,
    raw: Tensor,
    images: list[Image.Image] | None,
    idx: list[int],
    native: int,
    sizes: tuple[int, ...],
    relu: bool,
    out_size: tuple[int, int] | None,
) -> Tensor | list[Tensor]:
    """The combined maps (`engine.combine_passes`) at the output sizes: one (b, k, H, W) tensor when every image
    of the group has the same size, else a list of (k, H_i, W_i)."""
    out_sizes = [out_size] * len(idx) if images is None else [(images[i].height, images[i].width) for i in idx]
    same = len(set(out_sizes)) == 1
    passes: list = []
    assert all(size is not None for size in out_sizes)
    for s in sizes or (native,):
        pass_raw = raw if s == native else _pass_at_size(model, mapper, x, classes, images, idx, s)
        if same and isinstance(pass_raw, Tensor):  # one batched op
            passes.append(upsample(pass_raw.float(), out_sizes[0]))  # type: ignore[arg-type]  # checked above
        elif same:
            passes.append(torch.stack([upsample(r[None].float(), out_sizes[0])[0] for r in pass_raw]))  # type: ignore[arg-type]
        else:
            passes.append([upsample(pass_raw[j][None].float(), out_sizes[j])[0] for j in range(len(idx))])  # type: ignore[arg-type]
    if same:
        return combine_passes(passes, relu=relu)
    return [combine_passes([p[j] for p in passes], relu=relu) for j in range(len(idx))]


def _pass_at_size(
    model: nn.Module,
    mapper: MapMethod,
    x: Tensor,
    classes: Tensor,
    images: list[Image.Image] | None,
    idx: list[int],
    size: int,
) -> Tensor | list[Tensor]:
    """Raw maps of `classes` from a pass whose input's shorter side is `size` (images re-preprocessed from the
    originals; a tensor input is resized): (b, k, h, w), or a list of (k, h_j, w_j) when images of one shape at the
    native size round to different shapes at this one (600x400 and 640x427: 336x224 both, then 960x640 and 959x640)."""
    if images is None:
        return mapper.maps_only(model, resize_batch(x, size), classes)
    pre = info_of(model).preprocess
    tensors = [image_to_tensor(images[i], size, pre, _size_for(model, images[i], size)) for i in idx]
    shapes: dict[tuple[int, ...], list[int]] = {}
    for j, t in enumerate(tensors):
        shapes.setdefault(tuple(t.shape), []).append(j)
    if len(shapes) == 1:
        return mapper.maps_only(model, torch.stack(tensors).to(device=x.device, dtype=x.dtype), classes)
    out: list[Tensor] = [torch.empty(0)] * len(idx)
    for js in shapes.values():
        xs = torch.stack([tensors[j] for j in js]).to(device=x.device, dtype=x.dtype)
        for j, r in zip(js, mapper.maps_only(model, xs, classes[js]), strict=True):
            out[j] = r
    return out


def _size_for(model: nn.Module, image: Image.Image, short_side: int) -> tuple[int, int]:
    """Input (h, w) of `image` at `short_side`: aspect kept, unless the model takes one size or patch multiples."""
    return input_size_for(model, image.height, image.width, scaled_size(image.height, image.width, short_side))


def _as_batch(inputs: Inputs) -> tuple[list[Image.Image] | None, Tensor | None]:
    if isinstance(inputs, Tensor):
        if inputs.dim() == 3:
            inputs = inputs.unsqueeze(0)
        if inputs.dim() != 4 or inputs.shape[1] != 3:
            raise InputError(f"a tensor input must be (B, 3, H, W), got {tuple(inputs.shape)}")
        return None, inputs
    items = [inputs] if isinstance(inputs, (str, PathLike, Image.Image)) else list(inputs)
    if not items:
        raise InputError("no images given")
    return [as_rgb_image(it) for it in items], None


def _targets_tensor(targets: Tensor | Sequence[Sequence[int]] | None, n: int) -> Tensor | None:
    if targets is None:
        return None
    t = targets if isinstance(targets, Tensor) else None
    if t is None:
        rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in targets]
        if len({len(r) for r in rows}) > 1:
            raise InputError("every image needs the same number of target classes")
        t = torch.tensor(rows, dtype=torch.long)
    if t.dim() == 1:
        t = t[:, None]
    if t.shape[0] != n:
        raise InputError(f"{t.shape[0]} target lists for {n} images: give one list of classes per image")
    return t.long()


def _group_by_shape(tensors: list[Tensor], device: torch.device, dtype: torch.dtype) -> list[tuple[list[int], Tensor]]:
    """Batch the images whose preprocessed shapes agree (no padding: it would change the pooled features)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    return [(idx, torch.stack([tensors[i] for i in idx]).to(device=device, dtype=dtype)) for idx in groups.values()]


def _stack_if_same(items: list[Tensor]) -> Tensor | list[Tensor]:
    return torch.stack(items) if len({tuple(t.shape) for t in items}) == 1 else items


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in which float type the model computes (inputs made from images follow it)."""
    p = next(iter(model.parameters()), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, (p.dtype if p.is_floating_point() else torch.float32)
