"""DistributedDataParallel under ``torchrun``: detect the launcher's environment, set up, tear down.

``fmnist train`` runs unchanged under ``torchrun --nproc-per-node N``: every rank draws the same
permutation per epoch and trains on its own slice of each global batch (no overlap), gradients
are averaged by DDP, epoch metrics are summed across ranks, and only rank 0 writes files.
``--batch-size`` is the global batch, so a run resumes across a change of world size unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fmnist.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK); a single process when absent."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    return World(rank, size, local)


def setup(world: World, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); each rank gets its own GPU."""
    if not world.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def teardown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_across(world: World, *values: torch.Tensor) -> list[torch.Tensor]:
    """Sum each tensor over all ranks (a no-op for one process)."""
    if not world.active:
        return list(values)
    stacked = torch.stack([v.to(torch.float64) for v in values])
    if stacked.device.type != "cpu" and dist.get_backend() == "gloo":
        stacked = stacked.cpu()
    dist.all_reduce(stacked)
    return list(stacked.unbind())
