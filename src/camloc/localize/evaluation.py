"""Localization evaluation: score maps (from files or from a model) -> streaming accumulators -> a JSON report.

    ds = camloc.data.open_dataset("wsol:metadata/CUB/test")
    report = evaluate(ds, maps_dir="scoremaps/")                 # maps from any tool, <image_id>.npy
    report = evaluate(ds, model=camloc.load("ckpt/"))            # CAMs computed batch by batch

Every metric is a sum of counts (`Evaluator.counts()`), so shards of a dataset evaluated by separate processes
(`torchrun`) merge exactly. Conventions: `camloc.localize.metrics` and docs/evaluation.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from PIL import Image
from torch import Tensor

from camloc.boxes import DEFAULT_BOX_RULE, BoxRule, box_from_map
from camloc.data.base import Dataset, Sample
from camloc.errors import InputError
from camloc.explainer.runner import check_batch_size
from camloc.io import as_rgb_image
from camloc.localize._release_boxes import release_box, release_guesses
from camloc.localize.faithfulness import (
    FaithfulnessAccumulator,
    FaithfulnessSettings,
    faithfulness_scores,
    image_seed,
    object_fraction,
    pointing_hit,
)
from camloc.localize.metrics import (
    IOU_LEVELS,
    WSOL_SIZE,
    BoxAccuracy,
    ClassLocAccuracy,
    PixelAP,
    cam_thresholds,
    prepare_scoremap,
    resize_boxes_wsol,
)

PROBLEMS = ("nan_map", "constant_map", "mask_size_mismatch", "empty_mask")
BOX_GENERATORS = ("paper", "release")
RESOLUTIONS = ("224", "native")


@dataclass(frozen=True)
class Settings:
    """What the numbers depend on; written into the report's "protocol"."""

    interval: float = 0.01
    iou_levels: tuple[int, ...] = IOU_LEVELS
    resolution: str = "224"  # "224": the wsolevaluation protocol; "native": maps at the original image size
    box_generator: str = "paper"  # the paper's rule (`box_rule`, camloc.boxes) or the original release's generator
    box_rule: BoxRule = DEFAULT_BOX_RULE  # the same rule as `camloc.explain`; its readings agree on normalised maps

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise InputError(f"resolution must be one of {RESOLUTIONS}, got '{self.resolution}'")
        if self.box_generator not in BOX_GENERATORS:
            raise InputError(f"box generator must be one of {BOX_GENERATORS}, got '{self.box_generator}'")
        if not 0 < self.interval < 1:
            raise InputError(f"--interval must be in (0, 1), got {self.interval}")


def image_size(sample: Sample) -> tuple[int, int]:
    """(width, height) of a sample: from the metadata, else from the image file's header."""
    if sample.size is not None:
        return sample.size
    if isinstance(sample.image, np.ndarray):
        return sample.image.shape[1], sample.image.shape[0]
    if sample.image is None:
        raise InputError(f"image '{sample.image_id}': size unknown (no image_sizes entry and no --images root)")
    from PIL import UnidentifiedImageError

    try:
        with Image.open(sample.image) as img:
            return img.size
    except FileNotFoundError:
        raise InputError(f"{sample.image}: no such file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{sample.image}: cannot decode image ({exc})") from None


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape == (size[1], size[0]):
        return mask
    return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0


