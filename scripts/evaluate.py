"""Test accuracy of an encoder at a few invariance vectors, beside the raw-input baseline: the
figures of the product's quality bars.

    python scripts/evaluate.py --checkpoint checkpoints/fmnist-hyper4-cpu \\
        [--dataset fashion-mnist] [--k 200] [--no-linear] [--device auto]

- kNN: weighted, on cosine similarity (k=200, temperature 0.07), the whole training split as
  the memory bank, the whole test split as queries.
- Linear readout: multinomial logistic regression on standardised features, trained on the
  training split less a 10% validation carve-out that picks its L2 strength; scored on the
  whole test split.

Both run where the encoder does (``--device``): on a GPU the whole evaluation takes seconds.

Both at all ones, all zeros and 0.5 (a plain encoder: once), and on the raw input (pixels or
log-mel spectrograms). A colour dataset is made grey for a grey encoder, and the reverse, as
everywhere (the JSON's ``note`` says so).
Prints one JSON object (``scripts/ship_checkpoint.py --eval`` puts it in a card).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import amortinv
import amortinv.data as data
from amortinv.checkpoint import CheckpointError
from amortinv.cli import positive_int
from amortinv.devices import DEVICE_HELP
from amortinv.downstream import DownstreamConfig, prepare
from amortinv.measure import MONITOR_VECTORS, knn_accuracy, raw_features
from amortinv.readout import fit_linear


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", default="", help="default: the dataset it was trained on")
    parser.add_argument("--k", type=positive_int, default=200,
                        help="neighbours in the kNN vote (default 200)")
    parser.add_argument("--linear", action=argparse.BooleanOptionalAction, default=True,
                        help="also fit linear readouts (a minute or two per vector on a CPU)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + " (default auto)")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args)
    except (CheckpointError, FileNotFoundError, data.DatasetUnavailable, data.UnknownDataset,
            ValueError) as err:  # DeviceUnavailable and TaskMismatch are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def evaluate(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    enc = amortinv.load(args.checkpoint, args.device)
    name = args.dataset or enc.card.get("dataset", "").split(",")[0]
    ds = data.get(name)
    if ds.target_kind != "classification":
        raise ValueError(f"kNN needs a classification dataset; '{name}' is {ds.target_kind}: "
                         "pick one with --dataset")
    # A plain encoder ignores the vector: one vector says all there is.
    vectors = MONITOR_VECTORS if enc.config.conditioning != "none" else {"all_ones": 1.0}
    task = prepare(enc, ds, DownstreamConfig(max_train=0))  # train less validation, test
    ds = task.data  # its images as the encoder reads them: colour made grey, or the reverse
    if task.note:
        print(f"note: {task.note}", file=sys.stderr)
    keep, val = ds.validation_indices(DownstreamConfig.val_fraction, DownstreamConfig.seed)
    knn, linear = {}, {}
    device = enc.device  # readouts run where the encoder does: seconds on a GPU
    for label, value in vectors.items():  # each vector encoded once, for both readouts
        z_train, z_test = (enc.features(x, value).to(device) for x in (ds.train.x, ds.test.x))
        knn[label] = round(knn_accuracy(z_train, ds.train.y, z_test, ds.test.y, args.k), 4)
        if args.linear:
            linear[label] = round(fit_linear((z_train[keep], z_train[val], z_test),
                                             task.targets, task.classes, device)[1], 4)
    raw_train, raw_test = (raw_features(x, ds.modality).to(device)
                           for x in (ds.train.x, ds.test.x))
    result = {"checkpoint": args.checkpoint, "dataset": name, "k": args.k,
              "train": len(ds.train), "test": len(ds.test), "knn": knn,
              "raw_input_knn": round(knn_accuracy(raw_train, ds.train.y, raw_test, ds.test.y,
                                                  args.k), 4)}
    if task.note:
        result["note"] = task.note
    if args.linear:
        result["linear"] = linear
        result["raw_input_linear"] = round(fit_linear(
            (raw_train[keep], raw_train[val], raw_test), task.targets, task.classes,
            device)[1], 4)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


if __name__ == "__main__":
    sys.exit(main())
