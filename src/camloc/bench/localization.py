"""The localization benchmark on Cluttered Fashion-MNIST and the resolution study.

Trains GapNets that differ only in final stride (feature maps of 24, 12, 6 and 3 pixels on the 96-pixel canvas),
a fully supervised box regressor on the same backbone (upper bound), fits a linear probe on the frozen ImageNet
EfficientNet-Lite0 (`camloc.probe.bench_row`: no training of the net, no boxes), and scores them on the test split together
with two box-free references (the whole image; a centred Gaussian). Every score goes through `scoring.Scorer`.
CAM thresholds for MaxBoxAccV2 are chosen on `val` and applied to `test`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camloc.data.cluttered import CLASSES, ClutteredArrays, ClutteredFashionMNIST, ClutterSpec, TensorView
from camloc.localize.scoring import EVAL_BATCH, Scorer, paper_box, row, score_cam
from camloc.models.builder import model_for_training
from camloc.training.loop import TrainConfig, fit
from camloc.training.state import read_progress

log = logging.getLogger("camloc")


@dataclass(frozen=True)
class Study:
    """What the benchmark trains and on how much data."""

    strides: tuple[int, ...] = (4, 8, 16, 32)
    widths: tuple[int, ...] = (16, 32, 48, 64, 64)
    regressor_stride: int = 8
    reference_stride: int = 8  # whose predicted classes the box-free references use for top-1 loc
    train_size: int = 9000
    val_size: int = 1000
    test_size: int = 3000
    probe_train_size: int = 2000  # train images of the linear probe on the frozen ImageNet net (0: no probe row)
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0


FULL = Study()
QUICK = replace(FULL, train_size=1024, val_size=100, test_size=300, epochs=2, strides=(4, 8, 16), probe_train_size=0)


def train_or_reuse(
    name: str,
    arch: str,
    stride: int,
    study: Study,
    train: TensorView,
    val: TensorView,
    spec: ClutterSpec,
    out: Path,
    quiet: bool,
) -> tuple[torch.nn.Module, float]:
    """Train one net into `out/nets/name` (resuming an interrupted run; reusing a finished one)."""
    run_dir = out / "nets" / name
    torch.manual_seed(study.seed)
    model, arch_config, _ = model_for_training(arch, len(CLASSES), final_stride=stride, widths=study.widths)
    config = {**arch_config, "labels": CLASSES, "preprocess": spec.preprocess(), "name": name}
    cfg = TrainConfig(epochs=study.epochs, batch_size=study.batch_size, lr=study.lr, seed=study.seed)
    resume = (run_dir / "train_state.safetensors").is_file()
    if resume:
        saved = read_progress(run_dir)
        if saved.get("train_config") != asdict(cfg) or saved.get("model_config") != config:
            raise_mismatch(run_dir)
    if not quiet:
        log.info("bench: %s %s", "resuming" if resume else "training", name)
    progress = fit(model, config, train, run_dir, cfg, val=val, resume=resume, quiet=quiet)
    return model.eval(), float(progress["train_seconds"])


def raise_mismatch(run_dir: Path) -> None:
    """Refuse to resume a net whose saved settings differ from this study's (one-line `InputError`)."""
    from camloc.errors import InputError

    raise InputError(f"{run_dir}: holds a net trained with other settings; remove it or use another --out")


@torch.no_grad()
def score_regressor(model: torch.nn.Module, view: TensorView, arr: ClutteredArrays) -> Scorer:
    """Scorer of the box regressor: its box as the map (1 inside, 0 outside) and as the paper box."""
    scorer = Scorer()
    h, w = arr.images.shape[1:]
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    for start in range(0, len(arr), EVAL_BATCH):
        idx = torch.arange(start, min(start + EVAL_BATCH, len(arr)))
        x, y, _ = view.get_batch(idx)
        logits, boxes = model(x)
        boxes = (boxes * scale).round().long().numpy()
        pred = logits.argmax(1)
        for j, i in enumerate(idx.tolist()):
            box = fix_box(boxes[j], w, h)
            scorer.add(box_map(box, h, w), arr.boxes[i], arr.masks[i], int(y[j]), int(pred[j]), box, box)
    return scorer


def fix_box(box: np.ndarray, w: int, h: int) -> np.ndarray:
    """Clip a predicted box (4,) [x0, y0, x1, y1) into a w x h image and give it at least one pixel; (4,) int64."""
    x0, y0, x1, y1 = np.clip(box, 0, [w - 1, h - 1, w, h])
    return np.array([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)], dtype=np.int64)


