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


def launched() -> bool:
    """True in a process that ``torchrun`` started (it sets these variables for each one)."""
    return "RANK" in os.environ and "MASTER_ADDR" in os.environ


def init_distributed(device: torch.device) -> Process:
    """Join the process group that ``torchrun`` describes (NCCL on GPUs, gloo on CPUs). A
    process that torchrun started joins even alone (one process: the same path as eight);
    any other runs by itself."""
    if not launched():
        return Process()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size())


def close_distributed() -> None:
    """Barrier then destroy: without the barrier, gloo teardown aborts ~1 run in 2."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def from_rank_zero(value: int, device: torch.device) -> int:
    """``value`` as rank 0 has it, on every process (itself in a single process): decisions
    that depend on a clock (``--minutes``) must be the same on every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=device)  # NCCL: a CUDA tensor
    dist.broadcast(tensor, 0)
    return int(tensor.item())
