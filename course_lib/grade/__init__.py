"""Graded exercises: ``check(task_id, fn)`` in a notebook, ``make grade NB=...`` for a whole notebook.

* :mod:`course_lib.grade.core`: tasks, tests and ``check``.
* :mod:`course_lib.grade.tasks`: every task's tests, one module per chapter.
* :mod:`course_lib.grade.grader`: executes a learner's notebook and scores it.
* :mod:`course_lib.grade.exercises`: writes ``exercises/`` from ``solutions/``.
"""

from .core import TASKS, Task, TaskResult, TestFailure, check, get_task, register, run_task, tasks_for_lesson

__all__ = ["TASKS", "Task", "TaskResult", "TestFailure", "check", "get_task", "register", "run_task", "tasks_for_lesson"]
