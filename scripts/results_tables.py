"""Write the results tables into the docs, from the results files (never by hand).

    python scripts/results_tables.py            # rewrite the generated blocks
    python scripts/results_tables.py --check    # exit 1 if a doc differs from its files

A generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` in
README.md or docs/DOWNSTREAM.md; ``BLOCKS`` says which files make each one. The test suite
runs ``--check``, so a table cannot drift from its file.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import re
import sys
from pathlib import Path

from amortinv import results
from amortinv.invariance import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
#: The suite's tasks in reading order: invariance tasks, then those that need a sensitivity.
ORDER = ["fashion-mnist", "mnist-subset", "opencv-digits", "sklearn-digits", "textures",
         "fmnist-flip", "fmnist-position", "fmnist-scale", "fmnist-brightness", "fmnist-blur",
         "spoken-digits", "asterisk-digits", "notes-family", "notes-pitch", "notes-velocity",
         "sonic-pi", "tuxpaint-speech", "clipart-hue", "clipart-grayscale", "clipart-colour",
         "flags-mirrored", "openclipart", "tuxpaint-photos", "clipart-recoloured"]


def suite_rows(*names: str, folder: Path = RESULTS) -> list[dict]:
    rows = [r for name in names for r in results.read_csv(folder / f"{name}.csv")]
    return sorted(rows, key=lambda r: ORDER.index(r["task"]) if r["task"] in ORDER
                  else len(ORDER))


def suite_table(*names: str) -> str:
    return results.table(suite_rows(*names))


def suite_targets(*names: str) -> str:
    return results.targets(suite_rows(*names))


#: The learner study's files in bf16 (rounds 2 and 3, the extra tasks) and its fp32 round.
STUDY = ["learner-study-fmnist-position", "learner-study-fmnist-flip",
         "learner-study-fmnist-brightness", "learner-study-fmnist-scale", "learner-study-more",
         "learner-study-audio"]
STUDY_FP32 = ["learner-study-fp32"]
#: The defaults chosen in rounds 2 and 3; rounds 5 and 6 (STUDY_CORNER) start them at the
#: best corner on validation, always (round 5) or only when it is clearly ahead of 0.5 (round
#: 6, CLEAR), which DownstreamConfig's defaults now do.
DEFAULT = "lr0.1-warm-nostop"
STUDY_CORNER = ["learner-study-corner-start", "learner-study-corner-start-audio"]
CLEAR = "lr0.1-warm-nostop-clear"
RESTARTS = ["lr0.1-nostop", "lr0.1-nostop-init0.25", "lr0.1-nostop-init0.75"]


def study_rows(names: list[str]) -> list[dict]:
    return results.read_study(RESULTS / f"{n}.csv" for n in names
                              if (RESULTS / f"{n}.csv").exists())


def study() -> str:
    """Every variant of the bf16 rounds, and three starts kept by their validation score."""
    rows = study_rows(STUDY)
    rows += results.restarts(rows, RESTARTS, "restarts (0.5, 0.25, 0.75)")
    table = results.study_table(rows)
    return table.replace(f"| {DEFAULT} |", f"| **{DEFAULT}** (the defaults, from 0.5) |")


def study_corner(names: list[str]) -> str:
    """Rounds 5 and 6: the defaults from 0.5, from the best corner on validation, and from
    that corner only when it is clearly ahead."""
    table = results.study_table(study_rows(names))
    return table.replace(f"| {CLEAR} |", f"| **{CLEAR}** (the defaults) |")


def study_fp32() -> str:
    return results.study_table(study_rows(STUDY_FP32))


def clamp_sigmoid() -> str:
    """Clamp against sigmoid at the same speed near 0.5 (the sigmoid's slope there is 1/4, so
    its lr is 4x), same seed and budget: held-out scores and the learned vectors."""
    rows = study_rows(STUDY)
    pairs = {}
    for r in rows:
        if r["variant"] in ("lr0.1-nostop", "sigmoid-lr0.4-nostop"):
            pairs.setdefault(r["task"], {})[r["variant"]] = r
    lines = ["| task | clamp, lr 0.1 (held-out) | sigmoid of logits, lr 0.4 (held-out) "
             "| learned vector, clamp | learned vector, sigmoid |", "|---|---|---|---|---|"]
    for task, pair in pairs.items():
        if len(pair) < 2:
            continue
        c, g = pair["lr0.1-nostop"], pair["sigmoid-lr0.4-nostop"]
        lines.append(f"| {task} | {float(c['gradient_holdout']):.3f} | "
                     f"{float(g['gradient_holdout']):.3f} | {describe(json.loads(c['vector']))} | "
                     f"{describe(json.loads(g['vector']))} |")
    return "\n".join(lines) + "\n"


def gradients() -> str:
    """The gradient reaching each group at the start, with a fresh and a warmed-up readout."""
    with open(RESULTS / "learner-study.gradients.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lines = ["| task | group | fresh readout: mean gradient (mean / std) "
             "| warmed-up readout: mean gradient (mean / std) | same sign |",
             "|---|---|---|---|---|"]
    by = {(r["task"], r["group"], r["readout"]): r for r in rows}
    for task, group in dict.fromkeys((r["task"], r["group"]) for r in rows):
        f, w = by[(task, group, "fresh")], by[(task, group, "warm")]
        same = "yes" if (float(f["mean"]) > 0) == (float(w["mean"]) > 0) else "**no**"
        lines.append(f"| {task} | {group} | {float(f['mean']):+.4f} ({f['mean_over_std']}) | "
                     f"{float(w['mean']):+.4f} ({w['mean_over_std']}) | {same} |")
    return "\n".join(lines) + "\n"


#: The colour suite's two halves (run side by side on the two cores).
COLOUR = ("downstream-colour-a", "downstream-colour-b")

#: The grey-image suite's halves: on the app's width-8 encoder, and on width 16 (the plain
#: encoder's width).
IMAGES = ("downstream-images-a", "downstream-images-b")
IMAGES_W16 = ("downstream-images-w16-a", "downstream-images-w16-b")


def colour_targets(*names: str) -> str:
    """The targets of every suite, then those of the colour suite (issue 11)."""
    return suite_targets(*names) + results.targets(suite_rows(*names), results.colour_misses)


def selection_study(name: str) -> str:
    """``scripts/study_selection.py``'s rows in docs/results/NAME.csv, summarised per rule."""
    return results.selection_study_table(list(csv.DictReader((RESULTS / f"{name}.csv").open())))


