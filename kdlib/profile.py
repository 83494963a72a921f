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
