"""Write ``exercises/`` from ``solutions/``: the solutions are the only source.

In a solution notebook, each graded part sits between two marker lines::

    def topk_cosine(Q, X, k):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

The exercise keeps everything else and replaces each region with
``raise NotImplementedError(...)`` at the region's indentation (the nbgrader
convention, so instructors can also use nbgrader).  Outputs are dropped, and
the exercise's metadata records the solution's path and the SHA-256 of its
cell sources, so a test can tell when an exercise has drifted from its
solution.

CLI: ``python -m course_lib.grade.exercises [--check]`` (``make exercises``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ..config import REPO_ROOT

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("your code here")'


def strip_solutions(source: str, *, where: str = "cell") -> str:
    """Replace every BEGIN/END SOLUTION region of ``source`` by a NotImplementedError stub."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: nested {BEGIN!r}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN!r} is never closed")
    return "\n".join(out)


def solution_hash(nb: Any) -> str:
    """SHA-256 of a notebook's cell types and sources (outputs and metadata do not count)."""
    payload = json.dumps([[c["cell_type"], c["source"]] for c in nb["cells"]], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def make_exercise(solution_path: Path, root: Path = REPO_ROOT) -> Any:
    """The exercise notebook (an nbformat node) generated from one solution notebook."""
    import nbformat

    nb = nbformat.read(solution_path, as_version=4)
    digest = solution_hash(nb)
    n_regions = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            n_regions += cell.source.count(BEGIN)
            cell.source = strip_solutions(cell.source, where=f"{solution_path.name}, cell {i + 1}")
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    if n_regions == 0:
        raise ValueError(f"{solution_path}: no {BEGIN!r} region; a solution notebook needs at least one")
    rel = solution_path.resolve().relative_to(root.resolve())
    lesson = "/".join(rel.with_suffix("").parts[1:])
    course = dict(nb.metadata.get("course", {}))
    course.update({"lesson": lesson, "generated_from": rel.as_posix(), "solution_sha256": digest})
    nb.metadata["course"] = course
    return nb


def exercise_path_for(solution_path: Path, root: Path = REPO_ROOT) -> Path:
    rel = solution_path.resolve().relative_to((root / "solutions").resolve())
    return root / "exercises" / rel


def render(nb: Any) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def generate_all(root: Path = REPO_ROOT, *, check_only: bool = False) -> list[str]:
    """Write (or, with ``check_only``, compare) every exercise.  Returns the problems found."""
    problems: list[str] = []
    solutions = sorted((root / "solutions").rglob("*.ipynb"))
    expected = set()
    for sol in solutions:
        if ".ipynb_checkpoints" in sol.parts:
            continue
        target = exercise_path_for(sol, root)
        expected.add(target.resolve())
        text = render(make_exercise(sol, root))
        if check_only:
            if not target.exists():
                problems.append(f"missing exercise {target.relative_to(root)} (run `make exercises`)")
            elif target.read_text() != text:
                problems.append(f"{target.relative_to(root)} is out of date with its solution (run `make exercises`)")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
                print(f"wrote {target.relative_to(root)}")
    for stray in sorted((root / "exercises").rglob("*.ipynb")):
        if ".ipynb_checkpoints" not in stray.parts and stray.resolve() not in expected:
            problems.append(f"{stray.relative_to(root)} has no solution in solutions/ (delete it or add the solution)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grade.exercises", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report exercises that are missing or out of date")
    args = parser.parse_args(argv)
    problems = generate_all(check_only=args.check)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print("exercises are in sync with solutions")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
