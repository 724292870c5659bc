"""Probe features: move the invariance sliders, watch the embedding of a dataset move."""

import time

import streamlit as st
import torch

from amortinv import charts, checkpoint, ui
from amortinv.augment import LogMel
from amortinv.downstream import corner_name
from amortinv.invariance import describe
from amortinv.measure import knn_accuracy
from amortinv.projection import Projector, warm_up_umap
from amortinv.readout import linear_probe
from amortinv.selection import corner_example

encoder, dataset, path, ds = ui.page("Probe features")
space = encoder.space


def set_vector(values) -> None:
    for group, value in zip(space.names, values, strict=True):
        st.session_state[f"probe-{group}"] = float(value)


# -- the vector: presets and sliders ---------------------------------------------------------------
presets = {}
for key, label in (("selected-vector", "selected"), ("learned-vector", "gradient-learned")):
    learned = st.session_state.get(key)  # learned with this encoder only (another's may share
    if learned and st.session_state.get("learned-with") == str(path):  # its space, not its i)
        presets[f"{label} on 'Learn invariances'"] = list(learned.values())
for corner in sorted(space.corners(min_on=0), key=lambda c: -float(c.sum())):  # all ones first
    presets[corner_name(space, corner, readable=True)] = corner.tolist()
cols = st.columns([3, 1])
preset = cols[0].selectbox(
    "Preset vector", list(presets), key="probe-preset",
    help=f"A corner switches each group fully on (1) or off (0): {corner_example(space)}.")
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
points, message = ui.probe_size(path)
if not points:
    st.error(message)
    st.stop()
if message:
    st.caption(f":material/info: {message}")
start = time.perf_counter()
mtime = checkpoint.resolve(path).stat().st_mtime
feats = ui.probe_features(str(path), mtime, dataset, ui.vector_key(vector))
projectors = st.session_state.setdefault("probe-projectors", {})
projector = projectors.setdefault((str(path), dataset, method), Projector(method))
xy = projector(feats["test"])
elapsed = time.perf_counter() - start
st.session_state["probe-xy"] = xy  # what the chart is drawn from (tests read it)
st.caption("Features at " + describe(vector))

n = len(xy)
test = ds.test.take(slice(n))
classification = ds.target_kind == "classification"
labels = [ds.class_names[i] for i in test.y] if classification else test.y.reshape(n, -1)[:, 0]
fig = charts.embedding(xy, labels, categorical=classification)
left, right = st.columns([3, 1])
with left:
    event = st.plotly_chart(fig, key="probe-chart", on_select="rerun",
                            selection_mode=("box", "lasso"))
with right:
    st.metric("points", n)
    st.metric("features + projection", f"{elapsed:.2f} s",
              help="This redraw's: the features at the vector (kept once computed, so a "
                   "vector seen before costs nothing) and their projection.")
    if classification:
        train = ds.train.take(slice(len(feats["train"])))
        z_train, z_test = torch.from_numpy(feats["train"]), torch.from_numpy(feats["test"])
        k = min(200, len(train))  # the suite's k, or every training example where fewer
        st.metric(f"kNN accuracy (k={k})",
                  f"{knn_accuracy(z_train, train.y, z_test, test.y, k=k):.3f}")
        probe = linear_probe(z_train, train.y, z_test, test.y, len(ds.class_names))
        st.metric("linear probe accuracy", f"{probe:.3f}",
                  help=f"A linear classifier (ridge regression on one-hot labels) fitted to "
                       f"{len(train)} training examples' features at this vector, scored on the "
                       f"{n} drawn test examples.")

# -- what was selected -----------------------------------------------------------------------------
selected = charts.selected_rows(event.selection.points if event else [], fig)
st.session_state["probe-selected"] = selected
if selected:
    shown = selected[:12]
    st.subheader(f"Selected: {len(selected)} example(s)"
                 + (f", the first {len(shown)} shown" if len(shown) < len(selected) else ""))
    captions = [str(labels[i]) if classification else f"{labels[i]:.3f}" for i in shown]
    if ds.modality == "image":
        ui.show_image_grid(test.x[shown], captions, width=80)
    else:
        cols = st.columns(4)
        for k, (i, caption) in enumerate(zip(shown, captions, strict=True)):
            col = cols[k % len(cols)]
            col.audio(test.x[i], sample_rate=ds.sample_rate)
            col.image(ui.spectrogram_image(LogMel(encoder.config.mel)(
                torch.tensor(test.x[i:i + 1]))[0]), caption=caption, clamp=True)
else:
    st.caption("Draw a box or lasso on the chart to see the examples under it.")

# -- what each group does at this strength (drawn only when asked: it costs a rerun's time) ----
if st.toggle("Augmentation preview: each group alone at its slider value", key="probe-preview"):
    ui.augmentation_preview(
        encoder, test.x[:1].repeat(6 if ds.modality == "image" else 3, 0),
        {f"{group} = {value:.2f}": {g: (value if g == group else 0.0) for g in space.names}
         for group, value in vector.items()})
