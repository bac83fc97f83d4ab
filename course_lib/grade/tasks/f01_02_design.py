"""Tests for the exercise of lesson 01.02 (the design framework): ``allocate_latency_budget``.

The task, as the exercise states it: ``allocate_latency_budget(stages, slo_ms)`` takes a
non-empty list of ``(name, p99_ms, overhead_ms)`` triples and an SLO in ms.  Each stage
gets its fixed overhead plus a share of ``slo_ms - sum(overheads)`` proportional to its
p99 (an equal share when every p99 is 0).  It returns a dict name -> budget (ms), in the
order of the stages, summing to ``slo_ms`` within 1e-9.  ValueError when the overheads
alone exceed the SLO, or for malformed input: an empty list, an item that is not a
3-item sequence, a name that is not a non-empty str or repeats, a p99 or overhead that is
not a finite number >= 0 (bools are not numbers here), or an SLO that is not a finite
number > 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON_01_02 = "01_foundations/02_design_framework"


def _reference(stages: list[tuple[str, float, float]], slo_ms: float) -> dict[str, Fraction]:
    """Exact rational arithmetic: a different route from the lesson's float code."""
    o = {name: Fraction(overhead) for name, _, overhead in stages}
    p = {name: Fraction(p99) for name, p99, _ in stages}
    rest = Fraction(slo_ms) - sum(o.values())
    total = sum(p.values())
    return {n: o[n] + (p[n] / total if total else Fraction(1, len(p))) * rest for n in o}


def _call(fn: Callable[..., Any], stages: list, slo_ms: float) -> dict[str, float]:
    out = fn([tuple(s) for s in stages], slo_ms)
    if not isinstance(out, dict):
        raise TestFailure(f"expected a dict name -> budget_ms, got {type(out).__name__}")
    names = [s[0] for s in stages]
    if sorted(out) != sorted(names):
        raise TestFailure(f"expected one budget per stage, keys {names}, got keys {list(out)}")
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TestFailure(f"budget of {name!r} must be a number (ms), got {value!r}")
    return out


def _expect(fn: Callable[..., Any], stages: list, slo_ms: float, what: str) -> None:
    got = _call(fn, stages, slo_ms)
    want = _reference(stages, slo_ms)
    for name, value in want.items():
        if not math.isclose(float(got[name]), float(value), rel_tol=1e-9, abs_tol=1e-9):
            table = ", ".join(f"{n}: {float(got[n]):.6g} (expected {float(v):.6g})" for n, v in want.items())
            raise TestFailure(f"{what}: {table}")


def _random_stages(seed: int, n: int) -> tuple[list[tuple[str, float, float]], float]:
    rng = np.random.default_rng(seed)
    stages = [(f"stage{i}", float(rng.uniform(0.5, 80)), float(rng.uniform(0, 4))) for i in range(n)]
    slo = sum(o for _, _, o in stages) + float(rng.uniform(10, 400))
    return stages, slo


def _raises(fn: Callable[..., Any], stages: Any, slo_ms: Any) -> bool:
    try:
        fn(stages, slo_ms)
    except ValueError:
        return True
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - any other error is the wrong kind
        raise TestFailure(f"expected ValueError for stages={stages!r}, slo_ms={slo_ms!r}; "
                          f"got {type(err).__name__}: {err}") from None
    return False


budget = register(
    "foundations.allocate_latency_budget",
    function="allocate_latency_budget",
    title="Split a p99 latency SLO among the stages of a request path",
    lesson=LESSON_01_02,
    points=2,
    timeout_s=30,
)


@budget.test("a worked example: SLO 100 ms, stages (a, 10, 1) and (b, 30, 5)",
             hint="first give each stage its fixed overhead; then share what is left of the SLO "
                  "(SLO - sum of overheads = 94 ms here) in proportion to the p99s alone")
def _worked(fn: Callable[..., Any]) -> None:
    _expect(fn, [("a", 10.0, 1.0), ("b", 30.0, 5.0)], 100.0, "expected a = 24.5, b = 75.5")


@budget.test("the budgets sum to the SLO (within 1e-9), in the stages' order",
             hint="the shares must be of SLO - sum(overheads), not of the whole SLO (sharing the whole SLO "
                  "and then adding the overheads overshoots by exactly the overheads); keep the input order")
