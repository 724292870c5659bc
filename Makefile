# Two commands do everything on a fresh machine:
#   make run    set up, then serve the app on the shipped checkpoints
#   make test   set up (with test tools), then lint and run the whole test suite
#   make dev    like run, but the app reloads when you save a file (for developing it)
# On a GPU machine (docs/GPU.md), without set-up: the Python that has torch runs them.
#   make gpu          tests, benchmarks, pre-trains and evaluates in <= 7 minutes; files in
#                     $OUT (else out/gpu). DRY_RUN=1: the same at toy sizes on the CPU.
#                     SETS="fashion-mnist-large audio": only those sets' runs;
#                     RUNS="audio-plain-gpu": only those runs (of their sets); MINUTES=8: its
#                     length
#   make gpu-data     packs the data the GPU runs need into gpu-data/ (it travels with the tree)
#   make gpu-leave    keeps the shipped weights back (in gpu-left/) while the slice runs, so
#                     the data fit; make gpu-restore (or gpu_slice.py unpack) puts them back
PYTHON ?= python3.11
VENV := .venv
PORT ?= 8501
GPU_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)

.PHONY: setup setup-dev run dev test lint bench clean gpu gpu-data gpu-leave gpu-restore

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

setup-dev:
	PYTHON=$(PYTHON) bash scripts/setup.sh --dev

# Served as .streamlit/config.toml says: no file watcher (it would watch .venv too).
run: setup
	$(VENV)/bin/python -m amortinv.serve --server.port $(PORT)

dev: setup
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.fileWatcherType auto \
		--server.runOnSave true --client.toolbarMode developer

lint: setup-dev
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python scripts/bench_augment.py

gpu:
	$(GPU_PYTHON) scripts/gpu_slice.py $(if $(DRY_RUN),--dry-run,) \
		$(if $(SETS),--sets $(SETS),) $(if $(RUNS),--runs $(RUNS),) \
		$(if $(MINUTES),--minutes $(MINUTES),)

gpu-data:
	$(GPU_PYTHON) scripts/gpu_slice.py pack-data --into gpu-data

gpu-leave:
	$(GPU_PYTHON) scripts/gpu_slice.py leave

gpu-restore:
	$(GPU_PYTHON) scripts/gpu_slice.py restore

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
