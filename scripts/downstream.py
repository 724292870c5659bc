"""Learn one downstream task's invariance vector with a frozen amortised encoder.

    python scripts/downstream.py --checkpoint runs/cpu-fmnist --task fmnist-flip
    python scripts/downstream.py --checkpoint runs/cpu-fmnist --task fashion-mnist \\
        --plain runs/cpu-fmnist-plain --parameterisation sigmoid --device cuda

Prints one JSON object: task, metric (accuracy or r2); learned (the gradient-learned vector,
group -> value), learned_score (its test score), val_score (its validation score); selected,
selected_name (``gradient`` or a corner), selected_score, selected_val (the vector chosen
without the test split among the gradient-learned one and every corner, by 5-fold
cross-validation on the training and validation splits pooled, or with --folds 0 on the
validation split; and its scores);
rounded (the corner the gradient vector rounds to); baselines (name -> test score: every
corner, plain with --plain, knn_*, raw_linear, raw_knn; none with --no-baselines);
precision (of the features behind every score); select_seconds (to the selected vector's
test score) and seconds (everything); val_scores (every candidate's selection score), reason
(why the selected one was kept), start (where the vector started) and folds.
"""

from __future__ import annotations

import argparse
import json
import sys

import amortinv
from amortinv.checkpoint import CheckpointError
from amortinv.cli import add_config_arguments, config_values
from amortinv.data import DatasetUnavailable, UnknownDataset
from amortinv.devices import DEVICE_HELP
from amortinv.downstream import DownstreamConfig, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="amortised encoder (folder/file)")
    parser.add_argument("--task", required=True, help="dataset name, or folder:/path")
    parser.add_argument("--plain", help="a plain (non-amortised) encoder for the baseline")
    parser.add_argument("--no-baselines", action="store_true", help="learn and score only")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + " (default auto)")
    add_config_arguments(parser, DownstreamConfig)
    args = parser.parse_args(argv)
    try:
        encoder = amortinv.load(args.checkpoint, args.device)
        plain = amortinv.load(args.plain, args.device) if args.plain else None
        config = DownstreamConfig(**config_values(args, DownstreamConfig))
        result = fit(encoder, args.task, config, plain, with_baselines=not args.no_baselines)
    except (CheckpointError, FileNotFoundError, DatasetUnavailable, UnknownDataset,
            ValueError) as err:  # DeviceUnavailable and TaskMismatch are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