def _to_size(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map resized (bilinear) to size = (width, height) for the paper protocol's boxes."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape == (size[1], size[0]):
        return heatmap
    return cv2.resize(heatmap, size, interpolation=cv2.INTER_LINEAR)


class Evaluator:
    """Accumulates one dataset split. `add` per image; `counts` / `set_counts` for merging; `report` at the end."""

    def __init__(self, settings: Settings, faithfulness: FaithfulnessSettings | None = None) -> None:
        self.settings = settings
        self.faith = None if faithfulness is None else FaithfulnessAccumulator(faithfulness)
        self.thresholds = cam_thresholds(settings.interval)
        self.box = BoxAccuracy(self.thresholds, settings.iou_levels)
        self.pxap = PixelAP(self.thresholds)
        self.loc = ClassLocAccuracy()
        self.problems = np.zeros(len(PROBLEMS), dtype=np.int64)
        self.n_images = 0

    def _problem(self, name: str | None) -> None:
        if name is not None:
            self.problems[PROBLEMS.index(name)] += 1

    def add(
        self,
        sample: Sample,
        heatmap: np.ndarray,
        gt_label: int | None = None,
        classes: np.ndarray | None = None,
        class_maps: list[np.ndarray] | None = None,
    ) -> dict:
        """One image. heatmap: (h, w) map of the GT class at any resolution; classes (k,) model indices with
        class_maps their maps (paper protocol, top-k loc). Paper boxes are made from these maps (normalised or not),
        so that maps saved by one run and re-read by another give the same numbers. Returns {"box": GT-known box (exclusive, original pixels), "guesses": [(class, box), ...]} for results files."""
        s = self.settings
        self.n_images += 1
        out: dict = {"box": None, "guesses": []}
        heatmap = np.asarray(heatmap)
        if heatmap.ndim != 2:
            raise InputError(f"image '{sample.image_id}': score map of shape {heatmap.shape}, expected 2-D")
        has_boxes = len(sample.boxes) > 0
        masks = sample.masks()
        size: tuple[int, int] | None
        if has_boxes or (
            s.resolution == "native" and (masks is None or sample.size is not None or sample.image is not None)
        ):
            size = image_size(sample)
        else:
            assert masks is not None  # no boxes: the sample has masks
            size = None if s.resolution == "224" else (masks[0].shape[1], masks[0].shape[0])  # native: their size
        target = (WSOL_SIZE, WSOL_SIZE) if s.resolution == "224" else size
        scoremap, problem = prepare_scoremap(heatmap, target if target is not None else heatmap.shape[::-1])
        self._problem(problem)
        if has_boxes:
            assert size is not None  # a sample with boxes has a known size
            gt = (
                resize_boxes_wsol(sample.boxes, size, (WSOL_SIZE, WSOL_SIZE))
                if s.resolution == "224"
                else np.asarray(sample.boxes).astype(np.int64)
            )
            self.box.accumulate(scoremap, gt)
        if masks is not None:
            fg, ignore = masks
            other_size = size is not None and fg.shape != (size[1], size[0])
            if other_size or (ignore is not None and ignore.shape != fg.shape):
                self._problem("mask_size_mismatch")
            shape = scoremap.shape[::-1]
            fg = _resize_mask(fg, shape)
            ignore = None if ignore is None else _resize_mask(ignore, shape) & ~fg
            if not fg.any():
                self._problem("empty_mask")
            self.pxap.accumulate(scoremap, fg, ignore)
        if self.faith is not None and "pointing-game" in self.faith.settings.metrics and (has_boxes or masks):
            self._pointing(heatmap, sample.boxes if has_boxes else None, masks[0] if masks is not None else None, size)
        if has_boxes:
            assert size is not None
            out["box"] = self._box(_to_size(np.nan_to_num(heatmap.astype(np.float32), nan=0.0), size))
            label = gt_label if gt_label is not None else sample.label
            if classes is not None and class_maps is not None:
                maps = [_to_size(m, size) for m in class_maps]
                if s.box_generator == "release":
                    g_cls, g_box = release_guesses(classes, maps)
                else:
                    g_cls, g_box = np.asarray(classes[:5]), np.stack([self._box(m) for m in maps[:5]])
                out["guesses"] = list(zip(g_cls.tolist(), g_box.tolist(), strict=False))
                self.loc.accumulate(label, sample.boxes, out["box"], np.asarray(classes), g_cls, g_box)
            else:
                self.loc.accumulate(label, sample.boxes, out["box"])
        return out

    def _pointing(
        self, heatmap: np.ndarray, boxes: np.ndarray | None, mask: np.ndarray | None, size: tuple[int, int] | None
    ) -> None:
        """The pointing game at the original image size (the mask's size when only a mask is known): the 15 px
        tolerance is in the image's pixels."""
        assert self.faith is not None  # called only when faithfulness was asked for
        fs = self.faith.settings
        if mask is not None and not mask.any():
            return  # an empty mask has nothing to point at (counted under problems)
        if size is not None:
            grid = size
        elif mask is not None:
            grid = (mask.shape[1], mask.shape[0])
        else:
            return  # neither a size nor a mask: no grid to point in
        heat = _to_size(heatmap, grid)
        if mask is not None:
            mask = _resize_mask(mask, grid)
        hit = pointing_hit(heat, boxes, mask, fs.tolerance_px)
        self.faith.add_pointing(hit, object_fraction(grid, boxes, mask) < fs.difficult_area)

    def _box(self, heatmap: np.ndarray) -> np.ndarray:
        if self.settings.box_generator == "release":
            return release_box(heatmap)
        return box_from_map(heatmap, self.settings.box_rule)

    # merging
    def counts(self) -> np.ndarray:
        """All counters as one (m,) int64 vector: box, PxAP and paper counters, problem counts, number of images
        (sum two of them to merge two evaluators; m is fixed by the settings)."""
        return np.concatenate(
            [self.box.counts(), self.pxap.counts(), self.loc.counts(), self.problems, [self.n_images]]
        ).astype(np.int64)

    def set_counts(self, vector: np.ndarray) -> None:
        """Replace every counter by those of a (m,) `counts()` vector (after an all-reduce across processes)."""
        parts = np.cumsum([len(self.box.counts()), len(self.pxap.counts()), len(self.loc.counts()), len(PROBLEMS)])
        box, pxap, loc, problems, n = np.split(np.asarray(vector, dtype=np.int64), parts)
        self.box.set_counts(box)
        self.pxap.set_counts(pxap)
        self.loc.set_counts(loc)
        self.problems = problems.copy()
        self.n_images = int(n[0])

    def merge(self, other: Evaluator) -> None:
        """Add another evaluator's counters (same settings) to this one's."""
        self.set_counts(self.counts() + other.counts())

    def report(self, calibration: Evaluator | None = None, calibration_source: str = "") -> dict[str, Any]:
        """The JSON report (percentages 0-100). calibration: an evaluator of another split whose best CAM
        thresholds are applied to this one."""
        s = self.settings
        rep: dict[str, Any] = {"n_images": self.n_images}

        def thr(idx):
            return {k: round(float(self.thresholds[v]), 6) for k, v in idx.items()}

        if self.box.n:
            summary = self.box.summary()
            rep["n_box_images"] = self.box.n
            rep["maxboxacc"] = summary["maxboxacc"]
            rep["maxboxacc_v2"] = summary["maxboxacc_v2"]
            rep["cam_threshold"] = {
                "selected_on": "the evaluated split (best threshold, as MaxBoxAcc defines it)",
                **{k: thr(v) for k, v in summary["best_threshold"].items()},
            }
            if calibration is not None and calibration.box.n:
                chosen = calibration.box.summary()["best_threshold"]
                fixed = self.box.summary(fixed_index=chosen)
                rep["calibrated"] = {"maxboxacc": fixed["maxboxacc"], "maxboxacc_v2": fixed["maxboxacc_v2"]}
                rep["cam_threshold"]["calibrated"] = {
                    "selected_on": calibration_source,
                    **{k: thr(v) for k, v in chosen.items()},
                }
            rep.update(self.loc.summary())
        pxap = self.pxap.value() if self.pxap.hist.sum() else None
        if pxap is not None:
            rep["pxap"] = pxap
        if self.faith is not None:
            rep["faithfulness"] = self.faith.report()
        rep["problems"] = {k: int(v) for k, v in zip(PROBLEMS, self.problems, strict=False)}
        rep["protocol"] = {
            **asdict(s),
            "iou_levels": list(s.iou_levels),
            "n_cam_thresholds": len(self.thresholds),
            "cam_thresholds": f"np.arange(0, 1, {s.interval})",
            "wsol": (
                "maps and boxes at 224x224 as clovaai/wsolevaluation (boxes rescaled with int truncation)"
                if s.resolution == "224"
                else "NATIVE resolution variant: maps resized to the original image "
                "size, boxes and masks not rescaled (not the reference protocol)"
            ),
            "paper_boxes": (
                f"camloc.boxes: {s.box_rule.describe()}"
                if s.box_generator == "paper"
                else "camloc.localize._release_boxes: zhoubolei/CAM release generator (20/100/110, erosion, merge)"
            ),
        }
        if self.faith is not None:
            fs = self.faith.settings
            deletion_base, insertion_base = fs.baselines()
            rep["protocol"]["faithfulness"] = {
                **asdict(fs),
                "deletion_baseline": deletion_base,
                "insertion_baseline": insertion_base,
                "inputs": "the classification pass's input (shorter side = the model's input size); maps min-max "
                "normalised and resized (bilinear, antialiased) to it; conventions: docs/evaluation.md",
            }
        return rep


# ----------------------------------------------------------------------------------------- map sources


def load_map(maps_dir: Path, image_id: str) -> np.ndarray:
    """`<maps_dir>/<image_id>.npy` as an (H, W) array of its stored dtype (leading singleton axes dropped);
    InputError naming the file."""
    path = maps_dir / f"{image_id}.npy"
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no score map for image '{image_id}'") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or min(arr.shape) == 0 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{path}: score map of shape {arr.shape} and type {arr.dtype}, expected a 2-D number array")
    return arr


