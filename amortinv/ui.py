"""Streamlit helpers shared by the app's pages: caching, the sidebar, loading without blocking.

Pages call these and the library; everything a page computes that a script or a test also needs
lives in the library proper (charts in :mod:`amortinv.charts`). Per-user choices live in
``st.session_state`` (so two browser tabs never share them); models and datasets are cached for
everyone (``st.cache_resource``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

import amortinv
import amortinv.data as data
from amortinv import checkpoint
from amortinv.augment import LogMel, make_augment
from amortinv.models import Encoder, Inputs
from amortinv.models.cost import checkpoint_cost, probe_plan
from amortinv.workers import TURNS

ROOT = Path(__file__).resolve().parents[1]
#: Shipped checkpoints, then the user's runs (``$AMORTINV_RUNS`` moves the latter).
CHECKPOINT_DIRS = (ROOT / "checkpoints", Path(os.environ.get("AMORTINV_RUNS", ROOT / "runs")))
#: Test examples drawn on Probe features, and training examples behind its live kNN and linear
#: probe, per modality (audio encoders are slower: fewer clips keep a slider move quick).
PROBE_POINTS = {"image": 2000, "audio": 500}
PROBE_TRAIN_POINTS = {"image": 500, "audio": 250}
#: Seconds a probe may take per vector on this CPU: a slower encoder probes fewer points, or
#: is refused (:func:`amortinv.models.cost.probe_plan`).
PROBE_BUDGET_S = 10.0
#: Seconds of features a slider move on Probe features should cost on this CPU, timed there
#: (:func:`probe_size`): a slower CPU draws fewer test images, never fewer than
#: :data:`PROBE_MIN_POINTS`, since the browser's redraw grows with the points as well (2-core
#: AVX2 CPU, fp32: 2,000 images took 2.2 s a move, Chromium ~2 CPU-seconds of it).
PROBE_MOVE_S = 0.5
PROBE_MIN_POINTS = 1000
#: Checkpoints larger than this are costed before they are loaded (the sidebar may refuse
#: them); smaller ones load at once and are costed when a page probes them.
LARGE_FILE_BYTES = 100 * 2**20
#: How long a page waits for a dataset before it shows a "preparing" message instead.
QUICK_LOAD_S = 1.5


def runs_dir() -> Path:
    """Where the app's own pre-training runs go (the last of the checkpoint folders)."""
    return CHECKPOINT_DIRS[-1]


def find_checkpoints() -> dict[str, Path]:
    """The amortised encoders the sidebar offers, shipped checkpoints first, then the user's
    pre-training runs: label -> path, in :func:`checkpoints`' order (image encoders first: the
    app opens on the first one). Plain encoders are left out: they ignore the vector (they are
    baselines: :func:`plain_baseline`; the Runs page lists them, from :func:`checkpoints`).
    One whose header cannot be read is listed: choosing it says why it cannot be loaded."""
    return {label: path for label, (path, meta) in checkpoints().items()
            if _meta(meta).get("model", {}).get("conditioning") != "none"}


_CONDITIONING_ORDER = {"hyper": 0, "film": 1, "none": 2}


def checkpoints() -> dict[str, tuple[Path, dict | checkpoint.CheckpointError]]:
    """label -> (folder, metadata), in :func:`find_checkpoints`'s order; each header is read
    once. A header that cannot be read gives its error instead of metadata (the Runs page
    shows it; loading the checkpoint says the same)."""
    found = {}
    for folder in CHECKPOINT_DIRS:
        metas: dict[Path, dict | checkpoint.CheckpointError] = {}
        for file in folder.glob(f"*/{checkpoint.ENCODER_FILE}"):
            try:
                metas[file.parent] = checkpoint.read_meta(file)
            except checkpoint.CheckpointError as err:
                metas[file.parent] = err
        for path in sorted(metas, key=lambda p: _order(p, _meta(metas[p]).get("model", {}))):
            found[f"{folder.name}/{path.name}"] = (path, metas[path])
    return found


