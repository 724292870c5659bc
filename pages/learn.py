"""Learn invariances: a task's readout and invariance vector, learned live in the background."""

import hashlib
import time
from pathlib import Path

import streamlit as st

from amortinv import charts, ui
from amortinv.data.uploads import UploadError, load_zip
from amortinv.downstream import DownstreamConfig
from amortinv.selection import corner_example, corners
from amortinv.workers import STAGES, Scored, learning_job

encoder, dataset, path, _ = ui.page("Learn invariances", with_dataset=False)
space = encoder.space


def uploaded_task():
    """The dataset in this session's uploaded zip, decoded when the file arrives (so a zip
    that cannot be used is refused at once, by its own name); ``None`` until there is one."""
    upload = st.file_uploader("A zip with one folder per class (images or audio)", type="zip",
                              key="learn-upload")
    if upload is None:
        return None
    content = upload.getvalue()
    digest = hashlib.sha256(content).hexdigest()  # a new file with an old name is still new
    if st.session_state.get("upload-digest") != digest:
        st.session_state["upload-digest"] = digest
        st.session_state.pop("upload-dataset", None)
        st.session_state.pop("upload-error", None)
        try:
            with st.spinner(f"Reading {upload.name}…"):
                st.session_state["upload-dataset"] = load_zip(content, upload.name)
        except UploadError as err:
            st.session_state["upload-error"] = str(err)
    if "upload-error" in st.session_state:
        st.error(f"This upload cannot be used: {st.session_state['upload-error']}")
        return None
    ds = st.session_state["upload-dataset"]
    if ds.modality != encoder.config.modality:
        st.error(f"{upload.name} holds {ds.modality}, but this encoder reads "
                 f"{encoder.config.modality}: choose an {ds.modality} encoder in the sidebar.")
        return None
    st.success(f"{ds.description}.")
    if ds.skipped:
        st.warning(f"{len(ds.skipped)} file(s) could not be read and are left out: "
                   + "; ".join(f"`{p}` ({why})" for p, why in ds.skipped[:8])
                   + (" …" if len(ds.skipped) > 8 else ""))
    for note in ds.notes:  # mixed grey / colour / palette / transparent images made one kind
        st.caption(f":material/info: {note}")
    return ds


source = st.radio("Task", ["from the registry", "upload a zip"], horizontal=True,
                  key="learn-source")
if source == "from the registry":
    choices = ui.task_choices(encoder)
    names = list(choices)
    # keyed by the sidebar's dataset, so that the task follows it when it changes (as when
    # another kind of encoder is chosen) and stays as chosen otherwise
    task = st.selectbox("Downstream task", names, key=f"learn-task-{dataset}",
                        index=names.index(dataset) if dataset in names else 0,
                        format_func=lambda n: f"{n} — {choices[n]}")
else:
    task = uploaded_task()

