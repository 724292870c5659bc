"""The GPU slice: test, benchmark, pre-train and evaluate in one command that fits 7 minutes
on one GPU, and brings back at most 8 files of at most 16 MB (docs/GPU.md).

    make gpu                    # python scripts/gpu_slice.py: results in $OUT, else out/gpu
    make gpu DRY_RUN=1          # the same command end to end at toy sizes on the CPU (< 5 min)
    make gpu SETS="fashion-mnist-large" MINUTES=8   # only some sets: each run a larger share
    make gpu RUNS="fmnist-plain-w24-gpu"            # only some runs (of their sets)
    make gpu-data               # python scripts/gpu_slice.py pack-data: the data that travels
    python scripts/gpu_slice.py unpack FILES DEST   # run folders from the files that came back

Stages, each with a share of the time (``--minutes``, default 7); a stage that fails or runs
out of time is recorded in summary.json and the next one runs; every child process is killed
at its stage's deadline:

1. data      load every dataset the runs need: packed arrays from gpu-data/ (``make
             gpu-data``) where present, else the usual sources;
2. bench     ``bench_pretrain.py`` (plain, FiLM, hyper-4, hyper-32; width 64, bf16, batch
             512, eager) and ``bench_augment.py``'s GPU figure, with the GPU to themselves;
3. train     the shipped set (:data:`SETS`): every run at once on the one GPU, one process
             each, each for the same minutes (``pretrain.py --minutes``: the cosine schedule
             ends on time); the GPU tests (``pytest -m gpu``) run beside them;
4. evaluate  ``evaluate.py`` on the GPU for every encoder trained, all at once;
5. ship      fp16 encoders (their evaluation in the card) as files of their own, everything
             else (cards, metrics, benchmark JSON, logs, test report) in one archive, and
             summary.json with every figure and what went where.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amortinv.cli import positive_float

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import this checkout's amortinv

#: The shipped set: per set, run name -> preset. The runs of all sets train at once, each for
#: the same minutes. A set whose presets do not exist is skipped, with a note in the summary.
SETS: dict[str, dict[str, str]] = {
    "fashion-mnist": {"fmnist-hyper4-gpu": "gpu-fmnist", "fmnist-film-gpu": "gpu-fmnist-film",
                      "fmnist-plain-gpu": "gpu-fmnist-plain"},
    "fashion-mnist-large": {"fmnist-hyper4-w24-gpu": "gpu-fmnist-large",
                            "fmnist-plain-w24-gpu": "gpu-fmnist-large-plain"},
    "audio": {"audio-hyper4-gpu": "gpu-audio", "audio-plain-gpu": "gpu-audio-plain"},
    "colour": {"rgb-hyper4-gpu": "gpu-rgb", "rgb-plain-gpu": "gpu-rgb-plain"},
}
#: Each run's set.
RUN_SETS = {run: set_name for set_name, runs in SETS.items() for run in runs}
#: Share of the slice's minutes per stage (the rest is slack for start-up and the unforeseen).
SHARES = {"data": 0.04, "bench": 0.14, "train": 0.45, "evaluate": 0.24, "ship": 0.04}
#: Seconds of a training process that are not training (start, imports, CUDA, data, model;
#: about 10 s on the GPU machine) nor its final evaluation and checkpoint: the margin before
#: the stage's deadline kills it.
TRAIN_START_SECONDS = 30.0
#: What comes back from the device: at most this many files, each at most this large.
MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES = 8, 16 * 2**20, 64 * 2**20
#: What may go up: the device takes 64 MB of tree; 4 MB are kept for the tree's growth.
MAX_TREE_MB = 60.0
SUMMARY, ARCHIVE = "summary.json", "slice.tar.xz"
#: The dry run: the same stages at toy sizes on the CPU. Each modality's runs use a small
#: dataset that every machine with the project's packages has, packed and read back as on the
#: GPU machine.
DRY_DATA = {"image-1": "sklearn-digits", "image-3": "tuxpaint-photos",
            "audio": "asterisk-digits"}
DRY_SETTINGS = {"width": 4, "batch_size": 32, "knn_train": 200, "knn_test": 100,
                "log_every": 5, "knn_every": 0, "checkpoint_every": 50, "warmup_steps": 5,
                "device": "cpu"}
#: The dry run's budget is a deadline, not a length: about 75 s on a 2-core Xeon with AMX, but
#: on a 2-core AMD EPYC (AVX2, fp32 only) 2 minutes ran out in its benchmarks, tests and
#: evaluations (2026-11-29), and with 4 its GPU tests, beside nine training processes, took
#: 89 of their 96 s on an idle one and ran out in CI (2026-11-30), so it has 5.
DRY_MINUTES, DRY_TRAIN_MINUTES, DRY_PACK_LIMIT = 5.0, 0.1, 300
#: The dry run's shares: the same stages, but starting Python processes on 2 CPU cores costs
#: more of its minutes than of the GPU's 7; the train stage, where the GPU tests run beside
#: nine training processes, is the longest.
DRY_SHARES = {"data": 0.1, "bench": 0.1, "train": 0.45, "evaluate": 0.25, "ship": 0.04}


# -- child processes -----------------------------------------------------------------------------
@dataclass
class Job:
    """A child process with its log; killed (with its children) at its deadline."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    started: float = 0.0
    status: str = "pending"  # ok | failed | timeout | not started
    returncode: int | None = None
    seconds: float = 0.0

    def start(self, base_env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as log:
            log.write("$ " + " ".join(self.argv) + "\n")
            log.flush()
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env={**base_env, **self.env},
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started = time.perf_counter()

    def finished(self) -> bool:
        if self.proc is None or self.returncode is not None:
            return True
        code = self.proc.poll()
        if code is None:
            return False
        self.returncode, self.seconds = code, round(time.perf_counter() - self.started, 1)
        self.status = "ok" if code == 0 else "failed"
        return True

    def kill(self) -> None:
        """End the process group: SIGTERM, then SIGKILL after 5 s."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.returncode, self.status = self.proc.returncode, "timeout"
        self.seconds = round(time.perf_counter() - self.started, 1)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def report(self) -> dict:
        out = {"status": self.status, "seconds": self.seconds, "log": self.log.name}
        if self.status != "ok":
            out["returncode"] = self.returncode
            out["tail"] = self.tail()
        return out


#: A file the slice leaves in its work folder, so that ``--work`` never empties another one.
WORK_MARK = ".gpu-slice"

def run_jobs(jobs: list[Job], deadline: float, env: dict[str, str]) -> None:
    """Start ``jobs`` at once and wait for them until ``deadline`` (perf_counter time);
    kill those still running then."""
    for job in jobs:
        try:
            job.start(env)
        except OSError as err:
            job.status, job.returncode = "not started", None
            job.log.write_text(f"could not start: {err}\n")
    while not all(job.finished() for job in jobs):
        if time.perf_counter() >= deadline:
            for job in jobs:
                if not job.finished():
                    job.kill()
            break
        time.sleep(0.5)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


# -- the slice -----------------------------------------------------------------------------------
@dataclass
class Slice:
    """One run of the slice: its folders, clock, settings and the summary it fills in."""

    out: Path
    work: Path
    minutes: float
    dry_run: bool
    data: Path | None
    started: float = field(default_factory=time.perf_counter)
    summary: dict = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)  # run name -> {set, preset, ...}
    sets: tuple[str, ...] = tuple(SETS)  # the sets that train (:data:`SETS`)
    only: tuple[str, ...] = ()  # of their runs, only these (all when empty)

    @property
    def shares(self) -> dict[str, float]:
        return DRY_SHARES if self.dry_run else SHARES

    @property
    def end(self) -> float:
        return self.started + 60.0 * self.minutes

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PYTHONUNBUFFERED": "1"}
        if self.data is not None:
            env["AMORTINV_DATA"] = str(self.data)
        if self.dry_run:
            env["AMORTINV_GPU_TESTS_ON_CPU"] = "1"
        return env | extra

    def stage(self, name: str, action: Callable[[float], dict], later: tuple[str, ...]) -> None:
        """Run ``action(deadline)`` for at most its share of the time, keeping the shares
        of the ``later`` stages; record its outcome (an exception is a failed stage)."""
        start = time.perf_counter()
        budget = self.shares[name] * 60.0 * self.minutes
        reserve = sum(self.shares[s] for s in later) * 60.0 * self.minutes
        deadline = min(start + budget, self.end - reserve)
        record = {"budget_seconds": round(deadline - start, 1)}
        print(f"[slice] {name}: {deadline - start:.0f} s", flush=True)
        try:
            if deadline <= start:
                raise TimeoutError("no time left for this stage")
            record |= action(deadline)
            record.setdefault("status", "ok")
        except Exception as err:  # a stage's failure is recorded; the next stage runs
            record |= {"status": "failed", "error": f"{type(err).__name__}: {err}",
                       "traceback": traceback.format_exc()[-3000:]}
        record["seconds"] = round(time.perf_counter() - start, 1)
        self.summary.setdefault("stages", {})[name] = record
        print(f"[slice] {name}: {record['status']} in {record['seconds']} s", flush=True)
        self.write_summary()

    def write_summary(self) -> None:
        self.summary["wall_seconds"] = round(time.perf_counter() - self.started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / SUMMARY).write_text(json.dumps(self.summary, indent=2) + "\n")

    # -- 1. data ---------------------------------------------------------------------------------
    def choose_runs(self) -> dict:
        """The runs of each chosen set whose presets exist (dry run: at toy sizes on small
        data)."""
        from amortinv.presets import PRESETS

        skipped = {}
        for set_name in self.sets:
            runs = SETS[set_name]
            missing = [p for p in runs.values() if p not in PRESETS]
            if missing:
                skipped[set_name] = (f"presets {', '.join(missing)} do not exist (yet): set "
                                     "skipped")
                print(f"[slice] {set_name}: {skipped[set_name]}", flush=True)
                continue
            for run, preset_name in runs.items():
                if self.only and run not in self.only:
                    continue
                self.runs[run] = {"set": set_name, "preset": preset_name,
                                  "overrides": self.overrides(preset_name)}
        return skipped

    def overrides(self, preset_name: str) -> dict:
        """Settings on top of the preset: the dry run's toy sizes and data."""
        if not self.dry_run:
            return {}
        from amortinv import data
        from amortinv.presets import PRESETS

        first = PRESETS[preset_name]["dataset"].split(",")[0]
        modality = data.info(first).modality
        key = "audio" if modality == "audio" else f"image-{3 if 'rgb' in preset_name else 1}"
        toy = DRY_DATA[key]
        return {**DRY_SETTINGS, "dataset": toy, "knn_dataset": toy}

    def datasets_of(self, run: dict) -> list[str]:
        """The datasets a run reads: the one it is evaluated on, then those it trains on."""
        from amortinv.presets import PRESETS

        return run_datasets({**PRESETS[run["preset"]], **run["overrides"]})

    def stage_data(self, deadline: float) -> dict:
        record: dict = {"skipped_sets": self.choose_runs()}
        needed = list(dict.fromkeys(n for r in self.runs.values() for n in self.datasets_of(r)))
        if self.dry_run:  # pack the toy datasets and read them back, as the GPU machine does
            self.data = self.work / "data"
            job = Job("pack", python(str(Path(__file__)), "pack-data", "--into", str(self.data),
                                     "--limit", str(DRY_PACK_LIMIT), "--max-mb", "16", *needed),
                      self.work / "logs" / "pack-data.log")
            run_jobs([job], deadline, {k: v for k, v in self.env().items()
                                       if k != "AMORTINV_DATA"} | self.source_env())
            record["pack"] = job.report()
        record["folder"] = str(self.data) if self.data else "(the usual data folder)"
        job = Job("check", python(str(Path(__file__)), "check-data", *needed),
                  self.work / "logs" / "check-data.log")
        run_jobs([job], deadline, self.env())
        found = {}
        for line in job.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found |= json.loads(line)
        record["datasets"] = found
        for run in self.runs.values():
            lacking = [d for d in self.datasets_of(run) if "error" in found.get(d, {"error": 1})]
            if lacking:
                run["status"] = "skipped"
                run["note"] = f"data unavailable: {', '.join(lacking)}"
        if job.status != "ok":
            record["status"] = job.status
            record["check"] = job.report()
        return record

    def source_env(self) -> dict[str, str]:
        """Where the packer reads from: the data folder this process was given, if any."""
        given = os.environ.get("AMORTINV_DATA")
        return {"AMORTINV_DATA": given} if given else {}

    # -- 2. bench --------------------------------------------------------------------------------
    def stage_bench(self, deadline: float) -> dict:
        budget = deadline - time.perf_counter()
        if self.dry_run:
            pretrain = ["--device", "cpu", "--batch", "16", "--width", "4", "--seconds", "0.3",
                        "--warmup", "1"]
            augment = ["--batch", "16", "--seconds", "0.2"]
        else:  # 4 measurements; ~45 s go to starting 2 processes, building 4 Trainers,
            # their warm-up steps and bench_augment's 4 one-second rates
            seconds = max(2.0, (budget - 45.0) / 4)
            pretrain = ["--device", "cuda", "--batch", "512", "--width", "64", "--seconds",
                        f"{seconds:.1f}", "--warmup", "20"]
            augment = ["--batch", "512", "--seconds", "1"]
        logs = self.work / "logs"
        jobs = [Job("bench_pretrain", python("scripts/bench_pretrain.py", *pretrain, "--bf16",
                                             "--no-compile", "--only", "plain", "film",
                                             "hyper-4", "hyper-32"),
                    logs / "bench_pretrain.log"),
                Job("bench_augment", python("scripts/bench_augment.py", *augment),
                    logs / "bench_augment.log")]
        record: dict = {}
        for job in jobs:  # one after the other: each has the GPU to itself
            run_jobs([job], deadline, self.env())
            record[job.name] = [json.loads(line) for line in
                                job.log.read_text(errors="replace").splitlines()
                                if line.startswith("{")]
            if job.status != "ok":
                record.setdefault("failed", {})[job.name] = job.report()
        if "failed" in record:
            record["status"] = "partial" if any(record[j.name] for j in jobs) else "failed"
        return record

    # -- 3. train (and the GPU tests beside it) ----------------------------------------------------
    def stage_train(self, deadline: float) -> dict:
        seconds = deadline - time.perf_counter() - TRAIN_START_SECONDS
        minutes = DRY_TRAIN_MINUTES if self.dry_run else max(0.2, seconds / 60.0)
        jobs = []
        for name, run in self.runs.items():
            if run.get("status") == "skipped":
                continue
            run["folder"] = self.work / "runs" / name
            shutil.rmtree(run["folder"], ignore_errors=True)
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in run["overrides"].items()]
            jobs.append(Job(name, python("scripts/pretrain.py", "--preset", run["preset"],
                                         "--out", str(run["folder"]), "--minutes",
                                         f"{minutes:.3f}", "--no-progress", "--no-compile",
                                         *flags),
                            self.work / "logs" / f"train-{name}.log",
                            env={"OMP_NUM_THREADS": "1" if self.dry_run else "2"}))
        report = self.work / "tests"
        report.mkdir(parents=True, exist_ok=True)
        tests = Job("tests", python("-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q",
                                    "-rP",  # what passing tests print: the resume figures
                                    "-p", "no:cacheprovider", "--junitxml",
                                    str(report / "junit.xml")),
                    self.work / "logs" / "tests.log",
                    env={"OMP_NUM_THREADS": "1" if self.dry_run else "4",
                         "TORCHINDUCTOR_COMPILE_THREADS": "4"})
        run_jobs([*jobs, tests], deadline, self.env())
        for job in jobs:
            self.runs[job.name] |= {"train": job.report(), "minutes": round(minutes, 3)}
        self.summary["tests"] = {**junit_counts(report / "junit.xml"), **tests.report()}
        failed = [j.name for j in jobs if j.status != "ok"]
        record = {"minutes_per_run": round(minutes, 3), "runs": len(jobs),
                  "tests": self.summary["tests"]["status"]}
        if failed or tests.status != "ok":
            record |= {"status": "partial", "not_ok": failed + (["tests"] if tests.status
                                                                  != "ok" else [])}
        return record

    # -- 4. evaluate -----------------------------------------------------------------------------
    def stage_evaluate(self, deadline: float) -> dict:
        jobs = []
        for name, run in self.runs.items():
            folder = run.get("folder")
            if folder is None or not (folder / "encoder.safetensors").exists():
                continue
            jobs.append(Job(name, python("scripts/evaluate.py", "--checkpoint", str(folder),
                                         "--dataset", self.datasets_of(run)[0],
                                         "--device", "cpu" if self.dry_run else "cuda"),
                            self.work / "logs" / f"evaluate-{name}.log",
                            env={"OMP_NUM_THREADS": "1" if self.dry_run else "2"}))
        run_jobs(jobs, deadline, self.env())
        for job in jobs:
            lines = [line for line in job.log.read_text(errors="replace").splitlines()
                     if line.startswith("{")]
            self.runs[job.name]["evaluate"] = job.report()
            if job.status == "ok" and lines:
                self.runs[job.name]["evaluation"] = json.loads(lines[-1])
        failed = [j.name for j in jobs if j.status != "ok"]
        return {"encoders": len(jobs)} | ({"status": "partial", "not_ok": failed}
                                          if failed else {})

    # -- 5. ship ---------------------------------------------------------------------------------
    def stage_ship(self, deadline: float) -> dict:
        import torch

        import amortinv
        from amortinv import checkpoint

        staging = self.work / "ship"
        shutil.rmtree(staging, ignore_errors=True)
        archive = self.work / "archive"
        (archive / "runs").mkdir(parents=True, exist_ok=True)
        encoders = []
        for name, run in self.runs.items():
            folder = run.get("folder")
            if folder is None or not (folder / "encoder.safetensors").exists():
                continue
            encoder = amortinv.load(folder, "cpu")
            if "evaluation" in run:
                encoder.card["evaluation"] = run["evaluation"]
            path = checkpoint.save_encoder(staging / f"{name}.safetensors", encoder,
                                           torch.float16)
            card = checkpoint.read_meta(path)
            keep = archive / "runs" / name
            keep.mkdir(parents=True, exist_ok=True)
            (keep / "card.json").write_text(json.dumps(card, indent=2) + "\n")
            if (folder / "metrics.jsonl").exists():
                shutil.copyfile(folder / "metrics.jsonl", keep / "metrics.jsonl")
            run |= card_figures(card["card"]) | {"fp16_mb": round(path.stat().st_size / 2**20, 2)}
            encoders.append(path)
        for name in ("logs", "tests"):
            if (self.work / name).exists():
                shutil.copytree(self.work / name, archive / name, dirs_exist_ok=True)
        (archive / "runs.json").write_text(json.dumps(self.public_runs(), indent=2) + "\n")
        placed = place_files(encoders, archive, self.out)
        for name, run in self.runs.items():
            where = placed["where"].get(f"{name}.safetensors")
            if where:
                run["file"] = where
        self.summary["files"] = placed["files"]
        return {"status": "ok" if not placed["left_out"] else "partial",
                "left_out": placed["left_out"]}

    def public_runs(self) -> dict:
        return {name: {k: (str(v) if isinstance(v, Path) else v) for k, v in run.items()}
                for name, run in self.runs.items()}

    # -- all -------------------------------------------------------------------------------------
    def run(self) -> int:
        self.summary |= {"dry_run": self.dry_run, "minutes": self.minutes,
                         "sets": list(self.sets), "only_runs": list(self.only),
                         "machine": machine(), "command": " ".join(sys.argv),
                         "out": str(self.out)}
        if not self.dry_run and not self.summary["machine"]["cuda"]:
            self.summary["error"] = ("no CUDA GPU here: the slice trains on a GPU; "
                                     "--dry-run runs it at toy sizes on the CPU")
            self.write_summary()
            print(f"[slice] {self.summary['error']}", flush=True)
            return 2
        order = ["data", "bench", "train", "evaluate", "ship"]
        actions = {"data": self.stage_data, "bench": self.stage_bench,
                   "train": self.stage_train, "evaluate": self.stage_evaluate,
                   "ship": self.stage_ship}
        for i, name in enumerate(order):
            self.stage(name, actions[name], tuple(order[i + 1:]))
            self.summary["runs"] = self.public_runs()
        self.summary["bench"] = {k: v for k, v in
                                 self.summary["stages"].get("bench", {}).items()
                                 if k in ("bench_pretrain", "bench_augment")}
        self.write_summary()
        bad = {n: s["status"] for n, s in self.summary["stages"].items() if s["status"] != "ok"}
        print(f"[slice] done in {self.summary['wall_seconds']} s; "
              f"{'every stage ok' if not bad else f'not ok: {bad}'}; see {self.out / SUMMARY}",
              flush=True)
        return 1 if bad else 0


