"""Validated selection: the final vector is chosen on the validation split or by
cross-validation, never on the test split, among the gradient vector and every corner; each
vector is encoded once."""

import numpy as np
import pytest
import torch

from amortinv import results, selection
from amortinv.data import Dataset, Split
from amortinv.downstream import (
    GRADIENT,
    DownstreamConfig,
    assess,
    corner_start,
    finish,
    fit,
    learn,
    prepare,
    start_name,
    usable_folds,
)
from amortinv.invariance import GREY
from amortinv.readout import LinearReadout
from amortinv.selection import Candidate, Features, corner_name, corners, rounded, select


def sided_task(n_train=400, n_test=200, seed=0) -> Dataset:
    """Class = which half of the image holds a bright blob: a task that needs flip off."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = rng.integers(0, 2, n)
        x = rng.integers(0, 60, (n, 1, 8, 8)).astype(np.uint8)
        for i, side in enumerate(y):
            cols = slice(0, 3) if side == 0 else slice(5, 8)
            x[i, 0, 2:6, cols] = 250
        return Split(x, y.astype(np.int64))

    return Dataset("sided", "image", "classification", split(n_train), split(n_test),
                   "which side the blob is on", ("left", "right"))


class Counting:
    """Wraps ``encoder.features`` to record which arrays were encoded at which vector."""

    def __init__(self, encoder):
        self.calls = []
        self.real = encoder.features
        encoder.features = self

    def __call__(self, x, vector, **kwargs):
        self.calls.append((id(x), tuple(torch.as_tensor(vector).tolist())))
        return self.real(x, vector, **kwargs)


def test_selection_uses_validation_only_and_picks_what_the_task_needs(mirror_encoder):
    enc = mirror_encoder(8)
    task = prepare(enc, sided_task(), DownstreamConfig())
    counting = Counting(enc)
    # A gradient vector stuck at flip 1: mirrored images, the side cannot be told.
    selection = select(Features(enc, task), {"crop": 0.5, "flip": 1.0, "color": 0.5,
                                             "blur": 0.5})
    assert id(task.test.x) not in {x for x, _ in counting.calls}  # the test split is unread
    assert set(selection.candidates) == {GRADIENT} | set(corners(GREY))
    chosen = selection.chosen
    assert chosen is selection.best  # far ahead of all ones and the gradient vector
    assert chosen.val_score == max(c.val_score for c in selection.candidates.values())
    assert chosen.vector["flip"] == 0.0  # the blob's side needs flip sensitivity
    assert selection.rounded == "all_ones"  # 0.5 rounds up: the standard invariance
    assert selection.gradient.val_score < 0.7 < chosen.val_score


def test_cross_validated_selection_weighs_every_training_and_validation_example(
        mirror_encoder):
    enc = mirror_encoder(8)
    task = prepare(enc, sided_task(), DownstreamConfig())
    counting = Counting(enc)
    stuck = {"crop": 0.5, "flip": 1.0, "color": 0.5, "blur": 0.5}
    plain = select(Features(enc, task), stuck)
    crossed = select(Features(enc, task), stuck, folds=5)
    assert id(task.test.x) not in {x for x, _ in counting.calls}  # the test split is unread
    pooled = len(task.train) + len(task.val)
    for name, c in crossed.candidates.items():
        assert c.cv_points.shape == (pooled,) and c.val_points is c.cv_points
        assert c.val_score == pytest.approx(c.cv_points.mean())
        assert c.readout.strength == plain.candidates[name].readout.strength  # same readouts
    # the margin shrinks with the examples weighed: 5 folds of 400 against 40 validation ones
    assert selection.noise(crossed.best) < selection.noise(plain.best) / 2
    assert crossed.chosen.vector["flip"] == 0.0
    assert crossed.gradient.val_score < 0.7 < crossed.chosen.val_score
    assert f"cross-validated on {pooled:,} training and validation examples): the best " \
        "cross-validated" in crossed.reason()
    with pytest.raises(ValueError, match="folds"):
        DownstreamConfig(folds=1)


def test_a_task_too_small_to_cross_validate_is_chosen_on_its_validation_split(mirror_encoder):
    enc = mirror_encoder(8)
    config = DownstreamConfig(steps=2, eval_every=1, warmup=2, start="init")  # folds: 5
    result = fit(enc, sided_task(n_train=9, n_test=10), config, with_baselines=False)
    assert config.folds == 5 and result.folds == 0  # 9 examples pooled: fewer than 2 a fold
    assert " on validation)" in result.reason and "cross-validated" not in result.reason
    assert usable_folds(prepare(enc, sided_task(n_train=10, n_test=10), config), 5) == 5


def candidate(name: str, right: list[int]) -> Candidate:
    """A candidate whose readout got the validation examples ``right`` (1) or wrong (0)."""
    shares = np.array(right, dtype=np.float64)
    readout = LinearReadout(torch.zeros(1), torch.ones(1), torch.zeros(2, 2), 2, 1.0,
                            float(shares.mean()), shares)
    return Candidate(name, dict.fromkeys(GREY.names, 0.5), readout)


def test_the_best_on_validation_must_beat_all_ones_then_the_gradient_by_its_noise():
    base = [1] * 80 + [0] * 20                       # 0.80 on 100 validation examples
    ahead = [0] * 10 + [1] * 83 + [0] * 7            # 0.83
    far = [1] * 95 + [0] * 5                         # 0.95
    rule = selection.choose

    # 0.03 ahead of all ones, whose score is within one standard error (0.038) of the best
    within = rule({GRADIENT: candidate(GRADIENT, base), "all_ones": candidate("all_ones", base),
                   "crop": candidate("crop", ahead)}, GREY)
    assert within.best.name == "crop" and within.chosen.name == "all_ones"
    assert selection.noise(within.best) == pytest.approx(0.0381, abs=1e-4)
    assert within.reason() == ("all_ones (0.800 on validation) kept: crop was ahead by 0.030, "
                               "within one standard error of its score (0.038)")

    # all ones far behind, the gradient vector within noise: the gradient vector
    low = [1] * 50 + [0] * 50
    gradient = rule({GRADIENT: candidate(GRADIENT, [1] * 81 + [0] * 19),
                     "all_ones": candidate("all_ones", low), "crop": candidate("crop", ahead)},
                    GREY)
    assert gradient.chosen.name == GRADIENT

    # far ahead of both: the best
    clear = rule({GRADIENT: candidate(GRADIENT, base), "all_ones": candidate("all_ones", base),
                  "crop": candidate("crop", far)}, GREY)
    assert clear.chosen is clear.best and clear.chosen.name == "crop"
    assert clear.reason(readable=True) == (
        "crop (0.950 on validation): the best on validation, ahead of all ones by 0.150 and "
        "gradient-learned by 0.150, more than one standard error of its score (0.024)")
    assert gradient.reason().startswith("gradient (0.810 on validation) kept: crop was ahead")
    alone = rule({GRADIENT: candidate(GRADIENT, base), "all_ones": candidate("all_ones", far)},
                 GREY)
    assert alone.reason() == "all_ones (0.950 on validation): the best on validation"

    # a perfect validation score is not certain: its noise is about one example in 100
    perfect = rule({GRADIENT: candidate(GRADIENT, [1] * 100),
                    "all_ones": candidate("all_ones", [1] * 99 + [0])}, GREY)
    assert selection.noise(perfect.best) == pytest.approx(0.0099, abs=1e-4)
    assert perfect.chosen.name == GRADIENT  # 0.010 behind: just outside it


def test_the_paired_rule_weighs_a_lead_by_the_examples_the_candidates_disagree_on():
    base = [1] * 80 + [0] * 20                       # all ones: 0.80
    consistent = [1] * 83 + [0] * 17                 # right wherever all ones is, and on 3 more
    shuffled = [0] * 10 + [1] * 83 + [0] * 7         # the same 0.83, right on other examples
    for ahead, switches in ((consistent, True), (shuffled, False)):
        fitted = {GRADIENT: candidate(GRADIENT, base), "all_ones": candidate("all_ones", base),
                  "crop": candidate("crop", ahead)}
        # Unpaired, both leads are within the best score's own standard error (0.038).
        assert selection.choose(fitted, GREY).chosen.name == "all_ones"
        paired = selection.choose(fitted, GREY, paired=True)
        assert paired.chosen.name == ("crop" if switches else "all_ones"), ahead
        # Its reason names the margin it used: the difference's standard error.
        assert ("more than one standard error of each difference (0.022, 0.022)" if switches
                else "within one standard error of their difference (0.049)"
                ) in paired.reason(), paired.reason()
    assert selection.paired_noise(candidate("crop", consistent), candidate("all_ones", base)
                                  ) == pytest.approx(0.0218, abs=1e-4)
    assert selection.paired_noise(candidate("crop", shuffled), candidate("all_ones", base)
                                  ) == pytest.approx(0.0492, abs=1e-4)
    # Two candidates that never disagree still have a margin (a pseudo-count each way).
    assert selection.paired_noise(candidate("a", base), candidate("b", base)) > 0


def test_each_vector_and_split_is_encoded_once_and_the_test_split_scored_after(mirror_encoder):
    enc = mirror_encoder(8)
    task = prepare(enc, sided_task(), DownstreamConfig())
    counting = Counting(enc)
    run = assess(enc, task, {"crop": 0.5, "flip": 0.2, "color": 0.5, "blur": 0.5},
                 DownstreamConfig())
    records = []
    while True:
        try:
            records.append(next(run))
        except StopIteration as end:
            outcome = end.value
            break
    assert len(counting.calls) == len(set(counting.calls))  # nothing encoded twice
    splits = [getattr(r, "split", "selection") for r in records]
    assert splits.index("selection") == 17  # 17 validation scores, then the choice
    assert set(splits[18:]) == {"test"}
    assert {GRADIENT, "all_ones", "raw_linear", "raw_knn", "knn_all_ones", "knn_learned"} \
        | set(corners(GREY)) == set(outcome.test)
    assert outcome.selected_score == outcome.test[outcome.selection.chosen.name]


def test_fit_reports_the_gradient_vector_and_the_selected_one(mirror_encoder):
    enc = mirror_encoder(8)
    config = DownstreamConfig(steps=30, eval_every=10, lr_invariance=0.05)
    result = fit(enc, sided_task(), config, with_baselines=False)
    assert set(result.learned) == set(result.selected) == set(GREY.names)
    assert result.selected_name in {GRADIENT} | set(corners(GREY))
    assert result.selected_val >= result.val_score  # chosen on validation among them
    assert result.baselines == {}
    assert 0 < result.select_seconds <= result.seconds
    assert result.rounded == corner_name(GREY, rounded(GREY, result.learned))


def test_the_vector_starts_at_the_best_corner_on_validation_and_moves_from_there(
        mirror_encoder):
    enc = mirror_encoder(8)
    config = DownstreamConfig(steps=20, eval_every=5, start="corner")
    result = fit(enc, sided_task(), config, with_baselines=False)
    on_corners = {k: v for k, v in result.val_scores.items() if k != GRADIENT}
    assert set(on_corners) == set(corners(GREY))
    assert result.start == max(on_corners, key=on_corners.get)
    # The task needs the blob's side: only corners with flip off can tell it.
    assert "flip" not in result.start.split("+") and result.start != "all_ones"
    assert result.learned["flip"] < 0.2  # nothing pulls it back toward mirror invariance


def test_the_default_start_leaves_init_only_for_a_corner_clearly_ahead_of_it(mirror_encoder):
    enc = mirror_encoder(8)
    config = DownstreamConfig()
    assert config.start == "clear"
    task = prepare(enc, sided_task(), config)
    features = Features(enc, task, config.precision)
    # At 0.5 the image is only a quarter mirrored and still tells the sides apart: no corner
    # is clearly ahead of it, so the vector starts there.
    begin, fitted = finish(corner_start(enc, task, config, features))
    assert begin == dict.fromkeys(GREY.names, 0.5) and set(fitted) == set(corners(GREY))
    assert start_name(GREY, begin) == "0.5"
    # Every value at 1 is mirror-symmetric, blind to the side: the best corner (flip off) is
    # far ahead of it and the vector starts there.
    blind = DownstreamConfig(init=1.0)
    begin, _ = finish(corner_start(enc, task, blind, features))
    best = max(fitted.values(), key=lambda c: c.val_score)
    assert begin == best.vector and begin["flip"] == 0.0
    assert fitted["all_ones"].val_score < best.val_score - selection.noise(best)
    # "corner" always starts at the best corner; "init" scores nothing first.
    assert finish(corner_start(enc, task, DownstreamConfig(start="corner"), features))[0] == \
        best.vector
    assert finish(corner_start(enc, task, DownstreamConfig(start="init"), features)) == (
        dict.fromkeys(GREY.names, 0.5), {})


def test_fit_fits_each_candidates_readout_once_when_the_vector_starts_at_init(
        mirror_encoder, monkeypatch):
    fits = []
    real = selection.fit_readout
    monkeypatch.setattr(selection, "fit_readout", lambda *a, **k: fits.append(1) or real(*a, **k))
    result = fit(mirror_encoder(8), sided_task(), DownstreamConfig(steps=4, eval_every=2),
                 with_baselines=False)
    assert result.start == "0.5"  # no corner clearly ahead (the test above)
    # 16 corners and 0.5 for the start, then only the gradient vector: learn() once chose the
    # start again from the same features, fitting all 17 a second time (12 s at width 16)
    assert len(fits) == 16 + 1 + 1


def test_learning_starts_where_it_is_told_and_keeps_its_start_when_nothing_beats_it(
        mirror_encoder):
    enc = mirror_encoder(8)
    config = DownstreamConfig(steps=10, eval_every=5, lr_invariance=0.0)
    task = prepare(enc, sided_task(), config)
    corner = {"crop": 1.0, "flip": 0.0, "color": 1.0, "blur": 0.0}
    states = list(learn(enc, task, config, start=corner))
    assert states[0].vector == corner and states[-1].vector == corner
    assert states[-1].best_score > 0.9  # a readout that fits the task scored it


def test_a_scripts_out_keeps_every_dot_but_its_own_suffix():
    assert results.output("runs/suite.v2", ".csv").name == "suite.v2.csv"  # was suite.csv
    assert results.output("runs/suite.csv", ".md").name == "suite.md"
    assert results.output("runs/study", ".paths.jsonl").name == "study.paths.jsonl"
    assert results.output("runs/study.md", "").name == "study"


def test_results_files_round_trip_and_say_where_targets_are_missed(tmp_path):
    row = {"task": "t", "needs": "n", "metric": "accuracy", "learned": {"crop": 0.2},
           "learned_score": 0.70, "val_score": 0.7, "selected_name": "all_ones",
           "selected": {"crop": 1.0}, "selected_score": 0.745, "selected_val": 0.8,
           "rounded": "all_zeros", "start": "all_ones", "precision": "fp32", "select_seconds": 75.0,
           "seconds": 200.0, "reason": "all_ones (0.800 cross-validated on 90 ...): the best",
           "val_scores": {"gradient": 0.7, "all_ones": 0.8, "all_zeros": 0.79},
           "baselines": {"all_ones": 0.745, "all_zeros": 0.76, "raw_linear": 0.5}, "folds": 5}
    path = tmp_path / "r.csv"
    results.write_csv(path, [row, {"task": "broken", "error": "no data"}])
    back = results.read_csv(path)
    assert back[0] == row and back[1] == {"task": "broken", "error": "no data"}
    missed = results.misses(back)
    assert missed["selected >= oracle - 0.01"] == ["t (0.745 vs 0.760)"]
    assert missed["selected >= all ones"] == []
    assert missed["gradient-learned >= oracle - 0.02"] == ["t (0.700 vs 0.760)"]
    assert missed["seconds to selected <= 60"] == ["t (75 s)"]
    assert "| t | n | accuracy | crop 0.20 | 0.700 | **0.745** (all_ones) | 0.760 (all_zeros)" \
        in results.table(back)
    # the selected column says how the candidates were scored: the rows' folds
    assert "| selected (cross-validated, 5 folds) |" in results.table(back)
    older = [{k: v for k, v in back[0].items() if k != "folds"}]  # a file from before folds
    assert "| selected (chosen on validation) |" in results.table(older)
    assert "| selected (chosen without the test split) |" in results.table([*back, *older])
    assert "| s | 1 | best, cross-validated (5 folds) |" in results.rules_table({"s": back})

    # the same suite on another machine: the seconds side by side, and whether it chose alike
    fast = [back[0] | {"select_seconds": 41.6, "seconds": 50.2}, back[1]]
    slow = fast[0] | {"task": "u", "select_seconds": 61.0, "selected_name": "gradient"}
    slow_there = slow | {"selected_name": "all_ones"}
    speed = results.speed_table({"s": ([*fast, slow], [back[0], slow_there])}, "A", "B")
    assert "| s | t | **42** | 50 | 75 | 0.745 (all_ones) | 0.745 (all_ones) |" in speed
    assert "Within 60 s to the selected vector on A: 1 of 2 tasks (not: u (s, 61 s))" in speed
    assert "The same candidate selected on both machines: 1 of 2." in speed


def test_the_colour_targets_name_the_tasks_that_miss_them():
    def row(task, selected, all_ones, best, plain):
        return {"task": task, "selected_score": selected,
                "baselines": {"all_ones": all_ones, "color": best, "plain": plain}}

    missed = results.colour_misses([
        row("clipart-hue", 0.60, 0.45, 0.60, 0.40),      # +0.15 over all ones, at the oracle
        row("clipart-colour", 0.50, 0.45, 0.55, 0.40),   # +0.05 only, 5 points below it
        row("openclipart", 0.40, 0.40, 0.42, 0.41),      # below plain
        row("tuxpaint-photos", 0.50, 0.40, 0.50, 0.50),  # equal to plain: met
        row("flags-mirrored", 0.10, 0.90, 0.95, 0.99)])  # neither kind: no colour target
    assert missed == {
        "colour tasks: selected >= all ones + 0.10": ["clipart-colour (0.500 vs 0.450)"],
        "colour tasks: selected >= oracle - 0.01": ["clipart-colour (0.500 vs 0.550)"],
        "category tasks: selected >= plain": ["openclipart (0.400 vs 0.410)"]}
    assert "category tasks: selected >= plain: missed on openclipart" in results.targets(
        [row("openclipart", 0.40, 0.40, 0.42, 0.41)], results.colour_misses)


def test_the_audio_targets_count_tasks_against_plain_and_name_those_below_raw():
    def row(task, selected, learned, plain, raw):
        return {"task": task, "selected_score": selected, "learned_score": learned,
                "baselines": {"all_ones": selected, "plain": plain, "raw_linear": raw}}

    rows = [row("spoken-digits", 0.55, 0.50, 0.57, 0.40),   # below plain
            row("notes-family", 0.95, 0.94, 0.94, 0.93),    # above plain and raw
            row("sonic-pi", 0.50, 0.45, 0.50, 0.46)]        # equal to plain; learned below raw
    missed = results.audio_misses(rows)
    assert missed["selected >= plain on at least half the tasks"] == (
        "met (2 of 3); below plain on spoken-digits (0.550 vs 0.570)")
    assert missed["selected > raw log-mel"] == []
    assert missed["gradient-learned > raw log-mel"] == ["sonic-pi (0.450 vs 0.460)"]
    text = results.targets(rows[:1], results.audio_misses)
    assert "- selected >= plain on at least half the tasks: missed (0 of 1)" in text
    assert "- gradient-learned > raw log-mel: met on every task" in text


def test_the_rules_table_scores_every_rule_from_the_same_files():
    def row(task, val, test, selected):
        return {"task": task, "learned_score": test["gradient"], "selected_score": selected,
                "val_scores": val, "baselines": {k: v for k, v in test.items() if k != "gradient"}}

    rows = [  # the best on validation (crop) is unlucky on test; the rule kept all ones
        row("a", {"gradient": 0.80, "all_ones": 0.81, "crop": 0.82},
            {"gradient": 0.79, "all_ones": 0.80, "crop": 0.70}, selected=0.80),
        row("b", {"gradient": 0.90, "all_ones": 0.70, "crop": 0.90},  # a tie: the gradient
            {"gradient": 0.88, "all_ones": 0.60, "crop": 0.90}, selected=0.88)]
    assert results.best_on_validation(rows[0]) == "crop"
    assert results.best_on_validation(rows[1]) == GRADIENT
    lines = results.rules_table({"s": rows, "old files": [{"task": "c", "baselines": {}}]}
                                ).splitlines()
    assert lines[2] == "| s | 2 | best on validation | 0.790 | 0 | 1 |"
    assert lines[3] == "| s | 2 | one standard error | 0.840 | 1 | 0 |"
    assert lines[4] == "| s | 2 | the gradient-learned vector, no selection | 0.835 | 1 | 1 |"
    assert len(lines) == 5  # rows without validation scores are left out


def test_the_oracle_gap_takes_the_oracles_luck_out_of_its_lead():
    rng = np.random.default_rng(1)
    n = 600

    def corner(p):  # each test example right with probability p
        return (rng.random(n) < p).astype(float)

    # 16 corners as good as the selected vector in truth: the oracle leads by its luck only
    same = {f"c{i}": corner(0.8) for i in range(16)}
    chosen = corner(0.8)
    luck = results.oracle_gaps(same, chosen, halves=300)
    assert luck["gap"] == pytest.approx(max(v.mean() for v in same.values()) - chosen.mean())
    assert luck["picked_gap"] > luck["honest_gap"] + 0.02  # picked on the half it scores
    assert abs(luck["honest_gap"]) < 2 * luck["honest_se"]
    # one corner 15 points better in truth: its lead survives the honest split
    better = same | {"better": corner(0.95)}
    real = results.oracle_gaps(better, chosen, halves=300)
    assert real["honest_gap"] > 0.10 and real["honest_gap"] > 3 * real["honest_se"]
    assert results.oracle_gaps(better, chosen, halves=300) == real  # seeded

    # the gradient-learned vector is held against its own target, two points: 1.5 points
    # behind in the table, and no more than luck
    rows = [{"suite": "s", "task": "t", "metric": "accuracy", "test_examples": n,
             "selected_name": "all_ones", "selected_score": chosen.mean(),
             "oracle_name": "better", "oracle_score": better["better"].mean(), **real,
             "gradient_score": better["better"].mean() - 0.015,
             **{f"gradient_{k}": v for k, v in luck.items()} | {"gradient_gap": 0.015},
             "reproduced": 0.0}]
    line = results.gap_table(rows).splitlines()[2]
    assert line.startswith("| s | t | 600 | ") and "(all_ones)" in line and f"of {n})" in line
    gradient_line = results.gap_table(rows, "gradient").splitlines()[2]
    assert f"| {rows[0]['gradient_score']:.3f} | " in gradient_line
    assert "(9 of 600)" in gradient_line  # 1.5 points of 600 examples
    lucky = rows[0] | {"task": "lucky", **luck,
                       **{f"gradient_{k}": v for k, v in real.items()}}
    summary = results.gap_summary([*rows, lucky]).splitlines()
    assert summary[0] == "- runs: 2; the oracle more than a point ahead in the tables: 2"
    assert summary[1].startswith("- more than a point ahead with its luck taken out: 1: s t (")
    assert summary[2].startswith("- more than two standard errors ahead: 1: s t (")
    gradient = results.gap_summary([*rows, lucky], "gradient").splitlines()
    assert gradient[0] == "- runs: 2; the oracle more than two points ahead in the tables: 1"
    assert gradient[1].startswith("- more than two points ahead with its luck taken out: 1: "
                                  "s lucky (")
    # the runs a gradient table lists: behind by more than two points either way
    assert [r["task"] for r in results.gap_misses([*rows, lucky], "gradient")] == ["lucky"]
    assert [r["task"] for r in results.gap_misses([*rows, lucky])] == ["t", "lucky"]


def test_the_plain_encoders_lead_is_paired_example_by_example(tmp_path):
    rng = np.random.default_rng(2)
    chosen = (rng.random(400) < 0.8).astype(float)
    flips = rng.random(400) < 0.1  # the plain encoder disagrees on a tenth of the examples
    plain = np.where(flips, 1 - chosen, chosen)
    lead = results.paired_gap(plain, chosen)
    assert lead["gap"] == pytest.approx(plain.mean() - chosen.mean())
    # only the disagreements count: about sqrt(their share / n), well below the unpaired
    # standard error of a difference between two scores of 0.8 (0.028)
    assert lead["se"] == pytest.approx(np.sqrt(flips.mean() / 400), rel=0.05)
    assert lead["se"] < 0.6 * np.sqrt(2 * 0.8 * 0.2 / 400)
    assert results.paired_gap(chosen, chosen) == {"gap": 0.0, "se": 0.0}

    row = {"suite": "s", "task": "t", "metric": "accuracy", "test_examples": 400,
           "selected_name": "all_ones", "selected_score": chosen.mean(),
           "plain_score": plain.mean(), **{f"plain_{k}": v for k, v in lead.items()}}
    table = results.plain_table([row, row | {"task": "no plain", "plain_gap": None}])
    assert table.count("| s |") == 1 and f"| {plain.mean():.3f} |" in table
    behind = row | {"task": "u", "plain_gap": -0.01}
    clear = row | {"task": "v", "plain_gap": 0.05, "plain_se": 0.01}
    summary = results.plain_summary([row, behind, clear, row | {"plain_gap": None}])
    assert summary.splitlines() == [
        "- runs: 3; the plain encoder ahead of the selected vector: "
        f"{1 + (lead['gap'] > 0)}",
        "- by more than two standard errors: 1: s v (+0.050 ± 0.010)"]
    # a run without --plain is read back with no plain columns, not zeros
    path = tmp_path / "gaps.csv"
    path.write_text("suite,task,metric,plain_gap,reproduced\ns,t,accuracy,,0.0\n")
    (read,) = results.read_numbers([path])
    assert read["plain_gap"] is None and read["reproduced"] == 0.0


def test_the_selection_study_is_summarised_per_suite_and_rule():
    def row(suite, best, one_se, ones, oracle):
        return {"suite": suite, "best_score": str(best), "one_se_score": str(one_se),
                "all_ones_score": str(ones), "oracle_score": str(oracle)}

    lines = results.selection_study_table([row("grey", 0.70, 0.80, 0.80, 0.805),
                                           row("grey", 0.90, 0.88, 0.85, 0.90),
                                           row("audio", 0.50, 0.50, 0.60, 0.60)]).splitlines()
    assert lines[2:] == ["| grey | 2 | best on validation | 0.800 | 1 | 1 |",
                         "| grey | 2 | one standard error | 0.840 | 1 | 0 |",
                         "| audio | 1 | best on validation | 0.500 | 0 | 1 |",
                         "| audio | 1 | one standard error | 0.500 | 0 | 1 |"]
    # The later round's files add the gradient-first rule and the gradient vector alone.
    later = [row("grey", 0.70, 0.80, 0.80, 0.805) | {"gradient_first_score": "0.79",
                                                     "gradient_score": "0.79",
                                                     "paired_score": "0.81",
                                                     "cv_best_score": "0.805",
                                                     "cv_one_se_score": "0.80"}]
    lines = results.selection_study_table(later).splitlines()
    assert lines[4:] == [
        "| grey | 1 | one standard error, gradient vector first | 0.790 | 0 | 1 |",
        "| grey | 1 | the gradient-learned vector, no selection | 0.790 | 0 | 1 |",
        "| grey | 1 | one standard error of the difference (paired) | 0.810 | 1 | 0 |",
        "| grey | 1 | best, cross-validated (5 folds) | 0.805 | 1 | 0 |",
        "| grey | 1 | one standard error, cross-validated (5 folds) | 0.800 | 1 | 0 |"]


def test_a_held_out_task_never_reads_the_test_split(mirror_encoder):
    from amortinv import data
    from amortinv.downstream import held_out_task

    full = data.get("sklearn-digits")  # 1,797 real 8 x 8 digits, bundled with scikit-learn
    task = held_out_task(mirror_encoder(8), "sklearn-digits", DownstreamConfig(), cap=100)
    assert len(task.test) == 100
    train_rows = {x.tobytes() for x in full.train.x}
    test_rows = {x.tobytes() for x in full.test.x}
    held = {x.tobytes() for x in task.test.x}
    assert held <= train_rows and not held & test_rows - train_rows
    assert not held & {x.tobytes() for x in task.train.x}  # held out from what is learned