with st.expander("Settings", expanded=False):
    # two rows of three, so that the choices' labels show in full
    c1, c2, c3 = st.columns(3)
    c4, c5, c6 = st.columns(3)
    defaults = DownstreamConfig()
    steps = c1.number_input("steps", 10, 2000, defaults.steps, 10, key="learn-steps",
                            help="At most this many steps: learning stops early once the "
                                 "validation score has not improved for "
                                 f"{defaults.patience * defaults.eval_every} steps "
                                 f"({defaults.patience} scores, one every "
                                 f"{defaults.eval_every} steps).")
    max_train = c2.number_input("training examples", 100, 20000, defaults.max_train, 100,
                                key="learn-max-train",
                                help="A seeded subsample of the training split; 10% more are "
                                     "carved out for validation.")
    lr = c3.number_input("learning rate of i", 0.001, 0.5, defaults.lr_invariance,
                         format="%.3f", key="learn-lr")
    param = c4.selectbox("parameterisation", ["clamp", "sigmoid"], key="learn-param",
                         help="clamp: i clipped to [0, 1] after each step (the paper); "
                         "sigmoid: i = sigmoid(logits)")
    starts = {"clear": "best corner if clear", "corner": "best corner",
              "init": f"{defaults.init:g} (the paper)"}
    start = c5.selectbox("initial i", list(starts), format_func=starts.get, key="learn-start",
                         help="Every corner is scored on the validation split first (the "
                              "selection reuses those corners' readouts and features). "
                              "**best corner if "
                              "clear**: i starts at the best one only if it beats "
                              f"{defaults.init:g} everywhere by more than one standard error "
                              f"there, else at {defaults.init:g}; **best corner**: always "
                              f"there; **{starts['init']}**: {defaults.init:g} everywhere, "
                              "between the corners, nothing scored first.")
    cv = defaults.folds  # the held-out study's folds (docs/DOWNSTREAM.md)
    choosers = {cv: f"cross-validation ({cv} folds)", 0: "the validation split"}
    folds = c6.selectbox("choose by", list(choosers), format_func=choosers.get,
                         key="learn-folds",
                         help="How the vectors (the gradient-learned one, its rounding, every "
                              "corner) are compared for the final choice (the start is "
                              "chosen on the validation split). **Cross-validation** (the "
                              "default): each one's readout is refitted on all but one of "
                              f"{cv} parts of the training and validation examples pooled, "
                              "and scored on the part left out, so every example counts: "
                              "steadier on small tasks and uploads (on held-out data, within "
                              "a point of the best corner on 19 of 23 tasks, against 14). "
                              "**The validation split**: about a quarter less time on a "
                              "5,000-example task.")
config = DownstreamConfig(steps=int(steps), max_train=int(max_train), lr_invariance=lr,
                          parameterisation=param, start=start, max_test=2000, folds=folds)

job = st.session_state.get("learn-job")
# the encoder the job learns with: its checkpoint and space (the sidebar may have moved on)
job_path, job_space = st.session_state.get("learn-job-of", (str(path), space))
running = bool(job and job.running)
b1, b2, b3, _ = st.columns([1, 1, 1, 3])
if b1.button("Start", type="primary", disabled=task is None or running):
    job = learning_job(encoder, task, config, plain=ui.plain_baseline(encoder),
                       alive=ui.session_alive()).start()
    st.session_state["learn-job"] = job
    st.session_state["learn-job-of"] = job_path, job_space = str(path), space
    running = True
if b2.button("Stop learning", disabled=not running or job.stopping,
             help="End the learning now; what was learned so far is still scored against "
                  "every corner, the plain encoder (where one was trained on the same data) "
                  "and the raw input."):
    job.stop()
    st.rerun()  # redrawn with Stop disabled and the progress line saying so
if b3.button("Cancel", disabled=not running, help="End the job, scores and all."):
    job.cancel("by you")
    st.rerun()

