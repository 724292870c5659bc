"""Command line for the dataset datasets.

    python -m amortinv.data list [--all]        what this machine has (or everything known)
    python -m amortinv.data prepare [NAME ...]  decode and cache now (default: all available)
    python -m amortinv.data fetch NAME          download a torchvision dataset (needs internet)
    python -m amortinv.data pack NAME ... --into DIR [--limit N] [--max-mb M] [--lossless]
                                                packed arrays for a machine without the
                                                sources (AMORTINV_DATA=DIR there; make gpu-data)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import amortinv.data as datasets
from amortinv.data.packed import LOSSLESS, PACK_RATES, AudioPacking, packed_path, write_packed


def _list(show_all: bool) -> int:
    rows = [e for e in datasets.entries() if show_all or e.available()]
    width = max(len(e.name) for e in rows)
    for e in rows:
        status = "ok " if e.available() else "-- "
        print(f"{status}{e.name:<{width}}  {e.modality:<5}  {e.target_kind:<14}  {e.description}")
        if show_all and not e.available():
            print(f"{'':>{width + 3}}  {e.hint}")
    return 0


def _each(names: list[str], failed: list[str]) -> Iterator[tuple[str, datasets.Dataset, float]]:
    """``(name, dataset, seconds to load)`` of each dataset that loads; the others are
    printed with their error and added to ``failed``."""
    for name in names:
        start = time.perf_counter()
        try:
            ds = datasets.get(name)
        except (datasets.DatasetUnavailable, datasets.UnknownDataset, ValueError) as err:
            print(f"{name}: {err}", file=sys.stderr)
            failed.append(name)
            continue
        yield name, ds, time.perf_counter() - start


def _prepare(names: list[str]) -> int:
    failed: list[str] = []
    for name, ds, seconds in _each(names or datasets.names(), failed):
        print(f"{name}: {len(ds.train)} train / {len(ds.test)} test, "
              f"{ds.input_shape}, {seconds:.1f}s")
    return 1 if failed else 0


def _fetch(name: str) -> int:
    from amortinv.data import torchvision_sets

    if name not in torchvision_sets.FETCHERS:
        print(f"no download for {name!r}; downloadable: "
              f"{', '.join(sorted(torchvision_sets.FETCHERS))}", file=sys.stderr)
        return 2
    print(f"downloading {name} into {torchvision_sets.root()} ...")
    torchvision_sets.fetch(name)
    return 0


def _pack(names: list[str], into: Path, limit: int, lossless: bool, max_mb: float) -> int:
    """Pack each dataset (its decoded arrays, compressed) under ``into``; print the sizes.
    With ``max_mb``, datasets are packed in the order given while they fit; one that does not
    fit whole keeps an evenly spread part of its training split that does (its test split
    whole), or is left out."""
    if limit < 0 or not math.isfinite(max_mb) or max_mb < 0 or not str(into).strip():
        print("error: --limit and --max-mb must be 0 (no limit) or more, and --into a folder",
              file=sys.stderr)
        return 2
    total, failed = 0, []
    for name, ds, _ in _each(names, failed):
        room = max_mb * 2**20 - total if max_mb else float("inf")
        keep = limit or len(ds.train)
        final = packed_path(name, into)
        trial = final.with_name(final.name + ".trial")  # an earlier pack stays until this fits
        for _ in range(4):  # shrink the training split until it fits
            train, test = _spread(ds.train, keep), _spread(ds.test, limit)
            path = _write(name, ds, train, test, trial, lossless)
            size = path.stat().st_size
            if size <= room:
                break
            keep = int(len(train) * 0.95 * room / size)
            if keep < 1:
                break
        if size <= room:
            path = trial.replace(final)
        else:
            trial.unlink()
            print(f"{name}: does not fit in the {max(room, 0) / 2**20:.1f} MB left of "
                  f"--max-mb {max_mb:g}; left out", file=sys.stderr)
            failed.append(name)
            continue
        total += size
        part = "" if len(train) == len(ds.train) else f" (of {len(ds.train)}: what fits)"
        print(f"{name}: {len(train)} train{part} / {len(test)} test -> {path} "
              f"({size / 2**20:.2f} MB)", flush=True)
    print(f"packed: {total / 2**20:.2f} MB in {into / 'packed'}")
    return 1 if failed else 0


def _write(name: str, ds: datasets.Dataset, train: datasets.Split, test: datasets.Split,
           path: Path, lossless: bool) -> Path:
    splits = datasets.Splits(train, test, ds.class_names)
    if ds.modality != "audio":
        return write_packed(path, splits)
    packing = LOSSLESS if lossless else AudioPacking("mulaw8", PACK_RATES.get(name))
    return write_packed(path, splits, ds.sample_rate, train=packing)


def _spread(split: datasets.Split, limit: int) -> datasets.Split:
    """At most ``limit`` examples, evenly spread over the split (0: all of it)."""
    if not limit or len(split) <= limit:
        return split
    return split.take(np.linspace(0, len(split) - 1, limit).round().astype(int))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amortinv.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list datasets")
    p_list.add_argument("--all", action="store_true", help="also those missing here, with hints")
    p_prep = sub.add_parser("prepare", help="decode and cache datasets")
    p_prep.add_argument("names", nargs="*")
    p_fetch = sub.add_parser("fetch", help="download a torchvision dataset")
    p_fetch.add_argument("name")
    p_pack = sub.add_parser("pack", help="packed arrays for a machine without the sources")
    p_pack.add_argument("names", nargs="+")
    p_pack.add_argument("--into", type=Path, required=True,
                        help="a data folder: the other machine sets AMORTINV_DATA to it")
    p_pack.add_argument("--limit", type=int, default=0,
                        help="at most this many examples per split, evenly spread (0: all)")
    p_pack.add_argument("--lossless", action="store_true",
                        help="audio training splits as 16-bit PCM at their own rate too "
                        "(default: 8-bit mu-law, 8 kHz where the source is band-limited)")
    p_pack.add_argument("--max-mb", type=float, default=0,
                        help="pack at most this much, in the order given; a dataset that does "
                        "not fit whole keeps part of its training split (0: no limit)")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(getattr(args, "names", []) or []))  # a name given twice: once
    if args.command == "list":
        return _list(args.all)
    if args.command == "prepare":
        return _prepare(names)
    if args.command == "pack":
        return _pack(names, args.into, args.limit, args.lossless, args.max_mb)
    return _fetch(args.name)


if __name__ == "__main__":
    sys.exit(main())