def _meta(meta: dict | checkpoint.CheckpointError) -> dict:
    """A checkpoint's metadata to list it by, or {} where its header could not be read or
    describes no model that can be built (an edited "model" or "card": loading it says why),
    so that one damaged checkpoint is listed rather than breaking the list."""
    if not isinstance(meta, dict) or not isinstance(meta.get("card", {}), dict):
        return {}
    try:
        checkpoint.check_model(meta.get("model", {}))
    except ValueError:
        return {}
    return meta


def _order(path: Path, model: dict) -> tuple[bool, int, int, str]:
    return (model.get("modality") != "image",
            _CONDITIONING_ORDER.get(model.get("conditioning"), 3), model.get("width", 0),
            path.name)


def plain_checkpoint(encoder: Encoder) -> Path | None:
    """Where a plain (non-amortised) encoder pre-trained on the same data as ``encoder`` is,
    if one was shipped or trained (from the checkpoints' headers: nothing is loaded)."""
    for path, meta in checkpoints().values():
        meta = _meta(meta)
        model, card = meta.get("model", {}), meta.get("card", {})
        if (model.get("conditioning") == "none"
                and model.get("modality") == encoder.config.modality
                and model.get("in_channels") == encoder.config.in_channels
                and card.get("dataset") == encoder.card.get("dataset")):
            return path
    return None


def plain_baseline(encoder: Encoder) -> Encoder | None:
    """The encoder at :func:`plain_checkpoint`, if any: the Learn page's plain bar."""
    path = plain_checkpoint(encoder)
    return encoder_at(path) if path is not None else None


@st.cache_resource(show_spinner="Loading the encoder…", max_entries=8)
def load_encoder(path: str, mtime: float) -> Encoder:
    """An encoder, shared by all sessions (``mtime`` reloads it when the file changes)."""
    return amortinv.load(path, device="cpu")  # the pages compute on the CPU


def encoder_at(path: Path) -> Encoder:
    file = checkpoint.resolve(path)
    return load_encoder(str(path), file.stat().st_mtime)


# -- datasets, loaded in the background ------------------------------------------------------
class Loading:
    """A dataset being loaded in a background thread (a first load may decode or render for a
    minute): pages show what they can meanwhile and poll :attr:`done`."""

    def __init__(self, name: str):
        self.name, self.started = name, time.perf_counter()
        self.dataset: data.Dataset | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._load, daemon=True, name=f"load-{name}")
        self._thread.start()

    def _load(self) -> None:
        try:
            self.dataset = data.get(self.name)
        except Exception as err:  # shown on the page
            self.error = err

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> data.Dataset:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        if self.dataset is None:
            raise TimeoutError(f"'{self.name}' is still loading")
        return self.dataset


@st.cache_resource(show_spinner=False, max_entries=16)
def loading(name: str) -> Loading:
    """The one background load of ``name`` that every session shares."""
    return Loading(name)


def load_dataset(name: str) -> data.Dataset:
    """Load ``name`` now (blocking): for cached calls that need the arrays."""
    return loading(name).wait()


def dataset_when_ready(name: str, encoder: Encoder) -> data.Dataset | None:
    """The dataset ``name`` adapted to ``encoder``'s channels (with a note when converted),
    or ``None`` while it is still loading: then a message says so and the page reruns by
    itself when it is ready. A dataset that cannot be loaded stops the page with the reason."""
    job = loading(name)
    job.join(QUICK_LOAD_S)  # a cached dataset is ready by then: no flash of a message
    if not job.done:
        _wait_for(job)
        return None
    if job.error is not None:
        st.error(str(job.error))
        st.stop()
    ds, note = _adapted(name, encoder.config.in_channels)
    if note:
        st.caption(f":material/info: {note}")
    return ds