def status(snapshot, opening, states, scored) -> None:
    """One progress bar: preparing, then scoring the corners for the start (``opening``), then
    learning (step of at most N), then scoring."""
    result, seconds = snapshot.result, snapshot.seconds
    name = result.get("task", "the task")
    total = result.get("steps", config.steps)
    learning = [s for s in states if not s.done]
    if snapshot.cancelled:
        st.warning(f"Cancelling ({snapshot.cancelled})… {seconds:.0f} s" if snapshot.running
                   else f"Cancelled ({snapshot.cancelled}) after {seconds:.0f} s.")
    elif snapshot.error:
        st.error(f"Learning stopped: {snapshot.error}")
    elif not snapshot.running:
        how = "learning stopped early by you" if result.get("stopped_early") else "done"
        learned = f"{len(learning)} learning step{'s' if len(learning) != 1 else ''}"
        st.progress(1.0, text=f"**{name}**: {how}, {learned}, everything scored in "
                              f"{seconds:.0f} s")
        st.caption(f"Where the time went: {spent(result.get('stages', {}))}."
                   + (" The corners' features and readouts were this server's from the last "
                      "run on this task with the same examples, so they were not computed "
                      "again (the same scores)." if result.get("reused") else ""))
    elif not states and "learning_since" in result:  # the start is chosen: its features and
        # the readout's warm-up on them come before the first step
        st.progress(0.0, text=f"**{name}**: fitting the readout at the start vector before the "
                              f"first step… {seconds:.0f} s")
    elif not states and not opening:
        st.progress(0.0, text=f"**{name}**: preparing the data… {seconds:.0f} s")
    elif not states:
        last, count = opening[-1], len(job_space.corners(min_on=0))
        st.progress(last.done / count, text=f"**{name}**: choosing where i starts, corner "
                                            f"{last.done} of {count} scored on the "
                                            f"validation split · {seconds:.0f} s"
                                            + (" · stopping: no learning steps, the corners "
                                               "still scored" if snapshot.stopping else ""))
    elif not scored and not states[-1].done:
        step = learning[-1].step
        elapsed = time.perf_counter() - result.get("learning_since", time.perf_counter())
        left = elapsed / step * (total - step)
        st.progress(step / total, text=f"**{name}**: learning, step {step} of at most {total}"
                                       f" · {seconds:.0f} s · about {left:.0f} s left"
                                       + (" · stopping…" if snapshot.stopping else ""))
    else:
        last = scored[-1] if scored else None
        done, of = (last.done, last.total) if last else (0, len(job_space.corners(min_on=0)) + 1)
        folds = result.get("folds", 0)
        what = ((f"choosing the vector by cross-validation ({folds} folds)" if folds
                 else "choosing the vector on the validation split")
                if last is None or last.split == "val" else "scoring on the test split")
        after = f" (last: {charts.score_label(last.name)})" if last else ""
        st.progress(done / of, text=f"**{name}**: {what}, {done} of {of}{after} · "
                                    f"{seconds:.0f} s")


STAGE_LABELS = dict(zip(STAGES, ("preparing the data", "corners for the start", "learning",
                                 "the selection", "test scores",
                                 "baselines (plain, raw input, kNN)"), strict=True))


def spent(stages: dict[str, float]) -> str:
    """A job's seconds per stage, in words (a stage that took no time, such as the start's
    corners when i starts at 0.5 without them, is left out)."""
    return " · ".join(f"{STAGE_LABELS[stage]} {stages[stage]:.{1 if stages[stage] < 10 else 0}f} s"
                      for stage in STAGES if stages.get(stage, 0) >= 0.05)


def started(start: str | None, scored_first: bool) -> str:
    """Where the gradient path started, as a clause of the caption under the comparison."""
    if not start:
        return ""
    if start in corners(job_space):
        return f", which started at {charts.score_label(start)}, the best corner there"
    why = ("no corner beat it there by more than one standard error" if scored_first
           else "the paper's start")
    return f", which started at {start} everywhere ({why})"


