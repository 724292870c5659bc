"""Render the synthetic spoken digits (espeak-ng + flite) into the data cache.

Usage: python scripts/render_spoken_digits.py [--limit N] [--workers 2]

Optional: `get("spoken-digits")` renders on first use. Running it ahead of time keeps that first
load quick; files already rendered are skipped.
"""

from __future__ import annotations

import argparse

from amortinv.data.render import render_dir, render_spoken_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="render only N clips")
    parser.add_argument("--workers", type=int, default=2, help="parallel renders")
    args = parser.parse_args()
    clips = render_spoken_digits(args.limit, workers=args.workers)
    print(f"{len(clips)} spoken-digit clips in {render_dir('spoken-digits')}")


if __name__ == "__main__":
    main()
