"""Tests for the exercise of lesson 07.05 (low latency): the ``SPSCRing`` class.

The task, as the exercise states it:

* ``SPSCRing(capacity)``: a fixed-capacity single-producer single-consumer ring buffer
  holding **exactly** ``capacity`` items (an int >= 1, else ``ValueError``), over a
  preallocated array with a head index (written only by the consumer) and a tail index
  (written only by the producer);
* ``push(item) -> bool``: append, or return False (and change nothing) when full;
* ``pop() -> item or None``: the oldest item, or None when empty.

The reference is a bounded ``collections.deque`` model, op by op; the concurrent test runs a
producer thread and a consumer thread (bounded in time) and checks order kept, nothing lost.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "07_serving/05_low_latency"


def _new(cls: Callable[..., Any], capacity: int) -> Any:
    ring = cls(capacity)
    for verb in ("push", "pop"):
        if not callable(getattr(ring, verb, None)):
            raise TestFailure(f"SPSCRing needs a {verb}() method")
    return ring


def _model_run(cls: Callable[..., Any], capacity: int, n_ops: int, seed: int) -> None:
    """Random pushes and pops, each result compared with a bounded deque."""
    rng = np.random.default_rng(seed)
    ring, model, nxt = _new(cls, capacity), collections.deque(), 0
    p_push = rng.uniform(0.3, 0.7)
    for op in range(n_ops):
        if rng.random() < p_push:
            want = len(model) < capacity
            got = ring.push(nxt)
            if bool(got) != want or not isinstance(got, (bool, np.bool_)):
                state = "full" if not want else "not full"
                raise TestFailure(f"capacity {capacity}, op {op}: push({nxt}) returned {got!r} with "
                                  f"{len(model)} items inside ({state}); expected {want}")
            if want:
                model.append(nxt)
            nxt += 1
        else:
            want = model.popleft() if model else None
            got = ring.pop()
            if (got is None) != (want is None) or (want is not None and got != want):
                raise TestFailure(f"capacity {capacity}, op {op}: pop() returned {got!r}, expected {want!r} "
                                  f"({len(model) + (want is not None)} items were inside, oldest first)")


task = register(
    "serving.SPSCRing",
    function="SPSCRing",
    title="A single-producer single-consumer ring buffer (push/pop, wrap-around, two threads)",
    lesson=LESSON,
    points=3,
    timeout_s=90,
)


@task.test("pop on an empty ring returns None; push then pop returns the item",
           hint="head == tail must mean empty; pop returns the slot at head and then advances head")
def _basics(cls: Callable[..., Any]) -> None:
    ring = _new(cls, 4)
    if ring.pop() is not None:
        raise TestFailure("pop() on a new ring must return None")
    ok = ring.push(42)
    if not ok:
        raise TestFailure(f"push(42) on an empty ring of capacity 4 returned {ok!r}, expected True")
    got = ring.pop()
    if got != 42:
        raise TestFailure(f"push(42) then pop() returned {got!r}")
    if ring.pop() is not None:
        raise TestFailure("after the only item was popped, pop() must return None")


@task.test("exactly `capacity` items fit; push on a full ring returns False and overwrites nothing",
           hint="with one slot kept empty, the array needs capacity + 1 slots; full means (tail + 1) % size == head")
def _capacity(cls: Callable[..., Any]) -> None:
    for capacity in (1, 3, 8):
        ring = _new(cls, capacity)
        got = [bool(ring.push(i)) for i in range(capacity + 2)]
        if got != [True] * capacity + [False, False]:
            raise TestFailure(f"capacity {capacity}: {capacity + 2} pushes on an empty ring returned {got}")
        popped = [ring.pop() for _ in range(capacity + 1)]
        if popped[:capacity] != list(range(capacity)) or popped[capacity] is not None:
            raise TestFailure(f"capacity {capacity}: after filling it, pops gave {popped}; a push on a full ring "
                              "must not overwrite the oldest item")
        if not ring.push(99) or ring.pop() != 99:
            raise TestFailure(f"capacity {capacity}: after emptying it, push/pop must work again")


@task.test("FIFO order across many wrap-arounds (op by op against a bounded deque)",
           hint="both indices must wrap with % size (or a compare to size) using the same size; an index that wraps "
                "at capacity instead of the array length skips or repeats a slot")
def _wraparound(cls: Callable[..., Any]) -> None:
    for capacity, seed in ((1, 0), (2, 1), (5, 2), (16, 3)):
        _model_run(cls, capacity, 4_000, seed)


@task.test("a bad capacity raises ValueError",
           hint="check capacity in __init__: an int >= 1; raise ValueError for 0, -1, 2.5 or '3'")
def _bad(cls: Callable[..., Any]) -> None:
    for bad in (0, -1, 2.5, "3"):
        try:
            cls(bad)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001
            raise TestFailure(f"SPSCRing({bad!r}) raised {type(err).__name__}, expected ValueError") from None
        raise TestFailure(f"SPSCRing({bad!r}) did not raise ValueError")


@task.test("a producer thread and a consumer thread: order kept, nothing lost (20,000 items, capacity 16)",
           hint="the producer may write only tail and the consumer only head; write the item *before* advancing "
                "tail and read it *before* advancing head. A shared count updated by both threads races")
def _threads(cls: Callable[..., Any]) -> None:
    ring, n, got = _new(cls, 16), 20_000, []
    deadline = time.monotonic() + 15
    error: list[BaseException] = []

    def consume() -> None:
        try:
            while len(got) < n and time.monotonic() < deadline:
                item = ring.pop()
                if item is None:
                    time.sleep(0)
                else:
                    got.append(item)
        except BaseException as err:  # noqa: BLE001
            error.append(err)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    sent = 0
    try:
        while sent < n and time.monotonic() < deadline and not error:
            if ring.push(sent):
                sent += 1
            else:
                time.sleep(0)
    finally:
        t.join(timeout=15)
    if error:
        raise TestFailure(f"the consumer thread raised {type(error[0]).__name__}: {error[0]}")
    if sent < n or len(got) < n:
        raise TestFailure(f"after 15 s, {sent:,} items pushed and {len(got):,} popped of {n:,}: items were lost "
                          "or the ring stopped reporting free space")
    bad = next((i for i, v in enumerate(got) if v != i), None)
    if bad is not None:
        raise TestFailure(f"item {bad} popped as {got[bad]!r} (expected {bad}): order broken or an item lost/duplicated")
