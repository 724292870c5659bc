"""The app's charts (plotly figures), kept apart from Streamlit so they can be tested alone.

Each function returns a ``plotly.graph_objects.Figure`` with titles, axis titles and value
labels a reader needs without hovering. Pages draw them; nothing here computes features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

#: Colours that mean the same thing on every chart: the selected vector (``LEARNED``), the
#: gradient-learned one (``GRADIENT``), the plain encoder, the raw input and the corners.
LEARNED, GRADIENT, PLAIN_COLOUR, RAW_COLOUR, CORNER = (
    "crimson", "darkorange", "dimgrey", "silver", "steelblue")

#: How the app names the scores of a learning job (:func:`amortinv.downstream.assess`'s keys).
GRADIENT_LABEL = "gradient-learned"
_LABELS = {"gradient": GRADIENT_LABEL, "plain": "plain", "raw_linear": "raw input"}
_LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0}


# -- the embedding ---------------------------------------------------------------------------
def embedding(xy: np.ndarray, labels: Sequence[Any] | np.ndarray, *, categorical: bool,
              height: int = 560) -> go.Figure:
    """A scatter of 2-D points coloured by label: one trace per class (categorical) or one
    trace on a colour scale (a regression target). Every point carries its row in ``xy`` as
    ``customdata``, so a box or lasso selection maps back to examples
    (:func:`selected_rows`), whatever trace a point is in."""
    fig = go.Figure()
    rows = np.arange(len(xy))
    if categorical:
        labels = np.asarray([str(v) for v in labels])
        for name in dict.fromkeys(labels):  # first-seen order, as a legend reads
            mask = labels == name
            fig.add_trace(go.Scatter(x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=name,
                                     customdata=rows[mask], marker={"size": 5, "opacity": 0.75},
                                     hovertemplate=f"{name}<br>example %{{customdata}}"
                                                   "<extra></extra>"))
    else:
        values = np.asarray(labels, dtype=float)
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=rows, name="examples",
            marker={"size": 5, "opacity": 0.75, "color": values, "colorscale": "Viridis",
                    "colorbar": {"title": "target"}},
            hovertemplate="target %{marker.color:.3f}<br>example %{customdata}<extra></extra>"))
    # the top margin holds Plotly's mode bar, which otherwise covers the legend's first entry
    fig.update_layout(height=height, margin={"t": 36, "b": 10, "l": 10, "r": 10},
                      dragmode="lasso", legend={"itemsizing": "constant"},
                      xaxis={"showticklabels": False, "title": None},
                      yaxis={"showticklabels": False, "title": None})
    return fig


def selected_rows(points: Iterable[Mapping[str, Any]], figure: go.Figure | None = None
                  ) -> list[int]:
    """Rows of the examples under a box or lasso selection (sorted, unique).

    A selected point's ``point_index`` counts within its own trace, so it is NOT a row; the
    row is the point's ``customdata`` (see :func:`embedding`), or, without it, looked up in
    ``figure``'s trace ``curve_number``."""
    rows = set()
    for p in points:
        custom = p.get("customdata")
        if isinstance(custom, list | tuple):
            custom = custom[0] if custom else None
        if custom is not None:
            rows.add(int(custom))
        elif figure is not None and "curve_number" in p and "point_index" in p:
            rows.add(int(figure.data[p["curve_number"]].customdata[p["point_index"]]))
    return sorted(rows)


# -- learning --------------------------------------------------------------------------------
def vector_path(history: Sequence[Mapping[str, float]], steps: Sequence[int]) -> go.Figure:
    """Each group's value over the learning steps."""
    fig = go.Figure()
    for group in history[0] if history else ():
        fig.add_trace(go.Scatter(x=list(steps), y=[h[group] for h in history], name=group,
                                 mode="lines"))
    fig.update_layout(title="invariance vector i, as it is learned", height=340,
                      xaxis_title="step", yaxis_title="value (0 off, 1 standard)",
                      yaxis_range=[-0.03, 1.03], legend=_LEGEND_BELOW,
                      margin={"t": 50, "b": 40, "l": 60, "r": 20})
    return fig


