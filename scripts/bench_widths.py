"""Benchmark: what one slider move in the app costs at each encoder width, on this CPU.

A slider move re-encodes the probed points (2,000 test + 1,000 train images) at the new
vector with ``Encoder.features(..., precision="bf16")``, as the app does. The time depends on
the model's size, not on its weights, so untrained ResNet-18s are timed: every width and
conditioning asked for, on grey 28x28 (Fashion-MNIST) and colour inputs. This chose the widths
of the GPU presets (docs/GPU.md): the features must stay well under ~0.5 s so the browser's
slider -> plot round trip stays within 0.8 s on 2 cores.

    python scripts/bench_widths.py [--widths 16 24 32] [--conditionings hyper-4 film]
        [--inputs grey28 rgb32 rgb64 (or audio1s)] [--images 3000] [--repeats 5]

One JSON line per (input, conditioning, width): median seconds of ``repeats`` timed calls
after one warm-up, the parameters and the fp16 file size in MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from amortinv.cli import positive_int
from amortinv.invariance import default_space
from amortinv.models import Encoder, ModelConfig

#: name -> (channels, size) of images; audio1s: one-second waveforms at 16 kHz (log-mel
#: computed inside the encoder, ImageNet stem, as the audio presets)
INPUTS = {"grey28": (1, 28), "rgb32": (3, 32), "rgb64": (3, 64), "audio1s": (0, 16000)}
#: name -> model settings
CONDITIONINGS = {"hyper-4": {"conditioning": "hyper", "bases": 4},
                 "film": {"conditioning": "film"}, "plain": {"conditioning": "none"}}


def seconds_per_move(encoder: Encoder, images: torch.Tensor, repeats: int) -> float:
    """Median wall time of encoding ``images`` at a new vector each time."""
    k = len(encoder.space)
    encoder.features(images[:64], [1.0] * k, precision="bf16")  # warm-up
    times = []
    for r in range(repeats):
        vector = [1.0 - 0.05 * (r + 1)] * k
        start = time.perf_counter()
        encoder.features(images, vector, precision="bf16")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=positive_int, nargs="+", default=[16, 24, 32])
    parser.add_argument("--conditionings", nargs="+", choices=sorted(CONDITIONINGS),
                        default=["hyper-4", "film"])
    parser.add_argument("--inputs", nargs="+", choices=sorted(INPUTS),
                        default=["grey28", "rgb32", "rgb64"])
    parser.add_argument("--images", type=positive_int, default=3000)
    parser.add_argument("--repeats", type=positive_int, default=5)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    for name in args.inputs:
        channels, size = INPUTS[name]
        if name.startswith("audio"):
            images = 0.1 * torch.randn(args.images, size, generator=generator)
            space, shape = default_space("audio", 1), dict(modality="audio", stem="imagenet")
        else:
            images = torch.randint(0, 256, (args.images, channels, size, size),
                                   dtype=torch.uint8, generator=generator)
            space = default_space("image", channels)
            shape = dict(in_channels=channels, image_size=size)
        for conditioning in args.conditionings:
            for width in args.widths:
                config = ModelConfig(width=width, **shape, **CONDITIONINGS[conditioning])
                encoder = Encoder(config, space).eval()
                params = sum(p.numel() for p in encoder.parameters())
                print(json.dumps({
                    "input": name, "conditioning": conditioning, "width": width,
                    "images": args.images, "seconds": round(
                        seconds_per_move(encoder, images, args.repeats), 3),
                    "parameters_m": round(params / 1e6, 2),
                    "fp16_mb": round(2 * params / 2**20, 1),
                    "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
