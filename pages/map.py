"""Invariance map: how invariant the features are to each transform, at any vector."""

import plotly.graph_objects as go
import streamlit as st

from amortinv import charts, checkpoint, ui
from amortinv.invariance import describe
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
# Each score encodes the examples once per transform: an encoder that can probe few points
# (ui.probe_points) measures on fewer.
affordable = max(ui.probe_points(path)[0] // 10, 50)
choices = [n for n in (25, 50, 100, 200, 500) if n <= affordable]  # at least 25, 50
default = 200 if encoder.config.modality == "image" else 100
# a widget per kind of encoder and budget: one's choice (or cap) is not carried to another
POINTS = st.select_slider("examples used", choices,
                          key=f"map-points-{encoder.config.modality}-{choices[-1]}",
                          value=min(default, choices[-1]))
VALUES = [0.0, 0.25, 0.5, 0.75, 1.0]


@st.cache_data(show_spinner="Measuring invariances…", max_entries=64)
def scores(path: str, mtime: float, dataset: str, vector: tuple, points: int) -> dict:
    enc = ui.load_encoder(path, mtime)
    x = ui.adapted(dataset, enc.config.in_channels).test.x[:points]
    return invariance_scores(enc, x, list(vector))


@st.cache_data(show_spinner="Measuring along one group…", max_entries=64)
def curve(path, mtime, dataset, vector, group, transform, points):
    enc = ui.load_encoder(path, mtime)
    x = ui.adapted(dataset, enc.config.in_channels).test.x[:points]
    return score_curve(enc, x, list(vector), group, VALUES, transform, n=points)


@st.cache_data(show_spinner="Measuring over two groups…", max_entries=32)
def grid(path, mtime, dataset, vector, group_a, group_b, transform, points):
    enc = ui.load_encoder(path, mtime)
    x = ui.adapted(dataset, enc.config.in_channels).test.x[:points]
    return score_grid(enc, x, list(vector), group_a, group_b, VALUES, transform, n=points)


try:
    current = scores(str(path), mtime, dataset, ui.vector_key(vector), POINTS)
    ones = scores(str(path), mtime, dataset, (1.0,) * len(space), POINTS)
    zeros = scores(str(path), mtime, dataset, (0.0,) * len(space), POINTS)
except (ValueError, RuntimeError) as err:  # e.g. a transform the data lacks
    st.error(str(err))
    st.stop()
st.session_state["map-scores"] = current

left, right = st.columns([3, 2])
label = "current: " + describe(vector)
low = min(0.0, *zeros.values(), *ones.values(), *current.values())
left.plotly_chart(charts.radar({label: current, "all ones": ones, "all zeros": zeros},
                               range_=(low, 1), filled=label, height=460))
right.dataframe([{"transform": t, "current": round(current[t], 3), "all ones": round(ones[t], 3),
                  "all zeros": round(zeros[t], 3)} for t in current], hide_index=True)

# The line and the heat map cost 5 and 25 measurements: drawn when asked for.
transforms = list(transforms_for(encoder))
st.subheader("Score as one group moves")
c1, c2, c3 = st.columns([2, 2, 1])
group = c1.selectbox("group", space.names, key="map-group")
transform = c2.selectbox("transform", transforms, key="map-transform")
if c3.toggle("Draw", key="map-draw-line", help=f"{len(VALUES)} measurements at {POINTS} "
                                               "examples each"):
    line = curve(str(path), mtime, dataset, ui.vector_key(vector), group, transform, POINTS)
    fig = go.Figure(go.Scatter(x=VALUES, y=line, mode="lines+markers"))
    fig.update_layout(xaxis_title=f"{group} value (other groups as the current vector)",
                      yaxis_title=f"{transform} invariance", height=320,
                      margin={"t": 20, "l": 60})
    st.plotly_chart(fig)

st.subheader("Score over two groups")
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
group_a = c1.selectbox("rows", space.names, key="map-a")
group_b = c2.selectbox("columns", space.names, index=min(1, len(space) - 1), key="map-b")
transform2 = c3.selectbox("transform", transforms, key="map-transform-2")
grid_points = min(POINTS, 200)
if c4.toggle("Draw", key="map-draw-grid", help=f"{len(VALUES) ** 2} measurements at "
                                               f"{grid_points} examples each"):
    if group_a == group_b:
        st.info("Choose two different groups.")
    else:
        heat = grid(str(path), mtime, dataset, ui.vector_key(vector), group_a, group_b,
                    transform2, grid_points)
        fig = go.Figure(go.Heatmap(z=heat, x=VALUES, y=VALUES, colorscale="Viridis",
                                   colorbar={"title": "score"}))
        fig.update_layout(xaxis_title=group_b, yaxis_title=group_a, height=420,
                          margin={"t": 20})
        st.plotly_chart(fig)
