"""Pre-training runs: every run and checkpoint with its curves; start a small CPU run."""

import json
import re

import pandas as pd
import plotly.express as px
import streamlit as st

from amortinv import ui
from amortinv.pretrain import PRESET_NOTES, Trainer, preset
from amortinv.run_state import check_fresh
from amortinv.workers import pretraining_job

st.title("Pre-training runs")


def read_log(folder) -> pd.DataFrame:
    path = folder / "metrics.jsonl"
    if not path.exists():
        return pd.DataFrame()
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line])


found = ui.checkpoints()  # every header read once
rows = []
for label, (_, meta) in found.items():
    if not isinstance(meta, dict):  # the header could not be read: say why
        rows.append({"run": label, "problem": str(meta)})
        continue
    card, model = meta.get("card", {}), meta.get("model", {})
    evaluation = card.get("evaluation", {})  # full test splits (scripts/evaluate.py)
    # the scores first, beside the name: the columns a user compares (the table scrolls)
    rows.append({"run": label,
                 "test linear, all ones": evaluation.get("linear", {}).get("all_ones"),
                 "test kNN, all ones": evaluation.get("knn", {}).get("all_ones"),
                 "dataset": card.get("dataset"), "steps": card.get("steps"),
                 "conditioning": model.get("conditioning"), "width": model.get("width"),
                 "space": meta.get("space", {}).get("name"),
                 **{k: v for k, v in card.get("metrics", {}).items()}})
if rows:
    st.dataframe(rows, hide_index=True)
    label = st.selectbox("Curves of", list(found), key="runs-curves")
    log = read_log(found[label][0])
    if log.empty:
        st.caption("This checkpoint has no metrics.jsonl beside it.")
    else:
        left, right = st.columns(2)
        losses = log.dropna(subset=["loss"]) if "loss" in log else pd.DataFrame()
        if not losses.empty:
            left.plotly_chart(px.line(losses, x="step", y="loss", title="contrastive loss",
                                      height=320))
        if "knn" in log:
            knn = log.dropna(subset=["knn"])
            long = pd.DataFrame([{"step": r.step, "vector": k, "accuracy": v}
                                 for r in knn.itertuples() for k, v in r.knn.items()])
            if not long.empty:
                right.plotly_chart(px.line(long, x="step", y="accuracy", color="vector",
                                           markers=True, title="kNN test accuracy (k=200)",
                                           height=320))
else:
    st.info("No runs yet.")

st.subheader("Start a pre-training on this machine")
choices = ["smoke", "cpu-fmnist", "cpu-fmnist-film", "cpu-fmnist-plain", "cpu-audio"]
c1, c2, c3 = st.columns(3)
name = c1.selectbox("preset", choices, key="runs-preset",
                    format_func=lambda p: f"{p} — {PRESET_NOTES[p]}")
steps = c2.number_input("steps", 2, 100_000, 200 if name != "smoke" else 20, key="runs-steps")
out = c3.text_input("run name", f"app-{name}", key="runs-out")
job = st.session_state.get("runs-job")
start, stop = st.columns(2)
if start.button("Start pre-training", type="primary", disabled=bool(job and job.running)):
    if not re.fullmatch(r"[A-Za-z0-9._-]+", out) or not out.strip("."):
        # dots alone ('.', '..') name runs/ itself or the folder above it, not a run in it
        st.error("Use letters, digits, '.', '_' or '-' for the run name, not dots alone.")
    else:
        folder = ui.runs_dir() / out
        try:
            # A record every step: jobs take turns record by record (workers.TURNS), so a
            # learning job started meanwhile waits one step, not twenty.
            trainer = Trainer(preset(name, out=str(folder), steps=int(steps), progress=False,
                                     log_every=1))
            check_fresh(folder)  # a run to resume, or a finished encoder: kept
        except (ValueError, OSError, RuntimeError) as err:  # settings, data, folder
            st.error(str(err))
        else:
            job = pretraining_job(trainer, alive=ui.session_alive()).start()
            st.session_state["runs-job"] = job
            st.session_state["runs-total"] = int(steps)
            st.session_state["runs-unit"] = ("clips" if trainer.encoder.config.modality == "audio"
                                             else "images")
if stop.button("Stop", disabled=not (job and job.running)):
    job.stop()


def draw(snap) -> None:
    total = st.session_state.get("runs-total", 1)
    steps_done = max([r["step"] for r in snap.records] or [0])
    st.progress(min(1.0, steps_done / total),
                text=f"step {steps_done} / {total} ({snap.seconds:.0f} s)")
    losses = [r for r in snap.records if "loss" in r]
    if losses:
        unit = st.session_state.get("runs-unit", "images")
        st.caption(f"loss {losses[-1]['loss']:.3f}, {losses[-1]['img_s']:.0f} {unit}/s")
    if snap.error:
        st.error(f"Pre-training stopped: {snap.error}")
    elif not snap.running:
        st.success("Finished: the encoder is saved and listed above.")


if job is not None:
    ui.follow(job, draw, "runs-was-running")
