"""Tests for the exercise of lesson 05.05 (feedback loops and off-policy evaluation): ``snips_estimate``.

The task, as the exercise states it:

* ``snips_estimate(r, pi_t, pi_log, clip=None)``: the self-normalised inverse
  propensity estimate (Swaminathan and Joachims, NeurIPS 2015) of a target
  policy's value from a log: ``w = pi_t / pi_log`` (``w = min(w, clip)`` when
  ``clip`` is given), ``SNIPS = sum(w r) / sum(w)``.  ``r`` (n,) rewards,
  ``pi_t`` (n,) the target's probability of each logged action, ``pi_log`` (n,)
  the logging propensity.  ``ValueError`` for a zero (or negative) propensity, for
  arrays of different shapes, and when every weight is zero (the estimator is
  undefined).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "05_recsys/05_feedback_loops"


def _reference(r: np.ndarray, pi_t: np.ndarray, pi_log: np.ndarray, clip: float | None = None) -> float:
    """Row by row in plain Python: a different route from course_lib.recsys.ope."""
    num = den = 0.0
    for rj, tj, lj in zip(r.tolist(), pi_t.tolist(), pi_log.tolist()):
        w = tj / lj
        if clip is not None and w > clip:
            w = clip
        num += w * rj
        den += w
    return num / den


def _call(fn: Callable[..., Any], r: Any, pi_t: Any, pi_log: Any, **kw: Any) -> float:
    copies = [np.array(x, dtype=np.float64, copy=True) for x in (r, pi_t, pi_log)]
    out = fn(*copies, **kw)
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise TestFailure(f"expected a number (float), got {type(out).__name__}: {out!r}") from None
    if any(not np.array_equal(c, np.asarray(x, dtype=np.float64)) for c, x in zip(copies, (r, pi_t, pi_log))):
        raise TestFailure("the input arrays were modified")
    return value


def _expect(fn: Callable[..., Any], r: Any, pi_t: Any, pi_log: Any, want: float, what: str, **kw: Any) -> None:
    got = _call(fn, r, pi_t, pi_log, **kw)
    if not np.isfinite(got) or abs(got - want) > 1e-9:
        raise TestFailure(f"{what}: got {got:.6f}, expected {want:.6f}")


def _expect_error(fn: Callable[..., Any], r: Any, pi_t: Any, pi_log: Any, what: str, **kw: Any) -> None:
    try:
        out = fn(np.asarray(r, float), np.asarray(pi_t, float), np.asarray(pi_log, float), **kw)
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001 - a learner's function may raise anything
        raise TestFailure(f"{what}: expected ValueError, got {type(err).__name__}: {err}") from None
    raise TestFailure(f"{what}: expected ValueError, got {out!r}")


def _random_log(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    pi_log = g.uniform(0.01, 0.5, n)
    pi_t = g.uniform(0.0, 1.0, n) * (g.random(n) < 0.7)
    r = (g.random(n) < 0.3).astype(float)
    return r, pi_t, pi_log


task = register(
    "recsys.snips_estimate",
    function="snips_estimate",
    title="Self-normalised inverse propensity scoring (SNIPS) with clipping",
    lesson=LESSON,
    points=2,
    timeout_s=30,
)


@task.test("a hand-computed example", hint="w = pi_t / pi_log per row, then sum(w * r) / sum(w): divide by the sum of the weights, not by n")
def _hand(fn: Callable[..., Any]) -> None:
    # w = (2, 1, 0, 4): sum(w r) = 2 + 4 = 6, sum(w) = 7
    _expect(fn, [1, 0, 1, 1], [0.5, 0.5, 0.0, 0.4], [0.25, 0.5, 0.25, 0.1], 6 / 7, "r=(1,0,1,1), w=(2,1,0,4)")


@task.test("equals the logged mean reward when pi_t == pi_log (on-policy)", hint="with identical policies every weight is 1 and SNIPS is the plain mean of r; check the weights are pi_t / pi_log, not the other way round")
def _on_policy(fn: Callable[..., Any]) -> None:
    r, _, pi_log = _random_log(1)
    _expect(fn, r, pi_log, pi_log, float(np.mean(r)), "pi_t == pi_log")


@task.test("invariant to scaling all weights (self-normalised)", hint="SNIPS divides by sum(w), so halving every pi_t must not change it; dividing by n instead gives IPS, which halves")
def _scaling(fn: Callable[..., Any]) -> None:
    r, pi_t, pi_log = _random_log(2)
    want = _reference(r, pi_t, pi_log)
    _expect(fn, r, pi_t, pi_log, want, "random log")
    _expect(fn, r, 0.5 * pi_t, pi_log, want, "every pi_t halved")


@task.test("clip=M uses min(w, M) in both sums", hint="clip the weights before both the numerator and the denominator; clip=None means no clipping (M is a cap on w, not on pi_t or on w * r)")
def _clip(fn: Callable[..., Any]) -> None:
    # w = (2, 1, 0, 4) -> clipped at 3: (2, 1, 0, 3): sum(w r) = 5, sum(w) = 6
    _expect(fn, [1, 0, 1, 1], [0.5, 0.5, 0.0, 0.4], [0.25, 0.5, 0.25, 0.1], 5 / 6, "clip=3", clip=3.0)
    r, pi_t, pi_log = _random_log(3)
    for M in (1.0, 5.0, 1e9):
        _expect(fn, r, pi_t, pi_log, _reference(r, pi_t, pi_log, M), f"random log, clip={M:g}", clip=M)


@task.test("a zero propensity raises ValueError", hint="a logged action must have had a positive probability under the logging policy; check pi_log > 0 and raise ValueError (dividing by zero gives inf or nan silently)")
def _zero_prop(fn: Callable[..., Any]) -> None:
    _expect_error(fn, [1, 0, 1], [0.5, 0.5, 0.5], [0.5, 0.0, 0.5], "pi_log contains 0")
    _expect_error(fn, [1, 0, 1], [0.5, 0.5, 0.5], [0.5, -0.2, 0.5], "pi_log contains a negative value")


@task.test("all-zero weights raise ValueError (SNIPS undefined)", hint="when the target gives probability 0 to every logged action, sum(w) = 0 and SNIPS is 0/0: raise a ValueError that says so instead of returning nan")
def _all_zero(fn: Callable[..., Any]) -> None:
    _expect_error(fn, [1, 0, 1], [0.0, 0.0, 0.0], [0.2, 0.3, 0.5], "pi_t all zero")


@task.test("arrays of different shapes raise ValueError", hint="check that r, pi_t and pi_log have the same shape before computing (numpy would broadcast a length-1 array silently)")
def _shapes(fn: Callable[..., Any]) -> None:
    _expect_error(fn, [1, 0, 1], [0.5, 0.5], [0.5, 0.5, 0.5], "pi_t shorter")
    _expect_error(fn, [1, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "r shorter")
    _expect_error(fn, [1, 0, 1], [0.5, 0.5, 0.5], [0.5], "pi_log of length 1 (would broadcast)")


@task.test("unbiased for the truth on a simulated bandit (mean over 200 logs within 4 se)", hint="the whole estimator on a real log: weights are target probability / logging propensity of the logged action")
def _simulated(fn: Callable[..., Any]) -> None:
    g = np.random.default_rng(7)
    m = 5
    rho = np.array([0.1, 0.3, 0.5, 0.2, 0.05])
    p_log = np.full(m, 1 / m)
    p_t = np.array([0.05, 0.15, 0.6, 0.15, 0.05])
    truth = float(p_t @ rho)
    est = []
    for _ in range(200):
        a = g.integers(0, m, 400)
        r = (g.random(400) < rho[a]).astype(float)
        est.append(_call(fn, r, p_t[a], p_log[a]))
    est_arr = np.array(est)
    se = est_arr.std(ddof=1) / np.sqrt(est_arr.size)
    if abs(est_arr.mean() - truth) > 4 * se + 1e-12:
        raise TestFailure(f"mean estimate over 200 logs {est_arr.mean():.4f}, true value {truth:.4f} (se {se:.4f})")
