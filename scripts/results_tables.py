"""Write the results tables into the docs, from the results files (never by hand).

    python scripts/results_tables.py            # rewrite the generated blocks
    python scripts/results_tables.py --check    # exit 1 if a doc differs from its files

A generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` in
README.md or docs/DOWNSTREAM.md; ``BLOCKS`` says which files make each one. The test suite
runs ``--check``, so a table cannot drift from its file.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from amortinv import results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
#: The suite's tasks in reading order: invariance tasks, then those that need a sensitivity.
ORDER = ["fashion-mnist", "mnist-subset", "opencv-digits", "sklearn-digits", "textures",
         "fmnist-flip", "fmnist-position", "fmnist-scale", "fmnist-brightness", "fmnist-blur",
         "spoken-digits", "asterisk-digits", "notes-family", "notes-pitch", "notes-velocity",
         "sonic-pi", "tuxpaint-speech"]


def suite_rows(*names: str) -> list[dict]:
    rows = [r for name in names for r in results.read_csv(RESULTS / f"{name}.csv")]
    return sorted(rows, key=lambda r: ORDER.index(r["task"]) if r["task"] in ORDER
                  else len(ORDER))


def suite_table(*names: str) -> str:
    return results.table(suite_rows(*names))


def suite_targets(*names: str) -> str:
    return results.targets(suite_rows(*names))


#: Block name -> the function that renders it.
BLOCKS = {
    "images": lambda: suite_table("downstream-images-a", "downstream-images-b"),
    "images-targets": lambda: suite_targets("downstream-images-a", "downstream-images-b"),
    "audio": lambda: suite_table("downstream-audio"),
    "audio-targets": lambda: suite_targets("downstream-audio"),
    "film": lambda: suite_table("downstream-film-a", "downstream-film-b"),
}
DOCS = [ROOT / "README.md", ROOT / "docs" / "DOWNSTREAM.md"]
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                    r"(<!-- end: (?P=name) -->)", re.S)


def render(text: str) -> str:
    """``text`` with every generated block rewritten from its files."""
    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown generated block '{name}'; known: {', '.join(BLOCKS)}")
        return match.group(1) + BLOCKS[name]() + match.group(4)

    return _BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a diff")
    args = parser.parse_args(argv)
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        new = render(text)
        if new != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print("out of date with docs/results/: " + ", ".join(map(str, stale))
              + " (run python scripts/results_tables.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
