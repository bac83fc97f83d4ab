"""Tests for the exercise of lesson 07.03 (caching): the ``LRUCache`` class.

The task, as the exercise states it:

* ``LRUCache(capacity)``: at most ``capacity`` entries (an int >= 0, else
  ``ValueError``); ``get(key)`` returns the cached value and makes the key the
  most recently used, or ``None`` on a miss; ``put(key, value)`` stores the
  value as the most recently used entry (an update of an existing key too),
  evicting the least recently used entry when the cache is full.  Both in
  O(1) time.

The reference is cachetools' ``LRUCache`` (an independent implementation),
whose hit/miss trace must be reproduced exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "07_serving/03_caching"


def _zipf_stream(n_items: int, s: float, n: int, seed: int) -> list[int]:
    p = np.arange(1, n_items + 1, dtype=np.float64) ** -s
    return np.random.default_rng(seed).choice(n_items, size=n, p=p / p.sum()).tolist()


def _trace(cache: Any, keys: list[Any]) -> list[bool]:
    """The learner's cache driven as a read-through cache: get, and put on a miss (values are never None)."""
    out = []
    for key in keys:
        value = cache.get(key)
        if value is None:
            cache.put(key, ("value", key))
            out.append(False)
        elif value != ("value", key):
            raise TestFailure(f"get({key!r}) returned {value!r}, but the value put for it was {('value', key)!r}")
        else:
            out.append(True)
    return out


def _reference_trace(capacity: int, keys: list[Any]) -> list[bool]:
    import cachetools

    if capacity == 0:
        return [False] * len(keys)
    ref = cachetools.LRUCache(capacity)
    out = []
    for key in keys:
        try:
            ref[key]
            out.append(True)
        except KeyError:
            ref[key] = key
            out.append(False)
    return out


def _first_difference(got: list[bool], want: list[bool], keys: list[Any]) -> str:
    i = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
    word = {True: "hit", False: "miss"}
    return (f"request {i} (key {keys[i]!r}, after {keys[max(0, i - 6) : i]!r}): yours was a {word[got[i]]}, "
            f"cachetools.LRUCache's a {word[want[i]]}; {sum(got)} vs {sum(want)} hits in all")


def _new(cls: Callable[..., Any], capacity: int) -> Any:
    cache = cls(capacity)
    for verb in ("get", "put"):
        if not callable(getattr(cache, verb, None)):
            raise TestFailure(f"LRUCache needs a {verb}() method")
    return cache


task = register(
    "serving.LRUCache",
    function="LRUCache",
    title="An O(1) LRU cache (get/put), equal to cachetools.LRUCache hit for hit",
    lesson=LESSON,
    points=3,
    timeout_s=90,
)


@task.test("get returns None on a miss and the stored value on a hit",
           hint="get(key) must return None for a key never put; after put(key, value), get(key) returns that value")
def _basics(cls: Callable[..., Any]) -> None:
    cache = _new(cls, 2)
    if cache.get("a") is not None:
        raise TestFailure(f"get on an empty cache returned {cache.get('a')!r}, expected None")
    cache.put("a", 1)
    cache.put("b", 2)
    if (cache.get("a"), cache.get("b")) != (1, 2):
        raise TestFailure(f"after put('a', 1), put('b', 2) with capacity 2: "
                          f"get gave {cache.get('a')!r}, {cache.get('b')!r}")


@task.test("evicts the least recently *used* entry, not the oldest inserted",
           hint="a get must move the key to the most recent end; evicting in insertion order is FIFO, not LRU")
def _recency(cls: Callable[..., Any]) -> None:
    cache = _new(cls, 2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")  # now b is the least recently used
    cache.put("c", 3)
    if cache.get("b") is not None or cache.get("a") != 1 or cache.get("c") != 3:
        raise TestFailure("capacity 2: put a, put b, get a, put c must evict b and keep a and c")


@task.test("put on an existing key updates its value and refreshes its recency",
           hint="when the key is already cached, replace the value and move it to the most recent end; do not evict "
                "anything and do not store the key twice")
def _update(cls: Callable[..., Any]) -> None:
    cache = _new(cls, 2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)  # a is now most recent: b goes next
    cache.put("c", 3)
    got = (cache.get("a"), cache.get("b"), cache.get("c"))
    if got != (10, None, 3):
        raise TestFailure(f"put a=1, b=2, a=10, c=3 (capacity 2) then get a, b, c gave {got}, expected (10, None, 3)")


@task.test("capacity 0 caches nothing and capacity 1 keeps the last key",
           hint="capacity 0: put must store nothing (and not crash on an empty cache); evict before or after "
                "inserting, but never keep more than capacity entries")
def _edges(cls: Callable[..., Any]) -> None:
    keys = [1, 1, 2, 1, 1, 3, 3, 2]
    for capacity in (0, 1):
        got, want = _trace(_new(cls, capacity), keys), _reference_trace(capacity, keys)
        if got != want:
            raise TestFailure(f"capacity {capacity}: " + _first_difference(got, want, keys))


@task.test("hit/miss trace identical to cachetools.LRUCache on 100,000 Zipf requests",
           hint="compare with cachetools by hand on a short stream; the usual mistakes are a get that does not "
                "refresh recency or an eviction that picks the most recently used end")
def _trace_equal(cls: Callable[..., Any]) -> None:
    for capacity, s, seed in ((64, 0.9, 0), (1_000, 1.1, 1)):
        keys = _zipf_stream(5_000, s, 50_000, seed)
        got, want = _trace(_new(cls, capacity), keys), _reference_trace(capacity, keys)
        if got != want:
            raise TestFailure(f"capacity {capacity}: " + _first_difference(got, want, keys))


@task.test("a bad capacity raises ValueError",
           hint="check capacity in __init__: it must be an int >= 0; raise ValueError for -1, 2.5 or '3'")
def _bad(cls: Callable[..., Any]) -> None:
    for bad in (-1, 2.5, "3"):
        try:
            cls(bad)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001
            raise TestFailure(f"LRUCache({bad!r}) raised {type(err).__name__}, expected ValueError") from None
        raise TestFailure(f"LRUCache({bad!r}) did not raise ValueError")


@task.test("get and put take O(1) time: no slower with 20,000 entries than with 100",
           hint="finding and moving a key must not scan a list (list.remove, list.index, min over timestamps are "
                "O(n)); keep a dict to the entries plus an order you can update in place (a doubly linked list or "
                "an OrderedDict with move_to_end)")
def _constant_time(cls: Callable[..., Any]) -> None:
    def per_op(capacity: int) -> float:
        cache = _new(cls, capacity)
        for k in range(capacity):
            cache.put(k, ("value", k))
        probe = np.random.default_rng(capacity).integers(0, capacity, 4_000).tolist()
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            for k in probe:
                cache.get(k)
                cache.put(capacity + k, ("value", k))  # a miss that evicts
                cache.put(k, ("value", k))
            best = min(best, time.perf_counter() - start)
        return best / (3 * len(probe))

    small, large = per_op(100), per_op(20_000)
    if large > 10 * small + 2e-6:
        raise TestFailure(f"{large * 1e6:.1f} µs per operation with 20,000 entries vs {small * 1e6:.1f} µs with 100: "
                          "the time grows with the size of the cache")
