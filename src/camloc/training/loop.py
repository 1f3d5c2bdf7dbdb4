"""Training GAP nets (and the box-regression reference) on one process or under torchrun with DDP.

`fit` runs the loop: SGD with momentum, a cosine learning rate (a pure function of the step, so nothing but the
step needs saving), cross-entropy (+ L1 on boxes in [0, 1] for a `BoxRegressor`), mixed precision on CUDA,
a tqdm bar on the main process, and a checkpoint at the end of every epoch (and every `checkpoint_every` steps):
the model as `model.safetensors` + `config.json` (what `camloc.load` reads) and the resume state
(`camloc.training.state`). `N` processes with batch `B / N` each follow the single-process run with batch `B`:
same batches, gradients averaged by DDP (exactly equal when the net has no batch statistics, e.g. norm="group").
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from camloc import distributed as D
from camloc.errors import InputError
from camloc.io import save_checkpoint
from camloc.training.state import STATE_NAME, read_progress, read_state, restore, save_state

log = logging.getLogger("camloc")


class BatchSource(Protocol):
    """What training reads: a length and batches (inputs (B, 3, H, W), labels (B,), boxes (B, 4) in pixels)."""

    def __len__(self) -> int: ...

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """indices (B,) -> (inputs (B, 3, H, W) float, labels (B,) int64, boxes (B, 4) [x0, y0, x1, y1) pixels)."""
        ...


@dataclass
class TrainConfig:
    """Optimisation settings. `batch_size` is the effective (global) batch, split over processes."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    seed: int = 0
    amp: bool = True  # only takes effect on CUDA
    box_weight: float = 5.0
    checkpoint_every: int = 0  # extra checkpoints every N steps (0: at epoch ends only)
    eval_batch_size: int = 256


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up then cosine decay to 0 over `total` steps."""
    warm = min(cfg.warmup_steps, max(total // 10, 1))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))


def loss_and_correct(
    out: Tensor | tuple[Tensor, Tensor], labels: Tensor, boxes: Tensor, size: tuple[int, int], box_weight: float
) -> tuple[Tensor, Tensor]:
    """Mean loss of a batch and its number of correct top-1 classes, two scalar tensors.

    out: logits (B, K), or (logits, boxes (B, 4) as fractions) of a box regressor, whose L1 loss to the true
    boxes (B, 4) in pixels of an input of `size` (h, w), divided by that size, is added with `box_weight`;
    labels (B,) int64."""
    logits = out[0] if isinstance(out, tuple) else out
    loss = F.cross_entropy(logits.float(), labels)
    if isinstance(out, tuple):
        h, w = size
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=boxes.device)
        loss = loss + box_weight * F.l1_loss(out[1].float(), boxes.float() / scale)
    return loss, (logits.argmax(1) == labels).sum()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum; no weight decay on biases and norm parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=cfg.momentum,
    )


def _autocast(device: torch.device, enabled: bool):
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled and device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: nn.Module, source: BatchSource, ctx: D.DistContext, batch_size: int = 256, amp: bool = True
) -> float:
    """Top-1 accuracy (%) over `source`, each process taking its shard, the counts summed over processes."""
    was_training = model.training
    model.eval()
    try:
        idx = D.shard(len(source), ctx.rank, ctx.world)
        correct = 0
        for start in range(0, len(idx), batch_size):
            x, y, _ = source.get_batch(idx[start : start + batch_size])
            with _autocast(ctx.device, amp):
                out = model(x.to(ctx.device, non_blocking=True))
            logits = out[0] if isinstance(out, tuple) else out
            correct += int((logits.argmax(1).cpu() == y).sum())
        total_correct, total = D.all_sum(ctx, [float(correct), float(len(idx))])
    finally:
        model.train(was_training)
    return 100.0 * total_correct / max(total, 1.0)


def fit(
    model: nn.Module,
    model_config: dict[str, Any],
    train: BatchSource,
    out_dir: str | Path,
    cfg: TrainConfig,
    val: BatchSource | None = None,
    resume: bool = False,
    quiet: bool = False,
    ctx: D.DistContext | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train `model` in place and checkpoint it into `out_dir`; returns the progress record (with `history`).

    `model_config` is what `config.json` records (architecture, arch_kwargs, labels, preprocess). With
    `resume=True` the run continues from `out_dir`'s training state; without it, a folder holding an unfinished
    run is refused. `on_step(global_step)` is called after every optimisation step (tests use it to interrupt).
    """
    ctx = ctx or D.DistContext()
    out_dir = Path(out_dir)
    world = ctx.world
    if cfg.batch_size % world:
        raise InputError(f"batch size {cfg.batch_size} is not divisible by the {world} processes")
    per_rank = cfg.batch_size // world
    n_rank = math.ceil(len(train) / world)
    steps_per_epoch = math.ceil(n_rank / per_rank)
    total_steps = steps_per_epoch * cfg.epochs
    model.to(ctx.device)
    optimizer = make_optimizer(model, cfg)
    progress: dict[str, Any] = {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "history": [],
        "train_seconds": 0.0,
        "model_config": model_config,
        "train_config": asdict(cfg),
        "world_size": world,
        "finished": False,
    }
    if resume:
        tensors, saved = read_state(out_dir)
        if saved.get("model_config", {}).get("architecture") != model_config.get("architecture") or saved.get(
            "model_config", {}
        ).get("arch_kwargs") != model_config.get("arch_kwargs"):
            raise InputError(
                f"{out_dir}: the run there trained '{saved.get('model_config', {}).get('architecture')}' "
                f"{saved.get('model_config', {}).get('arch_kwargs')}, not this model; resume it with "
                "the same model options"
            )
        if saved.get("train_config", {}).get("batch_size") != cfg.batch_size:
            raise InputError(
                f"{out_dir}: the run used batch size {saved['train_config'].get('batch_size')}, not {cfg.batch_size}"
            )
        restore(tensors, saved, model, optimizer, str(out_dir))
        progress.update(
            {k: saved[k] for k in ("epoch", "step_in_epoch", "global_step", "history", "train_seconds") if k in saved}
        )
    elif (out_dir / STATE_NAME).is_file():
        try:
            saved = read_progress(out_dir)
        except InputError:
            raise InputError(f"{out_dir}: holds a damaged {STATE_NAME}; delete it or choose another --out") from None
        what = (
            "a finished run"
            if saved.get("finished")
            else f"an unfinished run (stopped in epoch {saved.get('epoch', 0) + 1})"
        )
        raise InputError(f"{out_dir}: holds {what}; pass --resume to continue it or choose another --out")

    net: nn.Module = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    use_amp = cfg.amp and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    bar_off = quiet or not ctx.is_main or not sys.stderr.isatty()

    def checkpoint(finished: bool = False) -> None:
        if ctx.is_main:
            save_checkpoint(out_dir, model.state_dict(), model_config)
            save_state(out_dir, model, optimizer, {**progress, "finished": finished})
        D.barrier(ctx)

    model.train()
    while progress["epoch"] < cfg.epochs:
        epoch, skip = progress["epoch"], progress["step_in_epoch"]
        indices = D.epoch_indices(len(train), epoch, cfg.seed, ctx.rank, world)
        t0, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(
            total=steps_per_epoch,
            initial=skip,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=bar_off,
            leave=False,
            dynamic_ncols=True,
        )
        for step in range(skip, steps_per_epoch):
            x, y, boxes = train.get_batch(indices[step * per_rank : (step + 1) * per_rank])
            x, y, boxes = (t.to(ctx.device, non_blocking=True) for t in (x, y, boxes))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, progress["global_step"], total_steps)
            with _autocast(ctx.device, use_amp):
                out = net(x)
            loss, n_ok = loss_and_correct(out, y, boxes, (int(x.shape[-2]), int(x.shape[-1])), cfg.box_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * len(y)
            correct += int(n_ok)
            seen += len(y)
            progress["global_step"] += 1
            progress["step_in_epoch"] = step + 1
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 * correct / seen:.1f}")
            bar.update()
            if on_step is not None:
                on_step(progress["global_step"])
            if (
                cfg.checkpoint_every
                and progress["global_step"] % cfg.checkpoint_every == 0
                and step + 1 < steps_per_epoch
            ):
                progress["train_seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint()
        bar.close()
        loss_sum, correct_f, seen_f = D.all_sum(ctx, [loss_sum, float(correct), float(seen)])
        progress["train_seconds"] += time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen_f, 1),
            "train_top1": 100.0 * correct_f / max(seen_f, 1),
        }
        if val is not None:
            record["val_top1"] = evaluate(model, val, ctx, cfg.eval_batch_size, cfg.amp)
        if skip:
            record["resumed_at_step"] = skip
        progress["history"].append(record)
        progress["epoch"], progress["step_in_epoch"] = epoch + 1, 0
        checkpoint(finished=progress["epoch"] >= cfg.epochs)
        if ctx.is_main and not quiet:
            extra = f", val top-1 {record['val_top1']:.1f}%" if "val_top1" in record else ""
            log.info(
                "epoch %d/%d: loss %.4f, train top-1 %.1f%%%s",
                epoch + 1,
                cfg.epochs,
                record["train_loss"],
                record["train_top1"],
                extra,
            )
    return progress
