"""Benchmark: batched, gated augmentation against per-sample torchvision.transforms.v2.

Both make two SimCLR views of each image at full strength (all groups at 1) on the same
machine, in one run; images/s counts each image once. Prints one JSON line:

    python scripts/bench_augment.py [--batch 512] [--size 32] [--seconds 5]

Keys: device, threads, batch, size, batched_img_s, torchvision_img_s, ratio; audio_clip_s (1 s
clips at 16 kHz: log-mel plus two views with every audio group at 1); where a GPU is present
gpu_device, gpu_batched_img_s.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torchvision.transforms import v2

from amortinv.augment import AudioAugment, LogMel, VisionAugment
from amortinv.cli import positive_float, positive_int
from amortinv.invariance import AUDIO, RGB


def torchvision_pipeline(size: int) -> v2.Compose:
    """The per-sample equivalent of RGB at all ones (SimCLR's recipe)."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel_size=2 * (size // 10) + 1,
                                        sigma=(0.1, 2.0))], p=0.5),
    ])


def rate(step, images: int, seconds: float, sync=lambda: None) -> float:
    """Images per second of ``step`` (one warm-up call, then repeated for ``seconds``)."""
    step()
    sync()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += images
    sync()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=positive_int, default=512)
    parser.add_argument("--size", type=positive_int, default=32)
    parser.add_argument("--seconds", type=positive_float, default=5.0)
    args = parser.parse_args()

    aug = VisionAugment(RGB)
    ones = [1.0] * len(RGB)
    x = torch.rand(args.batch, 3, args.size, args.size)
    g = torch.Generator().manual_seed(0)
    tv = torchvision_pipeline(args.size)

    def torchvision_step():
        for img in x:
            tv(img), tv(img)

    batched = rate(lambda: aug.views(x, ones, generator=g), args.batch, args.seconds)
    per_sample = rate(torchvision_step, args.batch, args.seconds)
    waves = torch.randn(args.batch // 2, 16000, generator=g) * 0.1
    log_mel, audio_aug = LogMel(), AudioAugment(AUDIO)
    audio = rate(lambda: audio_aug.views(log_mel(waves), [1.0] * len(AUDIO), generator=g),
                 len(waves), args.seconds)
    result = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "batched_img_s": round(batched),
        "torchvision_img_s": round(per_sample),
        "ratio": round(batched / per_sample, 2),
        "audio_clip_s": round(audio),
    }
    if torch.cuda.is_available():
        xg = x.cuda()
        result["gpu_device"] = torch.cuda.get_device_name()
        result["gpu_batched_img_s"] = round(rate(lambda: aug.views(xg, ones, generator=g),
                                                 args.batch, args.seconds,
                                                 torch.cuda.synchronize))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
