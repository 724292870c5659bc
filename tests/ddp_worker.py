"""Run by tests under torchrun: a few DDP steps (gloo on the CPU, NCCL on a GPU), then each rank
writes a digest of its weights so the test can check that the replicas agree, and how it ran
(backend, wrapper). BatchNorm running statistics are rank-local in DDP, rank 0's being the ones
saved: they are left out.

    torchrun --nproc_per_node N tests/ddp_worker.py OUT METHOD [DEVICE]
"""

import hashlib
import json
import os
import sys

import torch.distributed as dist

from amortinv.pretrain import close_distributed, preset, pretrain

out, method = sys.argv[1], sys.argv[2]
device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
trainer = pretrain(preset("smoke", out=out, device=device, steps=3, method=method,
                          queue_size=64, batch_size=32, bf16=device != "cpu"))
digest = hashlib.sha256()
for name, tensor in sorted(trainer.model.named_parameters()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
rank = trainer.process.rank
with open(os.path.join(out, f"rank{rank}.sha"), "w") as f:
    f.write(digest.hexdigest())
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"backend": dist.get_backend(), "world": dist.get_world_size(),
               "wrapper": type(trainer.step_model).__name__, "device": str(trainer.device),
               "steps": trainer.step}, f)
close_distributed()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # gloo's interpreter teardown can abort; the work is done and flushed