def loss_and_validation(steps: Sequence[int], losses: Sequence[float],
                        val_steps: Sequence[int], val_scores: Sequence[float],
                        metric: str) -> go.Figure:
    """Training loss (left axis) and the validation score (right axis) over the steps. The
    score axis stays on its metric's natural range, so one point does not stretch it."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(steps), y=list(losses), name="training loss",
                             mode="lines"))
    fig.add_trace(go.Scatter(x=list(val_steps), y=list(val_scores), name=f"validation {metric}",
                             yaxis="y2", mode="lines+markers", showlegend=bool(val_scores)))
    fig.update_layout(title="loss and validation score", height=340, xaxis_title="step",
                      yaxis_title="loss", legend=_LEGEND_BELOW,
                      yaxis2={"overlaying": "y", "side": "right", "title": f"validation {metric}",
                              "range": _score_range(val_scores, metric), "showgrid": False,
                              "tickmode": "auto", "nticks": 6, "tickformat": ".2f"},
                      margin={"t": 50, "b": 40, "l": 60, "r": 60})
    return fig


def _score_range(values: Sequence[float], metric: str) -> list[float]:
    """Accuracy on [0, 1] padded around the values; R² the same but allowing negatives."""
    if not values:
        return [0.0, 1.0]
    low, high = min(values), max(values)
    pad = max(0.05, (high - low) * 0.2)
    floor = 0.0 if metric == "accuracy" else -1.0
    return [max(floor, low - pad), min(1.0, high + pad)]


def comparison(scores: Mapping[str, float], metric: str, *,
               colours: Mapping[str, str] | None = None) -> go.Figure:
    """Horizontal bars of test scores, best first, each labelled with its value; the axis
    starts near the lowest score so close scores stay apart."""
    order = sorted(scores, key=scores.get, reverse=True)
    values = [scores[k] for k in order]
    colours = colours or {}
    low, high = min(values), max(values)
    span = max(high - low, 0.02)
    fig = go.Figure(go.Bar(
        x=values, y=order, orientation="h", text=[f"{v:.3f}" for v in values],
        textposition="outside", cliponaxis=False,
        marker_color=[colours.get(k, CORNER) for k in order]))
    fig.update_layout(title={"text": f"test {metric}, best first", "x": 0, "xanchor": "left"},
                      height=max(320, 24 * len(order) + 110), xaxis_title=f"test {metric}",
                      xaxis_range=[max(-1.0, low - 0.25 * span), min(1.0, high) + 0.2 * span],
                      yaxis={"autorange": "reversed", "automargin": True},
                      margin={"t": 50, "b": 40, "l": 10, "r": 40})
    return fig


def score_label(name: str) -> str:
    """A score's label in the app: ``gradient`` -> ``gradient-learned``, ``crop+flip`` ->
    ``crop + flip``, ``raw_linear`` -> ``raw input``."""
    return _LABELS.get(name) or name.replace("_", " ").replace("+", " + ")


def selected_label(name: str | None) -> str:
    """The selected vector's label, naming the candidate it is: ``selected (crop + flip)``."""
    return f"selected ({score_label(name)})" if name else "selected"


def learn_scores(scores: Mapping[str, float], selected: str | None
                 ) -> tuple[dict[str, float], dict[str, str]]:
    """A learning job's test scores as the Learn page draws them, and their colours: the
    gradient-learned vector, the selected one (its own bar, named after the candidate it is;
    a selected corner's bar becomes it), every other corner, plain and the raw input. kNN
    scores are left out (the suite's tables have them)."""
    shown, colours = {}, {}
    for name, value in scores.items():
        if name.startswith(("knn_", "raw_knn")):
            continue
        label = selected_label(name) if name == selected and name != "gradient" \
            else score_label(name)
        shown[label] = value
        colours[label] = {GRADIENT_LABEL: GRADIENT, "plain": PLAIN_COLOUR,
                          "raw input": RAW_COLOUR}.get(label, CORNER)
    if selected is not None and selected in scores:
        label = selected_label(selected)
        shown[label], colours[label] = scores[selected], LEARNED
    return shown, colours


# -- invariance profiles --------------------------------------------------------------------
#: Outline colours of profiles that appear on several radars.
PROFILE_COLOURS = {"all ones": "black", "all zeros": "darkorange"}


def radar(profiles: Mapping[str, Mapping[str, float]], *, range_: tuple[float, float] = (0, 1),
          filled: str | None = None, height: int = 380,
          colours: Mapping[str, str] | None = None) -> go.Figure:
    """A radar (polar) chart of named values, one outline per profile. Only ``filled`` is
    filled (drawn first, underneath), so the dotted outlines stay visible on top of it, even
    where two profiles coincide. ``colours`` (profile -> colour) overrides plotly's default
    sequence (and :data:`PROFILE_COLOURS`)."""
    fig = go.Figure()
    names = sorted(profiles, key=lambda n: n != filled)
    for name in names:
        values = profiles[name]
        keys = list(values)
        fill = name == filled
        line = {"width": 2 if fill else 2.5, "dash": "solid" if fill else "dot"}
        colour = (colours or {}).get(name) or PROFILE_COLOURS.get(name)
        if colour:
            line["color"] = colour
        fig.add_trace(go.Scatterpolar(
            r=[*(values[k] for k in keys), values[keys[0]]], theta=[*keys, keys[0]],
            name=name, fill="toself" if fill else "none", opacity=0.9, line=line))
    fig.update_layout(polar={"radialaxis": {"range": list(range_)},
                             "angularaxis": {"tickfont": {"size": 12}}},
                      height=height, legend=_LEGEND_BELOW, showlegend=True,
                      margin={"l": 70, "r": 70, "t": 30, "b": 60})
    return fig
