"""Streamlit helpers shared by the app's pages: caching, the sidebar, charts.

Pages call these and the library; everything a page computes that a script or a test also needs
lives in the library proper. Per-user choices live in ``st.session_state`` (so two browser tabs
never share them); models and datasets are cached for everyone (``st.cache_resource``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import amortinv
import amortinv.data as data
from amortinv import checkpoint
from amortinv.models import Encoder

ROOT = Path(__file__).resolve().parents[1]
#: Shipped checkpoints, then the user's runs (``$AMORTINV_RUNS`` moves the latter).
CHECKPOINT_DIRS = (ROOT / "checkpoints", Path(os.environ.get("AMORTINV_RUNS", ROOT / "runs")))
PROBE_POINTS = 2000
PROBE_TRAIN_POINTS = 1000  # enough for a live kNN / linear-probe figure


def runs_dir() -> Path:
    """Where the app's own pre-training runs go (the last of the checkpoint folders)."""
    return CHECKPOINT_DIRS[-1]


def find_checkpoints(amortised: bool = False) -> dict[str, Path]:
    """Shipped checkpoints first, then the user's pre-training runs: label -> path. Within
    each folder image encoders come first (the app opens on the first one), the paper's
    hypernetwork before FiLM before plain. ``amortised`` leaves out plain encoders, which
    ignore the vector (they are baselines: :func:`plain_baseline`)."""
    return {label: path for label, (path, meta) in _checkpoints().items()
            if not (amortised and meta.get("model", {}).get("conditioning") == "none")}


_CONDITIONING_ORDER = {"hyper": 0, "film": 1, "none": 2}


def _checkpoints() -> dict[str, tuple[Path, dict]]:
    """label -> (folder, metadata), in :func:`find_checkpoints`'s order; each header is read
    once. Unreadable metadata is empty here: loading the checkpoint later says why."""
    found = {}
    for folder in CHECKPOINT_DIRS:
        metas = {}
        for file in folder.glob(f"*/{checkpoint.ENCODER_FILE}"):
            try:
                metas[file.parent] = checkpoint.read_meta(file)
            except checkpoint.CheckpointError:
                metas[file.parent] = {}
        for path in sorted(metas, key=lambda p: _order(p, metas[p].get("model", {}))):
            found[f"{folder.name}/{path.name}"] = (path, metas[path])
    return found


def _order(path: Path, model: dict) -> tuple[bool, int, str]:
    return (model.get("modality") != "image",
            _CONDITIONING_ORDER.get(model.get("conditioning"), 3), path.name)


def plain_baseline(encoder: Encoder) -> Encoder | None:
    """A plain (non-amortised) encoder pre-trained on the same data as ``encoder``, if one
    was shipped or trained: the Learn page's plain bar."""
    for path, meta in _checkpoints().values():
        model, card = meta.get("model", {}), meta.get("card", {})
        if (model.get("conditioning") == "none"
                and model.get("modality") == encoder.config.modality
                and model.get("in_channels") == encoder.config.in_channels
                and card.get("dataset") == encoder.card.get("dataset")):
            return encoder_at(path)
    return None


@st.cache_resource(show_spinner="Loading the encoder…", max_entries=8)
def load_encoder(path: str, mtime: float) -> Encoder:
    """An encoder, shared by all sessions (``mtime`` reloads it when the file changes)."""
    return amortinv.load(path, device="cpu")  # the pages compute on the CPU


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=16)
def load_dataset(name: str) -> data.Dataset:
    return data.get(name)


def encoder_at(path: Path) -> Encoder:
    file = checkpoint.resolve(path)
    return load_encoder(str(path), file.stat().st_mtime)


def compatible_datasets(encoder: Encoder) -> list[str]:
    """Available datasets of the encoder's modality (channels are checked when one is used:
    listing must not decode every dataset)."""
    return data.names(encoder.config.modality)