#: scripts/oracle_gap.py's files, one per suite, in the suites' order.
GAPS = ("oracle-gap-images-a", "oracle-gap-images-b", "oracle-gap-images-w16-a",
        "oracle-gap-images-w16-b", "oracle-gap-colour-a", "oracle-gap-colour-b",
        "oracle-gap-audio", "oracle-gap-film")


#: The suites run again on cpu-2 (bf16, the default selection) for their seconds, in
#: RESULTS / "cpu2" under the same names as the suites' own files (run on AMD, fp32).
SPEED = {"grey, width 8": IMAGES, "grey, width 16": IMAGES_W16, "colour": COLOUR,
         "audio": ("downstream-audio",), "FiLM": ("downstream-film",)}


def speed() -> str:
    return results.speed_table({suite: (suite_rows(*names, folder=RESULTS / "cpu2"),
                                        suite_rows(*names))
                                for suite, names in SPEED.items()},
                               "cpu-2 (bf16)", "AMD (fp32)")


def gap_rows() -> list[dict]:
    return results.read_numbers(RESULTS / f"{n}.csv" for n in GAPS
                                if (RESULTS / f"{n}.csv").exists())


#: Block name -> the function that renders it.
BLOCKS = {
    "images": lambda: suite_table(*IMAGES),
    "images-targets": lambda: suite_targets(*IMAGES),
    "images-w16": lambda: suite_table(*IMAGES_W16),
    "images-w16-targets": lambda: suite_targets(*IMAGES_W16),
    "audio": lambda: suite_table("downstream-audio"),
    "audio-targets": lambda: suite_targets("downstream-audio")
    + results.targets(suite_rows("downstream-audio"), results.audio_misses),
    "film": lambda: suite_table("downstream-film"),
    "rules": lambda: results.rules_table({
        "grey images (width 8)": suite_rows(*IMAGES),
        "grey images (width 16)": suite_rows(*IMAGES_W16),
        "colour images": suite_rows(*COLOUR), "audio": suite_rows("downstream-audio"),
        "FiLM": suite_rows("downstream-film")}),
    "colour": lambda: suite_table(*COLOUR),
    "colour-targets": lambda: colour_targets(*COLOUR),
    "colour-statistics": lambda: results.colour_statistics_table(
        results.read_numbers([RESULTS / "colour-statistics.csv"])),
    "oracle-gap": lambda: results.gap_table(gap_rows()),
    "oracle-gap-summary": lambda: results.gap_summary(gap_rows()),
    "gradient-gap": lambda: results.gap_table(results.gap_misses(gap_rows(), "gradient"),
                                              "gradient"),
    "gradient-gap-summary": lambda: results.gap_summary(gap_rows(), "gradient"),
    "plain-gap": lambda: results.plain_table(r for r in gap_rows()
                                             if (r.get("plain_gap") or 0) > 0),
    "plain-gap-summary": lambda: results.plain_summary(gap_rows()),
    **{name: functools.partial(selection_study, name)
       for name in ("selection-study", "selection-study-clear", "selection-study-paired",
                    "selection-study-cv")},
    "study": study,
    "study-corner": lambda: study_corner(STUDY_CORNER),
    "study-corner-colour": lambda: study_corner(["learner-study-corner-start-colour"]),
    "study-fp32": study_fp32,
    "clamp-sigmoid": clamp_sigmoid,
    "gradients": gradients,
    "speed": speed,
    "speed-targets": lambda: results.targets(
        r for names in SPEED.values() for r in suite_rows(*names, folder=RESULTS / "cpu2")),
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
            stale.append(doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc)
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print("out of date with docs/results/: " + ", ".join(map(str, stale))
              + " (run python scripts/results_tables.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
