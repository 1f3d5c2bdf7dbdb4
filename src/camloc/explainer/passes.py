"""`camloc.explain`: classes, scores, maps and boxes for a batch of images, through one path.

1. The classification pass at the model's native size (shorter side = its input size, aspect kept) gives the
   logits, the chosen classes and `raw`, the maps at feature resolution for which the CAM identity holds.
2. Then one of two map procedures (docs/resolution.md measures both; the default is the zoom):
   - `zoom` (coarse to fine, the default): each class's pass-1 map, upsampled to the image, gives a box; where
     that box, squared and widened by `Zoom.expand`, covers at most `Zoom.max_area` of the image, the square
     window is passed again with shorter side `Zoom.size` (windows of the batch run as one batch; classes of one
     image whose windows overlap share a window) and the class's box comes from that fine map, offset into the
     image; elsewhere (large objects) the pass-1 map's box stands. `maps` shows the pass-1 map with each window
     replaced by its fine map (each divided by its largest magnitude), min-max normalised.
   - `map_sizes` (given explicitly; the zoom is then off): map passes at these shorter sides (a size equal to the
     native one reuses pass 1), each upsampled to the image size (ReLU'd if asked) and divided by its largest
     magnitude; the passes are averaged, and `maps` is that average min-max normalised. `map_sizes=()` uses
     pass 1 alone.
   Boxes threshold a map at a fraction of its range ("minmax") or of its maximum ("max"; with one pass these are
   the two readings of the paper's "20% of the max" on the raw CAM) and box the largest connected component or
   all kept pixels (`components`).

Images of any sizes are batched in every pass: one batch per input shape at that pass's size (and number of
classes, with `min_score`; no padding: it would change the pooled features), and the maps are upsampled, combined,
normalised and boxed in one batch per image size; the zoom's windows, all squares, run as one batch per
output group.
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
from camloc.preprocess import MAP_SIZE_RANGE, image_to_tensor, resize_batch, resize_exact, scaled_size
from camloc.zoom import (
    DEFAULT_MAP_SIZES,
    DEFAULT_ZOOM,
    SCORE_KINDS,
    Zoom,
    compose,
    run_settings,
    share_windows,
    zoom_setting,
    zoom_windows,
)

ImageInput = str | PathLike | Image.Image
Inputs = Tensor | ImageInput | Sequence[ImageInput]

# Defaults chosen by measurement on the localization set of benchmarks/bench_resolution.py (docs/resolution.md).
DEFAULT_RELU = False

# Shorter sides a map pass may have: below 32 a CNN has no spatial map left; above 4096 one pass of one image
# needs gigabytes.


def check_top_k(top_k: object) -> int:
    """The one check of top_k (API and CLI): an integer of at least 1."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top-k must be an integer of at least 1, got {top_k!r}")
    return top_k


def check_map_sizes(map_sizes: object) -> tuple[int, ...]:
    """The one check of map sizes (API and CLI): None -> the default, else a sequence of integers in
    `MAP_SIZE_RANGE` (a string is refused: "640" is not the sizes 6, 4, 0)."""
    if map_sizes is None:
        return DEFAULT_MAP_SIZES
    if isinstance(map_sizes, (str, bytes)) or not isinstance(map_sizes, Sequence):
        raise InputError(f"map sizes must be a sequence of integers such as (224, 448), got {map_sizes!r}")
    lo, hi = MAP_SIZE_RANGE
    for s in map_sizes:
        if isinstance(s, bool) or not isinstance(s, int) or not lo <= s <= hi:
            raise InputError(f"map sizes must be integers in {lo}..{hi}, got {list(map_sizes)!r}")
    return tuple(map_sizes)


ScoreKind = Literal["softmax", "sigmoid"]