def sidebar() -> tuple[Encoder, str, Path] | None:
    """The encoder and dataset this session works with (chosen in the sidebar)."""
    found = find_checkpoints(amortised=True)
    if not found:
        st.sidebar.warning("No encoder yet.")
        st.info("No encoder found in `checkpoints/` or `runs/`. Pre-train one on the "
                "**Pre-training runs** page, or run `python scripts/pretrain.py --preset "
                "cpu-fmnist`.")
        return None
    labels = list(found)
    label = st.sidebar.selectbox("Encoder", labels, index=_kept("checkpoint", labels, None),
                                 key="checkpoint")
    st.session_state["_checkpoint"] = label
    try:
        encoder = encoder_at(found[label])
    except (checkpoint.CheckpointError, FileNotFoundError) as err:
        st.error(f"This checkpoint cannot be loaded: {err}")
        return None
    names = compatible_datasets(encoder)
    if not names:
        st.error(f"No {encoder.config.modality} dataset is available for this encoder: "
                 "see `python -m amortinv.data list --all`.")
        return None
    default = encoder.card.get("dataset", "").split(",")[0]
    dataset = st.sidebar.selectbox("Dataset", names, index=_kept("dataset", names, default),
                                   key="dataset")
    st.session_state["_dataset"] = dataset
    return encoder, dataset, found[label]


def _kept(key: str, options: list[str], default: str | None) -> int:
    """Index of the choice this session made on any page. Streamlit forgets a widget's state
    when the page changes, so choices are mirrored under ``_<key>``."""
    for value in (st.session_state.get(f"_{key}"), default):
        if value in options:
            return options.index(value)
    return 0


def page(title: str | None, with_dataset: bool = True):
    """Title, sidebar and (optionally) the chosen dataset, checked against the encoder; stops
    the page with a readable message when something is missing.

    Returns ``(encoder, dataset name, checkpoint path, Dataset or None)``."""
    if title:
        st.title(title)
    chosen = sidebar()
    if chosen is None:
        st.stop()
    encoder, name, path = chosen
    if not with_dataset:
        return encoder, name, path, None
    from amortinv.downstream import check_compatible

    try:
        ds = load_dataset(name)
        check_compatible(encoder, ds)
    except (data.DatasetUnavailable, ValueError) as err:
        st.error(str(err))
        st.stop()
    return encoder, name, path, ds


def vector_key(vector: dict[str, float]) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in vector.values())


@st.cache_data(show_spinner="Computing features…", max_entries=64)
def probe_features(path: str, mtime: float, dataset: str, vector: tuple[float, ...],
                   points: int = PROBE_POINTS, train_points: int = PROBE_TRAIN_POINTS
                   ) -> dict[str, np.ndarray]:
    """Features of the first ``points`` test examples (drawn) and ``train_points`` training
    examples (behind the live kNN and linear probe) at one vector, cached per (checkpoint,
    dataset, vector)."""
    encoder = load_encoder(path, mtime)
    ds = load_dataset(dataset)
    test, train = ds.test.take(slice(points)), ds.train.take(slice(train_points))
    with torch.no_grad():
        return {"test": encoder.features(test.x, list(vector)).numpy(),
                "train": encoder.features(train.x, list(vector)).numpy()}


def follow(job, draw, key: str, every: float = 1.0) -> None:
    """Draw a background job's snapshot, every ``every`` seconds while it runs (a fragment),
    then rerun the whole page once when it ends, so its buttons and polling update.
    ``key`` names this page's job in ``st.session_state``."""

    @st.fragment(run_every=every if job.running else None)
    def poll() -> None:
        snapshot = job.snapshot()
        draw(snapshot)
        was_running = st.session_state.get(key, False)
        st.session_state[key] = snapshot.running
        if was_running and not snapshot.running:
            st.rerun()

    poll()


def radar(values: dict[str, float], name: str, *, range_: tuple[float, float] = (0, 1),
          figure: go.Figure | None = None) -> go.Figure:
    """A radar (polar) chart of named values; several calls can share one figure."""
    fig = figure or go.Figure()
    keys = list(values)
    fig.add_trace(go.Scatterpolar(r=[*(values[k] for k in keys), values[keys[0]]],
                                  theta=[*keys, keys[0]], fill="toself", name=name))
    fig.update_layout(polar={"radialaxis": {"range": list(range_)}}, height=360,
                      margin={"l": 40, "r": 40, "t": 30, "b": 30}, showlegend=True)
    return fig


def show_image_grid(images: np.ndarray, captions: list[str] | None = None,
                    width: int = 72) -> None:
    """uint8 (N, C, H, W) images in a row."""
    st.image([img.transpose(1, 2, 0).squeeze() for img in images], caption=captions,
             width=width, clamp=True)


def spectrogram_image(spec: torch.Tensor) -> np.ndarray:
    img = spec.flip(0).numpy()
    return (img - img.min()) / max(float(np.ptp(img)), 1e-6)
