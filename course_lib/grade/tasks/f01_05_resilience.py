"""Tests for the exercise of lesson 01.05 (prototype to production): ``retry_with_deadline``.

The task, as the exercise states it: ``retry_with_deadline(call, attempts,
deadline, clock, base_delay=0.1, jitter=None)``

* ``call()`` takes no argument; it succeeds by returning a value and fails by
  raising any ``Exception``.  Return the value of the first success.
* An attempt may start only while ``clock.now() < deadline``; otherwise raise
  ``DeadlineExceeded`` (from ``course_lib.resilience``).
* A success that returns with ``clock.now() > deadline`` is late: raise
  ``DeadlineExceeded``.
* After the k-th failure, if attempts remain, the delay is
  ``base_delay * 2**(k-1)``, passed through ``jitter`` when given
  (``delay = jitter(delay)``).  If ``clock.now() + delay >= deadline``, raise
  ``DeadlineExceeded`` without sleeping; else ``clock.sleep(delay)``.
* When all ``attempts`` failed, re-raise the last error of ``call``.
* ``ValueError`` before any call if ``call`` is not callable, ``attempts`` is
  not an int >= 1 (``True`` does not count), ``deadline`` is not a number or
  is NaN (``inf`` is allowed), or ``base_delay`` is negative.

The tests use their own clock, which records every ``sleep`` of the learner's
function separately from the time the calls themselves take.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable

from ..core import TestFailure, register

LESSON_01_05 = "01_foundations/05_prototype_to_production"


class _Clock:
    """A fake clock that records the learner's sleeps and refuses to go backwards."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
            raise TestFailure(f"clock.sleep() got {seconds!r}: expected a finite number of seconds")
        if seconds < 0:
            raise TestFailure(f"clock.sleep({seconds!r}): a negative sleep would move the clock backwards")
        self.sleeps.append(float(seconds))
        self.t += seconds

    def spend(self, seconds: float) -> None:  # time taken by the call itself (not a learner sleep)
        self.t += seconds


class _Boom(Exception):
    """The error of a failed call; ``attempt`` says which call raised it."""

    def __init__(self, attempt: int) -> None:
        super().__init__(f"injected failure of call {attempt}")
        self.attempt = attempt


class _Service:
    """A call that takes ``took`` seconds and fails or succeeds as scripted."""

    def __init__(self, clock: _Clock, outcomes: list[bool], took: float = 0.05) -> None:
        self.clock, self.outcomes, self.took = clock, list(outcomes), took
        self.starts: list[float] = []

    def __call__(self) -> str:
        n = len(self.starts)
        if n >= len(self.outcomes):
            raise TestFailure(f"call() was made {n + 1} times; at most {len(self.outcomes)} were expected")
        self.starts.append(self.clock.now())
        self.clock.spend(self.took)
        if self.outcomes[n]:
            return f"answer {n + 1}"
        raise _Boom(n + 1)


def _deadline_exceeded() -> type:
    from ...resilience import DeadlineExceeded

    return DeadlineExceeded


def _expect_deadline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> BaseException:
    DeadlineExceeded = _deadline_exceeded()
    try:
        out = fn(*args, **kwargs)
    except DeadlineExceeded as err:
        return err
    except (TestFailure, NotImplementedError):
        raise
    except Exception as err:
        raise TestFailure(f"expected DeadlineExceeded (from course_lib.resilience), got {type(err).__name__}: {err}") from None
    raise TestFailure(f"expected DeadlineExceeded, but the function returned {out!r}")


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-9 for x, y in zip(a, b))


task = register(
    "foundations.retry_with_deadline",
    function="retry_with_deadline",
    title="Retries with exponential backoff inside a deadline, on a fake clock",
    lesson=LESSON_01_05,
    points=3,
    timeout_s=30,
)


@task.test("success on the first try: one call, no sleep, its value returned",
           hint="call once and return the value as soon as a call succeeds; sleep only after a failure")
