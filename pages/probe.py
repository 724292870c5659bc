"""Probe features: move the invariance sliders, watch the embedding of a dataset move."""

import time

import numpy as np
import plotly.express as px
import streamlit as st
import torch

from amortinv import checkpoint, ui
from amortinv.augment import LogMel, make_augment
from amortinv.downstream import corner_name
from amortinv.measure import knn_accuracy
from amortinv.projection import Projector, warm_up_umap
from amortinv.readout import linear_probe

encoder, dataset, path, ds = ui.page("Probe features")
space = encoder.space


def set_vector(values) -> None:
    for group, value in zip(space.names, values, strict=True):
        st.session_state[f"probe-{group}"] = float(value)


# -- the vector: presets and sliders ---------------------------------------------------------------
presets = {"all ones": [1.0] * len(space), "all zeros": [0.0] * len(space)}
learned = st.session_state.get("learned-vector")
if learned and list(learned) == list(space.names):
    presets["learned on 'Learn invariances'"] = list(learned.values())
for corner in space.corners():
    presets.setdefault(corner_name(space, corner), corner.tolist())
cols = st.columns([3, 1])
preset = cols[0].selectbox("Preset vector", list(presets), key="probe-preset")
# the callback reads the selection when clicked (arguments bound at drawing time would lag)
cols[1].button("Apply preset",
               on_click=lambda: set_vector(presets[st.session_state["probe-preset"]]))
# sliders restart where this session left them (widget state is dropped when pages change)
kept = st.session_state.get("probe-vector") or {}
for group in space.names:
    st.session_state.setdefault(f"probe-{group}", kept.get(group, 1.0))
sliders = st.columns(len(space))
vector = {g.name: col.slider(g.name, 0.0, 1.0, step=0.05, key=f"probe-{g.name}",
                             help=g.description)
          for col, g in zip(sliders, space.groups, strict=True)}
st.session_state["probe-vector"] = vector

# -- features and projection -----------------------------------------------------------------
mode = st.radio("Projection", ["PCA (instant)", "UMAP (stable layout)"], horizontal=True,
                key="probe-mode")
method = "umap" if mode.startswith("UMAP") else "pca"
if method == "umap" and not warm_up_umap().is_set():
    st.info("UMAP is still warming up (first import and compilation, ~15 s); showing PCA.")
    method = "pca"
start = time.perf_counter()
mtime = checkpoint.resolve(path).stat().st_mtime
feats = ui.probe_features(str(path), mtime, dataset, ui.vector_key(vector))
projectors = st.session_state.setdefault("probe-projectors", {})
projector = projectors.setdefault((str(path), dataset, method), Projector(method))
xy = projector(feats["test"])
elapsed = time.perf_counter() - start
st.session_state["probe-xy"] = xy  # what the chart is drawn from (tests read it)
st.caption("Features at " + ", ".join(f"{k} {v:.2f}" for k, v in vector.items()))

n = len(xy)
test = ds.test.take(slice(n))
if ds.target_kind == "classification":
    colour = [ds.class_names[i] for i in test.y]
else:
    colour = test.y.reshape(n, -1)[:, 0]
fig = px.scatter(x=xy[:, 0], y=xy[:, 1], color=colour, opacity=0.7,
                 labels={"x": "", "y": "", "color": "label"}, height=560)
fig.update_traces(marker={"size": 5})
fig.update_layout(margin={"t": 10, "b": 10}, dragmode="lasso")
left, right = st.columns([3, 1])
with left:
    event = st.plotly_chart(fig, key="probe-chart", on_select="rerun",
                            selection_mode=("box", "lasso"))
with right:
    st.metric("points", n)
    st.metric("features + projection", f"{elapsed:.2f} s")
    if ds.target_kind == "classification":
        train = ds.train.take(slice(len(feats["train"])))
        knn = knn_accuracy(torch.tensor(feats["train"]), train.y,
                           torch.tensor(feats["test"]), test.y)
        st.metric("kNN accuracy (k=200)", f"{knn:.3f}")
        probe = linear_probe(feats["train"], train.y, feats["test"], test.y,
                             len(ds.class_names))
        st.metric("linear probe accuracy", f"{probe:.3f}")

# -- what was selected -----------------------------------------------------------------------------
selected = sorted({p["point_index"] for p in (event.selection.points if event else [])
                   if "point_index" in p})
st.session_state["probe-selected"] = selected
if selected:
    st.subheader(f"Selected: {len(selected)} example(s)")
    shown = selected[:12]
    labels = [str(colour[i]) for i in shown]
    if ds.modality == "image":
        ui.show_image_grid(test.x[shown], labels, width=80)
    else:
        cols = st.columns(4)
        for k, (i, label) in enumerate(zip(shown, labels, strict=True)):
            col = cols[k % len(cols)]
            col.audio(test.x[i], sample_rate=ds.sample_rate)
            col.image(ui.spectrogram_image(LogMel()(torch.tensor(test.x[i:i + 1]))[0]),
                      caption=label, clamp=True)
else:
    st.caption("Draw a box or lasso on the chart to see the examples under it.")

# -- what each group does at this strength ---------------------------------------------------
with st.expander("Augmentation preview: each group alone at its slider value"):
    augment = make_augment(space)
    sample = test.x[:1]
    for group, value in vector.items():
        alone = {g: (value if g == group else 0.0) for g in space.names}
        g = torch.Generator().manual_seed(0)
        if ds.modality == "image":
            x = torch.tensor(np.repeat(sample, 6, 0), dtype=torch.float32) / 255
            views = (augment(x, alone, generator=g) * 255).round().to(torch.uint8).numpy()
            st.caption(f"{group} = {value:.2f}")
            ui.show_image_grid(views, width=64)
        else:
            spec = LogMel(encoder.config.mel)(torch.tensor(np.repeat(sample, 3, 0)))
            views = augment(spec, alone, generator=g)
            st.caption(f"{group} = {value:.2f}")
            st.image([ui.spectrogram_image(v) for v in views], width=160, clamp=True)

