# Two commands do everything on a fresh machine:
#   make run    set up, then serve the app on the shipped checkpoints
#   make test   set up (with test tools), then lint and run the whole test suite
#   make dev    like run, but the app reloads when you save a file (for developing it)
PYTHON ?= python3.11
VENV := .venv
PORT ?= 8501

.PHONY: setup setup-dev run dev test lint bench clean

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

setup-dev:
	PYTHON=$(PYTHON) bash scripts/setup.sh --dev

# Served as .streamlit/config.toml says: no file watcher (it would watch .venv too).
run: setup
	$(VENV)/bin/streamlit run app.py --server.port $(PORT)

dev: setup
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.fileWatcherType auto \
		--server.runOnSave true

lint: setup-dev
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python scripts/bench_augment.py

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