def _first_try(fn: Callable[..., Any]) -> None:
    clock = _Clock()
    service = _Service(clock, [True])
    out = fn(service, 5, 10.0, clock)
    if out != "answer 1":
        raise TestFailure(f"expected the call's return value 'answer 1', got {out!r}")
    if len(service.starts) != 1 or clock.sleeps:
        raise TestFailure(f"expected 1 call and no sleep, got {len(service.starts)} call(s) and sleeps {clock.sleeps}")


@task.test("two failures, then success: backoff 0.1 s then 0.2 s",
           hint="the delay after the k-th failure is base_delay * 2**(k-1): 0.1, 0.2, 0.4, ... (it starts at base_delay, and doubles)")
def _schedule(fn: Callable[..., Any]) -> None:
    clock = _Clock()
    service = _Service(clock, [False, False, True, True])
    out = fn(service, 4, 10.0, clock)
    if out != "answer 3":
        raise TestFailure(f"expected the value of the 3rd call ('answer 3'), got {out!r}")
    if not _close(clock.sleeps, [0.1, 0.2]):
        raise TestFailure(f"expected sleeps [0.1, 0.2], got {clock.sleeps}")
    clock = _Clock()
    service = _Service(clock, [False, False, True])
    fn(service, 3, 10.0, clock, 0.5)
    if not _close(clock.sleeps, [0.5, 1.0]):
        raise TestFailure(f"with base_delay=0.5, expected sleeps [0.5, 1.0], got {clock.sleeps}")


@task.test("all attempts fail: exactly `attempts` calls, then the last error is raised again",
           hint="after the last attempt, do not sleep and do not swallow the error: re-raise the exception of the last call (attempts=1 means one call, no retry)")
def _exhausted(fn: Callable[..., Any]) -> None:
    for attempts in (3, 1):
        clock = _Clock()
        service = _Service(clock, [False] * attempts)
        try:
            out = fn(service, attempts, 100.0, clock)
        except _Boom as err:
            if err.attempt != attempts:
                raise TestFailure(f"attempts={attempts}: re-raised the error of call {err.attempt}, expected the last one (call {attempts})") from None
        except (TestFailure, NotImplementedError):
            raise
        except Exception as err:
            raise TestFailure(f"attempts={attempts}: expected the call's own exception to be re-raised, got {type(err).__name__}: {err}") from None
        else:
            raise TestFailure(f"attempts={attempts}: every call failed, but the function returned {out!r}")
        if len(service.starts) != attempts:
            raise TestFailure(f"attempts={attempts}: expected {attempts} calls, got {len(service.starts)}")
        if len(clock.sleeps) != attempts - 1:
            raise TestFailure(f"attempts={attempts}: expected {attempts - 1} sleep(s) (between attempts only), got {clock.sleeps}")


@task.test("deadline reached mid-way: stop early, before sleeping past it",
           hint="before each sleep, check whether the next attempt could still start: if now + delay >= deadline, raise DeadlineExceeded instead of sleeping")
def _midway(fn: Callable[..., Any]) -> None:
    clock = _Clock()
    service = _Service(clock, [False] * 10)
    _expect_deadline(fn, service, 10, 1.0, clock)
    # calls start at 0, 0.15, 0.4, 0.85; after the 4th (t = 0.9) the delay 0.8 would end past 1.0
    if not _close(service.starts, [0.0, 0.15, 0.4, 0.85]):
        raise TestFailure(f"expected calls to start at [0, 0.15, 0.4, 0.85], got {service.starts}")
    if clock.now() > 1.0:
        raise TestFailure(f"the clock reads {clock.now():g} > the deadline 1.0: the function slept past the deadline")
    if not _close(clock.sleeps, [0.1, 0.2, 0.4]):
        raise TestFailure(f"expected sleeps [0.1, 0.2, 0.4] and then none, got {clock.sleeps}")


