"""Process-group setup for `torchrun` (DistributedDataParallel) and the deterministic sharding of samples.

One process (no torchrun) is the world of size 1; under `torchrun --nproc_per_node=N` the group is initialised
from the environment with gloo on CPU and nccl on GPU. Sharding is a pure function of (n, epoch, seed, rank, world),
so that N processes with batch B/N see, together, exactly the batches one process with batch B sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from camloc.errors import InputError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - an immutable value, shared safely

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> this process's CUDA device when there is one, else the CPU; 'cpu' / 'cuda' / 'cuda:1' as given."""
    if preference == "auto":
        return (
            torch.device("cuda", local_rank % torch.cuda.device_count())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise InputError(f"--device {preference}: not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {preference}: no CUDA device is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return device


def setup(preference: str = "auto") -> DistContext:
    """Join the torchrun process group if the environment describes one (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world <= 1:
        return DistContext(0, 1, device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def teardown(ctx: DistContext) -> None:
    """Destroy the process group this job created (a live one aborts the process at exit)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every process of the job (a no-op for one process)."""
    if ctx.distributed:
        dist.barrier()


def all_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Sum a few numbers over all processes (float64)."""
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def epoch_indices(n: int, epoch: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True) -> torch.Tensor:
    """This rank's sample indices for `epoch`: a seeded permutation padded (by wrapping) to a multiple of `world`,
    then every world-th element from `rank` (the DistributedSampler layout): (m,) int64, m = ceil(n / world)."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    else:
        order = torch.arange(n)
    pad = (-n) % world
    if pad:
        order = torch.cat([order, order[:pad]])
    return order[rank::world]


def shard(n: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Evaluation shard without padding (each sample counted once over all ranks): the indices rank, rank + world,
    ... below n, (m,) int64."""
    return torch.arange(rank, n, world)
