"""Grade a learner's notebook: ``python -m course_lib.grade NB [--json out.json]``.

The grader

1. reads the notebook (an unreadable file is a verdict, not a crash);
2. finds its lesson (notebook metadata ``course.lesson``, else the file's path)
   and that lesson's tasks;
3. executes every code cell on a **fresh kernel**, each under a time limit,
   carrying on past cells that raise, fail to parse or loop forever;
4. runs each task's tests in that kernel, again under a time limit;
5. prints a score table (and writes JSON for instructors).

Whatever the notebook does, each task gets a clear verdict: all tests pass,
some fail (with hints), not implemented yet, function not defined (and which
cell failed), timed out, or the kernel died.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import GRADING_ENV, Task, get_task, run_task, tasks_for_lesson

RESULT_MARKER = "@@COURSE-GRADE-RESULT@@"
DEFAULT_CELL_TIMEOUT = 60
DEFAULT_TOTAL_TIMEOUT = 600


@dataclass
class CellProblem:
    cell: int  # 1-based index among code cells
    kind: str  # "error" | "timeout"
    message: str
    defines: list[str] = field(default_factory=list)
    first_line: str = ""

    @property
    def where(self) -> str:
        """``code cell 6 (def recall_at_k(...)``: the number and the first line, to find it."""
        line = self.first_line if len(self.first_line) <= 40 else self.first_line[:37] + "..."
        return f"code cell {self.cell} ({line})" if line else f"code cell {self.cell}"


@dataclass
class GradeReport:
    notebook: str
    lesson: str | None
    tasks: list[dict[str, Any]]
    cell_problems: list[CellProblem]
    notes: list[str]
    seconds: float

    @property
    def score(self) -> float:
        return sum(t["score"] for t in self.tasks)

    @property
    def max_score(self) -> int:
        return sum(t["points"] for t in self.tasks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "lesson": self.lesson,
            "score": round(self.score, 4),
            "max_score": self.max_score,
            "tasks": self.tasks,
            "cell_problems": [p.__dict__ | {"where": p.where} for p in self.cell_problems],
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }

    def table(self) -> str:
        rows = [("task", "function", "score", "verdict")]
        for t in self.tasks:
            rows.append((t["task"], t["function"], f"{t['score']:.2f}/{t['points']}", t["verdict"]))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"Grade for {self.notebook}" + (f" (lesson {self.lesson})" if self.lesson else "")]
        for i, r in enumerate(rows):
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
            if i == 0:
                lines.append("  " + "-" * min(100, sum(widths) + 6 + max(len(r[3]) for r in rows)))
        lines.append(f"  TOTAL {self.score:.2f} / {self.max_score}")
        for p in self.cell_problems:
            lines.append(f"  note: {p.where} {'timed out' if p.kind == 'timeout' else 'raised'}: {p.message}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        for t in self.tasks:
            for test in t.get("tests", []):
                if test["status"] in ("fail", "error"):
                    lines.append(f"  {t['function']}: {test['name']}: {test['message']}")
                    if test.get("hint"):
                        lines.append(f"      hint: {test['hint']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- in-kernel side
def _grade_here(task_id: str, namespace: dict[str, Any]) -> None:
    """Run inside the learner's kernel: test the function found in ``namespace``, print JSON."""
    task = get_task(task_id)
    fn = namespace.get(task.function)
    if fn is None:
        payload: dict[str, Any] = {"missing": True}
    else:
        payload = run_task(task, fn).as_dict()
    print(RESULT_MARKER + json.dumps(payload, default=str))


# --------------------------------------------------------------------------- grader side
def lesson_of(nb: Any, path: Path) -> str | None:
    """The lesson key ``NN_topic/MM_lesson`` from metadata, else from the file path."""
    meta = nb.get("metadata", {}).get("course", {}) if hasattr(nb, "get") else {}
    if isinstance(meta, dict) and isinstance(meta.get("lesson"), str):
        return meta["lesson"]
    parts = path.resolve().with_suffix("").parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def _defined_names(source: str) -> list[str]:
    return re.findall(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", source, flags=re.M)


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")), "")


def _empty_result(task: Task, verdict: str, status: str = "error") -> dict[str, Any]:
    return {
        "task": task.id,
        "function": task.function,
        "score": 0.0,
        "points": task.points,
        "passed": 0,
        "total": len(task.tests),
        "verdict": verdict,
        "tests": [{"name": t.name, "status": status, "message": verdict, "hint": "", "seconds": 0.0} for t in task.tests],
    }


def _cell_text_output(cell: Any) -> str:
    chunks = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            chunks.append(out.get("text", ""))
    return "".join(chunks)


def _error_of(cell: Any) -> tuple[str, str] | None:
    """The error a cell ended with: from its outputs, else from the execute reply."""
    reply = cell.get("metadata", {}).pop("_reply", None) or {}
    if reply.get("ename") == "CellTimeout":
        return "CellTimeout", reply.get("evalue", "")
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out.get("ename", "Error"), out.get("evalue", "")
    if reply.get("status") == "error":
        return reply.get("ename", "Error"), reply.get("evalue", "")
    return None


def _timed_out(err: tuple[str, str] | None) -> bool:
    # Our time limit interrupts the kernel, so the learner's code stops with KeyboardInterrupt.
    return err is not None and err[0] in ("CellTimeout", "KeyboardInterrupt")


def _kernel_env() -> dict[str, str]:
    from ..offline import notebook_env

    env = notebook_env(dict(os.environ))
    env[GRADING_ENV] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


def grade_notebook(
    path: str | Path,
    *,
    cell_timeout: int = DEFAULT_CELL_TIMEOUT,
    total_timeout: int = DEFAULT_TOTAL_TIMEOUT,
    kernel_name: str = "python3",
) -> GradeReport:
    """Execute ``path`` on a fresh kernel and grade its tasks.  Never raises for a bad notebook."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    start = time.monotonic()
    path = Path(path)
    notes: list[str] = []
    problems: list[CellProblem] = []
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        return GradeReport(str(path), None, [], [], [f"no such notebook: {path}"], 0.0)
    except Exception as err:  # not JSON, not a notebook
        lesson = lesson_of({}, path)
        tasks = tasks_for_lesson(lesson) if lesson else []
        verdict = f"notebook could not be read ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        return GradeReport(str(path), lesson, [_empty_result(t, verdict) for t in tasks], [], [verdict], time.monotonic() - start)

    lesson = lesson_of(nb, path)
    tasks = tasks_for_lesson(lesson) if lesson else []
    if not tasks:
        notes.append(f"no graded tasks are registered for lesson {lesson!r}")
        return GradeReport(str(path), lesson, [], [], notes, time.monotonic() - start)

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        cell.outputs = []
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name=kernel_name,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeout", "evalue": f"ran longer than {cell_timeout} s", "traceback": []},
        resources={"metadata": {"path": str(path.resolve().parent)}},
        record_timing=False,
    )
    # Keep each cell's execute reply: a time-out whose interrupt did not land leaves
    # no error in the cell's outputs, only in the reply.
    client.on_cell_executed = lambda cell, cell_index, execute_reply: cell.metadata.__setitem__("_reply", execute_reply.get("content", {}))
    results: dict[str, dict[str, Any]] = {}
    old_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(_kernel_env())
    try:
        # The kernel process's own stderr only carries its start-up log; the learner's output arrives over Jupyter's channels.
        with client.setup_kernel(stderr=subprocess.DEVNULL):
            alive = _execute_cells(client, nb, code_cells, problems, notes, start, total_timeout)
            for task in tasks:
                if not alive:
                    results[task.id] = _empty_result(task, "not graded: the kernel died or hung earlier (see notes)")
                    continue
                results[task.id], alive = _grade_task(client, nb, task, problems)
    except DeadKernelError:
        notes.append("the kernel died (the notebook may use too much memory or call exit())")
    except Exception as err:  # the grader must give a verdict, whatever happened
        notes.append(f"grading stopped early: {type(err).__name__}: {err}")
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    final = [results.get(t.id) or _empty_result(t, "not graded (see notes)") for t in tasks]
    return GradeReport(str(path), lesson, final, problems, notes, time.monotonic() - start)


MAX_KERNEL_RESTARTS = 2


def _execute_cells(client: Any, nb: Any, code_cells: list[Any], problems: list[CellProblem], notes: list[str], start: float, total_timeout: int) -> bool:
    """Run the learner's cells in order; returns False if the kernel is no longer usable.

    A cell that kills the kernel, or loops where an interrupt cannot reach it
    (compiled code), costs only itself: the grader restarts the kernel, runs
    again the cells that had succeeded, and carries on after the culprit.
    """
    from nbclient.exceptions import DeadKernelError

    succeeded: list[Any] = []
    restarts = 0
    for number, cell in enumerate(code_cells, start=1):
        if time.monotonic() - start > total_timeout:
            notes.append(f"stopped before code cell {number}: the notebook ran longer than {total_timeout} s in total")
            return True
        problem = None
        try:
            client.execute_cell(cell, nb.cells.index(cell))
            err = _error_of(cell)
        except DeadKernelError:
            err = ("KernelDied", "the kernel died while running this cell (out of memory, or exit()?)")
        if err is None:
            succeeded.append(cell)
            continue
        ename, evalue = err
        kind = "timeout" if _timed_out(err) else "error"
        if kind == "timeout":
            ename, evalue = "CellTimeout", f"ran longer than {client.timeout} s and was interrupted (an infinite loop?)"
        problem = CellProblem(number, kind, f"{ename}: {evalue}".strip(": "), _defined_names(cell.source), _first_line(cell.source))
        problems.append(problem)
        stuck = ename == "KernelDied" or (kind == "timeout" and not _responsive(client, nb))
        if stuck:
            what = "killed the kernel" if ename == "KernelDied" else "could not be interrupted"
            if restarts >= MAX_KERNEL_RESTARTS:
                notes.append(f"code cell {number} {what}; later cells were not run")
                return False
            restarts += 1
            notes.append(f"code cell {number} {what}: the kernel was restarted and the cells before it run again")
            if not _restart_and_replay(client, nb, succeeded):
                notes.append("the kernel could not be restarted; later cells were not run")
                return False
    return True


def _restart_and_replay(client: Any, nb: Any, cells: list[Any]) -> bool:
    """Restart the kernel and execute ``cells`` again (they succeeded before)."""
    from jupyter_core.utils import run_sync

    try:
        run_sync(client.km.restart_kernel)(now=True)
        run_sync(client.kc.wait_for_ready)(timeout=60)
        for cell in cells:
            client.execute_cell(cell, nb.cells.index(cell))
            _error_of(cell)
    except Exception:
        return False
    return True


def _responsive(client: Any, nb: Any) -> bool:
    """After a timeout and interrupt: does the kernel answer a trivial cell within 10 s?"""
    import nbformat

    probe = nbformat.v4.new_code_cell("None")
    nb.cells.append(probe)
    saved = client.timeout
    client.timeout = 10
    try:
        client.execute_cell(probe, len(nb.cells) - 1)
        return _error_of(probe) is None
    except Exception:
        return False
    finally:
        client.timeout = saved
        nb.cells.remove(probe)


def _grade_task(client: Any, nb: Any, task: Task, problems: list[CellProblem]) -> tuple[dict[str, Any], bool]:
    import nbformat
    from nbclient.exceptions import DeadKernelError

    source = f"from course_lib.grade.grader import _grade_here as __grade_here\n__grade_here({task.id!r}, globals())"
    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)
    saved = client.timeout
    client.timeout = int(task.timeout_s)
    try:
        client.execute_cell(cell, len(nb.cells) - 1)
    except DeadKernelError:
        return _empty_result(task, f"the kernel died while testing {task.function}()"), False
    finally:
        client.timeout = saved
        nb.cells.remove(cell)
    err = _error_of(cell)
    if _timed_out(err):
        result = _empty_result(task, f"timed out: the tests of {task.function}() ran longer than {int(task.timeout_s)} s (an infinite loop?)", "timeout")
        return result, _responsive(client, nb)
    for line in _cell_text_output(cell).splitlines():
        if line.startswith(RESULT_MARKER):
            payload = json.loads(line[len(RESULT_MARKER):])
            if payload.get("missing"):
                return _empty_result(task, _why_missing(task, problems), "missing"), True
            return payload, True
    detail = f" ({err[0]}: {err[1]})" if err else ""
    return _empty_result(task, f"could not be tested{detail}"), True


def _why_missing(task: Task, problems: list[CellProblem]) -> str:
    culprit = next((p for p in problems if task.function in p.defines), None)
    if culprit is not None:
        return f"{task.function}() is not defined: {culprit.where} failed: {culprit.message}"
    return f"{task.function}() is not defined in the notebook (was it renamed or deleted?)"


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grade", description="Grade an exercise notebook on a fresh kernel.")
    parser.add_argument("notebook", help="path to the learner's .ipynb")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT, help="seconds per cell (default %(default)s)")
    parser.add_argument("--total-timeout", type=int, default=DEFAULT_TOTAL_TIMEOUT, help="seconds for the whole notebook (default %(default)s)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default %(default)s)")
    args = parser.parse_args(argv)
    report = grade_notebook(args.notebook, cell_timeout=args.cell_timeout, total_timeout=args.total_timeout, kernel_name=args.kernel)
    print(report.table())
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
        print(f"JSON report: {args.json_path}")
    missing_file = not report.tasks and any(n.startswith("no such notebook") for n in report.notes)
    return 2 if missing_file else 0


if __name__ == "__main__":
    sys.exit(main())
