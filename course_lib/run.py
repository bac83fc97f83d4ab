"""Batch runs of lessons with papermill: ``python -m course_lib.run [TARGET ...]`` (``make run``).

A TARGET is a notebook, a chapter folder, or nothing (every lesson under
``notebooks/``).  Each notebook runs in its own process on a fresh kernel,
offline, with widgets rendered statically, and with papermill parameters
(``SIZE``, ``SEED`` and any ``-p NAME VALUE``) injected after its
``parameters`` cell.  The run writes

* the executed copy of each notebook under ``--out``,
* ``report.json``: per notebook its status, wall time, peak memory of the
  kernel, the error if any, and every value its check cell verified,
* ``report.md``: the same as a readable table (also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from .checks import CHECKS_MIMETYPE
from .config import REPO_ROOT
from .offline import notebook_env

DEFAULT_OUT = REPO_ROOT / "runs" / "latest"


@dataclass
class NotebookRun:
    notebook: str
    status: str  # "ok" | "failed" | "timeout"
    wall_s: float
    peak_mb: float | None
    parameters: dict[str, Any]
    output: str
    error: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checks_passed(self) -> str:
        return f"{sum(c['passed'] for c in self.checks)}/{len(self.checks)}" if self.checks else "-"


def parse_value(text: str) -> Any:
    """A ``-p`` value: JSON if it parses (numbers, true/false, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def find_notebooks(targets: list[str], root: Path = REPO_ROOT) -> list[Path]:
    """Expand targets (notebooks, folders, chapter names) into a sorted list of notebooks."""
    if not targets:
        targets = [str(root / "notebooks")]
    found: list[Path] = []
    for target in targets:
        path = Path(target)
        if not path.exists() and (root / "notebooks" / target).exists():
            path = root / "notebooks" / target
        if not path.exists() and (root / "notebooks" / f"{target}.ipynb").exists():
            path = root / "notebooks" / f"{target}.ipynb"
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.exists():
            found.append(path)
        else:
            raise ValueError(f"no notebook or folder {target!r} (try a path under notebooks/, e.g. 02_vector_search)")
    return sorted(dict.fromkeys(p.resolve() for p in found))


def collect_checks(executed: Path) -> list[dict[str, Any]]:
    """The values verified by the check cell(s) of an executed notebook."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    checks: list[dict[str, Any]] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if CHECKS_MIMETYPE in data:
                payload = data[CHECKS_MIMETYPE]
                checks.extend(payload if isinstance(payload, list) else payload.get("checks", []))
    return checks


def _execute_one(src: Path, dst: Path, parameters: dict[str, Any], cell_timeout: int) -> dict[str, Any]:
    """Child-process side: execute with papermill, then report the kernel's peak memory."""
    import papermill as pm

    start = time.perf_counter()
    error = ""
    try:
        pm.execute_notebook(
            str(src),
            str(dst),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(src.parent),
            progress_bar=False,
            execution_timeout=cell_timeout,
            log_output=False,
        )
    except Exception as err:  # papermill raises PapermillExecutionError with the cell's error
        error = f"{type(err).__name__}: {err}".strip()
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the kernel, after it exited
    return {"wall_s": wall, "peak_mb": peak_kb / 1024, "error": error}


def run_notebook(src: Path, out_dir: Path, parameters: dict[str, Any], *, timeout: int = 900, root: Path = REPO_ROOT) -> NotebookRun:
    """Execute one notebook in a separate process and describe the result."""
    src = Path(src).resolve()
    try:
        rel = src.relative_to(root.resolve())
    except ValueError:
        rel = Path(src.name)
    dst = out_dir / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    env = notebook_env()
    cmd = [sys.executable, "-m", "course_lib.run", "--_one", str(src), str(dst), json.dumps(parameters), str(timeout)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout + 60, cwd=str(root))
    except subprocess.TimeoutExpired:
        return NotebookRun(str(rel), "timeout", time.perf_counter() - start, None, parameters, str(dst), f"ran longer than {timeout} s")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return NotebookRun(str(rel), "failed", time.perf_counter() - start, None, parameters, str(dst), " | ".join(tail))
    info = json.loads(lines[-1])
    checks = collect_checks(dst) if dst.exists() else []
    error = info["error"]
    status = "ok" if not error else ("timeout" if "CellTimeoutError" in error or "Timeout" in error.split(":")[0] else "failed")
    return NotebookRun(str(rel), status, round(info["wall_s"], 2), round(info["peak_mb"], 1), parameters, str(dst), _short(error), checks)


def _short(error: str, limit: int = 600) -> str:
    lines = [l for l in error.splitlines() if l.strip()]
    text = " | ".join(lines[-6:])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_report(runs: list[NotebookRun], out_dir: Path, meta: dict[str, Any]) -> str:
    """Write report.json and report.md; return the table as text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "notebooks": [asdict(r) | {"checks_passed": r.checks_passed} for r in runs]}
    (out_dir / "report.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    header = "| notebook | status | wall s | peak MB | checks | verified values |\n|---|---|---:|---:|---:|---|"
    rows = []
    for r in runs:
        values = "; ".join(f"{c['name']} = {c['value']}" for c in r.checks)
        if r.error:
            values = f"ERROR: {r.error.split(' | ')[-1]}"
        peak = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "-"
        rows.append(f"| {r.notebook} | {r.status} | {r.wall_s:.1f} | {peak} | {r.checks_passed} | {values} |")
    text = f"# Run report ({meta['size']}, {meta['started']})\n\n{header}\n" + "\n".join(rows) + "\n"
    (out_dir / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_one":  # child process: execute one notebook
        src, dst, params, timeout = argv[1], argv[2], json.loads(argv[3]), int(argv[4])
        print(json.dumps(_execute_one(Path(src), Path(dst), params, timeout)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m course_lib.run", description="Run lessons as a papermill batch.")
    parser.add_argument("targets", nargs="*", help="notebooks or folders (default: every lesson in notebooks/)")
    parser.add_argument("--size", default="small", choices=["small", "full"], help="size profile (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="extra papermill parameter")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder for executed copies and the report (default runs/latest)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell and per notebook (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        notebooks = find_notebooks(args.targets)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    params = {"SIZE": args.size, "SEED": args.seed} | {k: parse_value(v) for k, v in args.param}
    out_dir = Path(args.out)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    runs = []
    for nb in notebooks:
        print(f"running {nb.relative_to(REPO_ROOT) if nb.is_relative_to(REPO_ROOT) else nb} ...", flush=True)
        run = run_notebook(nb, out_dir, params, timeout=args.timeout)
        print(f"  {run.status} in {run.wall_s:.1f} s, peak {run.peak_mb or 0:.0f} MB, checks {run.checks_passed}" + (f"\n  {run.error}" if run.error else ""), flush=True)
        runs.append(run)
    meta = {"size": args.size, "parameters": params, "started": started, "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    print()
    print(write_report(runs, out_dir, meta))
    print(f"report: {out_dir / 'report.json'} and {out_dir / 'report.md'}")
    return 0 if all(r.status == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
