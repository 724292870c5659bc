"""Invariance map: how invariant the features are to each transform, at any vector."""

import plotly.graph_objects as go
import streamlit as st

from amortinv import checkpoint, ui
from amortinv.invariance_scores import invariance_scores, score_curve, score_grid, transforms_for

encoder, dataset, path, ds = ui.page("Invariance map")
st.caption("Score = mean whitened cosine similarity between the features of an example and of "
           "its transformed copy (1: invariant, 0: unrelated). The current vector is the one "
           "set on **Probe features**.")
space = encoder.space
mtime = checkpoint.resolve(path).stat().st_mtime
vector = st.session_state.get("probe-vector") or dict.fromkeys(space.names, 1.0)
if list(vector) != list(space.names):
    vector = dict.fromkeys(space.names, 1.0)
POINTS = st.select_slider("examples used", [100, 200, 500], value=200, key="map-points")


@st.cache_data(show_spinner="Measuring invariances…", max_entries=64)
def scores(path: str, mtime: float, dataset: str, vector: tuple, points: int) -> dict:
    enc = ui.load_encoder(path, mtime)
    return invariance_scores(enc, ui.load_dataset(dataset).test.x[:points], list(vector))


@st.cache_data(show_spinner="Measuring along one group…", max_entries=64)
def curve(path, mtime, dataset, vector, group, transform, points):
    enc = ui.load_encoder(path, mtime)
    return score_curve(enc, ui.load_dataset(dataset).test.x[:points], list(vector), group,
                       VALUES, transform, n=points)


@st.cache_data(show_spinner="Measuring over two groups…", max_entries=32)
def grid(path, mtime, dataset, vector, group_a, group_b, transform, points):
    enc = ui.load_encoder(path, mtime)
    return score_grid(enc, ui.load_dataset(dataset).test.x[:points], list(vector), group_a,
                      group_b, VALUES, transform, n=points)


VALUES = [0.0, 0.25, 0.5, 0.75, 1.0]
try:
    current = scores(str(path), mtime, dataset, ui.vector_key(vector), POINTS)
    ones = scores(str(path), mtime, dataset, (1.0,) * len(space), POINTS)
    zeros = scores(str(path), mtime, dataset, (0.0,) * len(space), POINTS)
except (ValueError, RuntimeError) as err:  # e.g. a transform the data lacks
    st.error(str(err))
    st.stop()
st.session_state["map-scores"] = current

left, right = st.columns([3, 2])
fig = ui.radar(zeros, "all zeros", range_=(min(0, *zeros.values()), 1))
ui.radar(ones, "all ones", figure=fig)
ui.radar(current, "current: " + ", ".join(f"{k} {v:.2f}" for k, v in vector.items()),
         figure=fig)
fig.update_layout(height=460)
left.plotly_chart(fig)
right.dataframe([{"transform": t, "current": round(current[t], 3), "all ones": round(ones[t], 3),
                  "all zeros": round(zeros[t], 3)} for t in current], hide_index=True)

transforms = list(transforms_for(encoder))
st.subheader("Score as one group moves")
c1, c2 = st.columns(2)
group = c1.selectbox("group", space.names, key="map-group")
transform = c2.selectbox("transform", transforms, key="map-transform")
line = curve(str(path), mtime, dataset, ui.vector_key(vector), group, transform, POINTS)
fig = go.Figure(go.Scatter(x=VALUES, y=line, mode="lines+markers"))
fig.update_layout(xaxis_title=f"{group} value (others as the current vector)",
                  yaxis_title=f"{transform} invariance", height=320, margin={"t": 20})
st.plotly_chart(fig)

st.subheader("Score over two groups")
c1, c2, c3 = st.columns(3)
group_a = c1.selectbox("rows", space.names, key="map-a")
group_b = c2.selectbox("columns", space.names, index=min(1, len(space) - 1), key="map-b")
transform2 = c3.selectbox("transform", transforms, key="map-transform-2")
if group_a == group_b:
    st.info("Choose two different groups.")
else:
    heat = grid(str(path), mtime, dataset, ui.vector_key(vector), group_a, group_b,
                transform2, min(POINTS, 200))
    fig = go.Figure(go.Heatmap(z=heat, x=VALUES, y=VALUES, colorscale="Viridis",
                               colorbar={"title": "score"}))
    fig.update_layout(xaxis_title=group_b, yaxis_title=group_a, height=420, margin={"t": 20})
    st.plotly_chart(fig)