def card_figures(card: dict) -> dict:
    """The figures of a card that the summary repeats."""
    budget = card.get("time_budget") or {}
    return {"steps": card.get("steps"), "wall_seconds": card.get("wall_seconds"),
            "hardware": card.get("hardware"), "step_seconds": budget.get("step_seconds"),
            "planned_steps": budget.get("planned_steps"), "knn": card.get("metrics")}


def junit_counts(path: Path) -> dict:
    """Counts (and failing test names) of a pytest JUnit report."""
    if not path.exists():
        return {"report": "missing"}
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failing = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    return counts | {"failing": failing}


def machine() -> dict:
    """What this ran on, for the summary."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 1e9, 1),
                 "cuda_version": torch.version.cuda}
    return info


# -- what comes back -----------------------------------------------------------------------------
def place_files(encoders: list[Path], archive: Path, out: Path) -> dict:
    """Write what comes back into ``out``: summary.json, one archive (``archive``'s tree,
    xz-compressed) and the fp16 encoders, each a file of its own while the file count allows
    (at most :data:`MAX_FILES` in all, each at most :data:`MAX_FILE_BYTES`); encoders beyond
    that share tar bundles of at most that size. Returns ``files`` (name -> what it holds),
    ``where`` (encoder file -> the file that holds it) and ``left_out``."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():  # a rerun replaces what an earlier run left
        if old.is_file() and old.name != SUMMARY:
            old.unlink()
    files: dict[str, str] = {SUMMARY: "this summary: every figure, and what went where"}
    where: dict[str, str] = {}
    left_out: list[str] = []
    slots = MAX_FILES - 2  # the summary and the archive
    bins: list[list[Path]] = []  # first fit, largest first
    for path in sorted(encoders, key=lambda p: p.stat().st_size, reverse=True):
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            left_out.append(f"{path.name}: {size / 2**20:.1f} MB, over the "
                            f"{MAX_FILE_BYTES // 2**20} MB a file may have")
            continue
        if len(bins) < slots:
            bins.append([path])
            continue
        room = [b for b in bins if bin_bytes(b) + size + 10240 <= MAX_FILE_BYTES]
        if room:  # the lightest file becomes (or grows) a bundle
            min(room, key=bin_bytes).append(path)
        else:
            left_out.append(f"{path.name}: no file slot left")
    for i, group in enumerate(bins):
        if len(group) == 1:
            shutil.copyfile(group[0], out / group[0].name)
            files[group[0].name] = "fp16 encoder (card and evaluation in its header)"
            where[group[0].name] = group[0].name
        else:
            name = f"encoders-{i}.tar"
            with tarfile.open(out / name, "w") as tar:
                for path in group:
                    tar.add(path, arcname=path.name)
            files[name] = "fp16 encoders: " + ", ".join(p.name for p in group)
            where |= {p.name: f"{name}/{p.name}" for p in group}
    with tarfile.open(out / ARCHIVE, "w:xz") as tar:
        tar.add(archive, arcname="slice")
    files[ARCHIVE] = ("everything else, under slice/: runs/<name>/{card.json,metrics.jsonl}, "
                      "runs.json, logs/ (every stage's processes), tests/junit.xml")
    size = (out / ARCHIVE).stat().st_size
    if size > MAX_FILE_BYTES:
        left_out.append(f"{ARCHIVE}: {size / 2**20:.1f} MB, over the limit; it will not "
                        "come back")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    if total > MAX_TOTAL_BYTES:
        left_out.append(f"all files: {total / 2**20:.1f} MB, over the "
                        f"{MAX_TOTAL_BYTES // 2**20} MB that may come back")
    return {"files": files, "where": where, "left_out": left_out}