def _sums(fn: Callable[..., Any]) -> None:
    for seed in range(5):
        stages, slo = _random_stages(seed, 2 + seed)
        out = _call(fn, stages, slo)
        if abs(math.fsum(float(v) for v in out.values()) - slo) > 1e-9:
            raise TestFailure(f"budgets sum to {math.fsum(float(v) for v in out.values())!r}, SLO is {slo!r}")
        if list(out) != [s[0] for s in stages]:
            raise TestFailure(f"keys in the order {list(out)}, stages are in the order {[s[0] for s in stages]}")


@budget.test("random paths: every budget equals overhead + share proportional to p99",
             hint="the share is proportional to the measured p99 alone, not to p99 + overhead; "
                  "the overhead is added once, on top of the share")
def _random(fn: Callable[..., Any]) -> None:
    for seed in range(10, 20):
        stages, slo = _random_stages(seed, 1 + seed % 6)
        _expect(fn, stages, slo, f"random path (seed {seed})")


@budget.test("large overheads: the overhead is kept whole, not scaled",
             hint="a stage with a big fixed overhead (a cross-region hop) and a tiny p99 keeps all of its "
                  "overhead: only the remainder is shared by p99")
def _big_overhead(fn: Callable[..., Any]) -> None:
    _expect(fn, [("cross-region hop", 0.5, 70.0), ("model", 60.0, 2.0), ("cache", 1.5, 0.5)], 150.0,
            "large overhead")


@budget.test("edge cases: all p99s zero (equal split), overheads equal to the SLO, a single stage",
             hint="when every p99 is 0 there is nothing to be proportional to: split the remainder equally "
                  "(avoid dividing by zero); overheads exactly equal to the SLO are allowed (nothing left to share)")
def _edges(fn: Callable[..., Any]) -> None:
    _expect(fn, [("a", 0.0, 1.0), ("b", 0.0, 3.0), ("c", 0.0, 0.0)], 10.0, "all p99s zero")
    _expect(fn, [("a", 5.0, 4.0), ("b", 1.0, 6.0)], 10.0, "overheads == SLO")
    _expect(fn, [("only", 3.0, 1.0)], 7.5, "single stage")


@budget.test("ValueError when the overheads alone exceed the SLO",
             hint="compare sum(overheads) with slo_ms before sharing: a negative remainder would hand out "
                  "negative budgets instead of refusing")
def _too_tight(fn: Callable[..., Any]) -> None:
    if not _raises(fn, [("a", 1.0, 60.0), ("b", 1.0, 41.0)], 100.0):
        raise TestFailure("overheads of 101 ms with an SLO of 100 ms must raise ValueError")


@budget.test("ValueError for malformed input",
             hint="validate before computing: an empty list, an item that is not (name, p99, overhead), "
                  "an empty or repeated name, a negative / NaN / infinite / non-numeric (or bool) number, "
                  "and an SLO that is not a finite number > 0 must all raise ValueError")
def _malformed(fn: Callable[..., Any]) -> None:
    cases = [
        ([], 100.0),
        ([("a", 1.0)], 100.0),
        ([("a", 1.0, 0.0, 0.0)], 100.0),
        ([("", 1.0, 0.0)], 100.0),
        ([(7, 1.0, 0.0)], 100.0),
        ([("a", 1.0, 0.0), ("a", 2.0, 0.0)], 100.0),
        ([("a", -1.0, 0.0)], 100.0),
        ([("a", 1.0, -0.5)], 100.0),
        ([("a", float("nan"), 0.0)], 100.0),
        ([("a", math.inf, 0.0)], 100.0),
        ([("a", "5", 0.0)], 100.0),
        ([("a", True, 0.0)], 100.0),
        ([("a", 1.0, 0.0)], 0.0),
        ([("a", 1.0, 0.0)], -5.0),
        ([("a", 1.0, 0.0)], float("nan")),
    ]
    missed = [f"stages={s!r}, slo_ms={slo!r}" for s, slo in cases if not _raises(fn, s, slo)]
    if missed:
        raise TestFailure(f"no ValueError for {len(missed)} malformed input(s), e.g. {missed[0]}")


@budget.test("does not modify its input",
             hint="build a new dict; do not write budgets back into the stage list")
def _pure(fn: Callable[..., Any]) -> None:
    stages = [["a", 10.0, 1.0], ["b", 30.0, 3.0]]
    before = [list(s) for s in stages]
    fn(stages, 100.0)
    if stages != before:
        raise TestFailure(f"the stages changed from {before} to {stages}")