def _wait_for(job: Loading) -> None:
    entry = data.folder_or_info(job.name)

    @st.fragment(run_every=1.0)
    def poll() -> None:
        if job.done:
            st.rerun()
        st.info(f":material/hourglass_top: Preparing **{job.name}**"
                + (f" ({entry.description})" if entry else "")
                + f": {time.perf_counter() - job.started:.0f} s so far. The first use on this "
                  "machine decodes (or renders) the data once; it is cached afterwards.")

    poll()


@st.cache_resource(show_spinner=False, max_entries=16)
def _adapted(name: str, in_channels: int) -> tuple[data.Dataset, str | None]:
    return data.adapt_channels(load_dataset(name), in_channels)


def adapted(name: str, in_channels: int) -> data.Dataset:
    """``name`` with ``in_channels`` channels (blocking), for cached computations."""
    return _adapted(name, in_channels)[0]


def task_choices(encoder: Encoder) -> dict[str, str]:
    """Available datasets the encoder can read (its modality; grey and colour images are
    converted), with a one-line description each: name -> description."""
    return {e.name: e.description.split(";")[0]
            for e in data.entries()
            if e.modality == encoder.config.modality and e.available()}


# -- the sidebar and the page header ---------------------------------------------------------
def sidebar() -> tuple[Encoder, str, Path] | None:
    """The encoder and dataset this session works with (chosen in the sidebar)."""
    found = find_checkpoints()
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
        if checkpoint.resolve(found[label]).stat().st_size > LARGE_FILE_BYTES:
            points, message = probe_points(found[label])
            if not points:  # refused before its weights are loaded: no fit, or no end
                st.error(message)
                return None
        encoder = encoder_at(found[label])
    except (checkpoint.CheckpointError, FileNotFoundError) as err:
        st.error(f"This checkpoint cannot be loaded: {err}")
        return None
    choices = task_choices(encoder)
    if not choices:
        st.error(f"No {encoder.config.modality} dataset is available for this encoder: "
                 "see `python -m amortinv.data list --all`.")
        return None
    names = list(choices)
    # The dataset is remembered for each kind of input (grey images, colour images, audio), by
    # a widget of its own: choosing a colour encoder after a grey one shows colour data, and
    # going back, the grey dataset chosen before.
    kind = f"dataset-{encoder.config.modality}-{encoder.config.in_channels}"
    default = encoder.card.get("dataset", "").split(",")[0]
    dataset = st.sidebar.selectbox("Dataset", names, index=_kept(kind, names, default),
                                   key=kind, help="The examples every page shows.")
    st.sidebar.caption(choices[dataset])
    st.session_state[f"_{kind}"] = dataset
    return encoder, dataset, found[label]


def _kept(key: str, options: list[str], default: str | None) -> int:
    """Index of the choice this session made on any page. Streamlit forgets a widget's state
    when the page changes, so choices are mirrored under ``_<key>``."""
    for value in (st.session_state.get(f"_{key}"), default):
        if value in options:
            return options.index(value)
    return 0


def page(title: str | None, with_dataset: bool = True):
    """Title, sidebar and (optionally) the chosen dataset, adapted to the encoder; stops the
    page with a readable message when something is missing, and while the dataset is still
    loading (the page reruns by itself when it is ready).

    Returns ``(encoder, dataset name, checkpoint path, Dataset or None)``."""
    if title:
        st.title(title)
    chosen = sidebar()
    if chosen is None:
        st.stop()
    encoder, name, path = chosen
    if not with_dataset:
        return encoder, name, path, None
    ds = dataset_when_ready(name, encoder)
    if ds is None:
        st.stop()
    return encoder, name, path, ds


