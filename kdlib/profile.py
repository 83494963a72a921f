"""One switch for the scale of every experiment: ``KDLIB_PROFILE``.

* ``quick`` (the default): what CI runs; every chapter finishes in minutes on 2 CPU cores.
* ``full``: the scale of the book's published (committed) results.
* ``paper``: the paper's own scale (full-width networks), meant for a CUDA GPU.

A chapter calls :func:`current_profile` and passes the name on to ``kdlib``; it never branches on
the profile itself, so the same notebook runs unchanged at every scale.
"""

from __future__ import annotations

import os

PROFILES: tuple[str, ...] = ("quick", "full", "paper")
DEFAULT_PROFILE = "quick"


def check_profile(name: str) -> str:
    """Return ``name`` if it is a known profile, else raise a ``ValueError`` that lists them."""
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
            "(set KDLIB_PROFILE=quick for minutes on a laptop, full for the book's numbers)"
        )
    return name


def current_profile() -> str:
    """The profile named by the ``KDLIB_PROFILE`` environment variable (default ``quick``; an
    empty value counts as unset)."""
    return check_profile(os.environ.get("KDLIB_PROFILE", "").strip().lower() or DEFAULT_PROFILE)


SLOW_RUN_OPT_IN = "KDLIB_ALLOW_SLOW"
"""Set to 1 (or pass ``--yes`` to ``python -m kdlib.experiments``) to start a paper-scale run on a CPU."""


def slow_runs_allowed() -> bool:
    """Whether the user opted in to runs of many hours (``KDLIB_ALLOW_SLOW=1``)."""
    return os.environ.get(SLOW_RUN_OPT_IN, "").strip().lower() in {"1", "true", "yes", "on"}


def check_paper_on_cpu(profile: str, device: str, experiment: str, estimate: str | None = None) -> None:
    """Refuse to start ``experiment`` at the ``paper`` profile on a CPU unless the user opted in
    (:func:`slow_runs_allowed`): the paper's full-width networks are meant for a CUDA GPU, and on
    a CPU they train for hours. ``estimate`` says how long, where it can be estimated."""
    if profile != "paper" or device.startswith("cuda") or slow_runs_allowed():
        return
    from kdlib.errors import UsageError

    cores = os.cpu_count() or 1
    how_long = estimate or "many hours"
    raise UsageError(
        f"KDLIB_PROFILE=paper runs {experiment} at the report's own scale, meant for a CUDA GPU, but it would "
        f"train on this machine's CPU ({cores} cores): {how_long}. To start it anyway pass --yes (or set "
        f"{SLOW_RUN_OPT_IN}=1); for the book's published scale use --profile full (or KDLIB_PROFILE=full)")