def bin_bytes(group: list[Path]) -> int:
    return sum(p.stat().st_size for p in group)


def unpack(files: Path, dest: Path) -> list[Path]:
    """Rebuild run folders (``encoder.safetensors``, ``card.json``, ``metrics.jsonl``) under
    ``dest`` from the files a slice brought back, ready for ``checkpoints/``."""
    work = dest / ".unpacked"
    work.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(files / ARCHIVE) as tar:
            tar.extractall(work, filter="data")
        encoders = {p.name: p for p in files.glob("*.safetensors")}
        for bundle in files.glob("encoders-*.tar"):
            with tarfile.open(bundle) as tar:
                tar.extractall(work / "encoders", filter="data")
            encoders |= {p.name: p for p in (work / "encoders").glob("*.safetensors")}
        made = []
        for name, path in sorted(encoders.items()):
            run = dest / name.removesuffix(".safetensors")
            run.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, run / "encoder.safetensors")
            kept = work / "slice" / "runs" / run.name
            for part in ("card.json", "metrics.jsonl"):
                if (kept / part).exists():
                    shutil.copyfile(kept / part, run / part)
            made.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return made


# -- helpers run as child processes --------------------------------------------------------------
def check_data(names: list[str]) -> int:
    """Load each dataset; print one JSON line per dataset (sizes, or the error)."""
    import amortinv.data as data

    failed = 0
    for name in names:
        start = time.perf_counter()
        try:
            ds = data.get(name)
            found = {"train": len(ds.train), "test": len(ds.test),
                     "shape": list(ds.input_shape), "packed": data.info(name).packed(),
                     "seconds": round(time.perf_counter() - start, 2)}
        except Exception as err:  # reported, and the runs that need it are skipped
            found, failed = {"error": f"{type(err).__name__}: {err}"}, failed + 1
        print(json.dumps({name: found}), flush=True)
    return 1 if failed else 0


