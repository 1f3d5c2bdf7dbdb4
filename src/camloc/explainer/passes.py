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

import torch
from PIL import Image
from torch import Tensor, nn

from camloc.boxes import DEFAULT_BOX_RULE, BoxRule, boxes_from_maps
from camloc.engine import combine_passes, min_max, normalize, upsample
from camloc.errors import InputError
from camloc.explainer.result import Result
from camloc.io import as_rgb_image
from camloc.methods import MapMethod, get_method
from camloc.models.adapters import eval_mode
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor, resize_batch

ImageInput = str | PathLike | Image.Image
Inputs = Tensor | ImageInput | Sequence[ImageInput]

# Defaults chosen by measurement on the localization set of benchmarks/bench_resolution.py (docs/resolution.md).
DEFAULT_MAP_SIZES: tuple[int, ...] = (640,)
DEFAULT_RELU = False


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
) -> Result:
    """Classify and explain images with class activation maps and boxes.

    inputs: file paths, PIL images, or a preprocessed (B, 3, H, W) tensor (used as is: no hidden preprocessing).
    top_k: how many of the best classes to map; `targets` instead gives explicit classes, one list per image
    (or a (B, k) tensor). map_sizes: shorter sides of the map passes (None: the measured default; () : the
    classification pass only). relu: clip negative evidence before normalising. box_rule: the
    threshold rule of the boxes (`camloc.boxes.BoxRule`). The model is left as found (train/eval flags restored).
    """
    info = info_of(model)
    mapper = get_method(method, layer=layer)
    native = info.preprocess.input_size
    sizes_setting = DEFAULT_MAP_SIZES if map_sizes is None else tuple(int(s) for s in map_sizes)
    settings = {
        "method": getattr(mapper, "name", str(method)),
        "map_sizes": list(sizes_setting),
        "relu": relu,
        "threshold": box_rule.threshold,
        "threshold_mode": box_rule.mode,
        "native_size": native,
    }
    images, batch = _as_batch(inputs)
    n = len(images) if images is not None else len(batch) if batch is not None else 0
    target_tensor = _targets_tensor(targets, n)
    device, dtype = _device_dtype(model)

    with eval_mode(model):
        if images is None:
            assert batch is not None
            groups = [(list(range(n)), batch.to(device))]
        else:
            groups = _group_by_shape([image_to_tensor(im, native, info.preprocess) for im in images], device, dtype)
        parts = []
        for idx, x in groups:
            chosen_targets = None if target_tensor is None else target_tensor[idx].to(device)
            logits, classes, raw = mapper.run(model, x, chosen_targets, top_k)
            out_size = (int(x.shape[-2]), int(x.shape[-1])) if images is None else None
            combined = _map_passes(model, mapper, x, classes, raw, images, idx, native, sizes_setting, relu, out_size)
            maps, boxes = _maps_and_boxes(combined, box_rule)
            parts.append((idx, logits, classes, raw, maps, boxes.to(device)))

    if len(parts) == 1:  # one shape: the batched tensors are the result, no re-stacking
        _, all_logits, classes, raw, maps, boxes = parts[0]
    else:
        order = {i: (p, j) for p, part in enumerate(parts) for j, i in enumerate(part[0])}
        pick = [order[i] for i in range(n)]
        all_logits = torch.stack([parts[p][1][j] for p, j in pick])
        classes = torch.stack([parts[p][2][j] for p, j in pick])
        raw = _stack_if_same([parts[p][3][j] for p, j in pick])  # type: ignore[assignment]  # Result takes either
        maps = _stack_if_same([parts[p][4][j] for p, j in pick])
        boxes = torch.stack([parts[p][5][j] for p, j in pick])
    sizes = [tuple(m.shape[-2:]) for m in maps]
    return Result(
        classes=classes,
        scores=all_logits.softmax(dim=1).gather(1, classes),
        logits=all_logits.gather(1, classes),
        raw=raw,
        maps=maps,
        boxes=boxes,
        all_logits=all_logits,
        sizes=sizes,
        info=info,
        settings=settings,
    )


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
    tensors = [image_to_tensor(images[i], size, pre) for i in idx]
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
