"""kNN test accuracy of an encoder at a few invariance vectors, beside the raw-input baseline.

    python scripts/knn_eval.py --checkpoint runs/cpu-fmnist [--dataset fashion-mnist] [--k 200]

Uses the whole training split as the memory bank and the whole test split; weighted kNN on
cosine similarity (k=200, temperature 0.07). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import amortinv
import amortinv.data as data
from amortinv.measure import knn_accuracy, knn_at_vectors, raw_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", default="", help="default: the dataset it was trained on")
    parser.add_argument("--k", type=int, default=200)
    args = parser.parse_args()

    start = time.perf_counter()
    enc = amortinv.load(args.checkpoint)
    name = args.dataset or enc.card.get("dataset", "").split(",")[0]
    ds = data.get(name)
    if ds.task != "classification":
        raise SystemExit(f"kNN needs a classification dataset; '{name}' is {ds.task}")
    scores = knn_at_vectors(enc, ds.train, ds.test, k=args.k)
    raw = knn_accuracy(raw_features(ds.train.x, ds.modality), ds.train.y,
                       raw_features(ds.test.x, ds.modality), ds.test.y, args.k)
    print(json.dumps({"checkpoint": args.checkpoint, "dataset": name, "k": args.k,
                      "train": len(ds.train), "test": len(ds.test), "knn": scores,
                      "raw_input_knn": round(raw, 4),
                      "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