def save_map(maps_dir: Path, image_id: str, heatmap: np.ndarray) -> None:
    """Write a map (H, W) where `load_map` reads it (float32, atomically)."""
    from camloc.io import atomic_path

    path = maps_dir / f"{image_id}.npy"
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(heatmap, dtype=np.float32))


def iter_model_maps(
    model,
    dataset: Dataset,
    batch_size: int = 16,
    method: str = "cam",
    map_sizes: tuple[int, ...] | None = None,
    top_k: int = 5,
    box_rule: BoxRule = DEFAULT_BOX_RULE,
    with_images: bool = False,
) -> Iterable[tuple]:
    """(sample, GT-class map (H, W), GT model class, top-k classes (k,) int64, their k maps (H, W)) per image,
    float32 maps in [0, 1] at the original size (H, W); with_images: the decoded PIL image as a sixth element.

    One `camloc.explain` call per batch for the top-k classes; images whose true class is not among them get
    one more call with `targets=[[true class]]`. Both ask for no boxes: `Evaluator.add` boxes the maps it scores,
    so that saved maps re-evaluate to the same numbers (docs/evaluation.md).
    """
    from camloc.explainer.passes import explain

    def as_list(maps) -> list[np.ndarray]:
        return [m.detach().float().cpu().numpy() for m in maps]

    for start in range(0, len(dataset), batch_size):
        batch = dataset.samples[start : start + batch_size]
        for s in batch:
            if s.image is None:
                raise InputError(f"image '{s.image_id}': no image path (give --images)")
        # decoded once for both passes, in the stored pixel grid the GT boxes refer to (no EXIF rotation, as the
        # reference's PIL loading); the size then comes from the decoded image, not from a second file open
        images = [as_rgb_image(s.image, exif_orientation=False) for s in batch if s.image is not None]
        batch = [s if s.size is not None else replace(s, size=img.size) for s, img in zip(batch, images, strict=False)]
        gts = [dataset.to_model(s.label) for s in batch]
        # boxes=False: the Evaluator boxes the maps it scores (and saves); box_rule still places the zoom's windows
        res = explain(model, images, top_k=top_k, method=method, map_sizes=map_sizes, box_rule=box_rule, boxes=False)
        classes = cast(Tensor, res.classes).cpu().numpy()  # top-k (no min_score): one (B, k) tensor
        maps = as_list(res.maps)
        missing = [i for i, g in enumerate(gts) if g not in classes[i]]
        extra = {}
        if missing:
            res2 = explain(
                model,
                [images[i] for i in missing],
                targets=[[gts[i]] for i in missing],
                method=method,
                map_sizes=map_sizes,
                box_rule=box_rule,
                boxes=False,
            )
            extra = {i: m[0] for i, m in zip(missing, as_list(res2.maps), strict=False)}
        for i, s in enumerate(batch):
            gt_map = extra[i] if i in extra else maps[i][int(np.flatnonzero(classes[i] == gts[i])[0])]
            item = (s, gt_map, gts[i], classes[i], list(maps[i]))
            yield (*item, images[i]) if with_images else item