def session_alive() -> Callable[[], bool] | None:
    """A check, safe from any thread, that this browser session is still connected (a
    background job of a closed or reloaded tab then stops); ``None`` outside a served app."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return None
    instance, session = runtime.get_instance(), ctx.session_id
    return lambda: instance.is_active_session(session)


# -- features and pictures -------------------------------------------------------------------
def vector_key(vector: dict[str, float]) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in vector.values())


def probe_points(path: Path) -> tuple[int, str]:
    """How many test points this machine can probe with the encoder at ``path`` (0: refuse)
    and why fewer than :data:`PROBE_POINTS` (empty when not), from the checkpoint's header:
    a model too large to probe is never loaded."""
    file = checkpoint.resolve(path)
    return _probe_plan(str(file), file.stat().st_mtime)


@st.cache_data(show_spinner="Checking what this encoder costs…", max_entries=32)
def _probe_plan(file: str, mtime: float) -> tuple[int, str]:
    cost = checkpoint_cost(file)
    modality = "audio" if len(cost.input_shape) == 2 else "image"
    test, train = PROBE_POINTS[modality], PROBE_TRAIN_POINTS[modality]
    plan = probe_plan(cost, test + train, budget_s=PROBE_BUDGET_S)
    drawn = round(plan.points * test / (test + train))
    if plan.points and plan.message:  # the plan counts training points too: say what is drawn
        return drawn, (f"{plan.message} The plot draws {drawn:,} test examples of them; the "
                       "rest are the training examples of its kNN and linear probe.")
    return drawn, plan.message


def probe_size(path: Path) -> tuple[int, str]:
    """:func:`probe_points`, then as many of those test images (with their share of training
    images) as the encoder's features cover in :data:`PROBE_MOVE_S` on this CPU, so a slider
    move stays quick (images only: audio probes 500 clips), and why fewer, if so."""
    points, message = probe_points(path)
    if not points or message:  # refused, or already cut to the encoder's budget
        return points, message
    file = checkpoint.resolve(path)
    quick = _quick_points(str(path), file.stat().st_mtime, points)
    if quick < points:
        message = (f"Drawing {quick:,} of {points:,} test images: on this CPU their features "
                   f"take about {PROBE_MOVE_S:g} s a slider move, and the browser's redraw "
                   "grows with them too.")
    return quick, message


@st.cache_resource(show_spinner="Timing this encoder on this CPU…", max_entries=32)
def _quick_points(path: str, mtime: float, points: int) -> int:
    """The test images :func:`probe_size` draws: timed on a batch of blank images at the probe's
    precision, while no background job computes (they take :data:`~amortinv.workers.TURNS`;
    a job computing beside the timing would halve it for the server's life)."""
    encoder = load_encoder(path, mtime)
    cfg = encoder.config
    if cfg.modality != "image" or points <= PROBE_MIN_POINTS:
        return points
    x = torch.zeros((512, cfg.in_channels, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    with TURNS:
        encoder.features(x[:32], 1.0, precision="bf16")  # warm-up
        times = []
        for _ in range(2):
            start = time.perf_counter()
            encoder.features(x, 1.0, precision="bf16")
            times.append(time.perf_counter() - start)
    share = PROBE_POINTS["image"] / (PROBE_POINTS["image"] + PROBE_TRAIN_POINTS["image"])
    fit = int(PROBE_MOVE_S * len(x) / min(times) * share) // 100 * 100
    return max(PROBE_MIN_POINTS, min(points, fit))


@st.cache_data(show_spinner="Computing features…", max_entries=64)
def probe_features(path: str, mtime: float, dataset: str, vector: tuple[float, ...]
                   ) -> dict[str, np.ndarray]:
    """Features of the first test examples (drawn) and training examples (behind the live
    kNN and linear probe) at one vector, cached per (checkpoint, dataset, vector). Computed
    in bfloat16 where the CPU does that natively (twice as fast; a picture, not a score)."""
    encoder = load_encoder(path, mtime)
    test, train = probe_inputs(path, mtime, dataset)
    return {"test": encoder.features(test, list(vector), precision="bf16").numpy(),
            "train": encoder.features(train, list(vector), precision="bf16").numpy()}


@st.cache_resource(show_spinner="Preparing the examples…", max_entries=8)
def probe_inputs(path: str, mtime: float, dataset: str
                 ) -> tuple[np.ndarray | Inputs, np.ndarray | Inputs]:
    """The test and training examples :func:`probe_features` encodes, ready to be encoded at
    every vector the sliders reach (:meth:`Encoder.reusable`: audio as log-mel spectrograms,
    computed once instead of on every move). Shared, read-only, by every session."""
    encoder = load_encoder(path, mtime)
    ds = adapted(dataset, encoder.config.in_channels)
    modality = encoder.config.modality
    points = probe_size(Path(path))[0]
    train = round(points * PROBE_TRAIN_POINTS[modality] / PROBE_POINTS[modality])
    return encoder.reusable(ds.test.x[:points]), encoder.reusable(ds.train.x[:train])


def show_image_grid(images: np.ndarray, captions: list[str] | None = None,
                    width: int = 72) -> None:
    """uint8 (N, C, H, W) images in a row."""
    st.image([img.transpose(1, 2, 0).squeeze() for img in images], caption=captions,
             width=width, clamp=True)


def spectrogram_image(spec: torch.Tensor) -> np.ndarray:
    img = spec.flip(0).numpy()
    return (img - img.min()) / max(float(np.ptp(img)), 1e-6)


def augmentation_preview(encoder: Encoder, examples: np.ndarray,
                         vectors: dict[str, dict[str, float] | float], seed: int = 0) -> None:
    """What the augmentation does at each of ``vectors`` (label -> vector), one row each:
    images, or log-mel spectrograms for audio. The same seed for every row, so rows differ
    only by the vector."""
    augment = make_augment(encoder.space)
    for label, vector in vectors.items():
        g = torch.Generator().manual_seed(seed)
        cols = st.columns([1, 6])
        cols[0].markdown(f"**{label}**")
        with cols[1]:
            if encoder.config.modality == "image":
                x = torch.tensor(examples, dtype=torch.float32) / 255
                view = augment(x, vector, generator=g)
                show_image_grid((view * 255).round().to(torch.uint8).numpy(), width=64)
            else:
                spec = LogMel(encoder.config.mel)(torch.tensor(examples))
                view = augment(spec, vector, generator=g)
                st.image([spectrogram_image(v) for v in view], width=140, clamp=True)


def live_interval(seconds_per_step: float, steps: int) -> float:
    """Seconds between a live chart's redraws: once per ``steps`` steps of the work it shows,
    but at least once a second and at most every 3 s. Each redraw costs the CPU the work runs
    on: on a 2-core AVX2 CPU, Chromium took 0.65 of a core to redraw the Learn page's two
    charts every second, and the job, sharing the cores, learned 2.4 times slower than alone."""
    return float(min(3, max(1, round(steps * seconds_per_step))))


def follow(job, draw, key: str, every: float | Callable[[Any], float] = 1.0) -> None:
    """Draw a background job's snapshot, every ``every`` seconds while it runs (a fragment),
    then rerun the whole page once when it ends, so its buttons and polling update. A note
    above it says when other jobs share the server (they take turns:
    :data:`amortinv.workers.TURNS`).
    ``key`` is where ``st.session_state`` keeps whether the job was running at the last
    redraw (to rerun the page once when it ends). ``every`` may depend on the
    snapshot (e.g. slower once the live part is over: each redraw costs the server and the
    browser CPU the job could use); the page reruns when it changes."""

    def interval(snapshot) -> float:
        return every(snapshot) if callable(every) else every

    now = interval(job.snapshot())

    @st.fragment(run_every=now if job.running else None)
    def poll() -> None:
        snapshot = job.snapshot()
        if snapshot.sharing:
            st.caption(f":material/group: {snapshot.sharing} other job(s) running on this "
                       "server: jobs take turns on its CPU, so each goes at a share of its speed.")
        draw(snapshot)
        was_running = st.session_state.get(key, False)
        st.session_state[key] = snapshot.running
        if (was_running and not snapshot.running) or (
                snapshot.running and interval(snapshot) != now):
            st.rerun()

    poll()
