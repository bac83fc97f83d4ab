"""Exercises are generated from solutions, and the grader gives the right verdict on every kind of submission.

The seven submissions of the foundation issue: the full solution, the untouched
exercise, a syntax error, a function that raises, an infinite loop, a deleted
(renamed) function, and wrong answers; plus an unreadable file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.grade import exercises
from course_lib.grade.grader import grade_notebook

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "02_vector_search" / "01_similarity_and_recall.ipynb"
EXERCISE = ROOT / "exercises" / "02_vector_search" / "01_similarity_and_recall.ipynb"
ALL_SOLUTIONS = sorted((ROOT / "solutions").rglob("*.ipynb"))


# ---------------------------------------------------------------- exercise generation
def test_strip_solutions_keeps_indentation():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\nprint(1)"
    assert exercises.strip_solutions(src) == 'def f(x):\n    raise NotImplementedError("your code here")\n\nprint(1)'


@pytest.mark.parametrize(
    "src, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
    ],
)
def test_strip_solutions_rejects_broken_markers(src, message):
    with pytest.raises(ValueError, match=message):
        exercises.strip_solutions(src)


def test_exercises_in_sync_with_solutions():
    problems = exercises.generate_all(ROOT, check_only=True)
    assert not problems, "\n".join(problems)


def test_exercise_is_stamped_with_solution_hash():
    ex = nbformat.read(EXERCISE, as_version=4)
    sol = nbformat.read(SOLUTION, as_version=4)
    assert ex.metadata.course.solution_sha256 == exercises.solution_hash(sol)
    assert ex.metadata.course.lesson == "02_vector_search/01_similarity_and_recall"
    text = EXERCISE.read_text()
    assert "BEGIN SOLUTION" not in text and "NotImplementedError" in text


def test_drift_is_detected(tmp_path):
    (tmp_path / "solutions" / "ch").mkdir(parents=True)
    (tmp_path / "exercises" / "ch").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")])
    nbformat.write(nb, tmp_path / "solutions" / "ch" / "a.ipynb")
    assert exercises.generate_all(tmp_path, check_only=True) == ["missing exercise exercises/ch/a.ipynb (run `make exercises`)"]
    exercises.generate_all(tmp_path)
    assert exercises.generate_all(tmp_path, check_only=True) == []
    nb.cells[0].source = nb.cells[0].source.replace("return 1", "return 2")
    nbformat.write(nb, tmp_path / "solutions" / "ch" / "a.ipynb")
    assert "out of date" in exercises.generate_all(tmp_path, check_only=True)[0]


# ---------------------------------------------------------------- the grader
def _variant(tmp_path: Path, name: str, edit) -> Path:
    nb = nbformat.read(SOLUTION, as_version=4)
    edit(nb)
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _cell_defining(nb, fn_name):
    return next(c for c in nb.cells if c.cell_type == "code" and f"def {fn_name}(" in c.source)


def _by_task(report):
    return {t["function"]: t for t in report.tasks}


@pytest.mark.notebook
@pytest.mark.parametrize("solution", ALL_SOLUTIONS, ids=lambda p: str(p.relative_to(ROOT / "solutions")))
def test_every_solution_scores_full_marks(solution):
    report = grade_notebook(solution)
    assert report.tasks, report.notes
    assert report.score == report.max_score, report.table()


@pytest.mark.notebook
@pytest.mark.parametrize("solution", ALL_SOLUTIONS, ids=lambda p: str(p.relative_to(ROOT / "solutions")))
def test_every_untouched_exercise_scores_zero(solution):
    exercise = ROOT / "exercises" / solution.relative_to(ROOT / "solutions")
    report = grade_notebook(exercise)
    assert report.tasks and report.score == 0, report.table()
    assert all(t["verdict"] == "not implemented yet" for t in report.tasks), report.table()


@pytest.mark.notebook
def test_syntax_error(tmp_path):
    def edit(nb):
        cell = _cell_defining(nb, "topk_cosine")
        cell.source = cell.source.replace("Qn = Q /", "Qn = = Q /")

    report = grade_notebook(_variant(tmp_path, "syntax", edit))
    tasks = _by_task(report)
    assert tasks["topk_cosine"]["score"] == 0
    assert "not defined" in tasks["topk_cosine"]["verdict"] and "SyntaxError" in tasks["topk_cosine"]["verdict"]
    assert tasks["recall_at_k"]["verdict"] == "all tests pass"  # the rest of the notebook still counts


@pytest.mark.notebook
def test_function_that_raises(tmp_path):
    def edit(nb):
        cell = _cell_defining(nb, "recall_at_k")
        cell.source = cell.source.replace("pred, truth = np.asarray(pred), np.asarray(truth)", "raise IndexError('oops')")

    report = grade_notebook(_variant(tmp_path, "raises", edit))
    task = _by_task(report)["recall_at_k"]
    assert task["score"] == 0 and task["verdict"] == "0/6 tests pass"
    assert all(t["status"] == "error" and "IndexError: oops" in t["message"] for t in task["tests"])
    assert _by_task(report)["topk_cosine"]["verdict"] == "all tests pass"


@pytest.mark.notebook
def test_infinite_loops_time_out(tmp_path):
    def edit(nb):
        cell = _cell_defining(nb, "recall_at_k")
        cell.source = cell.source.replace("pred, truth = np.asarray(pred), np.asarray(truth)", "while True:\n        pass")
        # and a top-level loop in a cell of its own
        nb.cells.insert(nb.cells.index(cell) + 1, nbformat.v4.new_code_cell("while True:\n    pass"))

    from course_lib.grade import get_task

    task = get_task("vector_search.recall_at_k")
    saved = task.timeout_s
    task.timeout_s = 5  # the grader reads the limit from the registry in this process
    try:
        report = grade_notebook(_variant(tmp_path, "loop", edit), cell_timeout=5)
    finally:
        task.timeout_s = saved
    tasks = _by_task(report)
    assert tasks["recall_at_k"]["score"] == 0 and "timed out" in tasks["recall_at_k"]["verdict"]
    assert tasks["topk_cosine"]["verdict"] == "all tests pass"
    assert any(p.kind == "timeout" for p in report.cell_problems)


@pytest.mark.notebook
def test_renamed_function(tmp_path):
    def edit(nb):
        cell = _cell_defining(nb, "topk_cosine")
        cell.source = cell.source.replace("def topk_cosine(", "def top_k_cosine(")
        for c in nb.cells:
            c.source = c.source.replace("topk_cosine(E", "top_k_cosine(E").replace("topk_cosine((", "top_k_cosine((")

    report = grade_notebook(_variant(tmp_path, "renamed", edit))
    task = _by_task(report)["topk_cosine"]
    assert task["score"] == 0 and "not defined in the notebook" in task["verdict"]


@pytest.mark.notebook
def test_wrong_answers_get_hints(tmp_path):
    def edit(nb):
        cell = _cell_defining(nb, "topk_cosine")
        cell.source = cell.source.replace("Q / np.linalg.norm(Q, axis=1, keepdims=True)", "Q").replace(
            "X / np.linalg.norm(X, axis=1, keepdims=True)", "X"
        )

    report = grade_notebook(_variant(tmp_path, "wrong", edit))
    task = _by_task(report)["topk_cosine"]
    assert 0 < task["score"] < task["points"]
    failing = [t for t in task["tests"] if t["status"] == "fail"]
    assert any("forgetting to normalise" in t["hint"] for t in failing)
    assert "hint: forgetting to normalise" in report.table()


def test_unreadable_notebook(tmp_path):
    bad = tmp_path / "02_vector_search" / "01_similarity_and_recall.ipynb"
    bad.parent.mkdir()
    bad.write_text("{ this is not json")
    report = grade_notebook(bad)
    assert report.score == 0 and len(report.tasks) == 2
    assert all("could not be read" in t["verdict"] for t in report.tasks)


def test_missing_notebook_cli(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "course_lib.grade", str(tmp_path / "nope.ipynb")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "no such notebook" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.notebook
def test_cli_writes_json(tmp_path):
    out = tmp_path / "grade.json"
    proc = subprocess.run(
        [sys.executable, "-m", "course_lib.grade", str(SOLUTION), "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "TOTAL 3.00 / 3" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["score"] == payload["max_score"] == 3


@pytest.mark.notebook
def test_loop_that_ignores_interrupts_does_not_hang_the_grader(tmp_path):
    # A loop in compiled code cannot be interrupted; ignoring SIGINT simulates it.
    def edit(nb):
        cell = _cell_defining(nb, "recall_at_k")
        stuck = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
        nb.cells.insert(nb.cells.index(cell), nbformat.v4.new_code_cell(stuck))

    # 10 s, not less: after the restart the replayed set-up cell imports torch (via
    # config.seed_everything), which takes several seconds on a busy 2-core runner.
    report = grade_notebook(_variant(tmp_path, "stuck", edit), cell_timeout=10)
    assert report.seconds < 120
    assert any("restarted" in n for n in report.notes), report.table()
    tasks = _by_task(report)
    assert tasks["topk_cosine"]["verdict"] == "all tests pass", report.table()  # defined before the stuck cell
    assert tasks["recall_at_k"]["verdict"] == "all tests pass", report.table()  # defined after it


@pytest.mark.notebook
def test_cell_that_kills_the_kernel(tmp_path):
    def edit(nb):
        cell = _cell_defining(nb, "recall_at_k")
        nb.cells.insert(nb.cells.index(cell), nbformat.v4.new_code_cell("import os\nos._exit(3)"))

    report = grade_notebook(_variant(tmp_path, "dies", edit))
    assert any("KernelDied" in p.message for p in report.cell_problems), report.table()
    assert report.score == report.max_score, report.table()
