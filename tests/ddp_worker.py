"""Run by tests/test_pretrain.py under torchrun: a few DDP steps with gloo on the CPU, then each
rank writes a digest of its weights so the test can check that the replicas agree. (BatchNorm
running statistics are rank-local in DDP, rank 0's being the ones saved: they are left out.)"""

import hashlib
import os
import sys

from amortinv.pretrain import close_distributed, preset, pretrain

out = sys.argv[1]
trainer = pretrain(preset("smoke", out=out, device="cpu", steps=3, method=sys.argv[2],
                          queue_size=64, batch_size=32))
digest = hashlib.sha256()
for name, tensor in sorted(trainer.model.named_parameters()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
with open(os.path.join(out, f"rank{trainer.process.rank}.sha"), "w") as f:
    f.write(digest.hexdigest())
close_distributed()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # gloo's interpreter teardown can abort; the work is done and flushed
