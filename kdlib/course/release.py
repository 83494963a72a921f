"""One version for kdlib and the book, and the Colab install line that pins a release.

The version lives in one place, :data:`kdlib.__version__` (``pyproject.toml`` reads it from
there). A release is the git tag ``v<version>``; each chapter's first code cell installs kdlib
from that tag when it runs in Colab, so that a reader of a published edition gets the code the
edition was built with, not whatever ``main`` holds that day.

    python -m kdlib.course.release tag             # print this version's tag, e.g. v0.1.0
    python -m kdlib.course.release line            # print the install line of this version
    python -m kdlib.course.release stamp chapters/*.ipynb   # pin each chapter's Colab cell to it

Only the ``%pip install`` line of the Colab cell is rewritten; every other line, the cell's
tags and metadata, and the rest of the notebook are kept as they are.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

import kdlib
from kdlib.results import atomic_write_bytes

INSTALL = re.compile(
    r'(?P<head>%pip install -q[^"\n]*")kdlib @ git\+[^"\s]+(?P<tail>")'
)
"""The install line of a Colab cell: ``%pip install -q "kdlib @ git+<address>@<ref>"``."""


def tag(version: str | None = None) -> str:
    """The git tag of a release: ``v`` and the version, e.g. ``v0.1.0``."""
    return f"v{version or kdlib.__version__}"


def requirement(version: str | None = None, repository: str | None = None) -> str:
    """The pip requirement of kdlib at a release's tag:
    ``kdlib @ git+<kdlib.REPOSITORY>@v<version>``."""
    return f"kdlib @ git+{repository or kdlib.REPOSITORY}@{tag(version)}"


def colab_install_line(
    version: str | None = None, repository: str | None = None
) -> str:
    """The line of a chapter's Colab cell that installs kdlib at the release's tag."""
    return f'%pip install -q "{requirement(version, repository)}"'


def colab_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook's Colab install cell: its first code cell, which must hold the install line."""
    first = next((cell for cell in notebook.cells if cell.cell_type == "code"), None)
    if first is None or INSTALL.search(first.source) is None:
        raise ValueError(
            "the first code cell is not a Colab install cell: it should contain a line "
            '%pip install -q "kdlib @ git+<repository>@<ref>" (see chapters/05_mnist.ipynb)'
        )
    return first


def stamped_source(
    source: str, version: str | None = None, repository: str | None = None
) -> str:
    """``source`` with its install line pointing at the release's tag."""
    return INSTALL.sub(
        lambda m: m.group("head") + requirement(version, repository) + m.group("tail"),
        source,
    )


def stamp(path: Path, version: str | None = None) -> bool:
    """Pin the Colab cell of the notebook at ``path`` to the release; True if the file changed.
    The notebook is written back only when its cell differs."""
    notebook = nbformat.read(path, as_version=4)
    try:
        cell = colab_cell(notebook)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    new = stamped_source(cell.source, version)
    if new == cell.source:
        return False
    cell.source = new
    text = nbformat.writes(notebook)
    # one rename: a kill or a full disk leaves the notebook as it was
    atomic_write_bytes(path, (text if text.endswith("\n") else text + "\n").encode(), "the chapter notebook",
                       "Check that the chapters folder is writable")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kdlib.course.release", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("line", help="print the Colab install line of this version")
    sub.add_parser("tag", help="print the git tag of this version (v<version>)")
    stamp_parser = sub.add_parser(
        "stamp", help="pin the Colab cell of each notebook to this version"
    )
    stamp_parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command in ("line", "tag"):
        print(colab_install_line() if args.command == "line" else tag())
        return 0
    for path in args.notebooks:
        try:
            changed = stamp(path)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{path}: {'pinned to ' + tag() if changed else 'already at ' + tag()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