# ------------------------------------------------------------------------------------------- the driver


def evaluate(
    dataset: Dataset,
    *,
    maps_dir: str | os.PathLike | None = None,
    model=None,
    settings: Settings = Settings(),
    calibration: Dataset | None = None,
    save_maps: str | None = None,
    batch_size: int = 16,
    method: str = "cam",
    map_sizes: tuple[int, ...] | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    distributed: bool | None = None,
    results: list | None = None,
    faithfulness: FaithfulnessSettings | None = None,
) -> dict[str, Any]:
    """Evaluate a dataset from saved maps (`maps_dir`: one `<image_id>.npy` (H, W) map each) or a model; returns
    the report dict.

    calibration: another split (same map source) whose best CAM thresholds are reported on this one.
    distributed: split the images across `torch.distributed` processes and sum the counts (None: when the
    `WORLD_SIZE` environment variable of torchrun is > 1). results: a list that receives one dict per image for
    results files: "image_id", "label" (model class), "gt_known_box" [x0, y0, x1, y1) in original pixels, "guesses"
    [(class, box), ...]. faithfulness: also score the maps' faithfulness
    (`camloc.localize.faithfulness`; the perturbation metrics need a model, the pointing game does not).
    """
    if (maps_dir is None) == (model is None):
        raise InputError("give either score maps (--maps) or a model (--model)")
    if faithfulness is not None and faithfulness.needs_model and model is None:
        wanted_metrics = ", ".join(m for m in faithfulness.metrics if m != "pointing-game")
        raise InputError(f"faithfulness metrics {wanted_metrics} perturb the input: they need --model, not --maps")
    check_batch_size(batch_size)  # a batch size below 1 would evaluate no image and report n_images 0
    wanted = distributed or (distributed is None and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    dist, created = _init_distributed() if wanted else (None, False)
    try:
        main_ev = _run(
            dataset,
            maps_dir,
            model,
            settings,
            save_maps,
            batch_size,
            method,
            map_sizes,
            progress,
            dist,
            results,
            faithfulness,
        )
        calib_ev = None
        if calibration is not None:
            calib_ev = _run(
                calibration, maps_dir, model, settings, None, batch_size, method, map_sizes, progress, dist, None
            )
        world = dist.get_world_size() if dist is not None else 1
    finally:
        if (
            created and dist is not None
        ):  # a process group left alive aborts the process at exit ("terminate called ...")
            dist.destroy_process_group()
    report = main_ev.report(calib_ev, calibration.source if calibration is not None else "")
    report["protocol"]["map_source"] = f"maps: {maps_dir}" if maps_dir is not None else f"model, method={method}"
    report["protocol"]["data"] = dataset.source
    if dist is not None:
        report["protocol"]["processes"] = world
    return report


def _run(
    dataset, maps_dir, model, settings, save_maps, batch_size, method, map_sizes, progress, dist, results, faith=None
) -> Evaluator:
    ev = Evaluator(settings, faith)
    shard = dataset.shard(dist.get_rank(), dist.get_world_size()) if dist is not None else dataset
    perturb = faith is not None and faith.needs_model and model is not None
    if model is not None:
        items = iter_model_maps(
            model, shard, batch_size, method, map_sizes, box_rule=settings.box_rule, with_images=perturb
        )
        if perturb and faith is not None and ev.faith is not None:
            items = _with_faithfulness(items, model, faith, ev.faith, batch_size)
    else:
        items = ((s, load_map(Path(maps_dir), s.image_id), None, None, None) for s in shard)
    if progress is not None:
        items = progress(items, len(shard))
    for sample, heatmap, gt, classes, class_maps in items:
        if save_maps is not None:
            save_map(Path(save_maps), sample.image_id, heatmap)
        out = ev.add(sample, heatmap, gt, classes, class_maps)
        if results is not None and out["box"] is not None:
            results.append(
                {
                    "image_id": sample.image_id,
                    "label": gt if gt is not None else dataset.to_model(sample.label),
                    "gt_known_box": np.asarray(out["box"]).tolist(),
                    "guesses": out["guesses"],
                }
            )
    if dist is not None:
        import torch

        total = torch.from_numpy(ev.counts())
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        ev.set_counts(total.numpy())
        if ev.faith is not None:  # float sums: a float64 vector of its own
            sums = torch.from_numpy(ev.faith.sums())
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
            ev.faith.set_sums(sums.numpy())
        if results is not None:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, results)
            results[:] = [r for part in gathered for r in part]
    return ev


