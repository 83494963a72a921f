"""The course's experiments: one module per table of the report, and a command-line runner.

``python -m kdlib.experiments mnist --profile full`` regenerates ``results/mnist_full.json``.
Result files and the report's own tables live in the repository's ``results/`` folder; when
``kdlib`` is installed without the repository (e.g. on Colab), :func:`published_file` fetches
them from the course repository instead, and checks each against the size and SHA-256 that
``published.json`` (shipped inside the package) records for it. An installed kdlib never writes
into its own folder (``site-packages``): its default result files go to ``results/`` under the
current folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from kdlib import REPOSITORY, __version__

REPOSITORY_RAW = (REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/")
                  + f"/v{__version__}")
"""The repository's files at this kdlib's release tag: an installed kdlib reads the result files
of the edition it belongs to, as its chapters' Colab cells install kdlib at that tag."""
from kdlib.errors import UsageError
from kdlib.results import source_checkout

CHECKOUT = source_checkout()
"""The course repository kdlib runs from, or ``None`` for an installed package."""
RESULTS_DIR = CHECKOUT / "results" if CHECKOUT is not None else Path("results")
"""Where result files are written by default: the checkout's ``results/`` folder, or, for an
installed kdlib, ``results/`` under the current folder (a relative path), never site-packages."""
MANIFEST = Path(__file__).with_name("published.json")
PUBLISHED_SUFFIXES = (".json", ".csv")


def file_record(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file, as the manifest records them."""
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def published_records(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """Size and checksum of every published file under ``results/``, by relative path."""
    return {path.relative_to(results_dir).as_posix(): file_record(path)
            for path in sorted(results_dir.rglob("*"))
            if path.is_file() and path.suffix in PUBLISHED_SUFFIXES and not path.name.startswith(".")}


def write_manifest() -> Path:
    """Record the published files' sizes and checksums in the package (run after committing new
    results: ``python -m kdlib.experiments manifest``); a test fails while it is out of date."""
    from kdlib.results import atomic_write_json

    if CHECKOUT is None:
        raise UsageError(f"the manifest records the files of a checkout's results/ folder, but this kdlib is "
                         f"installed as a package ({Path(__file__).parent}), not run from a checkout: clone the "
                         "course repository, pip install -e . there, and run the command in it")
    atomic_write_json(MANIFEST, published_records())
    return MANIFEST


def manifest() -> dict[str, dict[str, Any]]:
    return json.loads(MANIFEST.read_text())


KD_TEMPERATURE, KD_LABEL_WEIGHT = 4.0, 0.5
"""The course's distillation settings (chapter 2's loss, the report's ``cls_loss + div_loss``):
the KD students of every experiment use them, except the rows that vary them on purpose."""


EXPERIMENT_STEMS = {"mnist": "mnist", "cifar10": "cifar10", "regimes": "mnist_regimes",
                    "cifar10-precision": "cifar10_precision", "algorithms": "algorithms", "anchors": "anchors",
                    "modern": "modern", "modern-cifar10": "modern_cifar10",
                    "cifar10-fast": "cifar10_fast", "cifar10-features": "cifar10_features",
                    "cifar10-large": "cifar10_large"}
"""Each experiment's command name and the stem of its result files, ``results/<stem>_<profile>.json``."""


def result_name(experiment: str, profile: str = "full") -> str:
    """The file name of ``experiment``'s results at ``profile``, e.g. ``mnist_regimes_full.json``."""
    if experiment not in EXPERIMENT_STEMS:
        raise UsageError(f"unknown experiment {experiment!r}: the experiments are {', '.join(EXPERIMENT_STEMS)}")
    return f"{EXPERIMENT_STEMS[experiment]}_{profile}.json"


def load_published(experiment: str) -> dict[str, Any]:
    """The committed full-profile result file of ``experiment`` (``"mnist"``, ``"regimes"``, ...),
    parsed; each experiment module's ``load_published()`` is this function for its own name."""
    from kdlib.results import parse_result_file

    path = published_file(result_name(experiment))
    return parse_result_file(path.read_text(), path)


