"""Tests for the exercise of lesson 07.02 (batching): the ``DynamicBatcher`` policy class.

The task, as the exercise states it:

* ``DynamicBatcher(max_batch_size, max_wait_s=0.0, preferred_sizes=())``:
  ``max_batch_size`` an int >= 1, ``max_wait_s`` a number >= 0 (``math.inf``
  allowed: static batching), each preferred size an int in
  ``[1, max_batch_size]``; anything else raises ``ValueError``.
* ``next_batch(queue, now) -> (size, wake_at)``: ``queue`` holds the arrival
  times of the waiting requests, oldest first.  Empty queue: ``(0, None)``.
  The largest preferred size that can be formed: ``(p, None)``; without
  preferred sizes a full batch ``(max_batch_size, None)``.  Once the oldest
  request has waited ``max_wait_s``: everything there, at most
  ``max_batch_size``.  Otherwise ``(0, queue[0] + max_wait_s)``; with
  ``max_wait_s = inf``, ``(0, None)``.

The reference is ``course_lib.serving.batching.DynamicBatcher`` (Triton's
documented rule), and a whole simulated run must equal the simpy model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "07_serving/02_batching"


def _decide(cls: Callable[..., Any], settings: tuple, queue: list[float], now: float) -> Any:
    policy = cls(*settings)
    if not callable(getattr(policy, "next_batch", None)):
        raise TestFailure("DynamicBatcher needs a next_batch(queue, now) method")
    got = policy.next_batch(list(queue), now)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise TestFailure(f"next_batch must return a tuple (size, wake_at), got {got!r}")
    return got


def _expect(cls: Callable[..., Any], settings: tuple, queue: list[float], now: float, want: tuple) -> None:
    got = _decide(cls, settings, queue, now)
    size, wake = got
    ok = size == want[0] and ((wake is None and want[1] is None)
                              or (wake is not None and want[1] is not None and math.isclose(wake, want[1], abs_tol=1e-12)))
    if not ok:
        raise TestFailure(f"DynamicBatcher{settings}.next_batch(queue={queue}, now={now}) returned {got!r}, expected {want!r}")


task = register(
    "serving.DynamicBatcher",
    function="DynamicBatcher",
    title="Triton's dynamic-batching rule: next_batch(queue, now) -> (size, wake_at)",
    lesson=LESSON,
    points=3,
    timeout_s=90,
)


@task.test("an empty queue waits for the next arrival; a full batch runs at once, capped at max_batch_size",
           hint="with nothing waiting return (0, None); with max_batch_size or more waiting return (max_batch_size, None), "
                "never more than max_batch_size")
def _basics(cls: Callable[..., Any]) -> None:
    _expect(cls, (4, 0.010), [], 3.0, (0, None))
    _expect(cls, (4, 0.010), [1.0, 1.001, 1.002, 1.003], 1.003, (4, None))
    _expect(cls, (4, 0.010), [1.0] * 9, 1.0, (4, None))


@task.test("a partial batch waits until the OLDEST request has waited max_wait_s, then runs whatever is there",
           hint="the deadline is queue[0] + max_wait_s (the oldest arrival), not the newest and not now + max_wait_s; "
                "at or after the deadline return (len(queue), None)")
def _deadline(cls: Callable[..., Any]) -> None:
    _expect(cls, (8, 0.010), [2.000, 2.004, 2.006], 2.007, (0, 2.010))
    _expect(cls, (8, 0.010), [2.000, 2.004, 2.006], 2.010, (3, None))
    _expect(cls, (8, 0.010), [2.000, 2.004, 2.006], 2.5, (3, None))
    _expect(cls, (8, 0.0), [5.0, 5.1], 5.1, (2, None))


@task.test("preferred sizes: the largest one that can be formed runs at once (Triton: 7 waiting, [4, 8] -> 4)",
           hint="look for the largest preferred size <= len(queue) before anything else; without one that fits, "
                "fall back to the max_wait_s rule")
def _preferred(cls: Callable[..., Any]) -> None:
    _expect(cls, (16, 0.100, [4, 8]), [0.0] * 7, 0.0, (4, None))
    _expect(cls, (16, 0.100, [8, 4]), [0.0] * 9, 0.0, (8, None))
    _expect(cls, (16, 0.100, [4, 8]), [0.0] * 3, 0.05, (0, 0.1))
    _expect(cls, (16, 0.100, [4, 8]), [0.0] * 3, 0.1, (3, None))


@task.test("max_wait_s = inf is static batching: it never wakes on a timer and runs only full batches",
           hint="queue[0] + inf is not a time to wake at: return (0, None) until max_batch_size requests wait")
def _static(cls: Callable[..., Any]) -> None:
    _expect(cls, (4, math.inf), [0.0, 1.0, 2.0], 1e6, (0, None))
    _expect(cls, (4, math.inf), [0.0, 1.0, 2.0, 3.0], 3.0, (4, None))


@task.test("equal to course_lib's DynamicBatcher on 3,000 random queues and settings",
           hint="the failing case is printed: replay it by hand through the three rules in order "
                "(preferred size, full batch, deadline)")
def _random(cls: Callable[..., Any]) -> None:
    from ...serving.batching import DynamicBatcher as Reference

    rng = np.random.default_rng(7)
    for _ in range(3_000):
        max_b = int(rng.integers(1, 17))
        wait = float(rng.choice([0.0, 0.002, 0.01, math.inf]))
        pref = sorted(set(rng.integers(1, max_b + 1, size=int(rng.integers(0, 3))).tolist()))
        n = int(rng.integers(0, 2 * max_b + 2))
        queue = np.round(np.sort(rng.uniform(0, 0.02, n)), 6).tolist()
        now = round(float((queue[-1] if queue else 0.0) + rng.uniform(0, 0.015)), 6)
        settings = (max_b, wait, pref)
        _expect(cls, settings, queue, now, Reference(*settings).next_batch(queue, now))


@task.test("a whole simulated run with your policy equals the simpy model of the same batcher",
           hint="run simulate_batching(arrivals, YourBatcher(...), ServiceCurve(...)) yourself and compare the "
                "batch sizes with the lesson's DynamicBatcher: the first difference shows the rule that differs")
def _simulated(cls: Callable[..., Any]) -> None:
    from ...serving.batching import ServiceCurve, simpy_batching, simulate_batching
    from ...serving.des import poisson_arrivals

    arrivals = poisson_arrivals(150.0, 6.0, np.random.default_rng(3))
    curve = ServiceCurve(0.008, 0.004)
    for settings in ((16, 0.004), (4, 0.05), (8, math.inf)):
        try:
            run = simulate_batching(arrivals, cls(*settings), curve)
        except ValueError as err:
            raise TestFailure(f"simulating DynamicBatcher{settings}: {err}") from None
        ref = simpy_batching(arrivals, settings[0], settings[1], curve)
        same = np.array_equal(np.isnan(run.finish), np.isnan(ref)) and np.allclose(
            run.finish[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=0, atol=1e-9)
        if not same:
            i = int(np.argmax(~np.isclose(np.nan_to_num(run.finish, nan=-1), np.nan_to_num(ref, nan=-1), atol=1e-9)))
            raise TestFailure(f"DynamicBatcher{settings}: request {i} (arrival {arrivals[i]:.6f} s) finished at "
                              f"{run.finish[i]:.6f} s in your run, {ref[i]:.6f} s in the simpy model")


@task.test("bad settings raise ValueError",
           hint="check in __init__: max_batch_size an int >= 1 (not a bool or float), max_wait_s a number >= 0 "
                "(NaN is not), every preferred size an int in [1, max_batch_size]")
def _bad(cls: Callable[..., Any]) -> None:
    for bad in ((0,), (2.0,), (True,), (4, -0.001), (4, float("nan")), (4, 0.01, [5]), (4, 0.01, [0])):
        try:
            cls(*bad)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001
            raise TestFailure(f"DynamicBatcher{bad} raised {type(err).__name__}, expected ValueError") from None
        raise TestFailure(f"DynamicBatcher{bad} did not raise ValueError")
