"""Command line for the dataset datasets.

    python -m amortinv.data list [--all]        what this machine has (or everything known)
    python -m amortinv.data prepare [NAME ...]  decode and cache now (default: all available)
    python -m amortinv.data fetch NAME          download a torchvision dataset (needs internet)
"""

from __future__ import annotations

import argparse
import sys
import time

import amortinv.data as datasets


def _list(show_all: bool) -> int:
    rows = [e for e in datasets.entries() if show_all or e.available()]
    width = max(len(e.name) for e in rows)
    for e in rows:
        status = "ok " if e.available() else "-- "
        print(f"{status}{e.name:<{width}}  {e.modality:<5}  {e.target_kind:<14}  {e.description}")
        if show_all and not e.available():
            print(f"{'':>{width + 3}}  {e.hint}")
    return 0


def _prepare(names: list[str]) -> int:
    names = names or datasets.names()
    failed = 0
    for name in names:
        start = time.perf_counter()
        try:
            ds = datasets.get(name)
        except (datasets.DatasetUnavailable, datasets.UnknownDataset, ValueError) as err:
            print(f"{name}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {len(ds.train)} train / {len(ds.test)} test, "
              f"{ds.input_shape}, {time.perf_counter() - start:.1f}s")
    return 1 if failed else 0


def _fetch(name: str) -> int:
    from amortinv.data.torchvision_sets import FETCHERS

    if name not in FETCHERS:
        print(f"no download for {name!r}; downloadable: {', '.join(sorted(FETCHERS))}",
              file=sys.stderr)
        return 2
    root = datasets.cache_dir() / "torchvision"
    print(f"downloading {name} into {root} ...")
    FETCHERS[name](root)
    return 0


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
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list(args.all)
    if args.command == "prepare":
        return _prepare(args.names)
    return _fetch(args.name)


if __name__ == "__main__":
    sys.exit(main())