def run_datasets(settings: dict) -> list[str]:
    """The datasets of a run's settings: first the labelled one its kNN monitor and
    evaluation use (``knn_dataset``, else the first), then those it pre-trains on."""
    names = [n.strip() for n in settings["dataset"].split(",") if n.strip()]
    return list(dict.fromkeys([settings.get("knn_dataset") or names[0], *names]))


def needed_datasets() -> list[str]:
    """Every dataset the slice's runs read, in the order they are packed: the evaluation
    datasets of every set first (small, and a set is useless without them), then the
    pre-training data (a training split that does not fit whole is cut to what does)."""
    from amortinv.presets import PRESETS

    lists = [run_datasets(PRESETS[p]) for runs in SETS.values() for p in runs.values()
             if p in PRESETS]
    return list(dict.fromkeys([names[0] for names in lists]
                              + [n for names in lists for n in names[1:]]))


def tree_files(root: Path = ROOT) -> list[Path]:
    """What of this checkout travels to the device besides the data: tracked files and
    untracked ones git does not ignore, that are there (none outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=root, capture_output=True,
                                check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return []
    return [root / os.fsdecode(p) for p in listed if p and (root / os.fsdecode(p)).is_file()]


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the tree that travels, less what :func:`leave` keeps back."""
    kept = set(left_behind(root))
    return sum(p.stat().st_size for p in tree_files(root) if p not in kept)


