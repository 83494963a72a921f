#!/usr/bin/env bash
# A Colab-like check, which is also the chapters' second nbval configuration.
#
# A fresh virtual environment holds only what Colab preinstalls that matters here (torch,
# torchvision, numpy, scipy, pandas, matplotlib at their current releases, and the notebook
# kernel) plus the test harness (pytest, nbval). kdlib is installed the way each chapter's first
# cell installs it: a plain, non-editable pip install, here from this checkout instead of the
# remote. The chapters and the instructor page are copied to a folder outside the checkout, so
# that, as on Colab, no repository file is found: the result files that chapters 5-8 read are
# downloaded from a local HTTP server standing in for the repository and verified against the
# manifest shipped in the package.
#
# nbval then runs every page there, under a second hardware configuration (one thread, AVX2
# kernels instead of AVX-512), and fails on any output that differs from the stored one. It
# catches dependency ranges in pyproject.toml that are wrong, a chapter that needs the checkout,
# and printed digits that depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3.11}
VENV="$ROOT/_build/colab-venv"
WORK="$ROOT/_build/colab-work"
rm -rf "$VENV" "$WORK"
mkdir -p "$WORK/pages" "$WORK/repository" "$WORK/cache"
"$PYTHON" -m venv "$VENV"
# (the machine's pip configuration names local wheel folders that may be absent: silence that)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
quiet "$VENV/bin/pip" install --quiet torch torchvision numpy scipy pandas matplotlib ipykernel \
  nbclient nbformat pytest nbval
quiet "$VENV/bin/pip" install --quiet .
rm -rf build  # what the in-tree build of kdlib left behind

cp chapters/*.ipynb book/instructor.ipynb "$WORK/pages/"
cp tests/nbval_sanitize.cfg "$WORK/"
# The stand-in for the repository: its results/ folder, served on 127.0.0.1.
cp -r results "$WORK/repository/results"
PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/python" -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK/repository" \
  >"$WORK/http.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

export KDLIB_REPOSITORY_RAW="http://127.0.0.1:$PORT"
export KDLIB_CACHE="$WORK/cache"
# AVX2 kernels for ATen, oneDNN and MKL: the first two alone leave MKL's matrix products (and
# so every MLP's weights) bit for bit as on AVX-512 (benchmarks/kernel_spread.py)
export OMP_NUM_THREADS=1 KDLIB_THREADS=1 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
export MKL_ENABLE_INSTRUCTIONS=AVX2
export KDLIB_PROFILE=${KDLIB_PROFILE:-quick}
cd "$WORK"
"$VENV/bin/python" - <<'PY'
import kdlib
import kdlib.experiments as experiments
import torch

where = experiments.RESULTS_DIR
assert not (where / "mnist_full.json").exists(), f"the installed kdlib sees the checkout's results: {where}"
print(f"colab-like environment: kdlib {kdlib.__version__} (installed), torch {torch.__version__}, "
      f"{torch.get_num_threads()} thread(s), CPU capability {torch.backends.cpu.get_cpu_capability()}")
PY
start=$(date +%s)
"$VENV/bin/python" -m pytest -p no:cacheprovider --nbval --nbval-current-env \
  --nbval-cell-timeout=1800 --nbval-sanitize-with nbval_sanitize.cfg pages -q
echo "colab-like environment, second configuration: every page reproduced in $(( $(date +%s) - start )) s"
grep -q 'GET /results/' "$WORK/http.log" || { echo "no result file was downloaded: the check did not take Colab's path"; exit 1; }
