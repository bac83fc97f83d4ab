"""The papermill batch runner behind ``make run``: parameters, report, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.run import find_notebooks, parse_value

ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, body: str) -> Path:
    params = nbformat.v4.new_code_cell('SIZE = "small"\nSEED = 0\nN = 3')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("small") == "small" and parse_value("[1, 2]") == [1, 2]


def test_find_notebooks(tmp_path):
    assert ROOT / "notebooks" / "02_vector_search" / "01_similarity_and_recall.ipynb" in find_notebooks([])
    assert find_notebooks(["02_vector_search"]) == find_notebooks([str(ROOT / "notebooks" / "02_vector_search")])
    with pytest.raises(ValueError, match="no notebook"):
        find_notebooks(["99_nothing"])


@pytest.mark.notebook
def test_batch_run_writes_report(tmp_path):
    good = _write(
        tmp_path / "nbs" / "good.ipynb",
        "from course_lib.checks import Checks\n"
        "c = Checks('tiny'); c.equal('N was injected', N, 7); c.equal('size', SIZE, 'full'); c.done()",
    )
    _write(tmp_path / "nbs" / "bad.ipynb", "raise RuntimeError('lesson broke')")
    _write(tmp_path / "nbs" / "net.ipynb", "import socket\nsocket.getaddrinfo('example.invalid', 80)")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "course_lib.run", str(tmp_path / "nbs"), "--size", "full", "-p", "N", "7", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one notebook failed
    report = json.loads((out / "report.json").read_text())
    runs = {Path(r["notebook"]).name: r for r in report["notebooks"]}
    assert runs["good.ipynb"]["status"] == "ok"
    assert runs["good.ipynb"]["parameters"] == {"SIZE": "full", "SEED": 0, "N": 7}
    assert [c["name"] for c in runs["good.ipynb"]["checks"]] == ["N was injected", "size"]
    assert runs["good.ipynb"]["peak_mb"] > 20 and runs["good.ipynb"]["wall_s"] > 0
    assert runs["bad.ipynb"]["status"] == "failed" and "lesson broke" in runs["bad.ipynb"]["error"]
    assert runs["net.ipynb"]["status"] == "failed" and "blocked" in runs["net.ipynb"]["error"]
    assert (out / "report.md").read_text().count("| ") > 3
    assert good.name in proc.stdout and "report:" in proc.stdout
