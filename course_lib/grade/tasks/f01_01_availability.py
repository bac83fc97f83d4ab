"""Tests for the exercise of lesson 01.01 (principles and trade-offs): ``compose_availability``.

The task, as the exercise states it: ``compose_availability(spec)`` returns the
availability of a system described by a spec, nested arbitrarily:

* a number in [0, 1]: one component's availability;
* ``{"series": [spec, ...]}``: all children must be up;
* ``{"parallel": [spec, ...]}``: at least one child up;
* ``{"quorum": k, "of": [spec, ...]}``: at least k of the n children up
  (children may have different availabilities);

with independent failures, and raises ``ValueError`` for an invalid spec.
"""

from __future__ import annotations

import itertools
import math
from typing import Any
from collections.abc import Callable

from ..core import TestFailure, register

LESSON_01_01 = "01_foundations/01_principles_tradeoffs"
TOL = 1e-12


def _reference(spec: Any) -> float:
    """Enumerate every up/down state of the leaves (2^leaves states): deliberately a
    different route from course_lib's recursive closed form and Poisson-binomial DP."""
    probs: list[float] = []

    def number_leaves(s: Any) -> Any:
        if isinstance(s, dict):
            if "quorum" in s:
                return ("quorum", s["quorum"], [number_leaves(c) for c in s["of"]])
            (key,) = s
            return (key, None, [number_leaves(c) for c in s[key]])
        probs.append(float(s))
        return len(probs) - 1

    def is_up(node: Any, state: tuple[bool, ...]) -> bool:
        if isinstance(node, int):
            return state[node]
        kind, k, kids = node
        ups = [is_up(c, state) for c in kids]
        return all(ups) if kind == "series" else any(ups) if kind == "parallel" else sum(ups) >= k

    tree = number_leaves(spec)
    return sum(
        math.prod(p if up else 1.0 - p for p, up in zip(probs, state))
        for state in itertools.product((False, True), repeat=len(probs))
        if is_up(tree, state)
    )


def _call(fn: Callable[..., Any], spec: Any) -> float:
    out = fn(spec)
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise TestFailure(f"expected a float availability, got {out!r}") from None
    if not math.isfinite(value):
        raise TestFailure(f"expected a finite availability in [0, 1], got {value!r}")
    return value


def _expect(fn: Callable[..., Any], spec: Any, what: str) -> None:
    want = _reference(spec)
    got = _call(fn, spec)
    if abs(got - want) > TOL:
        raise TestFailure(f"{what}: compose_availability({spec!r}) expected {want:.12g}, got {got:.12g}")


def _expect_error(fn: Callable[..., Any], spec: Any, what: str) -> None:
    try:
        out = fn(spec)
    except ValueError:
        return
    raise TestFailure(f"{what}: expected ValueError for spec {spec!r}, got {out!r}")


task = register(
    "foundations.compose_availability",
    function="compose_availability",
    title="Availability of nested series / parallel / quorum compositions",
    lesson=LESSON_01_01,
    points=2,
    timeout_s=30,
)


@task.test("a single availability, and series multiplies",
           hint="a bare number is its own availability; in series every child must be up, so multiply the children's availabilities (not min, not mean)")
def _series(fn: Callable[..., Any]) -> None:
    _expect(fn, 0.97, "a single component")
    _expect(fn, {"series": [0.9, 0.8]}, "two in series")
    _expect(fn, {"series": [0.999, 0.99, 0.95, 0.9]}, "four in series")


@task.test("parallel: up unless every child is down",
           hint="the system is down only when all children are down: 1 - prod(1 - a_i). Multiplying the a_i or adding them is the classic slip")
def _parallel(fn: Callable[..., Any]) -> None:
    _expect(fn, {"parallel": [0.9, 0.8]}, "two in parallel")
    _expect(fn, {"parallel": [0.5, 0.6, 0.7]}, "three in parallel")
    _expect(fn, {"parallel": [0.9]}, "one child in parallel")


