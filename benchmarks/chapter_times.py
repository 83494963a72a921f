"""How long each chapter takes to run top to bottom, for the instructor's page.

Executes every chapter once with ``jupyter nbconvert --execute`` (into a temporary copy: the
committed notebooks are not touched) in the ``quick`` profile, and the theory chapters (0 to 4,
whose ``full`` profile only draws more Monte-Carlo samples) also in ``full``. Chapters 5 to 8
rerun their experiments at ``full`` scale; their time there is the experiment's own recorded
wall time, read from the result files by the instructor's page, not measured here.

    python benchmarks/chapter_times.py            # writes results/chapter_times.json

Timings on a shared machine vary from run to run; the file records the machine and the date.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdlib.course.editions import chapter_paths  # noqa: E402
from kdlib.results import atomic_write_json, new_provenance  # noqa: E402

FULL_PROFILE_CHAPTERS = ("00", "01", "02", "03", "04")


def run_chapter(path: Path, profile: str) -> float:
    """Seconds to execute a copy of the notebook at ``path`` in ``profile``."""
    env = {**os.environ, "KDLIB_PROFILE": profile, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copy(path, copy)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                        "--ExecutePreprocessor.timeout=3600", str(copy)], check=True, env=env, cwd=path.parent,
                       capture_output=True)
        return time.perf_counter() - start


def main() -> int:
    times: dict[str, dict[str, float]] = {}
    for path in chapter_paths():
        profiles = ["quick"] + (["full"] if path.name[:2] in FULL_PROFILE_CHAPTERS else [])
        times[path.stem] = {profile: run_chapter(path, profile) for profile in profiles}
        print(path.stem, {k: round(v) for k, v in times[path.stem].items()}, flush=True)
    out = ROOT / "results" / "chapter_times.json"
    atomic_write_json(out, {"provenance": new_provenance(), "seconds": times})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
