"""The study behind the downstream learner's defaults, on validation data only.

    python scripts/study_learner.py --checkpoint checkpoints/fmnist-hyper4-cpu \\
        --tasks fmnist-flip fmnist-position --variants paper lr0.1-warm-nostop-clear \\
        --out docs/results/learner-study

Each registry task's TEST split is never read. Its training split is cut in two: a held-out
part (``--holdout`` of it, at most ``--max-holdout`` examples, stratified by class) stands in for
the test split, and the rest is the task as :func:`amortinv.downstream.prepare` sees it
(5,000 training + 500 validation examples by default). On the held-out part:

- every corner is scored once per task (a readout fitted on train, its strength chosen on
  validation), and the best of them is the oracle the learner is measured against;
- each variant (a named set of :class:`DownstreamConfig` overrides, ``VARIANTS``) learns a
  vector by gradient, which is scored the same way, and the validated selection
  (:mod:`amortinv.selection`) picks among it and every corner.

OUT.csv holds a row per (task, variant, seed); OUT.paths.jsonl the vector after every step;
OUT.md a summary per variant. Rows are appended as they finish and a rerun skips the rows
already there, so the study can be run in pieces (one task per process).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

import amortinv
import amortinv.data as data
from amortinv import results
from amortinv.cli import checkpoint_path, task_name
from amortinv.downstream import (
    DownstreamConfig,
    Readout,
    Task,
    TaskMismatch,
    _targets,
    _warm_up,
    check_modality,
    frozen,
    held_out_task,
    learn,
    start_name,
    task_loss,
)
from amortinv.models import Encoder
from amortinv.selection import (
    GRADIENT,
    Features,
    candidates,
    corner_name,
    corners,
    rounded,
    within_noise,
)

#: The paper's settings, which every variant starts from (so a variant means the same run
#: whatever DownstreamConfig's defaults are).
PAPER = dict(steps=150, lr_readout=0.01, lr_invariance=0.01, init=0.5, parameterisation="clamp",
             regression_loss="l1", eval_every=10, patience=5, lr_schedule="constant", warmup=0,
             standardise="batch", start="init")
#: The variants studied: overrides of PAPER.
VARIANTS: dict[str, dict] = {
    # round 1 (fp32): the paper's settings; a higher lr; a readout warmed up on the start
    # vector's features; its standardisation frozen at the start vector's statistics
    "paper": dict(lr_invariance=0.01, patience=5, warmup=0, standardise="batch"),
    "lr0.05": dict(lr_invariance=0.05, patience=5),
    "lr0.05-warm": dict(lr_invariance=0.05, patience=5, warmup=200),
    "lr0.05-warm-fixed": dict(lr_invariance=0.05, patience=5, warmup=200, standardise="start"),
    # round 2 (bf16): no early stopping (patience beyond the steps), lr 0.1, warm-up, MSE for
    # regression, a faster readout, the sigmoid, other start values
    "paper-bf16": dict(lr_invariance=0.01, patience=5),
    "lr0.1-nostop": dict(lr_invariance=0.1, patience=1000),
    # = DownstreamConfig's defaults (patience 15 evaluations never stops a 150-step run)
    "lr0.1-warm-nostop": dict(lr_invariance=0.1, patience=1000, warmup=200),
    "lr0.1-nostop-mse": dict(lr_invariance=0.1, patience=1000, regression_loss="mse"),
    "lr0.1-nostop-ro0.05": dict(lr_invariance=0.1, patience=1000, lr_readout=0.05),
    "sigmoid-lr0.4-nostop": dict(lr_invariance=0.4, patience=1000,
                                 parameterisation="sigmoid"),
    "lr0.1-nostop-init0.25": dict(lr_invariance=0.1, patience=1000, init=0.25),
    "lr0.1-nostop-init0.75": dict(lr_invariance=0.1, patience=1000, init=0.75),
    # round 3 (bf16, fmnist-flip): the readout warm-started and faster together, a cosine
    # decay of the vector's lr
    "lr0.1-warm-nostop-ro0.05": dict(lr_invariance=0.1, patience=1000, warmup=200,
                                     lr_readout=0.05),
    "lr0.1-warm-ro0.05": dict(lr_invariance=0.1, patience=5, warmup=200, lr_readout=0.05),
    "lr0.1-warm-nostop-ro0.05-cos": dict(lr_invariance=0.1, patience=1000, warmup=200,
                                         lr_readout=0.05, lr_schedule="cosine"),
    "lr0.1-warm-nostop-cos": dict(lr_invariance=0.1, patience=1000, warmup=200,
                                  lr_schedule="cosine"),
    "lr0.2-warm-nostop-ro0.05-cos": dict(lr_invariance=0.2, patience=1000, warmup=200,
                                         lr_readout=0.05, lr_schedule="cosine"),
    # round 4 (bf16, the width-8 encoder): the defaults started at all ones, a corner the
    # encoder was pre-trained on (0.5 is between corners, which it never saw)
    "lr0.1-warm-nostop-init1": dict(lr_invariance=0.1, patience=1000, warmup=200, init=1.0),
    # round 5 (bf16, every suite task): the defaults started at the corner that scores best on
    # validation (the selection's corners, scored before learning instead of after)
    "lr0.1-warm-nostop-corner": dict(lr_invariance=0.1, patience=1000, warmup=200,
                                     start="corner"),
    # round 6 (adopted: the defaults): the best corner only when it beats the start at 0.5 by
    # more than one standard error of its validation score (the selection's rule), else 0.5
    "lr0.1-warm-nostop-clear": dict(lr_invariance=0.1, patience=1000, warmup=200,
                                    start="clear"),
}

FIELDS = ["task", "variant", "seed", "steps_run", "learn_seconds", "vector", "path_val",
          "gradient_val", "gradient_holdout", "rounded", "selected", "selected_val",
          "selected_holdout", "oracle", "oracle_holdout", "all_ones_holdout", "line_t", "line_val",
          "line_holdout", "start"]


def corner_scores(features: Features, cache: Path) -> dict[str, dict]:
    """Every corner's validation and held-out score (cached in ``cache``: the same for every
    variant of a task)."""
    if cache.exists():
        return json.loads(cache.read_text())
    fitted = {c.name: c for c in candidates(features, 1.0)}
    out = {name: {"val": c.val_score, "holdout": c.test_score(features)}
           for name, c in fitted.items() if name != GRADIENT}
    cache.write_text(json.dumps(out))
    return out


def run(encoder: Encoder, task: Task, variant: str, config: DownstreamConfig,
        corner: dict[str, dict], paths: Path) -> dict:
    begin = corners(encoder.space)[max(corner, key=lambda k: corner[k]["val"])] \
        if config.start != "init" else config.init
    if config.start == "clear":  # downstream.corner_start's rule, from the cached corners
        scored = Features(encoder, task, config.precision)
        ahead, centre = (next(candidates(scored, v, with_corners=False))
                         for v in (begin, config.init))
        if within_noise(ahead, centre):
            begin = config.init
    start = time.perf_counter()
    states = list(learn(encoder, task, config, start=begin))
    seconds = time.perf_counter() - start
    final = states[-1]
    with paths.open("a") as f:
        f.write(json.dumps({"task": task.name, "variant": variant, "seed": config.seed,
                            "steps": [s.step for s in states[:-1]],
                            "vectors": [s.vector for s in states[:-1]],
                            "val": [s.val_score for s in states[:-1]]}) + "\n")
    features = Features(encoder, task, config.precision)
    gradient = next(candidates(features, final.vector, with_corners=False))
    # The selection, as selection.choose makes it, from the cached corner scores: only
    # validation scores choose, and a tie goes to the gradient vector.
    chosen = max([(gradient.val_score, GRADIENT)] + [(v["val"], k) for k, v in corner.items()],
                 key=lambda t: t[0])[1]
    oracle = max(corner, key=lambda k: corner[k]["holdout"])
    gradient_holdout = gradient.test_score(features)
    line = line_search(features, begin, final.vector, gradient)
    return {
        "task": task.name, "variant": variant, "seed": config.seed,
        "steps_run": final.step, "learn_seconds": round(seconds, 1),
        "vector": json.dumps({k: round(v, 3) for k, v in final.vector.items()}),
        "path_val": round(final.best_score, 4), "gradient_val": round(gradient.val_score, 4),
        "gradient_holdout": round(gradient_holdout, 4),
        "rounded": corner_name(encoder.space, rounded(encoder.space, final.vector)),
        "selected": chosen,
        "selected_val": round(gradient.val_score if chosen == GRADIENT
                              else corner[chosen]["val"], 4),
        "selected_holdout": round(gradient_holdout if chosen == GRADIENT
                                  else corner[chosen]["holdout"], 4),
        "oracle": oracle, "oracle_holdout": round(corner[oracle]["holdout"], 4),
        "all_ones_holdout": round(corner["all_ones"]["holdout"], 4),
        "start": start_name(encoder.space, encoder.space.to_dict(begin))
    } | line


def line_search(features: Features, start: float | dict[str, float], end: dict[str, float],
                gradient) -> dict:
    """A short line search along the path's direction: the start plus ``t`` times the move
    to ``end``, for t in LINE (clamped to [0, 1]); the point with the best validation score
    (t = 1 is the gradient vector itself) and its held-out score."""
    space = features.encoder.space
    move = space.vector(end) - space.vector(start)
    best = (gradient.val_score, 1.0, gradient)
    for t in LINE[1:]:
        vector = space.to_dict((space.vector(start) + t * move).clamp(0, 1))
        fitted = next(candidates(features, vector, with_corners=False))
        if fitted.val_score > best[0]:
            best = (fitted.val_score, t, fitted)
    return {"line_t": best[1], "line_val": round(best[0], 4),
            "line_holdout": round(best[2].test_score(features), 4)}


#: Multiples of the path's move tried by the line search (1 = the gradient vector).
LINE = (1.0, 2.0, 4.0)


def gradients(encoder: Encoder, task: Task, config: DownstreamConfig, batches: int = 12
              ) -> list[dict]:
    """The gradient reaching the vector through the conditioning, at the start vector: per
    group, its mean, standard deviation and mean / std over ``batches`` training batches,
    with a fresh readout (the paper's start) and with one warmed up on the start vector's
    features (``config.warmup`` steps, at least 200); and the readout weights' gradient
    (root mean square) for scale."""
    out = []
    g = torch.Generator().manual_seed(config.seed)
    x, y = encoder.to_input(task.train.x), _targets(task, task.train.y)
    with frozen(encoder):
        for state in ("fresh", "warm"):
            readout = Readout(encoder.feature_dim, task.data.num_outputs,
                              torch.Generator().manual_seed(config.seed))
            vector = torch.full((len(encoder.space),), float(config.init))
            if state == "warm":
                z = encoder.features(task.train.x, vector, precision=config.precision)
                opt = torch.optim.Adam(readout.parameters(), lr=config.lr_readout)
                _warm_up(readout, opt, z, y, task,
                         dataclasses.replace(config, warmup=max(config.warmup, 200)), g)
            readout.train()
            grads, weight_rms = [], []
            for _ in range(batches):
                v = vector.clone().requires_grad_(True)
                idx = torch.randint(len(x), (config.batch_size,), generator=g)
                loss = task_loss(task, readout(encoder(x[idx], v)), y[idx],
                                 config.regression_loss)
                gv, gw = torch.autograd.grad(loss, [v, readout.linear.weight])
                grads.append(gv)
                weight_rms.append(float(gw.pow(2).mean().sqrt()))
            stack = torch.stack(grads)
            mean, std = stack.mean(0), stack.std(0)
            for k, group in enumerate(encoder.space.names):
                out.append({"task": task.name, "readout": state, "group": group,
                            "mean": round(float(mean[k]), 5), "std": round(float(std[k]), 5),
                            "mean_over_std": round(float(mean[k] / std[k]), 2),
                            "readout_weight_rms": round(sum(weight_rms) / batches, 5)})
    return out


#: Line colours of the plot, one per group (the app's plotly defaults, in order).
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3"]


def plot_paths(grid: list[list[dict]], out: Path, title: str) -> None:
    """Small multiples of the vector over the steps: a row per variant, a column per task
    (PNG, drawn with PIL alone)."""
    from PIL import Image, ImageDraw, ImageFont

    font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    try:
        font, small = ImageFont.truetype(font_path, 13), ImageFont.truetype(font_path, 11)
    except OSError:
        font = small = ImageFont.load_default()
    pw, ph, left, top = 230, 150, 40, 34
    rows, cols = len(grid), len(grid[0])
    image = Image.new("RGB", (left + pw * cols + 10, top + rows * (ph + 40) + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), title, fill="black", font=font)
    groups = list(grid[0][0]["vectors"][0])
    for r, row in enumerate(grid):
        for c, path in enumerate(row):
            x0, y0, w, h = left + c * pw, top + r * (ph + 40), pw - 20, ph
            steps = path["steps"]
            span = max(steps[-1], 1)
            draw.rectangle([x0, y0, x0 + w, y0 + h], outline="#888")
            for v in (0.0, 0.5, 1.0):
                y = y0 + h - v * h
                draw.line([x0, y, x0 + w, y], fill="#ddd")
                if c == 0:
                    draw.text((x0 - 30, y - 7), f"{v:.1f}", fill="black", font=small)
            for k, group in enumerate(groups):
                pts = [(x0 + st / span * w, y0 + h - vec[group] * h)
                       for st, vec in zip(steps, path["vectors"], strict=True)]
                draw.line(pts, fill=PALETTE[k % len(PALETTE)], width=2)
            draw.text((x0, y0 + h + 3), "0", fill="black", font=small)
            draw.text((x0 + w - 22, y0 + h + 3), str(steps[-1]), fill="black", font=small)
            draw.text((x0 + w / 2 - 14, y0 + h + 3), "step", fill="black", font=small)
            draw.text((x0 + 4, y0 + 3), f"{path['task']} · {path['variant']}", fill="black",
                      font=small)
    y = top + rows * (ph + 40) + 2
    for k, group in enumerate(groups):  # the legend, below the panels
        x = left + k * 90
        draw.line([x, y + 7, x + 18, y + 7], fill=PALETTE[k % len(PALETTE)], width=3)
        draw.text((x + 22, y), group, fill="black", font=font)
    image.save(out, optimize=True)


def summary(rows: list[dict], command: str) -> str:
    """OUT.md: the command and :func:`amortinv.results.study_table`."""
    return f"Command: `{command}`\n\n" + results.study_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=checkpoint_path, required=True)
    parser.add_argument("--tasks", nargs="+", type=task_name, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--max-holdout", type=int, default=2000)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="of the learning and of every feature (default fp32)")
    parser.add_argument("--gradients", action="store_true",
                        help="measure the gradient reaching the vector (OUT.gradients.csv) "
                             "instead of learning")
    parser.add_argument("--plot", metavar="PNG",
                        help="draw the vector over the steps of each of --variants (a row) on "
                             "each of --tasks (a column), seed --seeds[0], from every "
                             "OUT*.paths.jsonl, instead of learning")
    parser.add_argument("--out", default="docs/results/learner-study")
    args = parser.parse_args(argv)
    encoder = amortinv.load(args.checkpoint, "cpu")
    out = results.output(args.out, "")  # the stem: OUT.csv, OUT.md, OUT*.paths.jsonl
    table, paths = results.output(out, ".csv"), results.output(out, ".paths.jsonl")
    try:  # before any folder or file is made
        for name in args.tasks:
            if (entry := data.folder_or_info(name)) is not None:
                check_modality(encoder, name, entry.modality)
        rows = list(csv.DictReader(table.open())) if table.exists() else []
        if rows and not {"task", "variant", "seed"} <= set(rows[0]):
            raise ValueError(f"{table} is not this study's file (it has no task, variant and "
                             "seed columns): choose another --out")
    except (TaskMismatch, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    done = {(r["task"], r["variant"], r["seed"]) for r in rows}
    command = "python scripts/study_learner.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if args.plot:
        found = {(p["task"], p["variant"], p["seed"]): p  # every OUT*.paths.jsonl
                 for f in sorted(out.parent.glob(f"{out.name}*.paths.jsonl"))
                 for p in map(json.loads, f.read_text().splitlines())}
        missing = [f"{t} {v} seed {args.seeds[0]}" for v in args.variants for t in args.tasks
                   if (t, v, args.seeds[0]) not in found]
        if missing:
            print(f"error: no learned path of {', '.join(missing[:3])}"
                  f"{f' (and {len(missing) - 3} more)' if len(missing) > 3 else ''} in "
                  f"{out}*.paths.jsonl: run the study with the same --out first",
                  file=sys.stderr)
            return 1
        grid = [[found[(t, v, args.seeds[0])] for t in args.tasks] for v in args.variants]
        plot_paths(grid, Path(args.plot), "invariance vector i over the learning steps "
                                          "(learner study: training splits only)")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.gradients:
        grads = results.output(out, ".gradients.csv")
        measured = list(csv.DictReader(grads.open())) if grads.exists() else []
        for name in args.tasks:
            config = DownstreamConfig(precision=args.precision, **PAPER)
            task = held_out_task(encoder, name, config, args.holdout, args.max_holdout)
            measured = [r for r in measured if r["task"] != name] + gradients(encoder, task,
                                                                              config)
            with grads.open("w", newline="") as f:
                writer = csv.DictWriter(f, list(measured[0]))
                writer.writeheader()
                writer.writerows(measured)
            print(f"{name}: gradients measured", flush=True)
        return 0
    for name in args.tasks:
        for seed in args.seeds:
            base = DownstreamConfig(seed=seed, precision=args.precision, **PAPER)
            task = held_out_task(encoder, name, base, args.holdout, args.max_holdout)
            cache = out.parent / f"{out.name}.corners-{name}-{seed}-{args.precision}.json"
            corner = corner_scores(Features(encoder, task, args.precision), cache)
            assert set(corner) == set(corners(encoder.space))
            for variant in args.variants:
                if (name, variant, str(seed)) in done:
                    continue
                config = DownstreamConfig(seed=seed, precision=args.precision,
                                          **(PAPER | VARIANTS[variant]))
                row = run(encoder, task, variant, config, corner, paths)
                print(json.dumps(row), flush=True)
                rows.append({k: str(v) for k, v in row.items()})
                with table.open("w", newline="") as f:
                    writer = csv.DictWriter(f, FIELDS)
                    writer.writeheader()
                    writer.writerows(rows)
                results.output(out, ".md").write_text(summary(rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