def published_data(relative: str) -> dict[str, Any]:
    """The committed result file ``results/<relative>`` (:func:`published_file`), parsed."""
    return json.loads(published_file(relative).read_text())


def published_file(relative: str) -> Path:
    """Path of a file under ``results/`` (e.g. ``"mnist_full.json"``, ``"paper/table1_mnist.csv"``).

    In a checkout it is the repository's own file. Elsewhere it is downloaded from the course
    repository into ``~/.cache/kdlib/results``: to a temporary file first, checked against the
    manifest's size and SHA-256, then renamed into place. A cached copy is checked the same way
    on every call, and a damaged one is downloaded again.
    """
    local = RESULTS_DIR / relative
    if CHECKOUT is not None and local.exists():  # an installed kdlib trusts no local file unchecked
        return local
    expected = manifest().get(relative)
    if expected is None:
        raise FileNotFoundError(f"results/{relative} is not a published file of this kdlib version; "
                                f"published files: {', '.join(sorted(manifest()))}")
    from kdlib.data import cache_dir

    cached = cache_dir() / "results" / relative
    if cached.exists() and file_record(cached) == expected:
        return cached
    # KDLIB_REPOSITORY_RAW: a stand-in for the repository (tests/colab_check.sh serves one locally)
    url = f"{os.environ.get('KDLIB_REPOSITORY_RAW') or REPOSITORY_RAW}/results/{relative}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cached.parent, prefix=f".{cached.name}.", suffix=".tmp",
                                     delete=False) as handle:
        partial = Path(handle.name)
    try:
        try:
            urllib.request.urlretrieve(url, partial)  # noqa: S310 - fixed https URL
        except OSError as exc:
            raise FileNotFoundError(
                f"results/{relative} is neither in a checkout of the course nor downloadable from {url} "
                f"({exc}); run the experiment's command to create it"
            ) from exc
        got = file_record(partial)
        if got != expected:
            raise FileNotFoundError(
                f"the download of {url} is incomplete or not the published file ({got['bytes']} bytes, "
                f"sha256 {got['sha256'][:12]}..., expected {expected['bytes']} bytes, "
                f"{expected['sha256'][:12]}...): try again, or upgrade kdlib if the course has moved on")
        partial.replace(cached)
    finally:
        partial.unlink(missing_ok=True)
    return cached


class MissingRows(LookupError):
    """A table asked for rows its experiment plans but the result file does not hold (a run
    stopped by its time budget, a file of another profile, a row id that changed)."""


def run_command(experiment: str, data: dict[str, Any]) -> str:
    """The command that makes (or resumes) the rows of ``data``, a result file of ``experiment``."""
    return f"python -m kdlib.experiments {experiment} --profile {data['provenance'].get('profile', 'full')}"


def require_fidelity(rows: list[dict[str, Any]], command: str) -> None:
    """Raise :class:`MissingRows` if a student row records no fidelity (a file made before kdlib
    measured it), naming ``command`` to make a new one."""
    if not all(isinstance(row.get(f"fidelity_{where}"), dict) for row in rows for where in ("train", "test")):
        raise MissingRows(f"the result file's students record no fidelity (it was made before kdlib measured "
                          f"it): rerun `{command}` into a new file")


def planned_rows(data: dict[str, Any], row_ids: list[str], command: str) -> list[dict[str, Any]]:
    """The rows ``row_ids`` of a result file's ``data``, in that order. A table selects the rows
    of the runs it plans by their ids, never by matching columns: a missing row raises
    :class:`MissingRows`, naming it and ``command`` (the run that makes it), instead of
    leaving a line out of the table without a word."""
    missing = [row_id for row_id in row_ids if row_id not in data["rows"]]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise MissingRows(f"the result file lacks {len(missing)} planned row(s): {missing[:3]}{more}; "
                          f"run (or resume) `{command}` to make them")
    return [data["rows"][row_id] for row_id in row_ids]


