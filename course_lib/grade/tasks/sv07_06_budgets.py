"""Tests for the exercise of lesson 07.06 (budgets): the ``CircuitBreaker`` class.

The task, as the exercise states it:

* ``CircuitBreaker(fail_max, reset_timeout, clock)``; ``call(fn, *args, **kwargs)``;
  attributes ``state`` ("closed", "open" or "half-open") and ``fail_counter``.
* closed: a failure adds 1 to ``fail_counter``, a success resets it to 0;
  the failure that reaches ``fail_max`` opens the circuit (``opened_at =
  clock()``) and raises ``CircuitOpenError`` from the error.
* open: calls before ``opened_at + reset_timeout`` raise ``CircuitOpenError``
  without calling ``fn``; the first call at or after it is the trial (half-open).
* half-open: success closes (counter 0); failure opens again and raises ``CircuitOpenError``.

The reference is pybreaker 1.4.1 with its clock frozen to the same times:
the (outcome, state) sequence must be identical on random failure traces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...serving.budgets import CircuitOpenError, FakeClock, breaker_trace, failure_trace, pybreaker_trace
from ..core import TestFailure, register

LESSON = "07_serving/06_million_qps_budgets"

task = register(
    "serving.CircuitBreaker",
    function="CircuitBreaker",
    title="A circuit breaker on an injectable clock, equal to pybreaker call for call",
    lesson=LESSON,
    points=3,
    timeout_s=90,
)


def _make(cls: Callable[..., Any]) -> Callable[..., Any]:
    def make(fail_max: int, reset_timeout: float) -> Callable[[Callable[[], float]], Any]:
        def build(clock: Callable[[], float]) -> Any:
            cb = cls(fail_max, reset_timeout, clock=clock)
            if not callable(getattr(cb, "call", None)):
                raise TestFailure("CircuitBreaker needs a call(fn, *args, **kwargs) method")
            return cb
        return build
    return make


def _compare(cls: Callable[..., Any], fail_max: int, reset_timeout: float, times: list[float], fails: list[bool],
             what: str) -> None:
    got = breaker_trace(_make(cls)(fail_max, reset_timeout), times, fails)
    want = pybreaker_trace(fail_max, reset_timeout, times, fails)
    if got != want:
        i = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        lo = max(0, i - 5)
        history = ", ".join(f"t={times[j]:g} {'fail' if fails[j] else 'ok'}->{want[j][0]}/{want[j][1]}" for j in range(lo, i))
        raise TestFailure(f"{what} (fail_max={fail_max}, reset_timeout={reset_timeout}): call {i} at t={times[i]:g} "
                          f"({'failing' if fails[i] else 'succeeding'} function) gave (outcome, state) {got[i]}, "
                          f"pybreaker {want[i]}. Calls before it (pybreaker): {history or 'none'}")


@task.test("fail_max consecutive failures open the circuit; calls return the function's value",
           hint="count a failure when fn raises; when the count reaches fail_max, set state 'open' and "
                "raise CircuitOpenError (from the error); return fn's value on success")
def _opens(cls: Callable[..., Any]) -> None:
    _compare(cls, 3, 10, [0, 1, 2, 3, 4], [False, True, True, True, False], "ok, fail, fail, fail, then a call")
    clock = FakeClock()
    cb = cls(2, 10, clock=clock.now)
    got = cb.call(lambda x, y=0: x + y, 2, y=3)
    if got != 5:
        raise TestFailure(f"call(lambda x, y=0: x + y, 2, y=3) returned {got!r}, expected 5: pass *args and **kwargs to fn")


@task.test("a success in the closed state resets the failure count (only consecutive failures count)",
           hint="on success in the closed state set fail_counter = 0; a total count of failures opens too early")
def _consecutive(cls: Callable[..., Any]) -> None:
    _compare(cls, 2, 10, [0, 1, 2, 3, 4, 5], [True, False, True, False, True, False], "alternating failures")


@task.test("an open circuit rejects calls without calling the function, until reset_timeout has passed",
           hint="in the open state compare clock() with opened_at + reset_timeout; before it, raise "
                "CircuitOpenError and do not call fn")
def _rejects(cls: Callable[..., Any]) -> None:
    clock = FakeClock()
    cb = cls(1, 10, clock=clock.now)
    try:
        cb.call(lambda: 1 / 0)
    except CircuitOpenError:
        pass
    except ZeroDivisionError:
        raise TestFailure("the failure that reaches fail_max must raise CircuitOpenError (raise ... from err), "
                          "as pybreaker does, not the function's own error") from None
    called = []
    clock.sleep(9.5)
    try:
        cb.call(lambda: called.append(1))
    except CircuitOpenError:
        pass
    else:
        raise TestFailure("a call 9.5 after opening (reset_timeout=10) did not raise CircuitOpenError")
    if called:
        raise TestFailure("the open circuit called the function: it must fail fast without calling it")


@task.test("the trial call is the first call at or after opened_at + reset_timeout",
           hint="use >=, not >: at exactly opened_at + reset_timeout the circuit goes half-open and calls fn; "
                "opened_at is the time of the failure that opened it")
def _boundary(cls: Callable[..., Any]) -> None:
    _compare(cls, 1, 10, [0, 5, 10, 11, 20, 21], [True, False, False, True, True, False], "a trial at exactly the timeout")


@task.test("half-open: a failed trial re-opens (new timeout), a successful one closes and resets the count",
           hint="a failed trial sets opened_at = clock() again and raises CircuitOpenError; a successful one "
                "sets state 'closed' and fail_counter 0, so the next fail_max failures are needed to re-open")
def _half_open(cls: Callable[..., Any]) -> None:
    _compare(cls, 2, 5, [0, 1, 6, 7, 10, 11, 12, 13, 14], [True, True, True, False, False, False, True, False, True],
             "failed trial, then a successful one")


@task.test("(outcome, state) sequence identical to pybreaker 1.4.1 on 24 random bursty failure traces",
           hint="compare with the lesson's rules one by one; the first differing call is shown with the calls before it")
def _random(cls: Callable[..., Any]) -> None:
    for seed in range(6):
        times, fails = failure_trace(300, np.random.default_rng(1000 + seed), mean_gap=2.0)
        for fail_max, reset_timeout in ((1, 0), (2, 3), (3, 7), (5, 20)):
            _compare(cls, fail_max, reset_timeout, times.tolist(), fails.tolist(), f"random trace seed {1000 + seed}")


@task.test("bad arguments raise ValueError",
           hint="check fail_max is an int >= 1 and reset_timeout a finite number >= 0 in __init__")
def _bad(cls: Callable[..., Any]) -> None:
    for kwargs in ({"fail_max": 0, "reset_timeout": 1.0}, {"fail_max": 2, "reset_timeout": -1.0}):
        try:
            cls(clock=FakeClock().now, **kwargs)
        except ValueError:
            continue
        except Exception as err:
            raise TestFailure(f"CircuitBreaker(**{kwargs}) raised {type(err).__name__}, expected ValueError") from None
        raise TestFailure(f"CircuitBreaker(**{kwargs}) did not raise ValueError")
