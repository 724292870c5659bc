"""The downstream suite's results files: one CSV row per task, and the Markdown tables and
target checks made from them (so every table in the docs is generated from a file).

A row is the JSON of :meth:`amortinv.downstream.Result.to_json` plus the task's ``needs``, or
``{"task", "error"}`` for a task that failed. :func:`write_csv` and :func:`read_csv` keep every
baseline (corners, plain, kNN, raw input) as its own column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from amortinv.invariance import describe
from amortinv.selection import best_name

#: The columns before the baselines' (which follow in alphabetical order), then ``error``.
FIELDS = ["task", "needs", "metric", "learned", "learned_score", "val_score", "selected_name",
          "selected", "selected_score", "selected_val", "rounded", "start", "precision",
          "select_seconds", "seconds", "reason", "val_scores", "folds"]
_JSON = ("learned", "selected", "val_scores")
_TEXT = ("task", "needs", "metric", "selected_name", "rounded", "start", "precision", "reason",
         "error")

#: The targets of issue 10, in points of the metric (accuracy or R²).
SELECTED_BELOW_ORACLE = 0.01
GRADIENT_BELOW_ORACLE = 0.02
SECONDS = 60.0
#: Issue 11's colour targets: tasks whose label is colour, where the learned vector must beat
#: all ones by COLOUR_GAIN; category tasks, where it must match the plain encoder.
COLOUR_TASKS = ("clipart-hue", "clipart-grayscale", "clipart-colour")
CATEGORY_TASKS = ("openclipart", "tuxpaint-photos", "clipart-recoloured")
COLOUR_GAIN = 0.10


def is_below(score: float, reference: float) -> bool:
    """``score`` < ``reference``, beyond float noise (the files keep four decimals): the one
    comparison every target check makes."""
    return score < reference - 1e-9


def selected_misses_oracle(row: dict) -> bool:
    """Whether ``row``'s selected vector is more than the target's point below the oracle."""
    return is_below(row["selected_score"], oracle(row)[1] - SELECTED_BELOW_ORACLE)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Every row (failed ones with their ``error``) as one CSV file."""
    keys = sorted({k for r in rows for k in r.get("baselines", {})})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*FIELDS, *keys, "error"])
        for r in rows:
            if "error" in r:
                writer.writerow([r["task"], *[""] * (len(FIELDS) - 1 + len(keys)), r["error"]])
                continue
            cells = [json.dumps(r.get(k, {})) if k in _JSON else r.get(k, "") for k in FIELDS]
            writer.writerow([*cells, *[r["baselines"].get(k, "") for k in keys], ""])


def same_file(a: Path, b: Path) -> bool:
    """Whether paths ``a`` and ``b`` name one file (an output that would overwrite an input)."""
    return Path(a).resolve() == Path(b).resolve()


def output(out: str | Path, suffix: str) -> Path:
    """The file ending in ``suffix`` (``.csv``, ``.md``, ``.paths.jsonl``) of a script's
    ``--out OUT``: OUT given with ``.csv`` or ``.md`` loses it, any other dot stays
    (``--out suite.v2`` writes ``suite.v2.csv``, not ``suite.csv``)."""
    out = Path(out)
    if out.suffix in (".csv", ".md"):
        out = out.with_suffix("")
    return out.with_name(out.name + suffix)


