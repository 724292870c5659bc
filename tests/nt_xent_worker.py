"""Run by tests/test_losses.py under torchrun (2 gloo processes): each takes its half of one
seeded batch, computes NT-Xent with negatives from every process, and writes its loss and the
gradient of its half, for comparison with the whole batch's loss in one process."""

import os
import sys

import torch
import torch.distributed as dist

from amortinv.losses import nt_xent

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
z1, z2 = torch.randn(2, 8 * world, 16, dtype=torch.float64)  # the same whole batch everywhere
half = slice(8 * rank, 8 * (rank + 1))
mine1, mine2 = z1[half].clone().requires_grad_(), z2[half].clone().requires_grad_()
loss = nt_xent(mine1, mine2, 0.5, across_processes=True)
loss.backward()
torch.save({"loss": loss.detach(), "grad1": mine1.grad, "grad2": mine2.grad, "z1": z1,
            "z2": z2}, os.path.join(sys.argv[1], f"rank{rank}.pt"))
dist.barrier()
dist.destroy_process_group()
