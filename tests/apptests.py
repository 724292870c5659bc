"""Helpers for the app's AppTest tests."""


def dataset_box(at):
    """The sidebar's Dataset selectbox (its key names the kind of input the encoder reads)."""
    return next(box for box in at.sidebar.selectbox if box.label == "Dataset")
