"""Tasks, their tests, and ``check()``: immediate feedback on a learner's function.

A *task* is one function a learner writes (``topk_cosine``).  Its tests live
here in course_lib, not in the notebook, so a learner cannot edit them and
the grader runs exactly the same tests as the notebook's check cell.

Each test is a small function that receives the learner's function and raises
:class:`TestFailure` (or ``AssertionError``) with a message saying what was
wrong; the test's ``hint`` names the likely mistake.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

#: Set by the grader: ``check()`` then only records, and the grader runs the tests itself.
GRADING_ENV = "COURSE_GRADING"


class TestFailure(AssertionError):
    """A test found a wrong answer; the message says what was expected and what arrived."""


@dataclass(frozen=True)
class Test:
    name: str
    run: Callable[[Callable[..., Any]], None]
    hint: str = ""


@dataclass
class Task:
    """One graded function: its id (``chapter.function``), the name it must have, and its tests."""

    id: str
    function: str
    title: str
    lesson: str
    tests: list[Test] = field(default_factory=list)
    points: int = 1
    timeout_s: float = 60.0

    def test(self, name: str, hint: str = "") -> Callable[[Callable[[Callable[..., Any]], None]], Callable[[Callable[..., Any]], None]]:
        """Decorator that adds a test to this task."""

        def add(fn: Callable[[Callable[..., Any]], None]) -> Callable[[Callable[..., Any]], None]:
            self.tests.append(Test(name, fn, hint))
            return fn

        return add


TASKS: dict[str, Task] = {}


def register(task_id: str, *, function: str, title: str, lesson: str, points: int = 1, timeout_s: float = 60.0) -> Task:
    """Create and register a task (called once per task, at import of its tasks module)."""
    if task_id in TASKS:
        raise ValueError(f"task {task_id!r} is registered twice")
    task = Task(task_id, function, title, lesson, points=points, timeout_s=timeout_s)
    TASKS[task_id] = task
    return task


def get_task(task_id: str) -> Task:
    from . import tasks  # noqa: F401  (registers every task module)

    if task_id not in TASKS:
        raise KeyError(f"unknown task {task_id!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[task_id]


def tasks_for_lesson(lesson: str) -> list[Task]:
    """The tasks of one lesson (``"02_vector_search/01_similarity_and_recall"``), in order."""
    from . import tasks  # noqa: F401

    return [t for t in TASKS.values() if t.lesson == lesson]


@dataclass
class TestResult:
    name: str
    status: str  # "pass" | "fail" | "error" | "not implemented"
    message: str = ""
    hint: str = ""
    seconds: float = 0.0


@dataclass
class TaskResult:
    task_id: str
    function: str
    tests: list[TestResult]
    points: int

    @property
    def passed(self) -> int:
        return sum(t.status == "pass" for t in self.tests)

    @property
    def score(self) -> float:
        """Points earned: partial credit in proportion to tests passed."""
        return self.points * self.passed / len(self.tests) if self.tests else 0.0

    @property
    def verdict(self) -> str:
        if self.tests and self.passed == len(self.tests):
            return "all tests pass"
        if any(t.status == "not implemented" for t in self.tests):
            return "not implemented yet"
        return f"{self.passed}/{len(self.tests)} tests pass"

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task_id,
            "function": self.function,
            "score": round(self.score, 4),
            "points": self.points,
            "passed": self.passed,
            "total": len(self.tests),
            "verdict": self.verdict,
            "tests": [t.__dict__ for t in self.tests],
        }


def _short_error(err: BaseException) -> str:
    """The learner-facing line of an exception: its type, message and the learner's line number."""
    frames = traceback.extract_tb(err.__traceback__)
    learner = [f for f in frames if "course_lib" not in f.filename]
    where = f" (line {learner[-1].lineno} of your code)" if learner else ""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}{where}" if text else f"{type(err).__name__}{where}"


def run_task(task: Task, fn: Any) -> TaskResult:
    """Run every test of ``task`` on ``fn``; never raises for the learner's mistakes."""
    results: list[TestResult] = []
    if not callable(fn):
        results = [TestResult(t.name, "error", f"expected a function, got {type(fn).__name__}", t.hint) for t in task.tests]
        return TaskResult(task.id, task.function, results, task.points)
    for test in task.tests:
        start = time.perf_counter()
        try:
            test.run(fn)
        except NotImplementedError:
            results.append(TestResult(test.name, "not implemented", "the function still raises NotImplementedError", ""))
        except AssertionError as err:  # includes TestFailure
            results.append(TestResult(test.name, "fail", str(err) or "wrong answer", test.hint))
        except KeyboardInterrupt:
            raise
        except Exception as err:  # the learner's code crashed: report it, keep going
            results.append(TestResult(test.name, "error", _short_error(err), test.hint))
        else:
            results.append(TestResult(test.name, "pass"))
        results[-1].seconds = round(time.perf_counter() - start, 4)
    return TaskResult(task.id, task.function, results, task.points)


def format_result(result: TaskResult) -> str:
    """A readable per-test report."""
    lines = [f"{result.task_id} ({result.function}): {result.verdict}"]
    for t in result.tests:
        mark = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "not implemented": "TODO"}[t.status]
        lines.append(f"  {mark:5} {t.name}" + (f": {t.message}" if t.message else ""))
        if t.hint and t.status in ("fail", "error"):
            lines.append(f"        hint: {t.hint}")
    return "\n".join(lines)


def check(task_id: str, fn: Any) -> TaskResult | None:
    """Run a task's tests on the learner's function and print what passed, what failed and why.

    Under ``make grade`` this only records the call: the grader runs the
    same tests itself, each under a time limit.
    """
    if os.environ.get(GRADING_ENV):
        print(f"[grading] {task_id}: tests run by the grader")
        return None
    try:
        task = get_task(task_id)
    except KeyError as err:
        print(f"check(): {err.args[0]}")
        return None
    result = run_task(task, fn)
    print(format_result(result))
    return result