#: Tracked files the slice never reads, kept back from the device while it runs (``make
#: gpu-leave``) so the data fit beside the tree: the shipped encoders' weights (~29 MB, most of
#: the tree) and the screenshots.
LEAVE_BEHIND = ("checkpoints/*/encoder.safetensors", "docs/screenshots/*.png")
#: Where :func:`leave` keeps them (git-ignored: an ignored folder does not travel).
LEFT = "gpu-left"


def left_behind(root: Path = ROOT) -> list[Path]:
    """The files of :data:`LEAVE_BEHIND` in the tree now."""
    return sorted(p for pattern in LEAVE_BEHIND for p in root.glob(pattern) if p.is_file())


def leave(root: Path = ROOT) -> list[Path]:
    """Move the files of :data:`LEAVE_BEHIND` into :data:`LEFT` (same relative paths): the
    device then gets the tree without them. :func:`restore` (and ``unpack``) put them back."""
    moved = []
    for path in left_behind(root):
        target = root / LEFT / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        moved.append(path)
    return moved


def restore(root: Path = ROOT) -> list[Path]:
    """Put back what :func:`leave` kept, over nothing: a file that is in the tree again
    (e.g. restored by git) is left as it is and its kept copy is dropped."""
    back, kept = [], root / LEFT
    if not kept.is_dir():
        return back
    for path in sorted(p for p in kept.rglob("*") if p.is_file()):
        target = root / path.relative_to(kept)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            back.append(target)
    shutil.rmtree(kept)
    return back