@task.test("quorum with equal availabilities",
           hint="'quorum': k means AT LEAST k of the n children up (k, k+1, ..., n), not exactly k; check your off-by-one at k")
def _quorum_equal(fn: Callable[..., Any]) -> None:
    _expect(fn, {"quorum": 2, "of": [0.9, 0.9, 0.9]}, "2 of 3")
    _expect(fn, {"quorum": 3, "of": [0.8] * 5}, "3 of 5")
    _expect(fn, {"quorum": 1, "of": [0.6] * 4}, "1 of 4 (same as parallel)")
    _expect(fn, {"quorum": 4, "of": [0.6] * 4}, "4 of 4 (same as series)")


@task.test("quorum with unequal availabilities, computed exactly",
           hint="the binomial formula needs one common availability; with different children, averaging them is wrong. Build the distribution of the number of children up one child at a time (P(j up) after adding child i), or enumerate the subsets")
def _quorum_unequal(fn: Callable[..., Any]) -> None:
    _expect(fn, {"quorum": 2, "of": [0.999, 0.999, 0.5]}, "2 of 3, one weak member")
    _expect(fn, {"quorum": 3, "of": [0.95, 0.6, 0.99, 0.8, 0.7]}, "3 of 5, all different")
    _expect(fn, {"quorum": 2, "of": [0.1, 0.9, 0.5, 0.3]}, "2 of 4, all different")


@task.test("nested specs: children can themselves be specs",
           hint="recurse: each child of series / parallel / quorum is a spec (a number or a dict), so compute its availability with compose_availability itself before combining")
def _nested(fn: Callable[..., Any]) -> None:
    _expect(fn, {"series": [{"parallel": [0.999, 0.999]}, {"parallel": [0.99, 0.99, 0.99]},
                            {"quorum": 2, "of": [0.995, 0.99, 0.98]}, 0.9995]},
            "load balancers, replicas, a 2-of-3 store and a database")
    _expect(fn, {"parallel": [{"series": [0.9, {"quorum": 1, "of": [0.3, 0.4]}]},
                              {"quorum": 2, "of": [0.8, {"series": [0.9, 0.95]}, 0.1]}]},
            "quorum inside parallel, series inside quorum")
    _expect(fn, {"series": [{"series": [{"parallel": [{"series": [0.9, 0.9]}, 0.5]}]}]}, "four levels deep")


@task.test("edge cases: availabilities 0 and 1",
           hint="a component that is always up (1.0) or always down (0.0) is valid input: no division, no log, no special-casing needed")
def _edges(fn: Callable[..., Any]) -> None:
    _expect(fn, {"series": [1.0, 0.9]}, "a perfect component in series")
    _expect(fn, {"parallel": [0.0, 0.7]}, "a dead component in parallel")
    _expect(fn, {"quorum": 2, "of": [1.0, 0.0, 0.5]}, "2 of 3 with a perfect and a dead member")


@task.test("invalid specs raise ValueError",
           hint="validate as you recurse: a dict must be exactly {'series': [...]}, {'parallel': [...]} or {'quorum': k, 'of': [...]} with a non-empty list and 1 <= k <= n; a leaf must be a number in [0, 1]. Raise ValueError (not KeyError or TypeError)")
def _invalid(fn: Callable[..., Any]) -> None:
    _expect_error(fn, {"serial": [0.9, 0.9]}, "unknown key")
    _expect_error(fn, {"series": []}, "empty list")
    _expect_error(fn, {"parallel": []}, "empty list")
    _expect_error(fn, {"quorum": 4, "of": [0.9, 0.9, 0.9]}, "k larger than n")
    _expect_error(fn, {"quorum": 0, "of": [0.9, 0.9, 0.9]}, "k = 0")
    _expect_error(fn, 1.5, "availability above 1")
    _expect_error(fn, {"series": [0.9, -0.1]}, "negative availability inside a series")
    _expect_error(fn, {"parallel": [0.9, {"series": [0.9, "0.9"]}]}, "a string deep inside")
