"""The course's experiments: one module per table of the report, and a command-line runner.

``python -m kdlib.experiments mnist --profile full`` regenerates ``results/mnist_full.json``.
Result files and the report's own tables live in the repository's ``results/`` folder; when
``kdlib`` is installed without the repository (e.g. on Colab), :func:`published_file` fetches
them from the course repository instead.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

REPOSITORY_RAW = "https://raw.githubusercontent.com/exploring-kd/exploring-knowledge-distillation/main"
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"


def published_file(relative: str) -> Path:
    """Path of a file under ``results/`` (e.g. ``"mnist_full.json"``, ``"paper/table1_mnist.csv"``).

    In a checkout it is the repository's own file; elsewhere it is downloaded once from the
    course repository into ``~/.cache/kdlib/results``.
    """
    local = RESULTS_DIR / relative
    if local.exists():
        return local
    from kdlib.data import cache_dir

    cached = cache_dir() / "results" / relative
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        url = f"{REPOSITORY_RAW}/results/{relative}"
        try:
            urllib.request.urlretrieve(url, cached)  # noqa: S310 - fixed https URL
        except OSError as exc:
            raise FileNotFoundError(
                f"results/{relative} is neither in this checkout ({local}) nor downloadable from {url} "
                f"({exc}); run the experiment's command to create it"
            ) from exc
    return cached
