"""Tests for the exercise of lesson 05.02 (the multi-stage funnel): ``merge_candidates``.

The task, as the exercise states it:

``merge_candidates(sources, quotas)``: ``sources`` is a dict name -> ranked item
ids (list or 1-d int array, best first), ``quotas`` a dict name -> the most items
taken from that source.  Round-robin: in round r = 1, 2, ... each source, in the
order of ``sources``, offers its r-th item; an item already taken (by any source)
or a source whose quota is full is skipped, otherwise the item is taken and
credited to that source.  A source absent from ``quotas`` contributes nothing;
no backfill.  Returns ``(ids, origin)``: an int array of the taken ids in the
order taken, and a list of the source name of each.  A quota naming an unknown
source, or a quota that is not an int >= 0, raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON = "05_recsys/02_multistage_funnel"


def _reference(sources: dict[str, Any], quotas: dict[str, int]) -> tuple[list[int], list[str]]:
    """Source-major bookkeeping, written independently of course_lib: one cursor per source."""
    cursors = {name: 0 for name in sources}
    left = {name: quotas.get(name, 0) for name in sources}
    seen: set[int] = set()
    ids: list[int] = []
    origin: list[str] = []
    rounds = max((len(v) for v in sources.values()), default=0)
    for _ in range(rounds):
        for name, lst in sources.items():
            pos = cursors[name]
            cursors[name] = pos + 1
            if pos >= len(lst) or left[name] == 0:
                continue
            item = int(lst[pos])
            if item in seen:
                continue
            seen.add(item)
            left[name] -= 1
            ids.append(item)
            origin.append(name)
    return ids, origin


def _call(fn: Callable[..., Any], sources: dict[str, Any], quotas: dict[str, int]) -> tuple[list[int], list[str]]:
    out = fn({k: (v.copy() if isinstance(v, np.ndarray) else list(v)) for k, v in sources.items()}, dict(quotas))
    if not isinstance(out, tuple) or len(out) != 2:
        raise TestFailure(f"expected a tuple (ids, origin), got {type(out).__name__}")
    ids, origin = out
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise TestFailure(f"ids must be a 1-d array of int ids, got shape {ids.shape}, dtype {ids.dtype}")
    origin = list(origin)
    if len(origin) != len(ids):
        raise TestFailure(f"origin must name one source per id: {len(ids)} ids but {len(origin)} names")
    return [int(i) for i in ids], [str(o) for o in origin]


def _expect(fn: Callable[..., Any], sources: dict[str, Any], quotas: dict[str, int], what: str) -> None:
    got = _call(fn, sources, quotas)
    want = _reference(sources, quotas)
    if got[0] != want[0]:
        raise TestFailure(f"{what}: sources {dict((k, list(map(int, v))) for k, v in sources.items())}, quotas {quotas}: "
                          f"ids {got[0]}, expected {want[0]}")
    if got[1] != want[1]:
        raise TestFailure(f"{what}: ids are right but origin is {got[1]}, expected {want[1]}")


def _raises(fn: Callable[..., Any], sources: dict[str, Any], quotas: dict[str, Any], what: str) -> None:
    try:
        fn(sources, quotas)
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001 - report the wrong exception type
        raise TestFailure(f"{what}: expected ValueError, got {type(err).__name__}: {err}") from None
    raise TestFailure(f"{what}: expected ValueError, but no error was raised")


merge_task = register(
    "recsys.merge_candidates",
    function="merge_candidates",
    title="Merge ranked candidate sources round-robin with quotas",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


@merge_task.test("round-robin order with quotas: returns (ids, origin)",
                 hint="loop over rounds r = 0, 1, ... and, inside each round, over the sources in dict order; take list[r] "
                      "while that source's count is below its quota. Taking a whole source before the next one is the "
                      "source-by-source rule, not round-robin")
def _round_robin(fn: Callable[..., Any]) -> None:
    _expect(fn, {"a": [1, 2, 3], "b": [10, 20, 30]}, {"a": 2, "b": 3}, "two sources")
    _expect(fn, {"x": [5, 6, 7, 8], "y": [1], "z": [9, 4]}, {"x": 3, "y": 1, "z": 2}, "three sources")


@merge_task.test("an item offered twice is counted once, under the first source that offered it",
                 hint="keep a set of taken ids; when a source offers a taken item, skip it WITHOUT using up that "
                      "source's quota: it then offers its next item in the next round")
def _duplicates(fn: Callable[..., Any]) -> None:
    _expect(fn, {"a": [5, 6], "b": [5, 7, 8]}, {"a": 2, "b": 2}, "overlapping sources")
    _expect(fn, {"a": [3, 9], "b": [1, 3, 4, 5]}, {"a": 2, "b": 3}, "the same item at different ranks")
    _expect(fn, {"a": [1, 1, 2, 2, 3]}, {"a": 3}, "a repeat inside one source")
    got = _call(fn, {"a": [1, 2, 3], "b": [3, 2, 1]}, {"a": 3, "b": 3})
    if len(set(got[0])) != len(got[0]):
        raise TestFailure(f"ids contain duplicates: {got[0]}")


@merge_task.test("quotas larger than a source, empty sources, and sources without a quota",
                 hint="a source with fewer items than its quota gives what it has (no error, no padding); an empty "
                      "source gives nothing; a source missing from quotas gets quota 0 (use quotas.get(name, 0)); "
                      "run rounds up to the longest list")
def _edges(fn: Callable[..., Any]) -> None:
    _expect(fn, {"a": [1], "b": [], "c": [9, 8]}, {"a": 10, "b": 3}, "short, empty and unquoted sources")
    _expect(fn, {"a": [4, 5, 6]}, {"a": 0}, "a zero quota")
    _expect(fn, {"a": np.array([7, 3, 5], dtype=np.int32), "b": np.array([], dtype=np.int64)}, {"a": 2, "b": 2},
            "numpy arrays as sources")
    ids, origin = _call(fn, {}, {})
    if ids or origin:
        raise TestFailure(f"no sources must give no candidates, got {ids}, {origin}")


@merge_task.test("a quota for an unknown source, or a negative or non-integer quota, raises ValueError",
                 hint="validate quotas before merging: every key must be a key of sources, every value an int >= 0 "
                      "(a bool is not a quota); raise ValueError saying what was expected and what arrived")
def _bad_input(fn: Callable[..., Any]) -> None:
    _raises(fn, {"a": [1, 2]}, {"a": 1, "zzz": 2}, "unknown source 'zzz' in quotas")
    _raises(fn, {"a": [1, 2]}, {"a": -1}, "negative quota")
    _raises(fn, {"a": [1, 2]}, {"a": 1.5}, "non-integer quota")


@merge_task.test("deterministic, quotas respected, inputs untouched, on random sources",
                 hint="iterate over lists and the sources dict in their given order; de-duplicating with set(...) and "
                      "then iterating over the set loses the ranking; do not sort or shuffle, and do not modify the "
                      "input lists")
def _random(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(5)
    for trial in range(20):
        names = ["ann", "covis", "pop", "fresh"][: 1 + trial % 4]
        sources = {n: rng.integers(0, 40, rng.integers(0, 25)) for n in names}
        quotas = {n: int(rng.integers(0, 12)) for n in names if rng.random() < 0.9}
        before = {n: s.copy() for n, s in sources.items()}
        _expect(fn, sources, quotas, f"random case {trial}")
        first = fn(sources, quotas)
        again = fn(sources, quotas)
        if list(map(int, first[0])) != list(map(int, again[0])) or list(first[1]) != list(again[1]):
            raise TestFailure("two calls with the same input gave different results")
        if any(not np.array_equal(sources[n], before[n]) for n in names):
            raise TestFailure("the input lists were modified")
        for n, q in quotas.items():
            if list(first[1]).count(n) > q:
                raise TestFailure(f"source {n!r} got {list(first[1]).count(n)} items, above its quota {q}")