@task.test("no attempt at or after the deadline; a late answer is a failure",
           hint="an attempt may start only while clock.now() < deadline (so none if it has already passed), and a success that returns after the deadline must raise DeadlineExceeded")
def _late(fn: Callable[..., Any]) -> None:
    clock = _Clock(5.0)
    service = _Service(clock, [True])
    _expect_deadline(fn, service, 3, 5.0, clock)
    if service.starts:
        raise TestFailure("the deadline had already passed, yet call() was made")
    clock = _Clock()
    service = _Service(clock, [True], took=2.0)
    _expect_deadline(fn, service, 3, 1.0, clock)
    clock = _Clock()
    service = _Service(clock, [True], took=1.0)
    out = fn(service, 3, 1.0, clock)  # answered exactly at the deadline: on time
    if out != "answer 1":
        raise TestFailure(f"an answer at exactly the deadline is on time: expected 'answer 1', got {out!r}")
    clock = _Clock()
    service = _Service(clock, [False, True])
    if fn(service, 2, math.inf, clock) != "answer 2":
        raise TestFailure("with deadline=inf (no deadline) the second call should have been made and returned")


@task.test("jitter transforms each delay; the clock never goes backwards",
           hint="compute the exponential delay, pass it through jitter(delay) when jitter is given, and sleep exactly what it returns (and check that, not the raw delay, against the deadline)")
def _jitter(fn: Callable[..., Any]) -> None:
    clock = _Clock()
    service = _Service(clock, [False, False, False, True])
    asked: list[float] = []

    def third(delay: float) -> float:
        asked.append(delay)
        return delay / 3

    out = fn(service, 4, 10.0, clock, 0.3, jitter=third)
    if out != "answer 4":
        raise TestFailure(f"expected 'answer 4', got {out!r}")
    if not _close(asked, [0.3, 0.6, 1.2]):
        raise TestFailure(f"jitter should be called with the exponential delays [0.3, 0.6, 1.2], got {asked}")
    if not _close(clock.sleeps, [0.1, 0.2, 0.4]):
        raise TestFailure(f"expected to sleep what jitter returned, [0.1, 0.2, 0.4], got {clock.sleeps}")
    # the jittered delay fits before the deadline where the raw one would not
    clock = _Clock()
    service = _Service(clock, [False, True], took=0.0)
    if fn(service, 2, 0.5, clock, 0.8, jitter=lambda d: d / 4) != "answer 2":
        raise TestFailure("a jittered delay of 0.2 s fits before the deadline 0.5 s (the raw 0.8 s would not): the retry should run")


@task.test("invalid arguments raise ValueError before any call",
           hint="validate first: call must be callable; attempts an int >= 1 (bool is not accepted); deadline a number that is not NaN; base_delay >= 0")
def _invalid(fn: Callable[..., Any]) -> None:
    cases = [
        ("attempts=0", {"attempts": 0}), ("attempts=-2", {"attempts": -2}), ("attempts=2.5", {"attempts": 2.5}),
        ("attempts=True", {"attempts": True}), ("deadline=nan", {"deadline": math.nan}),
        ("deadline='soon'", {"deadline": "soon"}), ("base_delay=-0.1", {"base_delay": -0.1}),
        ("call=None", {"call": None}),
    ]
    for label, change in cases:
        clock = _Clock()
        service = _Service(clock, [True] * 3)
        args = {"call": service, "attempts": 3, "deadline": 10.0, "clock": clock} | change
        try:
            fn(args["call"], args["attempts"], args["deadline"], args["clock"], **({"base_delay": args["base_delay"]} if "base_delay" in args else {}))
        except ValueError:
            pass
        except (TestFailure, NotImplementedError):
            raise
        except Exception as err:
            raise TestFailure(f"{label}: expected ValueError, got {type(err).__name__}: {err}") from None
        else:
            raise TestFailure(f"{label}: expected ValueError, but the function ran")
        if service.starts:
            raise TestFailure(f"{label}: call() was made before the arguments were checked")