def _with_faithfulness(
    items: Iterable[tuple], model, faith: FaithfulnessSettings, acc: FaithfulnessAccumulator, batch_size: int
) -> Iterable[tuple]:
    """Pass the items through, scoring the faithfulness of every `batch_size` of them at once (their perturbed
    inputs share forward passes); yields the usual 5-tuples."""
    buffer: list[tuple] = []
    for item in items:
        buffer.append(item)
        if len(buffer) == batch_size:
            _score_faithfulness(buffer, model, faith, acc)
            yield from (it[:5] for it in buffer)
            buffer = []
    if buffer:
        _score_faithfulness(buffer, model, faith, acc)
        yield from (it[:5] for it in buffer)


def _score_faithfulness(items: list[tuple], model, faith: FaithfulnessSettings, acc: FaithfulnessAccumulator) -> None:
    """The perturbation metrics of a batch of (sample, GT map, GT class, classes, maps, image) items, on the
    classification pass's input; images of the same input shape are scored together."""
    import torch
    import torch.nn.functional as F

    from camloc.explainer.passes import _device_dtype, _size_for
    from camloc.models.zoo import info_of
    from camloc.preprocess import image_to_tensor

    pre = info_of(model).preprocess
    device, dtype = _device_dtype(model)
    groups: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor, int, int]]] = {}
    for sample, gt_map, gt, classes, class_maps, image in items:
        if faith.target == "true":
            target, heat = int(gt), gt_map
        else:
            target, heat = int(classes[0]), class_maps[0]
        x = image_to_tensor(image, pre.input_size, pre, _size_for(model, image, pre.input_size))  # as explain's
        m = torch.from_numpy(np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0))[None, None]
        m = F.interpolate(m, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False, antialias=True)[0, 0]
        lo, hi = m.min(), m.max()
        m = (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)  # [0, 1] after resizing, as the metrics need
        groups.setdefault(tuple(x.shape), []).append((x, m, target, image_seed(sample.image_id, faith.seed)))
    for group in groups.values():
        x = torch.stack([g[0] for g in group]).to(device=device, dtype=dtype)
        maps = torch.stack([g[1] for g in group]).to(device)
        targets = torch.tensor([g[2] for g in group])
        acc.add_scores(
            faithfulness_scores(model, x, maps, targets, faith, pre.mean, pre.std, seeds=[g[3] for g in group])
        )


