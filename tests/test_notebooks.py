"""Every lesson and every solution notebook runs top to bottom at SIZE=small, on a fresh kernel, offline.

Each notebook runs through the same runner as ``make run`` (papermill, one
process per notebook, network blocked for the kernel, widgets static), so the
test also proves the run report: status, wall time, peak memory and the values
the check cell verified.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course_lib.run import run_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
SOLUTIONS = sorted(p for p in (ROOT / "solutions").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
PEAK_MB_LIMIT = 1536  # the handbook's budget at SIZE=small


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS + SOLUTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_runs_at_small(notebook, tmp_path):
    run = run_notebook(notebook, tmp_path, {"SIZE": "small", "SEED": 0}, timeout=600)
    assert run.status == "ok", f"{run.notebook}: {run.error}"
    assert run.checks, "the check cell published no checks (use course_lib.checks.Checks and call done())"
    assert all(c["passed"] for c in run.checks), run.checks
    assert run.peak_mb is not None and run.peak_mb < PEAK_MB_LIMIT, f"peak memory {run.peak_mb} MB"
    print(f"{run.notebook}: {run.wall_s:.1f} s, peak {run.peak_mb:.0f} MB")  # shown with -s / in --durations
