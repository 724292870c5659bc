"""The app's charts: selection maps back to the right examples, axes and labels read well."""

import numpy as np

from amortinv import charts


def two_class_layout():
    rng = np.random.default_rng(0)
    xy = rng.standard_normal((10, 2))
    labels = ["shirt", "shoe", "shirt", "shoe", "shoe", "shirt", "shirt", "shoe", "bag", "bag"]
    return xy, labels


def test_a_selection_maps_to_rows_not_to_indices_within_a_trace():
    xy, labels = two_class_layout()
    fig = charts.embedding(xy, labels, categorical=True)
    assert [t.name for t in fig.data] == ["shirt", "shoe", "bag"]
    shoe = fig.data[1]
    # What Streamlit reports for a box around every shoe: indices WITHIN the shoe trace.
    points = [{"curve_number": 1, "point_index": k, "customdata": int(shoe.customdata[k])}
              for k in range(len(shoe.x))]
    rows = charts.selected_rows(points, fig)
    assert rows == [1, 3, 4, 7] and all(labels[r] == "shoe" for r in rows)
    assert [p["point_index"] for p in points] == [0, 1, 2, 3]  # the old bug: rows 0-3
    # Without customdata the trace is looked up.
    bare = [{"curve_number": 2, "point_index": 1}, {"curve_number": 0, "point_index": 3}]
    assert charts.selected_rows(bare, fig) == [6, 9]
    assert charts.selected_rows([], fig) == []


def test_a_regression_target_is_one_trace_on_a_colour_scale():
    xy, _ = two_class_layout()
    fig = charts.embedding(xy, np.linspace(0, 1, 10), categorical=False)
    assert len(fig.data) == 1 and list(fig.data[0].customdata) == list(range(10))


def test_comparison_bars_are_labelled_sorted_and_zoomed():
    scores = {"learned": 0.861, "all ones": 0.852, "raw input": 0.804, "crop": 0.849}
    fig = charts.comparison(scores, "accuracy", colours={"learned": charts.LEARNED})
    bar = fig.data[0]
    assert list(bar.y) == ["learned", "all ones", "crop", "raw input"]
    assert list(bar.text) == ["0.861", "0.852", "0.849", "0.804"]
    low, high = fig.layout.xaxis.range
    assert 0.7 < low < 0.804 and 0.861 < high <= 1.0  # not a 0-1 axis with bars all alike
    assert bar.marker.color[0] == charts.LEARNED


def test_one_validation_point_does_not_stretch_the_score_axis():
    fig = charts.loss_and_validation([1, 2, 3], [2.0, 1.5, 1.2], [3], [0.62], "accuracy")
    low, high = fig.layout.yaxis2.range
    assert 0.5 <= low < 0.62 < high <= 0.75
    assert fig.layout.xaxis.title.text == "step" and fig.layout.yaxis.title.text == "loss"
    assert fig.layout.legend.y < 0  # below the plot, off the ticks
    r2 = charts.loss_and_validation([1], [1.0], [1, 2], [-0.3, 0.1], "r2")
    assert r2.layout.yaxis2.range[0] < -0.3


def test_the_radar_fills_only_one_profile_and_draws_it_first():
    fig = charts.radar({"all ones": {"a": 1, "b": 0.5}, "current": {"a": 0.5, "b": 0.5}},
                       filled="current")
    assert [t.name for t in fig.data] == ["current", "all ones"]
    assert fig.data[0].fill == "toself" and fig.data[1].fill == "none"


def test_the_learn_page_shows_both_vectors_and_names_the_selected_candidate():
    scores = {"gradient": 0.80, "all_ones": 0.82, "crop+flip": 0.85, "plain": 0.84,
              "raw_linear": 0.70, "raw_knn": 0.6, "knn_all_ones": 0.7}
    shown, colours = charts.learn_scores(scores, "crop+flip")
    assert shown == {"gradient-learned": 0.80, "all ones": 0.82, "selected (crop + flip)": 0.85,
                     "plain": 0.84, "raw input": 0.70}  # the corner's bar became the selected
    assert colours["selected (crop + flip)"] == charts.LEARNED
    assert colours["gradient-learned"] == charts.GRADIENT
    assert colours["all ones"] == charts.CORNER
    shown, colours = charts.learn_scores(scores, "gradient")  # both bars, one vector
    assert shown["gradient-learned"] == shown["selected (gradient-learned)"] == 0.80
    assert colours["selected (gradient-learned)"] == charts.LEARNED
    fig = charts.radar({"gradient-learned": {"a": 0.2, "b": 0.9},
                        "selected (all ones)": {"a": 1.0, "b": 1.0}},
                       filled="gradient-learned",
                       colours={"gradient-learned": charts.GRADIENT})
    assert fig.data[0].line.color == charts.GRADIENT and fig.data[1].line.color is None
