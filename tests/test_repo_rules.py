"""Repository rules: what every notebook and file must satisfy, checked on every commit."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _notebooks(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


LESSONS = _notebooks("notebooks")
SOLUTIONS = _notebooks("solutions")
EXERCISES = _notebooks("exercises")
ALL = LESSONS + SOLUTIONS + EXERCISES
ids = lambda p: str(p.relative_to(ROOT))  # noqa: E731


def test_there_is_at_least_one_lesson():
    assert LESSONS and SOLUTIONS and EXERCISES


@pytest.mark.parametrize("path", ALL, ids=ids)
def test_committed_notebooks_carry_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", ALL, ids=ids)
def test_notebooks_are_valid_and_use_the_python3_kernel(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=ids)
def test_parameters_cell_and_check_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters' (papermill)"
    assert re.search(r'^SIZE = "small"', params[0].source, re.M) and re.search(r"^SEED = \d+", params[0].source, re.M)
    checks = [c for c in code if "check" in c.metadata.get("tags", [])]
    assert checks, "a cell tagged 'check' with the lesson's assertions"
    assert any("Checks(" in c.source and ".done()" in c.source for c in checks)


@pytest.mark.parametrize("path", LESSONS, ids=ids)
def test_lesson_anatomy(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for needed in ("## Takeaways", "Further reading", "exercises/"):
        assert needed in text, f"lesson misses {needed!r}"
    assert any("viz.interactive(" in c.source for c in nb.cells if c.cell_type == "code"), "a widget (viz.interactive)"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids)
def test_every_solution_has_an_exercise_and_registered_tasks(path):
    from course_lib.grade import tasks_for_lesson

    rel = path.relative_to(ROOT / "solutions")
    assert (ROOT / "exercises" / rel).exists()
    assert (ROOT / "notebooks" / rel).exists(), "a solution shares its path with a lesson"
    lesson = rel.with_suffix("").as_posix()
    tasks = tasks_for_lesson(lesson)
    assert tasks, f"no tasks registered for {lesson}"
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    for task in tasks:
        defined = f"def {task.function}(" in source or f"class {task.function}" in source  # a graded function or class
        assert defined and f'check("{task.id}"' in source


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(project) == _pins(pip_section)
    assert all("==" in d for d in project), "every direct dependency is pinned"
    assert _pins(project)["torch"] == "2.13.0"


def test_lock_file_covers_pyproject():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    for name, version in _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]).items():
        assert lock.get(name) == version, f"requirements.lock pins {name}=={lock.get(name)}, pyproject {version}"
    assert not any(name.startswith("nvidia-") for name in lock), "a CUDA package slipped into the lock"


FORBIDDEN = [
    (r"\bfetch_[a-z0-9_]+\(", "sklearn.datasets.fetch_* downloads"),
    (r"urllib\.request|requests\.get\(|httpx\.get\(", "network calls"),
    (r"hf_hub_download|snapshot_download", "model hub downloads"),
    (r"\btiktoken\b", "tiktoken downloads its ranks"),
]


def test_no_network_calls_in_course_code():
    files = list((ROOT / "course_lib").rglob("*.py")) + ALL
    for path in files:
        text = path.read_text()
        for pattern, why in FORBIDDEN:
            assert not re.search(pattern, text), f"{path.relative_to(ROOT)}: {why}"


def test_readme_lists_the_two_commands_and_every_lesson():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    for path in LESSONS:
        assert path.relative_to(ROOT / "notebooks").with_suffix("").as_posix() in readme, f"README does not list {path.name}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