def read_csv(path: Path) -> list[dict]:
    """The rows of a file :func:`write_csv` wrote, as the suite held them."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            if raw.get("error"):
                rows.append({"task": raw["task"], "error": raw["error"]})
                continue
            row, baselines = {}, {}
            for key, value in raw.items():
                if key in _JSON:
                    row[key] = json.loads(value)
                elif key in _TEXT:
                    row[key] = value
                elif key in FIELDS:
                    row[key] = float(value) if value != "" else None
                elif value != "":
                    baselines[key] = float(value)
            row.pop("error", None)
            rows.append(row | {"baselines": baselines})
    return rows


def corner_scores(row: dict) -> dict[str, float]:
    """The test scores of every corner in ``row`` (baselines that are not plain, kNN or raw)."""
    return {k: v for k, v in row["baselines"].items()
            if not k.startswith(("raw_", "knn_", "plain"))}


def oracle(row: dict) -> tuple[str, float]:
    """The best corner on the test split (an oracle: for reference only)."""
    corners = corner_scores(row)
    best = max(corners, key=corners.get)
    return best, corners[best]


def folds_of(rows: list[dict]) -> int | None:
    """The folds the rows' selections cross-validated in (0: on the validation split, as in
    files from before the ``folds`` column), or None where the rows differ."""
    folds = {int(r.get("folds") or 0) for r in rows}
    return folds.pop() if len(folds) == 1 else None


def selected_header(rows: list[dict]) -> str:
    """The selected column's header: how the rows' selections scored their candidates."""
    folds = folds_of(rows)
    how = ("chosen without the test split" if folds is None else
           f"cross-validated, {folds} folds" if folds else "chosen on validation")
    return f"selected ({how})"


def table(rows: Iterable[dict]) -> str:
    """The suite's Markdown table: per task, the gradient-learned vector and its score, the
    selected vector (chosen by cross-validation or on validation, as the rows record) and its
    score, the oracle corner, all ones, all zeros, plain, raw input, and the seconds to the
    selected vector's score and for the row."""
    rows = [r for r in rows if "error" not in r]
    lines = [
        "| task | needs | metric | gradient-learned vector | gradient-learned | "
        f"{selected_header(rows)} | best corner (oracle: picked on test) | all ones | all zeros "
        "| plain | raw linear | s to selected | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = r["baselines"]
        best, best_score = oracle(r)
        plain = f"{b['plain']:.3f}" if "plain" in b else "—"
        select_s = f"{r['select_seconds']:.0f}" if r.get("select_seconds") else "—"
        lines.append(
            f"| {r['task']} | {r['needs']} | {r['metric']} | {describe(r['learned'])} | "
            f"{r['learned_score']:.3f} | **{r['selected_score']:.3f}** ({r['selected_name']}) "
            f"| {best_score:.3f} ({best}) | {b['all_ones']:.3f} | {b['all_zeros']:.3f} | "
            f"{plain} | {b['raw_linear']:.3f} | {select_s} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def speed_table(suites: dict[str, tuple[list[dict], list[dict]]], here: str,
                there: str) -> str:
    """The same suites run on two machines, by suite (``{name: (rows here, rows there)}``),
    a row per task run on both: the seconds to the selected vector's score here and there,
    and which candidate each run selected with its test score. Ends with how many tasks
    reached their selected vector within :data:`SECONDS` here (and which did not) and how
    many selected the same candidate on both machines."""
    lines = [f"| suite | task | s to selected, {here} | s, {here} | s to selected, {there} "
             f"| selected, {here} | selected, {there} |", "|---|---|---|---|---|---|---|"]
    timed, over, same = 0, [], 0
    for suite, (rows, others) in suites.items():
        them = {r["task"]: r for r in others if "error" not in r}
        for r in rows:
            o = them.get(r["task"])
            if "error" in r or o is None or not r.get("select_seconds"):
                continue
            timed += 1
            same += r["selected_name"] == o["selected_name"]
            if r["select_seconds"] > SECONDS:
                over.append(f"{r['task']} ({suite}, {r['select_seconds']:.0f} s)")
            lines.append(
                f"| {suite} | {r['task']} | **{r['select_seconds']:.0f}** | {r['seconds']:.0f} "
                f"| {o['select_seconds']:.0f} | {r['selected_score']:.3f} ({r['selected_name']}) "
                f"| {o['selected_score']:.3f} ({o['selected_name']}) |")
    lines += ["", f"Within {SECONDS:.0f} s to the selected vector on {here}: {timed - len(over)} "
              f"of {timed} tasks" + (f" (not: {'; '.join(over)})" if over else "")
              + f". The same candidate selected on both machines: {same} of {timed}."]
    return "\n".join(lines) + "\n"


def misses(rows: Iterable[dict]) -> dict[str, list[str]]:
    """Where each target is missed, by target: the selected vector more than 1 point below the
    oracle corner or below all ones; the gradient-learned vector more than 2 points below the
    oracle; more than 60 s to the selected vector's score."""
    out: dict[str, list[str]] = {"selected >= oracle - 0.01": [],
                                 "selected >= all ones": [],
                                 "gradient-learned >= oracle - 0.02": [],
                                 "seconds to selected <= 60": []}
    for r in rows:
        if "error" in r:
            continue
        _, best = oracle(r)
        task = r["task"]
        if selected_misses_oracle(r):
            out["selected >= oracle - 0.01"].append(
                f"{task} ({r['selected_score']:.3f} vs {best:.3f})")
        if is_below(r["selected_score"], r["baselines"]["all_ones"]):
            out["selected >= all ones"].append(
                f"{task} ({r['selected_score']:.3f} vs {r['baselines']['all_ones']:.3f})")
        if is_below(r["learned_score"], best - GRADIENT_BELOW_ORACLE):
            out["gradient-learned >= oracle - 0.02"].append(
                f"{task} ({r['learned_score']:.3f} vs {best:.3f})")
        if r.get("select_seconds") and r["select_seconds"] > SECONDS:
            out["seconds to selected <= 60"].append(f"{task} ({r['select_seconds']:.0f} s)")
    return out


def colour_misses(rows: Iterable[dict]) -> dict[str, list[str]]:
    """Where issue 11's colour targets are missed: on the tasks whose label is colour
    (:data:`COLOUR_TASKS`) the selected vector beats all ones by :data:`COLOUR_GAIN` and is
    within 1 point of the oracle corner; on category tasks (:data:`CATEGORY_TASKS`) it is at
    least the plain encoder's score."""
    gain, near = (f"colour tasks: selected >= all ones + {COLOUR_GAIN:.2f}",
                  "colour tasks: selected >= oracle - 0.01")
    out: dict[str, list[str]] = {gain: [], near: [], "category tasks: selected >= plain": []}
    for r in rows:
        if "error" in r:
            continue
        task, selected, b = r["task"], r["selected_score"], r["baselines"]
        if task in COLOUR_TASKS:
            if is_below(selected, b["all_ones"] + COLOUR_GAIN):
                out[gain].append(f"{task} ({selected:.3f} vs {b['all_ones']:.3f})")
            if selected_misses_oracle(r):
                out[near].append(f"{task} ({selected:.3f} vs {oracle(r)[1]:.3f})")
        if task in CATEGORY_TASKS and "plain" in b and is_below(selected, b["plain"]):
            out["category tasks: selected >= plain"].append(
                f"{task} ({selected:.3f} vs {b['plain']:.3f})")
    return out


def audio_misses(rows: Iterable[dict]) -> dict[str, list[str] | str]:
    """Issue 12's suite targets: the amortised encoder's selected vector at least the plain
    encoder's score on at least half the tasks (a verdict with the count), and where the
    selected or the gradient-learned vector does not beat the raw log-mel readout."""
    rows = [r for r in rows if "error" not in r]
    paired = [r for r in rows if "plain" in r["baselines"]]
    below = [f"{r['task']} ({r['selected_score']:.3f} vs {r['baselines']['plain']:.3f})"
             for r in paired if is_below(r["selected_score"], r["baselines"]["plain"])]
    kept = len(paired) - len(below)
    verdict = (f"{'met' if 2 * kept >= len(paired) else 'missed'} ({kept} of {len(paired)})"
               + (f"; below plain on {', '.join(below)}" if below else ""))
    out: dict[str, list[str] | str] = {"selected >= plain on at least half the tasks": verdict}
    for name, key in (("selected", "selected_score"), ("gradient-learned", "learned_score")):
        out[f"{name} > raw log-mel"] = [
            f"{r['task']} ({r[key]:.3f} vs {r['baselines']['raw_linear']:.3f})"
            for r in rows if r[key] <= r["baselines"]["raw_linear"]]
    return out


def targets(rows: Iterable[dict], checks=misses) -> str:
    """A Markdown list: each target of ``checks`` (:func:`misses`, :func:`colour_misses` or
    :func:`audio_misses`), met on every task or missed where (or the check's own verdict)."""
    lines = []
    for target, missed in checks(list(rows)).items():
        if isinstance(missed, str):
            lines.append(f"- {target}: {missed}")
            continue
        lines.append(f"- {target}: " + ("met on every task" if not missed
                                         else "missed on " + "; ".join(missed)))
    return "\n".join(lines) + "\n"


def best_on_validation(row: dict) -> str:
    """The candidate the earlier rule kept: the best validation score (``val_scores``), as
    :func:`amortinv.selection.best_name` picks it."""
    return best_name(row["val_scores"])


def candidate_test_score(row: dict, name: str) -> float:
    """A candidate's test score: the gradient-learned vector's or a corner's."""
    return row["learned_score"] if name == "gradient" else row["baselines"][name]


#: The header of the tables that compare selection rules.
_RULES_HEADER = ["| suite | tasks | rule | mean score | within 0.01 of the oracle "
                 "| below all ones |", "|---|---|---|---|---|---|"]


def _rule_line(suite: str, rule: str, scores: list[float], oracles: list[float],
               all_ones: list[float]) -> str:
    """One rule on one suite: the mean score of its choices, how many are within 1 point of
    the oracle corner and how many below all ones."""
    near = sum(not is_below(s, o - SELECTED_BELOW_ORACLE)
               for s, o in zip(scores, oracles, strict=True))
    below = sum(is_below(s, a) for s, a in zip(scores, all_ones, strict=True))
    return (f"| {suite} | {len(scores)} | {rule} | {sum(scores) / len(scores):.3f} | {near} | "
            f"{below} |")


#: The gradient-learned vector kept as it is, as a rule in the tables beside the selection's.
_NO_SELECTION = "the gradient-learned vector, no selection"
#: The rules of ``scripts/study_selection.py``'s files, by column; the last three are in the
#: files of the rounds after the clear start only, the paired rule in the last round's.
_STUDY_RULES = (("best on validation", "best_score"), ("one standard error", "one_se_score"),
                ("one standard error, gradient vector first", "gradient_first_score"),
                (_NO_SELECTION, "gradient_score"),
                ("one standard error of the difference (paired)", "paired_score"),
                ("best, cross-validated (5 folds)", "cv_best_score"),
                ("one standard error, cross-validated (5 folds)", "cv_one_se_score"))


def rules_table(suites: dict[str, list[dict]]) -> str:
    """The one-standard-error rule (the suite's ``selected``) against the best candidate
    (:func:`best_on_validation`; both as the suite scored them, :func:`folds_of`) and the
    gradient-learned vector kept without a selection, all scored on the test split of the
    same runs:
    per suite, the mean score, the tasks within 1 point of the oracle corner and those below
    all ones. Rows without validation scores (older files) are left out."""
    lines = list(_RULES_HEADER)
    for suite, rows in suites.items():
        rows = [r for r in rows if "error" not in r and r.get("val_scores")]
        if not rows:
            continue
        oracles = [oracle(r)[1] for r in rows]
        ones = [r["baselines"]["all_ones"] for r in rows]
        folds = folds_of(rows)
        how = f", cross-validated ({folds} folds)" if folds else ""
        best, one_se = (f"best{how}" if how else "best on validation", f"one standard error{how}")
        lines.append(_rule_line(suite, best, [
            candidate_test_score(r, best_on_validation(r)) for r in rows], oracles, ones))
        lines.append(_rule_line(suite, one_se, [r["selected_score"] for r in rows], oracles,
                                ones))
        lines.append(_rule_line(suite, _NO_SELECTION,
                                [r["learned_score"] for r in rows], oracles, ones))
    return "\n".join(lines) + "\n"


def selection_study_table(rows: list[dict]) -> str:
    """``scripts/study_selection.py``'s rows (CSV strings) summarised like
    :func:`rules_table`, on the held-out part of each task's training split: every rule whose
    column the rows have."""
    lines = list(_RULES_HEADER)
    for suite in dict.fromkeys(r["suite"] for r in rows):
        mine = [r for r in rows if r["suite"] == suite]
        oracles = [float(r["oracle_score"]) for r in mine]
        ones = [float(r["all_ones_score"]) for r in mine]
        for rule, key in _STUDY_RULES:
            if all(r.get(key) for r in mine):
                lines.append(_rule_line(suite, rule, [float(r[key]) for r in mine], oracles,
                                        ones))
    return "\n".join(lines) + "\n"


# -- the oracle's luck (scripts/oracle_gap.py) ------------------------------------------------
#: The columns of scripts/oracle_gap.py's files.
GAP_FIELDS = ["suite", "task", "metric", "test_examples", "selected_name", "selected_score",
              "oracle_name", "oracle_score", "gap", "picked_gap", "honest_gap", "honest_se",
              "gradient_score", "gradient_gap", "gradient_picked_gap", "gradient_honest_gap",
              "gradient_honest_se", "plain_score", "plain_gap", "plain_se", "reproduced"]
#: The vectors :func:`gap_table` and :func:`gap_summary` hold against the oracle: each one's
#: columns' prefix, its target's margin (as a number and in words) and its table's label.
GAP_VECTORS = {"selected": ("", SELECTED_BELOW_ORACLE, "a point", "selected"),
               "gradient": ("gradient_", GRADIENT_BELOW_ORACLE, "two points",
                            "gradient-learned")}


def oracle_gaps(corner_points: dict[str, np.ndarray], selected: np.ndarray, halves: int = 500,
                seed: int = 0) -> dict[str, float]:
    """How far the oracle corner is ahead of the selected vector on the test split, and how
    much of that lead is the oracle's luck: it is picked on the split it is scored on.
    ``corner_points`` holds each corner's per-example test shares
    (:func:`amortinv.readout.points`), ``selected`` the selected vector's.

    ``gap`` is the best corner's score minus the selected one's, as in the suite's tables.
    Over ``halves`` random halves of the test split: ``picked_gap``, the same with the corner
    picked and scored on one half (as lucky as ``gap``, at half the size), and
    ``honest_gap``, the corner picked on one half and scored on the other, so that its luck
    does not count (half by half the picked gap is never below it; their difference is the
    oracle's luck), with ``honest_se``, one standard error of that paired difference on a
    half (the test split's own noise, which no selection can beat).

        >>> rng = np.random.default_rng(0)
        >>> same = {f"c{i}": (rng.random(400) < 0.8).astype(float) for i in range(16)}
        >>> g = oracle_gaps(same, same["c0"])     # 16 corners, all as good in truth
        >>> g["picked_gap"] - g["honest_gap"] > 0.03, abs(g["honest_gap"]) < 2 * g["honest_se"]
        (True, True)
    """
    points = np.stack([np.asarray(v, dtype=np.float64) for v in corner_points.values()])
    selected = np.asarray(selected, dtype=np.float64)
    n = points.shape[1]
    order = np.argsort(np.random.default_rng(seed).random((halves, n)), axis=1)
    first = np.zeros((halves, n))
    np.put_along_axis(first, order[:, : n // 2], 1.0, axis=1)
    second, size = 1.0 - first, n - n // 2
    on_first = points @ first.T / (n // 2)  # (corners, halves)
    on_second = points @ second.T / size
    selected_second = second @ selected / size
    # the corner picked on each first half, against the selected vector on the second half
    diff = points[on_first.argmax(0)] - selected  # (halves, n)
    honest = (diff * second).sum(1) / size
    spread = ((diff - honest[:, None]) ** 2 * second).sum(1) / max(size - 1, 1)
    return {"gap": float(points.mean(1).max() - selected.mean()),
            "picked_gap": float((on_second.max(0) - selected_second).mean()),
            "honest_gap": float(honest.mean()),
            "honest_se": float(np.sqrt(spread / size).mean())}


def paired_gap(reference: np.ndarray, selected: np.ndarray) -> dict[str, float]:
    """How far ``reference`` (a fixed baseline's per-example test shares, e.g. the plain
    encoder's) is ahead of the ``selected`` vector's on the same test examples, with one
    standard error of that paired difference: no luck to take out, as nothing was picked on
    the test split.

        >>> paired_gap(np.array([1.0, 1, 0, 1]), np.array([1.0, 0, 0, 1]))
        {'gap': 0.25, 'se': 0.25}
    """
    diff = np.asarray(reference, dtype=np.float64) - np.asarray(selected, dtype=np.float64)
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return {"gap": float(diff.mean()), "se": float(se)}


def write_numbers(path: Path, rows: Iterable[dict], fields: Iterable[str]) -> None:
    """``rows`` as a CSV file of ``fields``, floats to four decimals and None as an empty cell
    (what :func:`read_numbers` reads back)."""
    fields = list(fields)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in rows:
            writer.writerow(["" if r[k] is None else f"{r[k]:.4f}" if isinstance(r[k], float)
                             else r[k] for k in fields])


def read_numbers(paths: Iterable[Path]) -> list[dict]:
    """The rows of CSV files of scores by task (scripts/oracle_gap.py's,
    scripts/colour_statistics.py's), numbers as numbers (None where a run has no such column:
    the plain encoder's, without ``--plain``)."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                rows.append({k: v if k in ("suite", "task", "metric", "selected_name",
                                           "oracle_name") else float(v) if v else None
                             for k, v in raw.items()})
    return rows


#: scripts/colour_statistics.py's columns: readouts on colour statistics (``linear``,
#: ``forest``) beside the colour suite's scores.
COLOUR_STATISTICS = ("task", "metric", "test_examples", "linear", "forest", "selected_name",
                     "selected_score", "oracle_name", "oracle_score", "all_ones", "plain")


def colour_statistics_table(rows: Iterable[dict]) -> str:
    """scripts/colour_statistics.py's rows as a Markdown table."""
    lines = ["| task | metric | test examples | colour statistics, linear | colour statistics, "
             "forest | selected vector (suite) | oracle corner (suite) | all ones | plain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        plain = "—" if r["plain"] is None else f"{r['plain']:.3f}"
        lines.append(f"| {r['task']} | {r['metric']} | {int(r['test_examples'])} | "
                     f"{r['linear']:.3f} | {r['forest']:.3f} | {r['selected_score']:.3f} "
                     f"({r['selected_name']}) | {r['oracle_score']:.3f} ({r['oracle_name']}) | "
                     f"{r['all_ones']:.3f} | {plain} |")
    return "\n".join(lines) + "\n"


def _signed(x: float) -> str:
    """A gap to three decimals with its sign, and no "-0.000"."""
    return f"{round(x, 3) + 0.0:+.3f}"


def _as_examples(gap: float, row: dict) -> str:
    """A classification lead also in test examples: `` (7 of 359)``; else nothing."""
    n = int(row["test_examples"])
    return f" ({round(gap * n)} of {n})" if row["metric"] == "accuracy" and gap > 0 else ""


def plain_summary(rows: list[dict]) -> str:
    """A Markdown list: on how many runs with the plain encoder's columns it is ahead of the
    selected vector, and where by more than two standard errors (:func:`paired_gap`)."""
    mine = [r for r in rows if r.get("plain_gap") is not None]
    ahead = [r for r in mine if r["plain_gap"] > 0]
    clear = [f"{r['suite']} {r['task']} ({r['plain_gap']:+.3f} ± {r['plain_se']:.3f})"
             for r in ahead if r["plain_gap"] > 2 * r["plain_se"]]
    return "\n".join([
        f"- runs: {len(mine)}; the plain encoder ahead of the selected vector: {len(ahead)}",
        f"- by more than two standard errors: {len(clear)}"
        + (f": {'; '.join(clear)}" if clear else "")]) + "\n"


def plain_table(rows: Iterable[dict]) -> str:
    """The plain encoder against the selected vector, per run that has its columns: its lead
    on the whole test split (classification: also in test examples) and one standard error of
    that paired difference (:func:`paired_gap`)."""
    lines = ["| suite | task | test examples | selected | plain | plain ahead by "
             "| its standard error |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("plain_gap") is None:
            continue
        lines.append(f"| {r['suite']} | {r['task']} | {int(r['test_examples'])} | "
                     f"{r['selected_score']:.3f} ({r['selected_name']}) | "
                     f"{r['plain_score']:.3f} | {_signed(r['plain_gap'])}"
                     f"{_as_examples(r['plain_gap'], r)} | {r['plain_se']:.3f} |")
    return "\n".join(lines) + "\n"


def gap_table(rows: Iterable[dict], vector: str = "selected") -> str:
    """The oracle's lead over the selected vector (``vector="gradient"``: the gradient-learned
    one), as the suite's table has it and with the oracle's luck taken out
    (:func:`oracle_gaps`), per task; classification gaps also in test examples."""
    key, *_, label = GAP_VECTORS[vector]
    lines = [f"| suite | task | test examples | {label} | oracle (picked on test) | gap "
             "| gap, oracle picked and scored on a half | gap, oracle picked on the other half "
             "| its standard error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = r[f"{key}gap"]
        name = f" ({r['selected_name']})" if vector == "selected" else ""
        lines.append(
            f"| {r['suite']} | {r['task']} | {int(r['test_examples'])} | "
            f"{r[f'{vector}_score']:.3f}{name} | {r['oracle_score']:.3f} ({r['oracle_name']}) | "
            f"{_signed(gap)}{_as_examples(gap, r)} | {_signed(r[f'{key}picked_gap'])} | "
            f"{_signed(r[f'{key}honest_gap'])} | {r[f'{key}honest_se']:.3f} |")
    return "\n".join(lines) + "\n"


def gap_misses(rows: Iterable[dict], vector: str = "selected") -> list[dict]:
    """The rows where the oracle leads ``vector`` by more than its target's margin (a point
    for the selected vector, two for the gradient-learned one) in the tables, or with its luck
    taken out."""
    key, target, *_ = GAP_VECTORS[vector]
    return [r for r in rows if is_below(target, max(r[f"{key}gap"], r[f"{key}honest_gap"]))]


def gap_summary(rows: list[dict], vector: str = "selected") -> str:
    """A Markdown list: on how many runs the oracle leads ``vector`` (as for :func:`gap_table`)
    by more than its target's margin as the tables have it, and with its luck taken out; and
    where that lead is more than two standard errors (:func:`oracle_gaps`)."""
    key, target, margin, _ = GAP_VECTORS[vector]

    def where(keep) -> str:
        hits = [f"{r['suite']} {r['task']} ({r[f'{key}honest_gap']:+.3f} ± "
                f"{r[f'{key}honest_se']:.3f})" for r in rows if keep(r)]
        return f"{len(hits)}" + (f": {'; '.join(hits)}" if hits else "")

    tables = sum(is_below(target, r[f"{key}gap"]) for r in rows)
    return "\n".join([
        f"- runs: {len(rows)}; the oracle more than {margin} ahead in the tables: {tables}",
        f"- more than {margin} ahead with its luck taken out: "
        f"{where(lambda r: is_below(target, r[f'{key}honest_gap']))}",
        f"- more than two standard errors ahead: "
        f"{where(lambda r: r[f'{key}honest_gap'] > 2 * r[f'{key}honest_se'])}"]) + "\n"


# -- the learner study (scripts/study_learner.py) -------------------------------------------
def _gap(row: dict, key: str) -> float:
    return float(row[key]) - float(row["oracle_holdout"])


def study_table(rows: list[dict], variants: Iterable[str] | None = None) -> str:
    """The learner study's summary, per variant: the gradient-learned and the selected vector
    against the held-out oracle corner (mean and worst gap, and on how many tasks within the
    targets' 2 and 1 points), how often the selected one falls below all ones, the line
    search's gain, and the mean learning time; then one row per task and variant."""
    variants = list(variants or dict.fromkeys(r["variant"] for r in rows))
    lines = ["| variant | tasks | gradient - oracle: mean | worst | within 0.02 "
             "| selected - oracle: mean | worst | within 0.01 | selected < all ones "
             "| line search - gradient: mean | learn s (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant in variants:
        rs = [r for r in rows if r["variant"] == variant]
        if not rs:
            continue
        g = [_gap(r, "gradient_holdout") for r in rs]
        s = [_gap(r, "selected_holdout") for r in rs]
        line = [float(r["line_holdout"]) - float(r["gradient_holdout"]) for r in rs
                if r.get("line_holdout")]
        below = sum(float(r["selected_holdout"]) < float(r["all_ones_holdout"]) for r in rs)
        secs = sum(float(r["learn_seconds"]) for r in rs) / len(rs)
        line_cell = f"{sum(line) / len(line):+.3f}" if line else "—"
        lines.append(f"| {variant} | {len(rs)} | {sum(g) / len(g):+.3f} | {min(g):+.3f} | "
                     f"{sum(x >= -GRADIENT_BELOW_ORACLE for x in g)} | "
                     f"{sum(s) / len(s):+.3f} | {min(s):+.3f} | "
                     f"{sum(x >= -SELECTED_BELOW_ORACLE for x in s)} | {below} | "
                     f"{line_cell} | {secs:.0f} |")
    lines += ["", "| task | variant | steps | gradient-learned vector | gradient-learned "
              "| selected | oracle corner | all ones |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["variant"] not in variants:
            continue
        vector = describe(json.loads(r["vector"]))
        lines.append(f"| {r['task']} | {r['variant']} | {r['steps_run']} | {vector} | "
                     f"{float(r['gradient_holdout']):.3f} | {float(r['selected_holdout']):.3f} "
                     f"({r['selected']}) | {float(r['oracle_holdout']):.3f} ({r['oracle']}) | "
                     f"{float(r['all_ones_holdout']):.3f} |")
    return "\n".join(lines) + "\n"


def read_study(paths: Iterable[Path]) -> list[dict]:
    """The rows of the learner study's CSV files, in order."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def restarts(rows: list[dict], variants: list[str], name: str) -> list[dict]:
    """Rows of a derived variant ``name``: per task, the run among ``variants`` (e.g. the same
    settings from several start values) with the best validation score of its gradient
    vector; its learning time is the sum of theirs (the runs happen one after another)."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        runs = [r for r in rows if r["task"] == task and r["variant"] in variants]
        if len(runs) < len(variants):
            continue
        best = max(runs, key=lambda r: float(r["gradient_val"]))
        # the selection sees every start's gradient vector: keep the best on validation
        out.append(best | {"variant": name, "learn_seconds": str(
            sum(float(r["learn_seconds"]) for r in runs))})
    return out
