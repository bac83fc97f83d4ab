"""Tests for the exercise of lesson 01.03 (requirements to SLOs): ``burn_rate_alerts``.

The task, as the exercise states it: ``burn_rate_alerts(events, slo, windows)``

* ``events``: integer array of shape (n_minutes, 2); row t = (bad, total), the
  failed and all requests during minute t;
* ``slo``: the target share of good requests, e.g. 0.999, so the error budget
  rate is ``1 - slo``;
* ``windows``: list of ``(long_minutes, short_minutes, threshold)``.

At minute t the trailing window of length L covers minutes max(0, t - L + 1)
.. t (minutes before 0 do not exist and count as no traffic); its error rate is
(sum of bad) / (sum of total), and 0 when the window holds no traffic.  A
condition fires at t when the error rates of its long AND its short window are
both strictly greater than ``threshold * (1 - slo)``; the alert fires when any
condition does.  Return every minute at which it fires (not only the onsets),
sorted, as 1-D integers.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_01_03 = "01_foundations/03_requirements_to_slos"
PAGE_AND_TICKET = [(60, 5, 14.4), (360, 30, 6.0), (4320, 360, 1.0)]


def _reference(events: np.ndarray, slo: float, windows: list[tuple[int, int, float]]) -> np.ndarray:
    """The definition, minute by minute, summing each window directly: a different route from course_lib's prefix sums."""
    counts = np.asarray(events, dtype=np.int64)
    firing = []
    for t in range(len(counts)):
        for long_m, short_m, threshold in windows:
            ok = True
            for w in (long_m, short_m):
                bad, total = (int(c) for c in counts[max(0, t - w + 1) : t + 1].sum(axis=0))
                ok = ok and total > 0 and bad / total > threshold * (1 - slo)
            if ok:
                firing.append(t)
                break
    return np.array(firing, dtype=np.int64)


def _call(fn: Callable[..., Any], events: np.ndarray, slo: float, windows: list[tuple[int, int, float]]) -> np.ndarray:
    out = fn(events.copy(), slo, list(windows))
    arr = np.asarray(out)
    if arr.dtype == bool:
        raise TestFailure(f"got a boolean array of shape {arr.shape}; return the minutes at which the alert fires (e.g. np.flatnonzero(mask))")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TestFailure(f"expected a 1-D array (or list) of integer minutes, got dtype {arr.dtype} and shape {arr.shape}")
    if np.any(np.diff(arr) <= 0):
        raise TestFailure("the minutes must be sorted ascending, each once")
    return arr.astype(np.int64)


def _show(minutes: np.ndarray, limit: int = 12) -> str:
    items = minutes.tolist()
    return str(items) if len(items) <= limit else f"{items[:limit]}... ({len(items)} minutes)"


def _expect(fn: Callable[..., Any], events: np.ndarray, slo: float, windows: list[tuple[int, int, float]]) -> None:
    got, want = _call(fn, events, slo, windows), _reference(events, slo, windows)
    if not np.array_equal(got, want):
        extra, missing = np.setdiff1d(got, want), np.setdiff1d(want, got)
        parts = []
        if missing.size:
            parts.append(f"should fire but did not at minutes {_show(missing)}")
        if extra.size:
            parts.append(f"fired but should not at minutes {_show(extra)}")
        raise TestFailure("; ".join(parts))


def _steady(n: int, total: int = 100) -> np.ndarray:
    events = np.zeros((n, 2), dtype=np.int64)
    events[:, 1] = total
    return events


burn_rate = register(
    "foundations.burn_rate_alerts",
    function="burn_rate_alerts",
    title="Multi-window, multi-burn-rate alerts",
    lesson=LESSON_01_03,
    points=2,
    timeout_s=60,
)


@burn_rate.test("a step outage: every firing minute, trailing windows that include minute t",
                hint="the window at minute t is minutes t - L + 1 .. t (L minutes, the current one included); return every firing minute, not only the first of a run")
def _step(fn: Callable[..., Any]) -> None:
    events = _steady(80)
    events[40:55, 0] = 20  # 20 % errors for 15 minutes
    _expect(fn, events, 0.99, [(10, 2, 5.0)])  # limit 5 %: fires from minute 42 to 56


@burn_rate.test("both windows must exceed: a short blip does not fire a long condition",
                hint="a condition fires only when the long AND the short window both exceed threshold * (1 - slo); OR makes every blip page, and the long window alone keeps firing long after the errors stopped")
