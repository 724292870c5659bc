"""Render the instrument notes (fluidsynth + FluidR3 GM soundfont) into the data cache.

Usage: python scripts/render_notes.py [--limit N] [--workers 2]

Optional: `get("notes-family")` (or notes-pitch, notes-velocity) renders on first use. Running
it ahead of time keeps that first load quick; notes already rendered are skipped.
"""

from __future__ import annotations

import argparse

from amortinv.data.render import render_dir, render_notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="render only N notes")
    parser.add_argument("--workers", type=int, default=2, help="parallel fluidsynth runs")
    args = parser.parse_args()
    notes = render_notes(args.limit, workers=args.workers)
    folder = render_dir("notes")
    print(f"{len(notes)} notes in {folder} (metadata: {folder / 'notes.csv'})")


if __name__ == "__main__":
    main()
