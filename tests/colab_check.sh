#!/usr/bin/env bash
# A Colab-like check: a fresh virtual environment with only what Colab preinstalls that matters
# here (torch, torchvision, numpy, scipy, pandas, matplotlib at their current releases, and the
# notebook kernel), kdlib installed the way each chapter's first cell installs it (a plain pip
# install of the package, from this checkout instead of the remote), then chapters 1 to 4
# executed there. It catches dependency ranges in pyproject.toml that are wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=_build/colab-venv
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# (the machine's pip configuration names local wheel folders that may be absent: silence that)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
quiet "$VENV/bin/pip" install --quiet torch torchvision numpy scipy pandas matplotlib ipykernel nbclient nbformat
quiet "$VENV/bin/pip" install --quiet .
rm -rf build  # what the in-tree build of kdlib left behind
"$VENV/bin/python" - <<'PY'
import os
import sys
import time

import nbclient
import nbformat

os.environ.setdefault("KDLIB_PROFILE", "quick")
for name in ("01_framework", "02_losses", "03_lemma1", "04_lemma2"):
    notebook = nbformat.read(f"chapters/{name}.ipynb", as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": "chapters"}}).execute()
    print(f"colab-like environment: {name} ran in {time.perf_counter() - start:.0f} s", flush=True)
import kdlib, torch
print(f"kdlib {kdlib.__version__} with torch {torch.__version__}: 4 passed, 0 failed")
PY
