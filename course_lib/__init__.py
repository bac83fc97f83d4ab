"""course_lib: the shared library of the ML systems design course.

Modules (import what you need; nothing heavy is imported here):

* ``config``: size profiles, seeding, single-thread timing control.
* ``data``: synthetic generators, the frozen CPython corpus and its MiniLM embeddings, ANN file formats.
* ``vec``: similarity measures, exact k-NN, recall@k.
* ``perf``: timing and memory measurement.
* ``viz``: the house plot style, static-safe widgets, source display.
* ``checks``: the check cell of every lesson.
* ``grade``: graded exercises (``check``), the grader and the exercise generator.
* ``run``: papermill batch runs with a report.
"""

__version__ = "0.1.0"