def explain(
    model: nn.Module,
    inputs: Inputs,
    top_k: int = 5,
    targets: Tensor | Sequence[Sequence[int]] | None = None,
    *,
    method: str | MapMethod = "cam",
    layer: str | None = None,
    map_sizes: Sequence[int] | None = None,
    zoom: Zoom | bool | None = None,
    relu: bool = DEFAULT_RELU,
    box_rule: BoxRule = DEFAULT_BOX_RULE,
    scores: ScoreKind = "softmax",
    min_score: float | None = None,
    boxes: bool = True,
) -> Result:
    """Classify and explain images with class activation maps and boxes.

    inputs: file paths, PIL images, or a preprocessed (B, 3, H, W) tensor (used as is: no hidden preprocessing).
    top_k: how many of the best classes to map; `targets` instead gives explicit classes, one list per image
    (or a (B, k) tensor). zoom / map_sizes: the map procedure (module docstring). By default (both None) the
    measured default, the zoom with `DEFAULT_ZOOM`; a `Zoom` sets its parameters; `map_sizes` (shorter sides of
    map passes; () : the classification pass only) or `zoom=False` (map sizes `DEFAULT_MAP_SIZES`) turn it off.
    relu: clip negative evidence before normalising. box_rule: the threshold rule of the boxes
    (`camloc.boxes.BoxRule`; the zoom boxes the components its `Zoom.components` names). Maps (B, k, H, W) and
    boxes (B, k, 4) are at each image's size (lists when sizes differ); `Result.settings` records the procedure
    used. scores: "softmax" (one label per image) or "sigmoid"
    (multi-label models: each class its own probability). min_score: map every class whose score reaches it, best
    first (the best class alone when none does) instead of the top-k; images may then get different numbers of
    classes, and the per-class fields become lists of per-image tensors. boxes=False: skip the final boxes
    (`Result.boxes` is None; maps, classes and scores are unchanged, the zoom still boxes pass 1 to place its
    windows), for callers that box the maps themselves, as `camloc evaluate` does. The model is left as found
    (train/eval flags restored).
    """
    if scores not in SCORE_KINDS:
        raise InputError(f"scores must be one of {', '.join(SCORE_KINDS)}, got '{scores}'")
    if min_score is not None and (targets is not None or not 0.0 <= float(min_score) <= 1.0):
        raise InputError("min_score must lie in [0, 1] and cannot be combined with explicit target classes")
    check_top_k(top_k)
    info = info_of(model)
    mapper = get_method(method, layer=layer)
    chosen_zoom = zoom_setting(zoom, map_sizes)
    sizes_setting = check_map_sizes(map_sizes)
    if chosen_zoom is not None:
        sizes_setting = ()
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
        if zoom:  # asked for explicitly; the default falls back to the classification pass
            raise InputError(f"{info.name} takes {fixed[0]}x{fixed[1]} inputs only, so the zoom cannot run")
        chosen_zoom = None
    settings = run_settings(
        method=getattr(mapper, "name", str(method)),
        layer=mapper.layer_name(model),
        zoom=chosen_zoom,
        map_sizes=sizes_setting,
        relu=relu,
        threshold=box_rule.threshold,
        threshold_mode=box_rule.mode,
        native_size=native,
        scores=scores,
        fixed_input_size=fixed,
    )
    if min_score is not None:
        settings["min_score"] = float(min_score)
    images, batch = _as_batch(inputs)
    n = len(images) if images is not None else len(batch) if batch is not None else 0
    if fixed is not None and batch is not None and tuple(batch.shape[-2:]) != fixed:
        raise InputError(
            f"{info.name} takes {fixed[0]}x{fixed[1]} inputs only, got a {batch.shape[-2]}x{batch.shape[-1]} "
            "tensor; resize it or build the model with dynamic_img_size=True"
        )
    target_tensor = _targets_tensor(targets, n)
    device, dtype = _device_dtype(model)

    if images is None:
        assert batch is not None
        out_sizes = [(int(batch.shape[-2]), int(batch.shape[-1]))] * n
    else:
        out_sizes = [(im.height, im.width) for im in images]

    with eval_mode(model):
        # pass 1: classification at the native size, one batch per input shape (and number of classes)
        if images is None:
            assert batch is not None
            native_buckets = [(list(range(n)), batch.to(device=device, dtype=dtype))]
        else:
            tensors = [image_to_tensor(im, native, info.preprocess, _size_for(model, im, native)) for im in images]
            native_buckets = _group_by_shape(tensors, device, dtype)
        logits_parts, raw_buckets = [], []
        image_classes: list[Tensor] = [torch.empty(0)] * n  # (k_i,) per image
        for group_idx, group_x in native_buckets:
            subgroups: list[tuple[list[int], Tensor, Tensor | None]]
            if min_score is None:
                chosen = None if target_tensor is None else target_tensor[group_idx].to(device)
                subgroups = [(group_idx, group_x, chosen)]
            else:
                subgroups = _classes_above(model, group_x, group_idx, scores, float(min_score))
            for idx, x, chosen_targets in subgroups:
                logits, classes, raw = mapper.run(model, x, chosen_targets, top_k)
                logits_parts.append((idx, logits))
                raw_buckets.append((idx, raw))
                for j, i in enumerate(idx):
                    image_classes[i] = classes[j]
        all_logits = _in_order(logits_parts, list(range(n)))
        counts = [len(c) for c in image_classes]

        # map passes: each size batched by the images' shapes at that size, upsampled per output-size group
        out_groups = _group_indices(list(zip(out_sizes, counts, strict=True)))
        passes: list[list[Tensor]] = [[] for _ in out_groups]
        for s in sizes_setting or (native,):
            if s == native:
                buckets = raw_buckets
            else:
                buckets = _pass_at_size(model, mapper, batch, image_classes, images, s, device, dtype)
            for g, up in enumerate(_upsample_to_groups(buckets, out_groups, out_sizes)):
                passes[g].append(up)
        group_maps, group_boxes, group_ranges = [], [], []
        for g, g_passes in enumerate(passes):
            combined = combine_passes(g_passes, relu=relu)
            if chosen_zoom is not None:
                idx_g = out_groups[g]
                maps_g, boxes_g, ranges_g = _zoom(
                    model, mapper, batch, _stack(image_classes, idx_g), combined, images, idx_g, chosen_zoom,
                    relu, box_rule, device, dtype, boxes,
                )  # fmt: skip
            else:
                maps_g, boxes_g, ranges_g = _maps_and_boxes(combined, box_rule, boxes)
            group_maps.append(maps_g)
            if boxes_g is not None:
                group_boxes.append(boxes_g.to(device))
            group_ranges.append(ranges_g)

    where = {i: (g, j) for g, idx in enumerate(out_groups) for j, i in enumerate(idx)}
    out_classes: Tensor | list[Tensor]  # a list of (k_i,) when images have different numbers of classes
    out_boxes: Tensor | list[Tensor] | None = None
    out_ranges: Tensor | list[Tensor]  # each map's [min, max] before normalisation, shaped like the boxes
    # one output group: the batched tensors are the result, no re-stacking
    maps = group_maps[0] if len(out_groups) == 1 else [group_maps[where[i][0]][where[i][1]] for i in range(n)]
    if len(set(counts)) == 1:
        out_classes = torch.stack(image_classes)
        if boxes:
            out_boxes = _in_order(list(zip(out_groups, group_boxes, strict=True)), list(range(n)))
        out_ranges = _in_order(list(zip(out_groups, group_ranges, strict=True)), list(range(n)))
    else:
        out_classes = image_classes
        if boxes:
            out_boxes = [group_boxes[where[i][0]][where[i][1]] for i in range(n)]
        out_ranges = [group_ranges[where[i][0]][where[i][1]] for i in range(n)]
    raw_out: Tensor | list[Tensor]
    if len(raw_buckets) == 1:
        raw_out = raw_buckets[0][1]
    else:
        at = {i: (b, j) for b, (idx, _) in enumerate(raw_buckets) for j, i in enumerate(idx)}
        raw_out = _stack_if_same([raw_buckets[at[i][0]][1][at[i][1]] for i in range(n)])
    probs = _probabilities(all_logits, scores)
    return Result(
        classes=out_classes,
        scores=_gather(probs, out_classes),
        logits=_gather(all_logits, out_classes),
        raw=raw_out,
        maps=maps,
        boxes=out_boxes,
        all_logits=all_logits,
        sizes=list(out_sizes),
        info=info,
        settings=settings,
        map_range=out_ranges,
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


def _maps_and_boxes(combined: Tensor, rule: BoxRule, with_boxes: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
    """Normalised maps (b, k, H, W), boxes (b, k, 4) int64 (None without `with_boxes`) and [min, max] (b, k, 2)
    of a batch of combined maps (b, k, H, W) of one size; `combined` is ours (made by the upsampling or the
    combination) and is normalised in place, after the boxes are taken from it."""
    lo, hi = min_max(combined)
    boxes = boxes_from_maps(combined, rule, lo, hi) if with_boxes else None
    ranges = torch.cat([lo, hi], dim=-1)[..., 0, :].detach()
    # (not under autograd: the extremes' gradients need the maps as they were)
    return normalize(combined, lo=lo, hi=hi, inplace=not combined.requires_grad), boxes, ranges


def _pass_at_size(
    model: nn.Module,
    mapper: MapMethod,
    batch: Tensor | None,
    image_classes: list[Tensor],
    images: list[Image.Image] | None,
    size: int,
    device: torch.device,
    dtype: torch.dtype,
) -> list[tuple[list[int], Tensor]]:
    """Raw maps of each image's classes from a pass whose input's shorter side is `size`, one batch per input shape
    at that size and number of classes (images re-preprocessed from the originals; a tensor input is resized).
    Returns (indices, (b, k, h, w)) per batch."""
    counts = [len(c) for c in image_classes]
    if images is None:
        assert batch is not None
        x = resize_batch(batch.to(device), size)
        groups = _group_indices(counts)
        return [
            (idx, mapper.maps_only(model, x if len(idx) == len(counts) else x[idx], _stack(image_classes, idx)))
            for idx in groups
        ]
    pre = info_of(model).preprocess
    tensors = [image_to_tensor(im, size, pre, _size_for(model, im, size)) for im in images]
    out = []
    for idx in _group_indices([(tuple(t.shape), k) for t, k in zip(tensors, counts, strict=True)]):
        xs = torch.stack([tensors[i] for i in idx]).to(device=device, dtype=dtype)
        out.append((idx, mapper.maps_only(model, xs, _stack(image_classes, idx))))
    return out


def _stack(rows: list[Tensor], idx: list[int]) -> Tensor:
    return torch.stack([rows[i] for i in idx])


def _upsample_to_groups(
    buckets: list[tuple[list[int], Tensor]], out_groups: list[list[int]], out_sizes: list[tuple[int, int]]
) -> list[Tensor]:
    """Raw maps of one pass, given per input-shape bucket, upsampled to the output sizes: one (b, k, H, W) float
    tensor per output group (in the group's order). One batched upsampling per (bucket, output size) pair."""
    pieces: list[list[tuple[list[int], Tensor]]] = [[] for _ in out_groups]
    group_of = {i: g for g, idx in enumerate(out_groups) for i in idx}
    for idx, raw in buckets:
        by_group: dict[int, list[int]] = {}
        for j, i in enumerate(idx):
            by_group.setdefault(group_of[i], []).append(j)
        for g, pos in by_group.items():
            part = raw if len(pos) == len(idx) else raw[pos]
            up = upsample(part.float(), out_sizes[out_groups[g][0]])
            if up is raw:  # maps already at the output size: a copy, since the maps are normalised in place
                up = up.clone()
            pieces[g].append(([idx[j] for j in pos], up))
    return [
        pieces[g][0][1] if len(pieces[g]) == 1 and pieces[g][0][0] == idx else _in_order(pieces[g], idx)
        for g, idx in enumerate(out_groups)
    ]


def _in_order(parts: list[tuple[list[int], Tensor]], order: list[int]) -> Tensor:
    """Rows of per-bucket tensors (indices, (b, ...)) gathered into the order of `order` (image indices); no copy
    when one bucket already is in that order."""
    if len(parts) == 1 and parts[0][0] == order:
        return parts[0][1]
    stacked = torch.cat([t for _, t in parts])
    position = {i: p for p, i in enumerate(i for idx, _ in parts for i in idx)}
    return stacked[torch.tensor([position[i] for i in order], device=stacked.device)]


def _group_indices(keys: list) -> list[list[int]]:
    """Indices of equal keys, groups in order of first appearance, indices ascending."""
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return list(groups.values())


def _size_for(model: nn.Module, image: Image.Image, short_side: int) -> tuple[int, int]:
    """Input (h, w) of `image` at `short_side`: aspect kept, unless the model takes one size or patch multiples."""
    return input_size_for(model, image.height, image.width, scaled_size(image.height, image.width, short_side))


def _zoom(
    model: nn.Module,
    mapper: MapMethod,
    source: Tensor | None,
    classes: Tensor,
    coarse: Tensor,
    images: list[Image.Image] | None,
    idx: list[int],
    zoom: Zoom,
    relu: bool,
    rule: BoxRule,
    device: torch.device,
    dtype: torch.dtype,
    with_boxes: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """The zoom procedure on one output group: coarse (b, k, H, W) pass-1 maps of images `idx` (of `images`, or
    rows of the tensor input `source`) with classes (b, k) -> normalised maps (b, k, H, W), boxes (b, k, 4) int64
    (None without `with_boxes`: the windows still come from `zoom_plan`) and the composite's [min, max] (b, k, 2).
    The windows and the composition are `camloc.zoom`'s (shared with the ONNX runtime).

    Every window is a square, so all windows of the group go through the model as one (n, 3, size, size) batch."""
    per_image = list(coarse.unbind(0))
    per_image = [m.clamp(min=0) if relu else m for m in per_image]
    boxes = [boxes_from_maps(m, rule, components=zoom.components) if with_boxes else None for m in per_image]
    plans = [share_windows(zoom_plan(m, zoom.expand, zoom.max_area, rule)) for m in per_image]
    crops = []  # one crop per shared window, in the order of the plans
    for j, plan in enumerate(plans):
        for (x0, y0, x1, y1), _members in plan:
            if images is not None:
                crop = images[idx[j]].crop((x0, y0, x1, y1))
                crops.append(
                    image_to_tensor(crop, zoom.size, info_of(model).preprocess, _size_for(model, crop, zoom.size))
                )
            else:
                assert source is not None
                crops.append(resize_exact(source[idx[j], :, y0:y1, x0:x1], (zoom.size, zoom.size)))
    fines: list[list[Tensor]] = [[] for _ in plans]  # per image, per window: (k, side, side) at the window's size
    if crops:
        batch = torch.stack(crops).to(device=device, dtype=dtype)
        chosen = torch.stack([classes[j] for j, plan in enumerate(plans) for _ in plan])
        fine_raw = iter(mapper.maps_only(model, batch, chosen).float())
        for j, plan in enumerate(plans):
            for (x0, y0, x1, y1), _members in plan:
                fine = upsample(next(fine_raw)[None], (y1 - y0, x1 - x0))[0]
                fines[j].append(fine.clamp(min=0) if relu else fine)
    out = [
        compose(
            m, b, plan, f, [boxes_from_maps(x, rule, components=zoom.components) for x in f] if with_boxes else None
        )
        for m, b, plan, f in zip(per_image, boxes, plans, fines, strict=True)
    ]
    stacked = torch.stack(out)
    lo, hi = min_max(stacked)  # the composite's extremes (each map divided by its largest magnitude)
    ranges = torch.cat([lo, hi], dim=-1)[..., 0, :].detach()
    box_out = torch.stack([b for b in boxes if b is not None]).to(device) if with_boxes else None
    return normalize(stacked, lo=lo, hi=hi), box_out, ranges


def zoom_plan(
    coarse: Tensor,
    expand: float = DEFAULT_ZOOM.expand,
    max_area: float = DEFAULT_ZOOM.max_area,
    rule: BoxRule = DEFAULT_BOX_RULE,
) -> list[tuple[int, int, int, int] | None]:
    """Where a coarse-to-fine pass looks again, per map: coarse (k, H, W) maps of one image at its size -> k
    windows (`camloc.zoom.zoom_windows`: `boxes.zoom_window` around each map's largest-component box) or None
    where the window would cover more than `max_area` of the image (the object is large: the coarse map already
    serves) or the map has no box."""
    h, w = coarse.shape[-2:]
    return zoom_windows(boxes_from_maps(coarse.reshape(-1, h, w), rule), h, w, expand, max_area)


def _as_batch(inputs: Inputs) -> tuple[list[Image.Image] | None, Tensor | None]:
    if isinstance(inputs, Tensor):
        if inputs.dim() == 3:
            inputs = inputs.unsqueeze(0)
        if inputs.dim() != 4 or inputs.shape[1] != 3:
            raise InputError(f"a tensor input must be (B, 3, H, W), got {tuple(inputs.shape)}")
        if not inputs.is_floating_point():
            raise InputError(
                f"a tensor input must be a preprocessed float tensor, got {inputs.dtype}; pass PIL images, arrays or "
                "paths for raw pixels"
            )
        if inputs.shape[0] == 0:
            raise InputError("no images given (an empty batch)")
        if not bool(torch.isfinite(inputs).all()):
            raise InputError("a tensor input holds NaN or infinite values")
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
        if any(not r for r in rows):
            raise InputError("every image needs at least one target class (an empty list was given)")
        if any(isinstance(c, bool) or not isinstance(c, int) for r in rows for c in r):
            raise InputError("target classes must be integers")
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
    groups = _group_indices([tuple(t.shape) for t in tensors])
    return [(idx, torch.stack([tensors[i] for i in idx]).to(device=device, dtype=dtype)) for idx in groups]


def _stack_if_same(items: list[Tensor]) -> Tensor | list[Tensor]:
    return torch.stack(items) if len({tuple(t.shape) for t in items}) == 1 else items


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in which float type the model computes (inputs made from images follow it)."""
    p = next(iter(model.parameters()), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, (p.dtype if p.is_floating_point() else torch.float32)
