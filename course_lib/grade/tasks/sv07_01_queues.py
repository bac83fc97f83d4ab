"""Tests for the exercise of lesson 07.01 (queues, Little's law): ``erlang_c``.

The task, as the exercise states it:

* ``erlang_c(lam, mu, c) -> float``: the probability that an arriving request
  has to wait in an M/M/c queue (arrival rate ``lam``, service rate ``mu`` per
  server, ``c`` servers), computed stably (Erlang B recursion) for c up to
  thousands, raising ``ValueError`` for an unstable queue (lam >= c mu), a
  non-integer or non-positive c, and non-positive rates.

The reference routes are independent of course_lib.serving.queueing: the
textbook factorial formula in exact rational arithmetic, the truncated-Poisson
form of Erlang B from ``scipy.stats.poisson``, and published values.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any
from collections.abc import Callable

from ..core import TestFailure, register

LESSON = "07_serving/01_queues_littles_law"


def _factorial_route(lam: float, mu: float, c: int) -> float:
    """C(c, a) from the closed form with factorials, in exact fractions (fine for small c)."""
    a = Fraction(lam) / Fraction(mu)
    top = a**c / math.factorial(c) * c / (c - a)
    return float(top / (sum(a**k / math.factorial(k) for k in range(c)) + top))


def _poisson_route(lam: float, mu: float, c: int) -> float:
    """Erlang B as a truncated Poisson (scipy, log space), then C = c B / (c - a (1 - B))."""
    from scipy import stats

    a = lam / mu
    b = math.exp(stats.poisson.logpmf(c, a) - stats.poisson.logcdf(c, a))
    return c * b / (c - a * (1 - b))


def _call(fn: Callable[..., Any], lam: float, mu: float, c: int) -> float:
    out = fn(lam, mu, c)
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise TestFailure(f"erlang_c({lam}, {mu}, {c}) must return a number, got {out!r}") from None
    if not math.isfinite(value):
        raise TestFailure(f"erlang_c({lam}, {mu}, {c}) returned {value}: overflow? (c! and a^c overflow float64 beyond c ~ 170)")
    return value


def _expect(fn: Callable[..., Any], lam: float, mu: float, c: int, want: float, what: str, rel: float = 1e-9) -> None:
    got = _call(fn, lam, mu, c)
    if not abs(got - want) <= rel * abs(want) + 1e-15:
        raise TestFailure(f"{what}: erlang_c(lam={lam}, mu={mu}, c={c}) returned {got:.10g}, expected {want:.10g}")


def _expect_raise(fn: Callable[..., Any], args: tuple, what: str) -> str:
    try:
        out = fn(*args)
    except ValueError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - the learner's code may raise anything
        raise TestFailure(f"{what}: erlang_c{args} raised {type(err).__name__}: {err}; expected a ValueError") from None
    raise TestFailure(f"{what}: erlang_c{args} returned {out!r}; expected a ValueError")


task = register(
    "serving.erlang_c",
    function="erlang_c",
    title="Erlang C: the probability of waiting in M/M/c, computed stably",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


@task.test("one server: P(wait) = rho", hint="with c = 1 the server is busy a fraction rho = lam / mu of the time, and an arrival waits exactly then; check that a = lam / mu (not mu / lam) and rho = a / c")
def _one_server(fn: Callable[..., Any]) -> None:
    for lam, mu in [(0.3, 1.0), (0.8, 1.0), (40.0, 50.0), (0.999, 1.0)]:
        _expect(fn, lam, mu, 1, lam / mu, "c = 1", rel=1e-9)


@task.test("matches the factorial formula for small c", hint="C = B / (1 - rho (1 - B)) with B the Erlang B probability; a common slip is using rho instead of a = lam / mu inside the Erlang B recursion B(k) = a B(k-1) / (k + a B(k-1))")
def _small_c(fn: Callable[..., Any]) -> None:
    for lam, mu, c in [(1.0, 1.0, 2), (2.5, 1.0, 3), (3.2, 1.0, 4), (7.0, 2.0, 5), (15.0, 1.0, 16), (0.4, 0.1, 8)]:
        _expect(fn, lam, mu, c, _factorial_route(lam, mu, c), "vs the closed form", rel=1e-9)


@task.test("published value: 10 Erlangs on 11 servers waits 68.2 %", hint="only a = lam / mu and c matter: 10 Erlangs is lam = 10, mu = 1 (or lam = 100, mu = 10)")
def _published(fn: Callable[..., Any]) -> None:
    for lam, mu in [(10.0, 1.0), (100.0, 10.0)]:
        got = _call(fn, lam, mu, 11)
        if abs(got - 0.6821) > 5e-4:
            raise TestFailure(f"erlang_c({lam}, {mu}, 11) = {got:.4f}, the Erlang C tables give 0.6821")


@task.test("decreases with more servers, increases with more load", hint="a correct Erlang C is monotone; if yours is not, check the recursion's index (k from 1 to c) and the final C = B / (1 - rho (1 - B))")
def _monotone(fn: Callable[..., Any]) -> None:
    by_c = [_call(fn, 6.0, 1.0, c) for c in range(7, 25)]
    if any(b >= a for a, b in zip(by_c, by_c[1:])):
        raise TestFailure(f"erlang_c(6, 1, c) for c = 7..24 should strictly decrease, got {[round(x, 4) for x in by_c]}")
    by_load = [_call(fn, lam, 1.0, 8) for lam in (1.0, 3.0, 5.0, 7.0, 7.9)]
    if any(b <= a for a, b in zip(by_load, by_load[1:])):
        raise TestFailure(f"erlang_c(lam, 1, 8) should increase with lam, got {[round(x, 4) for x in by_load]}")


@task.test("stable for c = 1000 servers", hint="never form c! or a^c (they overflow float64 near c = 170): use the Erlang B recursion B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)), which stays in [0, 1]")
def _large_c(fn: Callable[..., Any]) -> None:
    for lam, mu, c in [(950.0, 1.0, 1000), (999.0, 1.0, 1000), (180.0, 1.0, 200)]:
        _expect(fn, lam, mu, c, _poisson_route(lam, mu, c), f"c = {c}", rel=1e-7)


@task.test("unstable queue (lam >= c mu) raises ValueError saying why", hint="check rho = lam / (c mu) first: at rho >= 1 there is no steady state, and the formula would return a meaningless number (negative or above 1); raise ValueError with a message that mentions that the queue is unstable")
def _unstable(fn: Callable[..., Any]) -> None:
    for args in [(4.0, 1.0, 4), (5.0, 1.0, 4), (1.0, 0.5, 2), (2.0, 1.0, 1)]:
        msg = _expect_raise(fn, args, "unstable")
        if "unstable" not in msg.lower() and "stab" not in msg.lower():
            raise TestFailure(f"erlang_c{args} raised ValueError({msg!r}); the message should say the queue is unstable (lam >= c mu)")


@task.test("bad input raises ValueError: non-integer c, c < 1, rates <= 0", hint="validate before computing: c must be an int >= 1 (2.5 servers makes no sense; bool is not a count), lam and mu must be > 0")
def _bad_input(fn: Callable[..., Any]) -> None:
    for args, what in [((1.0, 1.0, 2.5), "c = 2.5"), ((1.0, 1.0, 0), "c = 0"), ((-1.0, 1.0, 2), "lam < 0"),
                       ((1.0, 0.0, 2), "mu = 0"), ((1.0, -2.0, 3), "mu < 0"), ((1.0, float("nan"), 2), "mu = nan")]:
        _expect_raise(fn, args, what)
