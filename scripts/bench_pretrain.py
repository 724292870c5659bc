"""Benchmark: throughput of the amortised pre-training step against the plain step.

Same device, backbone, batch, resolution and batched augmentation, in one run; each step is the
real `Trainer.train_step` (vector draw, two views, forward, NT-Xent, backward, optimizer).
Images/s counts each image once (two views each). Inputs are random 32x32 RGB images, the
shape of the reference (CIFAR-10); content does not change the speed. One JSON line per
conditioning:

    python scripts/bench_pretrain.py                    # GPU: batch 512, width 64, bf16, compile
    python scripts/bench_pretrain.py --device cpu --batch 128 --width 16 --seconds 20
    python scripts/bench_pretrain.py --no-compile --only plain film hyper-4 hyper-32   # make gpu

Keys: device, conditioning, amortised_img_s, plain_img_s, ratio (and batch, width, size, bf16,
compile). ``--only plain`` also prints the plain step's own line (img_s; no ratio).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from amortinv.cli import positive_float, positive_int
from amortinv.pretrain import Trainer, preset

#: name -> overrides of the amortised model (the plain step has conditioning="none")
CONDITIONINGS = {
    "hyper-32": {"conditioning": "hyper", "bases": 32},
    "hyper-4": {"conditioning": "hyper", "bases": 4},
    "hyper-32-stages-3-4": {"conditioning": "hyper", "bases": 32, "conditioned_stages": (3, 4)},
    "film": {"conditioning": "film"},
}


def throughput(trainer: Trainer, seconds: float, warmup: int) -> float:
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        trainer.train_step()
    sync()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer.train_step()
        steps += 1
    sync()
    return steps * trainer.config.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    parser.add_argument("--batch", type=positive_int, default=512 if gpu else 128)
    parser.add_argument("--width", type=positive_int, default=64 if gpu else 16)
    parser.add_argument("--size", type=positive_int, default=32)
    parser.add_argument("--seconds", type=positive_float, default=10.0 if gpu else 20.0)
    parser.add_argument("--warmup", type=int, default=20 if gpu else 3)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=gpu)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bfloat16 autocast (on CUDA)")
    parser.add_argument("--only", nargs="*", choices=sorted([*CONDITIONINGS, "plain"]),
                        help="conditionings to measure (default: all amortised ones)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(4096, 4 * args.batch), 3, args.size, args.size),
                          dtype=np.uint8)

    def measure(**overrides) -> float:
        with tempfile.TemporaryDirectory() as out:
            cfg = preset("gpu-fmnist", out=out, device=args.device, batch_size=args.batch,
                         width=args.width, compile=args.compile, bf16=args.bf16, steps=10**6,
                         warmup_steps=10, progress=False, **overrides)
            return throughput(Trainer(cfg, images=images), args.seconds, args.warmup)

    plain = measure(conditioning="none")
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    common = {"batch": args.batch, "width": args.width, "size": args.size,
              "bf16": args.bf16 and args.device.startswith("cuda"), "compile": args.compile}
    names = args.only or list(CONDITIONINGS)
    if "plain" in names:
        print(json.dumps({"device": device, "conditioning": "plain", "img_s": round(plain),
                          **common}), flush=True)
    for name in (n for n in names if n != "plain"):
        amortised = measure(**CONDITIONINGS[name])
        print(json.dumps({"device": device, "conditioning": name, "img_s": round(amortised),
                          "amortised_img_s": round(amortised), "plain_img_s": round(plain),
                          "ratio": round(amortised / plain, 3), **common}), flush=True)


if __name__ == "__main__":
    main()
