"""Several processes through torchrun: NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Process:
    """This process's place in a run: its ``rank`` among ``world`` processes (one alone)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Process:
    """Join the process group that ``torchrun`` describes (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Process()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size())


def close_distributed() -> None:
    """Barrier then destroy: without the barrier, gloo teardown aborts ~1 run in 2."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