def _both(fn: Callable[..., Any]) -> None:
    events = _steady(240)
    events[60:63, 0] = 50   # blip: 3 minutes at 50 %, short window burns, long window stays under the limit
    events[150:170, 0] = 60  # outage: 20 minutes at 60 %
    _expect(fn, events, 0.99, [(60, 5, 14.4)])


@burn_rate.test("several conditions: the alert fires when any one of them fires",
                hint="windows is a list of (long, short, threshold) conditions: fire at t when at least one condition holds (OR across conditions, AND within one)")
def _several(fn: Callable[..., Any]) -> None:
    events = _steady(1000)
    events[50:60, 0] = 40            # fast: caught by the 60/5 pair at 14.4 (limit 1.44 %)
    events[500:900, 0] = 1           # slow, 1 %: caught only by the 360/30 pair at 6 (limit 0.6 %)
    _expect(fn, events, 0.999, [(60, 5, 14.4), (360, 30, 6.0)])


@burn_rate.test("windows longer than the data so far use the minutes that exist",
                hint="at minute t < L the window holds only minutes 0..t: do not wait for a full window, and divide bad by the total requests in the window, not by the window length or by L * traffic")
def _start(fn: Callable[..., Any]) -> None:
    events = _steady(30)
    events[0:3, 0] = 10  # trouble from the very first minute
    _expect(fn, events, 0.99, [(60, 5, 5.0)])


@burn_rate.test("minutes with no traffic: no crash, and a window without traffic never fires",
                hint="a window whose total is 0 has error rate 0 (nothing failed): guard the division instead of dividing by zero")
def _zero_traffic(fn: Callable[..., Any]) -> None:
    events = _steady(40)
    events[5:9] = 0           # no traffic at all: quiet
    events[20:23, 0] = 60     # an outage ...
    events[23:30] = 0         # ... then the service gets no requests: the short window empties and stops firing
    events[:3] = 0            # and the trace starts with nothing
    _expect(fn, events, 0.99, [(30, 3, 10.0)])


@burn_rate.test("the error rate is a ratio of sums, compared strictly (>)",
                hint="a window's error rate is sum(bad) / sum(total), not the mean of per-minute rates (quiet minutes with little traffic would count as much as busy ones); and the rate must exceed threshold * (1 - slo) strictly: equal does not fire")
def _ratio_and_tie(fn: Callable[..., Any]) -> None:
    # busy minutes with 1 % errors, quiet minutes (2 requests) with 50 %: the mean of rates would fire
    events = np.array([[1, 100], [1, 2], [1, 100], [1, 2], [1, 100], [1, 2]] * 5, dtype=np.int64)
    got = _call(fn, events, 0.99, [(6, 2, 10.0)])  # limit 10 %
    if got.size:
        raise TestFailure(f"fired at minutes {_show(got)}, but every window's error rate is at most 2 / 102 = 2 % (the mean of per-minute rates is about 25 %)")
    # slo = 0.75, threshold 2: the limit 0.5 and every rate below are exact in binary, so ties are true ties
    tie = np.array([[1, 2], [2, 4], [3, 4], [1, 2]], dtype=np.int64)
    got = _call(fn, tie, 0.75, [(1, 1, 2.0)])
    if not np.array_equal(got, [2]):
        raise TestFailure(f"with limit 2 x (1 - 0.75) = 0.5 and per-minute rates [0.5, 0.5, 0.75, 0.5], only minute 2 fires; got {_show(got)}")


@burn_rate.test("matches the definition on 3 days of noisy traffic with the SRE Workbook's page and ticket windows",
                hint="compare your function with a slow loop over minutes that sums each window directly; common slips are an off-by-one window, a missing condition, and >= instead of >")
def _workbook(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(13)
    n = 3 * 1440
    t = np.arange(n)
    total = rng.poisson(300 * (1 + 0.6 * np.cos(2 * np.pi * (t / 1440 - 0.8))))
    total[rng.random(n) < 0.02] = 0  # scraping gaps
    p = np.full(n, 0.0003)
    p[500:506] = 0.2      # blip: must not page
    p[1500:1530] = 0.05   # outage: pages
    p[2500:4000] = 0.004  # slow burn: tickets
    events = np.stack([rng.binomial(total, p), total], axis=1).astype(np.int64)
    _expect(fn, events, 0.999, PAGE_AND_TICKET)
