"""Tests for the exercise of lesson 02/08 (choosing an index): ``recommend_index`` from a fixed rule table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import TestFailure, register

LESSON_08 = "02_vector_search/08_choosing_an_index"

task = register(
    "vector_search.recommend_index",
    function="recommend_index",
    title="Recommend a faiss index from a memory budget, recall target and update rate",
    lesson=LESSON_08,
    points=3,
    timeout_s=30,
)


def _reference(*args: Any) -> tuple[str, float]:
    from ...ann.choose import recommend_index_simple

    return recommend_index_simple(*args)


def _call(fn: Callable[..., Any], *args: Any) -> tuple[str, float]:
    out = fn(*args)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], str)):
        raise TestFailure(f"expected a tuple (factory string, bytes per vector), got {out!r}")
    try:
        return out[0], float(out[1])
    except (TypeError, ValueError):
        raise TestFailure(f"the second element must be a number of bytes per vector, got {out[1]!r}") from None


def _expect(fn: Callable[..., Any], args: tuple[Any, ...], what: str) -> None:
    want = _reference(*args)
    got = _call(fn, *args)
    if got[0] != want[0] or abs(got[1] - want[1]) > 1e-9:
        n, d, budget, recall, updates = args
        raise TestFailure(f"{what}: recommend_index(n={n:,}, d={d}, mem_budget={budget:,.0f}, recall_target={recall}, "
                          f"updates={updates}) expected {want}, got {got}")


def _expect_error(fn: Callable[..., Any], args: tuple[Any, ...], what: str) -> None:
    try:
        out = fn(*args)
    except ValueError:
        return
    raise TestFailure(f"{what}: expected ValueError for {args}, got {out!r}")


@task.test("small databases and exact search get Flat",
           hint="rule 3: Flat when 4*d bytes per vector fit AND (n <= 10_000 OR recall_target == 1); its cost is 4*d bytes (no ids)")
def _flat(fn: Callable[..., Any]) -> None:
    _expect(fn, (5_000, 384, 5_000 * 2_000, 0.9, 0), "small n")
    _expect(fn, (10_000, 32, 10_000 * 128, 0.5, 0), "n = 10,000 exactly, budget exactly 4d")
    _expect(fn, (2_000_000, 128, 2_000_000 * 600, 1.0, 0), "recall 1.0 at large n")


@task.test("the budget is a total: divide by n",
           hint="mem_budget is the RAM for the whole index: compare mem_budget / n (bytes per vector) with each index's bytes per vector, not the total")
def _per_vector(fn: Callable[..., Any]) -> None:
    _expect(fn, (1_000_000, 128, 100e6, 0.9, 0), "100 MB for 1M vectors (100 B each)")
    _expect(fn, (1_000_000, 128, 2e9, 0.9, 0), "2 GB for 1M vectors")


@task.test("HNSW32 when its links fit and updates are rare",
           hint="rule 4: HNSW32 costs 4*d + 256 bytes per vector (2*32 int32 links on layer 0) and is allowed only when updates <= 100 per second")
def _hnsw(fn: Callable[..., Any]) -> None:
    _expect(fn, (1_000_000, 128, 1_000_000 * (4 * 128 + 256), 0.95, 0), "budget exactly 4d + 256")
    _expect(fn, (1_000_000, 128, 1_000_000 * (4 * 128 + 255), 0.95, 0), "budget one byte short of HNSW")
    _expect(fn, (1_000_000, 128, 4e9, 0.95, 100), "updates = 100 exactly")
    _expect(fn, (1_000_000, 128, 4e9, 0.95, 101), "updates = 101")


@task.test("inverted lists store an 8-byte id per vector",
           hint="IVF-Flat costs 4*d + 8 bytes per vector and IVF-PQ m + 8: forgetting the 8-byte id overfills the budget")
def _ids(fn: Callable[..., Any]) -> None:
    _expect(fn, (1_000_000, 128, 1_000_000 * (4 * 128 + 7), 0.9, 0), "one byte short of IVF-Flat")
    _expect(fn, (1_000_000, 128, 1_000_000 * (4 * 128 + 8), 0.9, 0), "exactly IVF-Flat")
    _expect(fn, (1_000_000, 128, 71e6, 0.9, 0), "71 B per vector: PQ code + id")


@task.test("IVF-PQ takes the largest m dividing d that fits, and nlist = 4 * isqrt(n)",
           hint="try m from d down to 1, keep the first with d % m == 0 and m + 8 <= budget per vector; nlist is 4 * math.isqrt(n) (an int), written into the factory string")
def _pq_m(fn: Callable[..., Any]) -> None:
    _expect(fn, (50_000, 96, 50_000 * 40, 0.8, 0), "d = 96, 40 B per vector")
    _expect(fn, (123_457, 100, 123_457 * 30.5, 0.8, 0), "d = 100, 30.5 B per vector")
    _expect(fn, (20_000, 32, 20_000 * 9, 0.5, 0), "9 B per vector: m = 1")


@task.test("recall target boundaries",
           hint="recall_target must be in (0, 1]: 0 and values above 1 are errors, 1.0 is allowed and means exact search (Flat, or ValueError when 4*d does not fit); 0.999 is not exact")
def _recall(fn: Callable[..., Any]) -> None:
    _expect(fn, (1_000_000, 128, 1_000_000 * 512, 1.0, 0), "recall 1.0, raw vectors fit exactly")
    _expect(fn, (1_000_000, 128, 1_000_000 * 512, 0.999, 0), "recall 0.999")
    _expect_error(fn, (1_000_000, 128, 1_000_000 * 511, 1.0, 0), "recall 1.0 but the raw vectors do not fit")
    _expect_error(fn, (1_000, 32, 1e6, 0.0, 0), "recall_target = 0")
    _expect_error(fn, (1_000, 32, 1e6, 1.01, 0), "recall_target > 1")


@task.test("invalid inputs raise ValueError",
           hint="validate first: n and d positive, mem_budget > 0, updates >= 0 (ValueError), and a budget below 9 bytes per vector fits nothing (ValueError)")
def _invalid(fn: Callable[..., Any]) -> None:
    for args, what in (((0, 32, 1e6, 0.9, 0), "n = 0"), ((1_000, 0, 1e6, 0.9, 0), "d = 0"),
                       ((1_000, 32, 0, 0.9, 0), "mem_budget = 0"), ((1_000, 32, -5.0, 0.9, 0), "negative budget"),
                       ((1_000, 32, 1e6, 0.9, -1), "negative updates"),
                       ((1_000_000, 128, 8e6, 0.5, 0), "8 B per vector")):
        _expect_error(fn, args, what)
