"""The check cell: assertions with stated tolerances that prove a lesson still teaches the truth.

Usage, at the end of every lesson::

    checks = Checks("02/01 similarity and recall")
    checks.equal("our ids == faiss IndexFlatL2 ids (tie-aware)", agree_fraction, 1.0)
    checks.close("cosine == IP on unit vectors", max_diff, 0.0, atol=1e-5)
    checks.at_most("ours / faiss time", ratio, 3.0)
    checks.done()   # shows the table, raises AssertionError if anything failed

Every check records its name, value, target and tolerance.  ``done()`` shows
them as a table and also emits them as JSON (mimetype
``application/vnd.course.checks+json``), which ``make run`` collects into its
run report, so the report says which values each lesson verified.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

CHECKS_MIMETYPE = "application/vnd.course.checks+json"


@dataclass
class CheckResult:
    name: str
    value: Any
    target: str
    passed: bool


def _plain(value: Any) -> Any:
    """A JSON-friendly version of numpy scalars and small arrays."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 16 else f"array{value.shape}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Checks:
    """Collects the assertions of one check cell."""

    def __init__(self, lesson: str) -> None:
        self.lesson = lesson
        self.results: list[CheckResult] = []

    def _add(self, name: str, value: Any, target: str, passed: bool) -> bool:
        self.results.append(CheckResult(name, _plain(value), target, bool(passed)))
        return bool(passed)

    def true(self, name: str, condition: Any, detail: Any = None) -> bool:
        """``condition`` must hold; ``detail`` is shown as the value."""
        return self._add(name, bool(condition) if detail is None else detail, "true", bool(condition))

    def equal(self, name: str, value: Any, expected: Any) -> bool:
        """Exact equality (ids, codes, counts)."""
        return self._add(name, value, f"== {_plain(expected)}", bool(value == expected))

    def close(self, name: str, value: float, expected: float, *, atol: float = 0.0, rtol: float = 0.0) -> bool:
        """|value - expected| <= atol + rtol * |expected|."""
        ok = math.isfinite(float(value)) and abs(float(value) - float(expected)) <= atol + rtol * abs(float(expected))
        tol = " + ".join(filter(None, [f"{atol:g}" if atol else "", f"{rtol:.0%}" if rtol else ""]))
        return self._add(name, value, f"{_plain(expected)} ± {tol}" if atol or rtol else f"== {_plain(expected)}", ok)

    def at_most(self, name: str, value: float, bound: float) -> bool:
        """value <= bound (lenient speed ratios, error bounds)."""
        return self._add(name, value, f"<= {bound:g}", math.isfinite(float(value)) and float(value) <= bound)

    def at_least(self, name: str, value: float, bound: float) -> bool:
        """value >= bound (recall, hit rates)."""
        return self._add(name, value, f">= {bound:g}", math.isfinite(float(value)) and float(value) >= bound)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def as_json(self) -> dict[str, Any]:
        return {"lesson": self.lesson, "checks": [asdict(r) for r in self.results]}

    def _text(self) -> str:
        width = max((len(r.name) for r in self.results), default=10)
        lines = [f"Checks for {self.lesson}:"]
        for r in self.results:
            value = f"{r.value:.6g}" if isinstance(r.value, float) else str(r.value)
            lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {value:>12}  (target {r.target})")
        lines.append(f"{len(self.results) - len(self.failed)}/{len(self.results)} checks passed")
        return "\n".join(lines)

    def done(self) -> None:
        """Show every check, publish them for the run report, and fail loudly if any failed."""
        if not self.results:
            raise AssertionError("a check cell must check something")
        text = self._text()
        try:
            from IPython.display import display

            display({"text/plain": text, CHECKS_MIMETYPE: json.loads(json.dumps(self.as_json(), default=str))}, raw=True)
        except ImportError:  # outside IPython
            print(text)
        if self.failed:
            names = "; ".join(f"{r.name} = {r.value} (target {r.target})" for r in self.failed)
            raise AssertionError(f"{len(self.failed)} check(s) failed: {names}")