def box_map(box: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h, w) map: 1 inside the box, 0 outside."""
    m = np.zeros((h, w), dtype=np.float32)
    m[box[1] : box[3], box[0] : box[2]] = 1.0
    return m


def reference_maps(h: int, w: int) -> dict[str, np.ndarray]:
    """Box-free reference maps, (h, w) float32 each: the whole image (a flat map; one corner pixel 0 so that every
    threshold keeps the rest) and a centred Gaussian (sigma = side / 6; its thresholds give centred boxes of every
    size), both min-max normalised like every map the benchmark boxes."""
    whole = np.ones((h, w), dtype=np.float32)
    whole[0, 0] = 0.0
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    centre = np.exp(-(((yy - (h - 1) / 2) / (h / 6)) ** 2 + ((xx - (w - 1) / 2) / (w / 6)) ** 2) / 2)
    centre = (centre - centre.min()) / (centre.max() - centre.min())
    return {"whole image": whole, "centre Gaussian": centre}


def score_reference(heatmap: np.ndarray, arr: ClutteredArrays, preds: np.ndarray) -> Scorer:
    """Scorer of a box-free reference heatmap (H, W) (the same map and box for every image of the split), given
    the split's top-1 predictions (N,)."""
    scorer = Scorer()
    box = paper_box(heatmap)
    for i in range(len(arr)):
        scorer.add(heatmap, arr.boxes[i], arr.masks[i], int(arr.labels[i]), int(preds[i]), box, box)
    return scorer


def run_study(
    out: Path, study: Study, idx_dir: str | None = None, quiet: bool = False, log: Callable[[str], None] = print
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train and score everything; returns (rows, run info). Nets are kept in `out/nets/`."""
    t_start = time.perf_counter()
    spec = ClutterSpec()
    arrays = {
        split: ClutteredFashionMNIST(split, size, spec, idx_dir).arrays()
        for split, size in (("train", study.train_size), ("val", study.val_size), ("test", study.test_size))
    }
    views = {k: TensorView(v) for k, v in arrays.items()}
    side = spec.canvas
    rows, preds = [], {}
    for stride in study.strides:
        name = f"cam-gapnet-s{stride}"
        model, seconds = train_or_reuse(name, "gapnet", stride, study, views["train"], views["val"], spec, out, quiet)
        t0 = time.perf_counter()
        val, _ = score_cam(model, views["val"], arrays["val"])
        test, test_preds = score_cam(model, views["test"], arrays["test"])
        preds[stride] = test_preds
        rows.append(row(f"CAM, GapNet stride {stride}", [side // stride] * 2, val, test, seconds))
        log(
            f"[bench] {name}: {json.dumps({k: rows[-1][k] for k in ('top1_cls', 'gt_known_loc', 'pxap')})} "
            f"(scored in {time.perf_counter() - t0:.0f}s)"
        )
    if study.probe_train_size:
        from camloc.probe.bench_row import bench_row

        t0 = time.perf_counter()
        rows.append(
            bench_row(
                arrays["train"],
                arrays["val"],
                arrays["test"],
                max_train=study.probe_train_size,
                save_to=out / "nets" / "probe-logreg-default",
                progress=not quiet,
            )
        )
        log(
            f"[bench] probe: {json.dumps({k: rows[-1][k] for k in ('top1_cls', 'gt_known_loc', 'pxap')})} "
            f"(fitted or reused and scored in {time.perf_counter() - t0:.0f}s)"
        )
    name = f"boxreg-gapnet-s{study.regressor_stride}"
    model, seconds = train_or_reuse(
        name, "gapnet_boxreg", study.regressor_stride, study, views["train"], views["val"], spec, out, quiet
    )
    rows.append(
        row(
            f"box regressor (GapNet stride {study.regressor_stride}, full supervision)",
            None,
            score_regressor(model, views["val"], arrays["val"]),
            score_regressor(model, views["test"], arrays["test"]),
            seconds,
        )
    )
    ref = preds.get(study.reference_stride, next(iter(preds.values())))
    val_ref = np.asarray(arrays["val"].labels)  # on val only the thresholds matter, not classes
    for method, heatmap in reference_maps(side, side).items():
        rows.append(
            row(
                f"{method} (classes of GapNet stride {study.reference_stride})",
                None,
                score_reference(heatmap, arrays["val"], val_ref),
                score_reference(heatmap, arrays["test"], ref),
                0.0,
            )
        )
    info = {
        "study": asdict(study),
        "data": asdict(spec),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    return rows, info
