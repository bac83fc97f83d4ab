"""Tests for the exercise of lesson 07.07 (autoscaling): ``hpa_desired_replicas``.

The task, as the exercise states it (the Kubernetes documentation, "Horizontal
Pod Autoscaling", section "Algorithm details"):

* ``desired = ceil(current_replicas * current_metric / target_metric)``;
* no change (``current_replicas``) when ``|ratio - 1| <= tolerance`` (0.1 by default);
* the result clamped to ``[min_replicas, max_replicas]``;
* ``ValueError`` for a negative metric or replica count, a target <= 0, or ``min_replicas > max_replicas``.

The independent route: the documented examples, and exact integer arithmetic
with ``fractions.Fraction`` on random cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "07_serving/07_autoscaling"

task = register(
    "serving.hpa_desired_replicas",
    function="hpa_desired_replicas",
    title="The Kubernetes HPA rule: ceil(current * metric / target), tolerance, clamp",
    lesson=LESSON,
    points=2,
    timeout_s=30,
)


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    got = fn(*args, **kwargs)
    if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
        raise TestFailure(f"hpa_desired_replicas{args} returned {got!r} ({type(got).__name__}); return an int")
    return int(got)


@task.test("the documented examples: 200m vs 100m doubles, 50m vs 100m halves",
           hint="desired = ceil(current * current_metric / target_metric): the ratio multiplies the replica count")
def _doc(fn: Callable[..., Any]) -> None:
    for cur, metric, target, want in ((4, 200, 100, 8), (4, 50, 100, 2), (10, 0.2, 0.1, 20), (10, 0.05, 0.1, 5)):
        got = _call(fn, cur, metric, target, max_replicas=100)
        if got != want:
            raise TestFailure(f"current_replicas={cur}, current_metric={metric}, target_metric={target}: got {got}, the docs give {want}")


@task.test("inside the tolerance band nothing changes (ratio 1.05 and 0.95; ratio 1.25 at tolerance 0.25 is on the edge, inside)",
           hint="compare |ratio - 1| with the tolerance using <= and return current_replicas unchanged inside the band")
def _tolerance(fn: Callable[..., Any]) -> None:
    cases = ((10, 105, 100, 0.1, 10), (10, 95, 100, 0.1, 10), (10, 1.25, 1.0, 0.25, 10),
             (10, 106, 100, 0.05, 11), (10, 120, 100, 0.1, 12), (7, 0.0, 1.0, 0.1, 1))
    for cur, metric, target, tol, want in cases:
        got = _call(fn, cur, metric, target, tolerance=tol, max_replicas=100)
        if got != want:
            raise TestFailure(f"current={cur}, metric={metric}, target={target}, tolerance={tol}: got {got}, expected {want}")


@task.test("rounds up (ceil), not to nearest and not down",
           hint="math.ceil: 3 replicas at ratio 1.5 need ceil(4.5) = 5, and 10 at ratio 0.81 need ceil(8.1) = 9")
def _ceil(fn: Callable[..., Any]) -> None:
    for cur, metric, target, want in ((3, 150, 100, 5), (10, 81, 100, 9), (3, 0.7, 0.5, 5), (1, 101, 50, 3)):
        got = _call(fn, cur, metric, target, max_replicas=100)
        if got != want:
            raise TestFailure(f"current={cur}, metric={metric}, target={target}: got {got}, expected {want} (ceil)")


@task.test("clamped to [min_replicas, max_replicas]",
           hint="apply min(max(desired, min_replicas), max_replicas) after the tolerance rule")
def _clamp(fn: Callable[..., Any]) -> None:
    for kwargs, want in (({"min_replicas": 1, "max_replicas": 10}, 10), ({"min_replicas": 30, "max_replicas": 50}, 30)):
        got = _call(fn, 8, 200, 100, **kwargs) if want == 10 else _call(fn, 8, 50, 100, **kwargs)
        if got != want:
            raise TestFailure(f"with {kwargs}: got {got}, expected {want}")
    got = _call(fn, 5, 1.0, 1.0, min_replicas=8, max_replicas=20)
    if got != 8:
        raise TestFailure(f"current=5 inside the tolerance band but min_replicas=8: got {got}, expected 8 (clamp applies)")


@task.test("equals exact rational arithmetic on 2,000 random cases",
           hint="compute the ratio once, apply tolerance, then ceil, then clamp; avoid rounding the ratio first")
def _random(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(7)
    for _ in range(2_000):
        cur = int(rng.integers(0, 60))
        target = int(rng.integers(1, 200))
        metric = int(rng.integers(0, 600))
        lo = int(rng.integers(0, 5))
        hi = int(rng.integers(lo, 200))
        ratio = Fraction(metric, target)
        if abs(abs(ratio - 1) - Fraction(1, 10)) < Fraction(1, 10**6):
            continue  # exactly on the band's edge: floating point decides (Kubernetes compares floats too)
        if (cur * ratio).denominator == 1:
            continue  # an exact integer: float rounding may make ceil go one up (as in the controller itself)
        want = cur if abs(ratio - 1) <= Fraction(1, 10) else math.ceil(cur * ratio)
        want = min(max(want, lo), hi)
        got = _call(fn, cur, metric, target, 0.1, lo, hi)
        if got != want:
            raise TestFailure(f"hpa_desired_replicas({cur}, {metric}, {target}, 0.1, {lo}, {hi}) = {got}, expected {want}")


@task.test("bad input raises ValueError: negative metric, target <= 0, min_replicas > max_replicas",
           hint="validate before computing: current_metric >= 0, target_metric > 0, current_replicas >= 0, min <= max")
def _bad(fn: Callable[..., Any]) -> None:
    for args, kwargs, what in (((3, -1.0, 1.0), {}, "negative metric"), ((3, 1.0, 0.0), {}, "zero target"),
                               ((3, 1.0, -2.0), {}, "negative target"), ((3, 1.0, 1.0), {"min_replicas": 5, "max_replicas": 2}, "min > max"),
                               ((-1, 1.0, 1.0), {}, "negative replicas")):
        try:
            fn(*args, **kwargs)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001
            raise TestFailure(f"{what}: raised {type(err).__name__}, expected ValueError") from None
        raise TestFailure(f"{what}: hpa_desired_replicas{args} {kwargs} returned instead of raising ValueError")
