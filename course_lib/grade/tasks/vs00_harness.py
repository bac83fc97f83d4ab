"""Tests for the exercise of lesson 02/00 (overview and benchmark harness): ``pareto_front``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON_00 = "02_vector_search/00_overview_harness"

front = register(
    "vector_search.pareto_front",
    function="pareto_front",
    title="Pareto front of (recall, QPS) points",
    lesson=LESSON_00,
    points=2,
    timeout_s=30,
)


def _reference(points: Any) -> list[int]:
    from ...ann.harness import pareto_front

    return pareto_front(points).tolist()


def _call(fn: Callable[..., Any], points: Any) -> list[int]:
    original = np.array(points, dtype=np.float64, copy=True).reshape(-1, 2)
    arg = np.array(original, copy=True)
    out = fn(arg)
    if not np.array_equal(arg, original):
        raise TestFailure("pareto_front changed its input array: sort or negate a copy instead")
    try:
        got = np.asarray(out)
    except Exception:  # noqa: BLE001 - anything not array-like is the learner's mistake
        raise TestFailure(f"expected an array of indices, got {type(out).__name__}") from None
    if got.ndim != 1:
        raise TestFailure(f"expected a 1-D array of row indices, got shape {got.shape}")
    if got.size and not np.issubdtype(got.dtype, np.integer):
        raise TestFailure(f"expected integer row indices, got dtype {got.dtype}")
    return [int(i) for i in got]


def _expect(fn: Callable[..., Any], points: Any, what: str) -> None:
    got, want = _call(fn, points), _reference(points)
    if got != want:
        raise TestFailure(f"{what}: for points {np.asarray(points).tolist()} expected front {want}, got {got}")


@front.test("returns the row indices of the front, sorted ascending",
            hint="return the row indices of the points nobody dominates, as an integer array sorted ascending (not the points themselves, and not in the order of a sweep)")
def _basic(fn: Callable[..., Any]) -> None:
    _expect(fn, [(0.9, 100.0), (0.5, 1000.0), (0.8, 50.0), (1.0, 10.0), (0.5, 900.0)], "five points")


@front.test("maximises both coordinates",
            hint="both recall and QPS are better when larger: a point is dominated by one that is at least as large in both, not at least as small")
def _maximise(fn: Callable[..., Any]) -> None:
    # minimising both would return [2] (the worst point); maximising returns [0, 1]
    _expect(fn, [(1.0, 10.0), (0.2, 500.0), (0.1, 5.0)], "a corner case for the direction")


@front.test("a tie in one coordinate and a loss in the other is dominated",
            hint="strict dominance in both coordinates is too strict: (0.9, 50) is dominated by (0.9, 100) because it is >= in both and > in one")
def _weak_dominance(fn: Callable[..., Any]) -> None:
    _expect(fn, [(0.9, 100.0), (0.9, 50.0), (0.7, 100.0)], "ties in one coordinate")


@front.test("exact duplicates both stay on the front",
            hint="a point never dominates its exact copy: require > in at least one coordinate, and do not drop a point because of itself or its duplicate")
def _duplicates(fn: Callable[..., Any]) -> None:
    _expect(fn, [(0.9, 100.0), (0.5, 10.0), (0.9, 100.0)], "duplicated front point")
    _expect(fn, [(0.5, 10.0), (0.5, 10.0), (0.9, 100.0)], "duplicated dominated point")


@front.test("empty input and a single point",
            hint="edge cases: an empty (0, 2) array has an empty front (return an empty integer array), and one point is its own front ([0])")
def _edges(fn: Callable[..., Any]) -> None:
    got = _call(fn, np.zeros((0, 2)))
    if got != []:
        raise TestFailure(f"an empty set of points has an empty front, got {got}")
    _expect(fn, [(0.42, 7.0)], "one point")


@front.test("agrees with the definition on random points with many ties",
            hint="check every pair: i is on the front unless some j has p[j] >= p[i] in both coordinates and p[j] > p[i] in at least one")
def _random(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(3)
    for n in (2, 7, 30, 200):
        P = np.column_stack([rng.integers(0, 6, n) / 5, rng.integers(1, 8, n) * 1000.0])  # coarse grid: ties
        got, want = _call(fn, P), _reference(P)
        if got != want:
            raise TestFailure(f"n={n} random points on a coarse grid: expected {len(want)} front points {want[:10]}..., got {got[:10]}...")