def _init_distributed():
    """torch.distributed, and whether this call created its process group (then it is ours to destroy)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return dist, False
    dist.init_process_group(backend="gloo")  # only count vectors and result lists travel, as CPU tensors
    return dist, True


def coco_results(results: list[dict], dataset: Dataset, score: float = 1.0) -> list[dict]:
    """Per-image boxes as a COCO results list (bbox [x, y, w, h]): the top-1 guess when a model classified the
    image, else the GT-known box with the true class. COCO datasets keep their image and category ids."""
    cat_ids = dataset.category_ids
    inverse = None if dataset.model_index is None else {int(m): d for d, m in enumerate(dataset.model_index)}
    out = []
    for r in results:
        cls, box = r["guesses"][0] if r["guesses"] else (r["label"], r["gt_known_box"])
        dcls = cls if inverse is None else inverse.get(int(cls), -1)
        if dcls < 0 or (cat_ids is not None and dcls >= len(cat_ids)):
            continue  # a class the dataset does not have cannot be scored (no category_id -1)
        image_id = int(r["image_id"]) if cat_ids is not None and str(r["image_id"]).isdigit() else r["image_id"]
        x0, y0, x1, y1 = (float(v) for v in box)
        out.append(
            {
                "image_id": image_id,
                "category_id": cat_ids[dcls] if cat_ids is not None else int(dcls),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": score,
            }
        )
    return out