def start_results(out: Path | str | None, experiment: str, command: str | None, profile: str, scale: Any,
                  dataset: str, source: str, threads: int) -> "ResultFile":
    """The result file a run writes (held in memory on every rank but the main one): its
    provenance (command, profile, scale, dataset), the copy of the data it reads (checked
    against the rows already there) and the thread count it trains with."""
    from dataclasses import asdict

    from kdlib.distributed import rank
    from kdlib.results import ResultFile, new_provenance

    results = ResultFile(out if rank().is_main else None, experiment,
                         new_provenance(command, profile=profile, scale=asdict(scale), dataset=dataset))
    results.use_data_source(source)
    results.run_provenance["environment"]["torch_threads"] = threads
    return results


def check_time_budget(seconds: float | None) -> float | None:
    """A time budget must be ``None`` (no budget) or a finite number of seconds >= 0."""
    if seconds is None:
        return None
    value = float(seconds)
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"the time budget must be a finite number of seconds >= 0, got {seconds!r} "
                         "(0 starts no row; leave it out for no budget)")
    return value


class TimeBudget:
    """Start no new row (a teacher counts as one) once ``seconds`` have passed since the run
    started; ``None`` means no budget. Rerun the command to resume where it stopped."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = check_time_budget(seconds)
        self.started = time.perf_counter()
        self.announced = False

    def spent(self) -> bool:
        """Whether the budget is spent (said once, on the first call that finds it so)."""
        if self.seconds is None or time.perf_counter() - self.started < self.seconds:
            return False
        if not self.announced:
            print(f"time budget of {self.seconds:g} s spent: stopping; rerun to resume", flush=True)
            self.announced = True
        return True


def committed_training_hours(name: str) -> tuple[float, dict[str, Any]] | None:
    """The summed training time (hours) of the rows of a committed result file in the checkout,
    and the file; ``None`` outside a checkout or without that file."""
    path = RESULTS_DIR / name
    if CHECKOUT is None or not path.exists():
        return None
    data = json.loads(path.read_text())
    return sum(row.get("train_wall_s", 0.0) for row in data["rows"].values()) / 3600, data


def paper_cpu_estimate(experiment: str) -> str | None:
    """About how long ``experiment`` trains at the paper profile on a CPU, from the committed
    full-profile runs made on a CPU and the ratio of the two profiles' work; ``None`` where no
    such run is at hand."""
    if experiment in ("mnist", "regimes", "algorithms"):
        from kdlib.experiments import algorithms, mnist, regimes

        stem = result_name(experiment)
        module = {"mnist": mnist, "regimes": regimes, "algorithms": algorithms}[experiment]
        found = committed_training_hours(stem)
        if found is None or found[1]["provenance"].get("device", "cpu") != "cpu":
            return None
        full, paper = module.SCALES["full"], module.SCALES["paper"]
        ratio = len(paper.seeds) / len(full.seeds) if hasattr(full, "seeds") and hasattr(paper, "seeds") else 1.0
        cores = found[1]["provenance"]["environment"]["cpu_count"]
        return (f"about {found[0] * ratio:.1f} h of training, by the committed full-profile run on {cores} CPU "
                f"cores scaled to the paper's {ratio:.2g}x work")
    if experiment in ("cifar10", "cifar10-precision"):
        from kdlib.experiments import cifar

        found = committed_training_hours(result_name("cifar10-precision"))
        if found is None:
            return None
        hours, data = found
        samples = sum(row["config"]["epochs"] * data["provenance"]["scale"]["reduced_per_class"] * 10
                      for row in data["rows"].values())
        per_image_s = hours * 3600 / samples * (cifar.SCALES["paper"].width / cifar.SCALES["full"].width) ** 2
        paper = cifar.SCALES["paper"]
        if experiment == "cifar10":
            images = paper.teacher_epochs * 50_000 + sum(
                paper.reduced_epochs * paper.reduced_per_class * 10 if row.reduced else paper.student_epochs * 50_000
                for row, _ in cifar.planned_runs(paper, cifar.TABLE2))
        else:
            images = len(data["rows"]) * data["provenance"].get("epochs", 30) * paper.reduced_per_class * 10
        cores = data["provenance"]["environment"]["cpu_count"]
        return (f"about {images * per_image_s / 3600:.0f} h of training, by the committed CPU run of the full "
                f"profile on {cores} cores scaled by the networks' width squared")
    return None