def pack_data(into: Path, names: list[str], limit: int, max_mb: float | None) -> int:
    """Pack the slice's datasets into ``into``, within what the device takes: 64 MB less the
    tree and a 4 MB margin (unless ``max_mb`` says otherwise)."""
    from amortinv.data.__main__ import main as data_main

    if max_mb is None:
        tree = tree_bytes() / 2**20
        max_mb = round(MAX_TREE_MB - tree, 1)
        kept = sum(p.stat().st_size for p in left_behind()) / 2**20
        print(f"the tree takes {tree:.1f} MB: {max_mb} MB left for the data "
              f"(of {MAX_TREE_MB} MB)" + (f"; {kept:.1f} MB of shipped weights and screenshots "
                                          "are not counted: run `make gpu-leave` before the "
                                          "slice" if kept else ""), flush=True)
    shutil.rmtree(into / "packed", ignore_errors=True)
    args = ["pack", *(names or needed_datasets()), "--into", str(into), "--max-mb",
            str(max_mb)]
    return data_main([*args, "--limit", str(limit)] if limit else args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check-data":
        return check_data(argv[1:])
    if argv and argv[0] == "pack-data":
        p = argparse.ArgumentParser(prog="gpu_slice.py pack-data",
                                    description="pack the slice's datasets (make gpu-data)")
        p.add_argument("names", nargs="*", help="default: every dataset the slice's runs read")
        p.add_argument("--into", type=Path, default=ROOT / "gpu-data")
        p.add_argument("--limit", type=int, default=0, help="examples per split (0: all)")
        p.add_argument("--max-mb", type=float, default=None,
                       help=f"default: {MAX_TREE_MB:.0f} MB less the tree")
        a = p.parse_args(argv[1:])
        return pack_data(a.into, a.names, a.limit, a.max_mb)
    if argv and argv[0] in ("leave", "restore"):
        moved = (leave if argv[0] == "leave" else restore)()
        size = sum(p.stat().st_size for p in tree_files()) / 2**20
        where = f"kept in {LEFT}/" if argv[0] == "leave" else "put back"
        print(f"{argv[0]}: {len(moved)} files {where}; the tree that travels now takes "
              f"{size:.1f} MB")
        return 0
    if argv and argv[0] == "unpack":
        p = argparse.ArgumentParser(prog="gpu_slice.py unpack", description=unpack.__doc__)
        p.add_argument("files", type=Path, help="the folder the slice's files came back to")
        p.add_argument("dest", type=Path)
        a = p.parse_args(argv[1:])
        if not (a.files / ARCHIVE).is_file():  # before anything moves
            p.error(f"{a.files} holds no {ARCHIVE}: give the folder the slice's files came "
                    "back to (the device reply's files_at, or the slice's --out)")
        for path in restore():  # what `make gpu-leave` kept back comes home first
            print(f"restored {path.relative_to(ROOT)}")
        try:
            made = unpack(a.files, a.dest)
        except (tarfile.TarError, EOFError) as err:  # a file cut short on its way back
            print(f"error: cannot unpack {a.files}: {err}; fetch its files again",
                  file=sys.stderr)
            return 1
        for run in made:
            print(run)
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "out/gpu"),
                   help="where the files that come back go (default: $OUT, else out/gpu)")
    p.add_argument("--work", type=Path, default=None,
                   help="scratch folder for runs and logs (default: runs/gpu-slice)")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help=f"the whole slice's wall time (default 7; dry run {DRY_MINUTES:g})")
    p.add_argument("--sets", nargs="+", choices=list(SETS), default=None,
                   help="the sets of runs that train (default: all): fewer runs share the "
                        "GPU, so each trains more steps in the same minutes")
    p.add_argument("--runs", nargs="+", choices=list(RUN_SETS), default=[],
                   help="of the chosen sets' runs, only these (default: all; their sets "
                        "when --sets is not given)")
    p.add_argument("--dry-run", action="store_true",
                   help="the same stages at toy sizes on the CPU")
    p.add_argument("--data", type=Path, default=None,
                   help="data folder (default: gpu-data/ when it exists, else the usual one)")
    a = p.parse_args(argv)
    sets = a.sets or list(dict.fromkeys(RUN_SETS[r] for r in a.runs)) or list(SETS)
    stray = [r for r in a.runs if RUN_SETS[r] not in sets]
    if stray:
        p.error(f"--runs {' '.join(stray)}: not in the chosen --sets ({' '.join(sets)}); "
                f"{', '.join(f'{r} is in {RUN_SETS[r]}' for r in stray)}")
    data = a.data or (ROOT / "gpu-data" if (ROOT / "gpu-data").is_dir() else None)
    work = a.work or ROOT / "runs" / ("gpu-slice-dry" if a.dry_run else "gpu-slice")
    if a.work and work.exists() and any(work.iterdir()) and not (work / WORK_MARK).exists():
        p.error(f"--work {work} holds files the slice did not write (it empties its work "
                "folder first): choose a new or empty folder")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / WORK_MARK).write_text("the GPU slice's scratch folder: emptied by its next run\n")
    minutes = a.minutes or (DRY_MINUTES if a.dry_run else 7.0)
    return Slice(a.out.resolve(), work.resolve(), minutes, a.dry_run,
                 data.resolve() if data else None, sets=tuple(sets), only=tuple(a.runs)).run()


if __name__ == "__main__":
    sys.exit(main())
