"""Learn invariances: a task's readout and invariance vector, learned live in the background."""

import tempfile

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from amortinv import ui
from amortinv.data import DatasetUnavailable, UnknownDataset
from amortinv.data.uploads import UploadError, extract_zip
from amortinv.downstream import DownstreamConfig, TaskMismatch, corner_name, prepare
from amortinv.workers import PLAIN, learning_job

encoder, dataset, path, _ = ui.page("Learn invariances", with_dataset=False)
space = encoder.space

source = st.radio("Task", ["from the registry", "upload a zip"], horizontal=True,
                  key="learn-source")
if source == "from the registry":
    names = ui.compatible_datasets(encoder)
    task_name = st.selectbox("Downstream task", names, key="learn-task",
                             index=names.index(dataset) if dataset in names else 0)
else:
    upload = st.file_uploader("A zip with one folder per class (images or audio)", type="zip",
                              key="learn-upload")
    task_name = None
    if upload is not None:
        if st.session_state.get("upload-name") != upload.name:
            try:
                root = extract_zip(upload.getvalue(), tempfile.mkdtemp(prefix="amortinv-"))
                st.session_state["upload-task"] = f"folder:{root}"
                st.session_state["upload-name"] = upload.name
            except UploadError as err:
                st.session_state.pop("upload-task", None)
                st.error(f"This upload cannot be used: {err}")
        task_name = st.session_state.get("upload-task")

c1, c2, c3, c4 = st.columns(4)
steps = c1.number_input("steps", 10, 2000, 150, 10, key="learn-steps")
max_train = c2.number_input("training examples", 100, 20000, 2000, 100, key="learn-max-train")
lr = c3.number_input("learning rate of i", 0.001, 0.5, 0.01, format="%.3f", key="learn-lr")
param = c4.selectbox("parameterisation", ["clamp", "sigmoid"], key="learn-param",
                     help="clamp: i clipped to [0, 1] after each step (the paper); "
                     "sigmoid: i = sigmoid(logits)")
config = DownstreamConfig(steps=int(steps), max_train=int(max_train), lr_invariance=lr,
                          parameterisation=param, max_test=2000)

job = st.session_state.get("learn-job")
start, stop = st.columns([1, 1])
if start.button("Start", type="primary", disabled=task_name is None or bool(job and
                                                                           job.running)):
    try:
        task = prepare(encoder, task_name, config)
    except (TaskMismatch, DatasetUnavailable, UnknownDataset, ValueError) as err:
        st.error(str(err))
    else:
        if task_name.startswith("folder:") and getattr(task.data, "skipped", ()):
            skipped = task.data.skipped
            st.warning(f"{len(skipped)} file(s) could not be read and were skipped: "
                       + "; ".join(f"{p} ({why})" for p, why in skipped[:8]))
        corners = [(corner_name(space, c), c) for c in space.corners(min_on=0)]
        job = learning_job(encoder, task, config, compare=corners,
                           plain=ui.plain_baseline(encoder)).start()
        st.session_state["learn-job"] = job
        st.session_state["learn-task-name"] = task.data.name
        st.session_state["learn-metric"] = task.metric
if stop.button("Stop", disabled=not (job and job.running)):
    job.stop()


BAR_COLOURS = {"learned": "crimson", PLAIN: "grey"}


def vector_chart(records) -> go.Figure:
    rows = [{"step": s.step, "group": g, "value": v} for s in records if not s.done
            for g, v in s.vector.items()]
    fig = px.line(pd.DataFrame(rows), x="step", y="value", color="group",
                  title="invariance vector i", range_y=[-0.02, 1.02])
    fig.update_layout(height=340, margin={"t": 40, "b": 30})
    return fig


def metric_chart(records, metric: str) -> go.Figure:
    steps = [s.step for s in records if not s.done]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=[s.loss for s in records if not s.done], name="loss"))
    evals = [s for s in records if s.val_score is not None]
    fig.add_trace(go.Scatter(x=[s.step for s in evals], y=[s.val_score for s in evals],
                             name=f"validation {metric}", yaxis="y2", mode="lines+markers"))
    fig.update_layout(title="loss and validation score", height=340, margin={"t": 40, "b": 30},
                      yaxis2={"overlaying": "y", "side": "right"})
    return fig


def draw(snapshot) -> None:
    records, metric = snapshot.records, st.session_state.get("learn-metric", "score")
    st.session_state["learn-history"] = [s.vector for s in records if not s.done]
    if snapshot.error:
        st.error(f"Learning stopped: {snapshot.error}")
    if not records:
        st.info("Starting…")
        return
    last = records[-1]
    if not snapshot.running:
        status = "done"
    elif job.stopping:
        status = "stopping…"
    else:
        status = "scoring the fixed corners…" if last.done else "learning…"
    st.caption(f"**{st.session_state.get('learn-task-name')}** — step {last.step}, "
               f"{status} ({snapshot.seconds:.0f} s)")
    left, right = st.columns(2)
    left.plotly_chart(vector_chart(records))
    right.plotly_chart(metric_chart(records, metric))
    result = snapshot.result
    if result.get("learned"):
        st.session_state["learned-vector"] = result["learned"]
        scores = result.get("scores", {})
        left, right = st.columns(2)
        order = sorted(scores, key=scores.get, reverse=True)
        bars = go.Figure(go.Bar(x=[scores[k] for k in order], y=order, orientation="h",
                                marker_color=[BAR_COLOURS.get(k, "steelblue") for k in order]))
        bars.update_layout(title=f"test {metric}: learned vector vs fixed corners"
                           + (" and the plain encoder" if PLAIN in scores else ""),
                           height=max(300, 22 * len(order)), margin={"t": 40},
                           yaxis={"autorange": "reversed"})
        left.plotly_chart(bars)
        right.plotly_chart(ui.radar(result["learned"], "learned vector"))


if job is not None:
    ui.follow(job, draw, "learn-was-running")
else:
    st.info("Choose a task and press **Start**: the readout and the invariance vector are "
            "learned together; each group's value is drawn as it moves.")