def draw(snapshot) -> None:
    records = snapshot.records
    first = next((k for k, r in enumerate(records) if not isinstance(r, Scored)), len(records))
    opening = records[:first]  # the corners scored for the start, before learning
    states = [r for r in records[first:] if not isinstance(r, Scored)]
    scored = [r for r in records[first:] if isinstance(r, Scored)]
    result = snapshot.result
    metric = result.get("metric", "score")
    st.session_state["learn-history"] = [s.vector for s in states if not s.done]
    status(snapshot, opening, states, scored)
    if result.get("note"):
        st.caption(f":material/info: {result['note']}")
    learning = [s for s in states if not s.done]
    if learning:
        left, right = st.columns(2)
        left.plotly_chart(charts.vector_path([s.vector for s in learning],
                                             [s.step for s in learning]))
        evals = [s for s in learning if s.val_score is not None]
        right.plotly_chart(charts.loss_and_validation(
            [s.step for s in learning], [s.loss for s in learning],
            [s.step for s in evals], [s.val_score for s in evals], metric))
    if result.get("learned"):
        # the Probe page's presets, for this encoder only
        st.session_state["learned-vector"] = result["learned"]
        st.session_state["selected-vector"] = result.get("selected")
        st.session_state["learned-with"] = job_path
        scores, chosen = result.get("scores", {}), result.get("selected_name")
        st.subheader(f"The learned vectors against the alternatives ({metric} on the test "
                     "split)")
        if result.get("reason"):
            st.caption(f"**Selected:** {result['reason']}.")
        left, right = st.columns([3, 2])
        if scores:
            shown, colours = charts.learn_scores(scores, chosen)
            left.plotly_chart(charts.comparison(shown, metric, colours=colours))
        vectors = {charts.GRADIENT_LABEL: result["learned"]}
        if result.get("selected"):
            vectors[charts.selected_label(chosen)] = result["selected"]
        right.plotly_chart(charts.radar(vectors, filled=charts.GRADIENT_LABEL, colours={
            charts.GRADIENT_LABEL: charts.GRADIENT, charts.selected_label(chosen): charts.LEARNED}))
        right.caption(
            f"**{charts.GRADIENT_LABEL}**: where gradient descent on the vector ended (the "
            "best point of its path on the validation split"
            + started(result.get("start"), scored_first=bool(opening))
            + "). **selected**: the vector kept for the task, chosen "
            + (f"by {result['folds']}-fold cross-validation on the training and validation "
               "examples" if result.get("folds") else "on the validation split")
            + " among that vector and every corner (each scored with a fresh linear readout); "
            "the best there wins only if it beats all ones, then the gradient-learned vector, "
            "by more than one standard error of its score. **Corners** switch each group "
            f"fully on (1) or off (0): {corner_example(job_space)}; 'all ones' is standard "
            "SimCLR-style invariance. "
            + ("**plain**: the encoder trained without a vector on the same data. "
               if "plain" in scores else "")
            + "**raw input**: the same readout on pixels or log-mel spectrograms.")


if job is not None and job_path != str(path) and not running:
    # a finished job of another encoder: its vectors mean nothing to this one
    st.caption(f":material/info: Your last job learned with **{Path(job_path).name}**: "
               "choose it in the sidebar again to see its results.")
    job = None
if job is not None:
    def every(snapshot) -> float:
        """Seconds between redraws: while the vector moves, once per validation score (every
        ``eval_every`` steps, timed on the first two and kept; :func:`amortinv.ui.live_interval`);
        every 3 s while preparing and scoring (the corners before learning, everything after),
        when only the progress line and the bars change."""
        if "learning_since" not in snapshot.result or "learned" in snapshot.result:
            return 3.0
        step = next((r.step for r in reversed(snapshot.records)
                     if not isinstance(r, Scored) and not r.done), 0)
        if step < 2 * config.eval_every:
            return 1.0
        kept = st.session_state.get("learn-every")
        if kept is None or kept[0] is not job:
            per_step = (time.perf_counter() - snapshot.result["learning_since"]) / step
            kept = job, ui.live_interval(per_step, config.eval_every)
            st.session_state["learn-every"] = kept
        return kept[1]

    if job_path != str(path):  # another encoder is chosen in the sidebar now
        st.caption(f":material/info: This job learns with **{Path(job_path).name}**, chosen "
                   "before the encoder in the sidebar; its scores are that encoder's.")
    ui.follow(job, draw, "learn-was-running", every=every)
else:
    init = f"{defaults.init:g}"
    at_best = ("every corner is scored on the validation split and the invariance vector "
               "starts at the best one")
    begins = {"clear": f"{at_best} if it is clearly ahead of {init} everywhere, else at {init}",
              "corner": at_best,
              "init": f"the invariance vector starts at {init} everywhere"}[start]
    plain = "the plain encoder, " if ui.plain_checkpoint(encoder) is not None else ""
    st.info(f"Choose a task and press **Start**: {begins}; then the readout and the vector "
            "are learned together, each group's value drawn as it moves, and the result is "
            f"scored against every fixed corner, {plain}and the raw input.")
