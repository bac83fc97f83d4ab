"""Budgets for a 1 M QPS, 10 ms service: circuit breakers, deadline propagation, load shedding, sizing.

Four tools keep a fleet inside its latency SLA when things go wrong:

* a **circuit breaker** (:class:`CircuitBreaker`): after ``fail_max``
  consecutive failures of a dependency, stop calling it for ``reset_timeout``
  (fail fast), then let one trial call through.  Its semantics are those of
  pybreaker 1.4.1, call for call (:func:`breaker_trace`, :func:`pybreaker_trace`);
* **deadline propagation** (:func:`propagated_deadline`): each downstream call
  gets the request's *remaining* budget, not a fixed per-stage timeout
  (:func:`fixed_stage_timeouts`), so a request that is already late stops
  early and one that is early may use the slack;
* **load shedding** (:func:`serve_with_shedding`): under overload, a request
  that has waited too long to still meet its SLA is dropped before it takes a
  server, so the servers spend their time on requests that can still succeed;
* **Little's law sizing** (:func:`size_fleet`): 1 M QPS x 10 ms = 10,000
  requests in flight, spread over replicas of a given concurrency.

The queue closed forms and the FIFO simulator come from
:mod:`course_lib.serving.queueing` and :mod:`course_lib.serving.des`; the
fake clock and lognormal CDF from :mod:`course_lib.resilience`.
Times are in milliseconds unless a name says otherwise.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..resilience import FakeClock, lognormal_cdf  # noqa: F401  (FakeClock re-exported for the lesson)
from .queueing import in_flight

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


# --------------------------------------------------------------------------
# 1. The circuit breaker
# --------------------------------------------------------------------------
class CircuitOpenError(RuntimeError):
    """The circuit is open: the call was not made (or the call that just failed opened it)."""


class CircuitBreaker:
    """A circuit breaker with pybreaker 1.4.1's semantics, on an injectable clock.

    * **closed**: calls go through.  A failure (the function raises) adds one
      to ``fail_counter``; a success resets it to 0, so only *consecutive*
      failures count.  The failure that brings the counter to ``fail_max``
      opens the circuit and raises :class:`CircuitOpenError` (chained to the
      error) instead of the error itself.
    * **open**: a call made before ``reset_timeout`` has passed since the
      circuit opened raises :class:`CircuitOpenError` without calling the
      function.  The first call at or after ``opened_at + reset_timeout`` is
      the trial: the state becomes half-open and the function is called.
    * **half-open**: the trial's success closes the circuit (counter reset);
      its failure opens it again (a new ``opened_at``) and raises
      :class:`CircuitOpenError`.

    Parameters
    ----------
    fail_max : consecutive failures that open the circuit, >= 1.
    reset_timeout : how long the circuit stays open, in the clock's unit, >= 0.
    clock : function returning the current time (default ``time.monotonic``, s).
    """

    def __init__(self, fail_max: int = 5, reset_timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(fail_max, bool) or not isinstance(fail_max, (int, np.integer)) or fail_max < 1:
            raise ValueError(f"fail_max must be an int >= 1, got {fail_max!r}")
        if isinstance(reset_timeout, bool) or not isinstance(reset_timeout, (int, float, np.integer, np.floating)) \
                or not math.isfinite(reset_timeout) or reset_timeout < 0:
            raise ValueError(f"reset_timeout must be a finite number >= 0, got {reset_timeout!r}")
        if not callable(clock):
            raise ValueError(f"clock must be a function returning the time, got {type(clock).__name__}")
        self.fail_max, self.reset_timeout, self.clock = int(fail_max), float(reset_timeout), clock
        self.state = CLOSED
        self.fail_counter = 0
        self.opened_at: float | None = None

    def _open(self) -> None:
        self.state, self.opened_at = OPEN, self.clock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` through the breaker; return its value or raise."""
        if self.state == OPEN:
            if self.clock() < self.opened_at + self.reset_timeout:
                raise CircuitOpenError("circuit open: call not made")
            self.state = HALF_OPEN  # the first call after the timeout is the trial
        try:
            result = fn(*args, **kwargs)
        except Exception as err:
            self.fail_counter += 1
            if self.state == HALF_OPEN or self.fail_counter >= self.fail_max:
                self._open()
                raise CircuitOpenError("circuit opened by this failure") from err
            raise
        self.fail_counter = 0
        self.state = CLOSED
        return result


class _Failure(Exception):
    """The injected failure of a traced call."""


#: Outcome codes of one traced call.
CALLED_OK, CALLED_FAILED, TRIPPED, REJECTED = "ok", "failed", "tripped", "rejected"


def breaker_trace(make_breaker: Callable[[Callable[[], float]], Any], times: Sequence[float],
                  fails: Sequence[bool], open_error: type[BaseException] = CircuitOpenError) -> list[tuple[str, str]]:
    """Drive a breaker through a failure trace; return ``(outcome, state after)`` per call.

    Parameters
    ----------
    make_breaker : function of a clock (a no-argument function giving the time)
        returning a breaker with ``call(fn)`` and a ``state`` attribute (a string).
    times : (n,) non-decreasing call times.
    fails : (n,) whether call i's function would fail if it were called.
    open_error : the exception the breaker raises when it rejects or trips.

    The outcome is ``"ok"``, ``"failed"`` (the function's own error came
    back), ``"tripped"`` (the function was called, failed, and the breaker
    raised ``open_error``) or ``"rejected"`` (the function was not called).
    """
    if len(times) != len(fails):
        raise ValueError(f"need one time per call: {len(times)} times, {len(fails)} fails")
    if len(times) and np.any(np.diff(np.asarray(times, dtype=float)) < 0):
        raise ValueError("times must be non-decreasing")
    clock = FakeClock(float(times[0]) if len(times) else 0.0)
    breaker = make_breaker(clock.now)
    out = []
    for t, fail in zip(times, fails):
        clock.sleep(float(t) - clock.now())
        called = []

        def fn(fail: bool = bool(fail)) -> str:
            called.append(True)
            if fail:
                raise _Failure("injected")
            return "answer"

        try:
            breaker.call(fn)
            outcome = CALLED_OK
        except _Failure:
            outcome = CALLED_FAILED
        except open_error:
            outcome = TRIPPED if called else REJECTED
        out.append((outcome, breaker.state))
    return out


def pybreaker_trace(fail_max: int, reset_timeout: float, times: Sequence[float], fails: Sequence[bool]) -> list[tuple[str, str]]:
    """:func:`breaker_trace` of ``pybreaker.CircuitBreaker`` with its clock frozen to ``times``.

    pybreaker reads ``datetime.now(UTC)`` from its own module namespace (when
    it opens and when an open circuit is called), so we replace that name by
    a class whose ``now`` returns a fixed epoch plus the fake clock's time in
    seconds.  Use times that timedelta represents exactly (whole microseconds).
    """
    from datetime import datetime, timedelta, timezone
    from unittest import mock

    import pybreaker

    epoch = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def make(clock: Callable[[], float]) -> Any:
        class FrozenDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return epoch + timedelta(seconds=clock())

        breaker = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout)
        patcher = mock.patch.object(pybreaker, "datetime", FrozenDatetime)

        class Frozen:  # pybreaker's call, with the patched datetime only while it runs
            def call(self, fn: Callable[[], Any]) -> Any:
                with patcher:
                    return breaker.call(fn)

            @property
            def state(self) -> str:
                return breaker.current_state

        return Frozen()

    return breaker_trace(make, times, fails, open_error=pybreaker.CircuitBreakerError)


def failure_trace(n: int, rng: np.random.Generator, p_fail_healthy: float = 0.05, p_fail_outage: float = 0.9,
                  p_switch: float = 0.03, mean_gap: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A bursty failure trace: ``n`` calls at integer times with a two-state (healthy / outage) dependency.

    Gaps between calls are 1 + Poisson(mean_gap - 1) whole time units (exact
    in any clock), the dependency flips state with probability ``p_switch``
    per call, and a call fails with ``p_fail_healthy`` or ``p_fail_outage``.
    Returns ``(times, fails)`` of shapes (n,) (float64, bool).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gaps = 1 + rng.poisson(max(mean_gap - 1.0, 0.0), n)
    flips = rng.random(n) < p_switch
    down = np.cumsum(flips) % 2 == 1
    p = np.where(down, p_fail_outage, p_fail_healthy)
    return np.cumsum(gaps).astype(np.float64), rng.random(n) < p


# --------------------------------------------------------------------------
# 2. Deadline propagation vs fixed per-stage timeouts
# --------------------------------------------------------------------------
def _check_latencies(latency_ms: Any) -> np.ndarray:
    lat = np.asarray(latency_ms, dtype=np.float64)
    if lat.ndim != 2 or lat.shape[1] < 1 or not np.all(lat >= 0) or not np.all(np.isfinite(lat)):
        raise ValueError(f"latency_ms must be a finite (n_requests, n_stages) array >= 0, got shape {lat.shape}")
    return lat


@dataclass(frozen=True)
class BudgetRun:
    """Per-request result of a call chain under a budget policy (arrays of shape (n,)).

    ``ok``: answered within the SLA; ``degraded``: answered by the fallback;
    ``elapsed_ms``: time until the answer or the error; ``wasted_ms``: stage
    time spent on requests that failed anyway (work nobody will use).
    """

    ok: np.ndarray
    degraded: np.ndarray
    elapsed_ms: np.ndarray
    wasted_ms: np.ndarray

    @property
    def attainment(self) -> float:
        """Share of requests answered within the SLA."""
        return float(self.ok.mean())


def fixed_stage_timeouts(latency_ms: Any, timeouts_ms: Sequence[float], sla_ms: float) -> BudgetRun:
    """A chain of stages, each with its own fixed timeout (the budget is not passed down).

    Stage j is abandoned after ``timeouts_ms[j]``; the request then fails.
    A request whose stages all finish is ok only if the total is within
    ``sla_ms`` (if the timeouts add up to more than the SLA, late answers
    happen: the caller has gone).

    Parameters
    ----------
    latency_ms : (n, m) latency each stage would take for each request.
    timeouts_ms : (m,) per-stage timeouts.
    sla_ms : end-to-end SLA.
    """
    lat = _check_latencies(latency_ms)
    to = np.asarray(timeouts_ms, dtype=np.float64)
    if to.shape != (lat.shape[1],) or not np.all(to > 0):
        raise ValueError(f"timeouts_ms must be {lat.shape[1]} positive numbers, got {timeouts_ms!r}")
    alive = np.ones(lat.shape[0], dtype=bool)
    elapsed = np.zeros(lat.shape[0])
    for j in range(lat.shape[1]):
        spent = np.minimum(lat[:, j], to[j])
        elapsed[alive] += spent[alive]
        alive &= lat[:, j] <= to[j]
    ok = alive & (elapsed <= sla_ms)
    return BudgetRun(ok, np.zeros_like(ok), elapsed, np.where(ok, 0.0, elapsed))


def propagated_deadline(latency_ms: Any, sla_ms: float, fallback_ms: Any = None) -> BudgetRun:
    """A chain of stages, each given the request's *remaining* budget (deadline propagation).

    Stage j gets ``sla_ms - elapsed`` (gRPC-style: the deadline travels with
    the request), so a request stops as soon as it cannot finish in time.
    With ``fallback_ms`` (an (n,) array of the fallback model's latency), the
    **last** stage gets the remaining budget minus a reserve equal to the
    fallback's latency budget (its max), and on a timeout there the fallback
    answers (degraded) if it fits.

    Parameters
    ----------
    latency_ms : (n, m) latency each stage would take for each request.
    sla_ms : end-to-end SLA (the deadline of every request).
    fallback_ms : None, or (n,) fallback latency per request.
    """
    lat = _check_latencies(latency_ms)
    if not sla_ms > 0:
        raise ValueError(f"sla_ms must be > 0, got {sla_ms!r}")
    n, m = lat.shape
    reserve = 0.0
    if fallback_ms is not None:
        fb = np.asarray(fallback_ms, dtype=np.float64)
        if fb.shape != (n,) or not np.all(fb >= 0):
            raise ValueError(f"fallback_ms must be an ({n},) array >= 0, got shape {fb.shape}")
        reserve = float(fb.max())
    alive = np.ones(n, dtype=bool)
    elapsed = np.zeros(n)
    for j in range(m):
        budget = sla_ms - elapsed - (reserve if j == m - 1 else 0.0)
        before_last = alive.copy()
        spent = np.clip(np.minimum(lat[:, j], budget), 0.0, None)
        elapsed[alive] += spent[alive]
        alive &= lat[:, j] <= budget
    degraded = np.zeros(n, dtype=bool)
    if fallback_ms is not None:
        tried = before_last & ~alive  # the model did not answer in its budget: try the fallback in the time left
        left = np.maximum(sla_ms - elapsed, 0.0)
        degraded = tried & (fb <= left)
        elapsed[tried] += np.minimum(fb, left)[tried]
    ok = alive | degraded
    return BudgetRun(ok, degraded, elapsed, np.where(ok, 0.0, elapsed))


class Deadline:
    """An absolute deadline that travels with a request (what gRPC sends as ``grpc-timeout``).

    Each hop asks ``remaining()`` and gives a downstream call at most that;
    ``clock`` is a no-argument function returning the time (ms here).
    """

    def __init__(self, budget_ms: float, clock: Callable[[], float]) -> None:
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be > 0, got {budget_ms!r}")
        self.clock, self.at = clock, clock() + float(budget_ms)

    def remaining(self) -> float:
        """Time left before the deadline (<= 0: expired)."""
        return self.at - self.clock()


def call_downstream(latency_ms: float, timeout_ms: float, clock: FakeClock) -> bool:
    """One downstream call on a fake clock: wait ``min(latency, timeout)``; True if it answered in time."""
    if timeout_ms <= 0:
        return False  # no budget left: do not even send the call
    clock.sleep(min(latency_ms, timeout_ms))
    return latency_ms <= timeout_ms


def run_chain(latency_ms: Sequence[float], sla_ms: float, fallback_ms: float | None = None,
              reserve_ms: float = 0.0) -> tuple[bool, bool, float]:
    """One request through a chain of stages, event by event, with its deadline passed down.

    The code a service runs, on a :class:`FakeClock`: every stage gets
    ``deadline.remaining()`` (the last one minus ``reserve_ms`` kept for the
    fallback); a stage that does not answer in its budget ends the chain;
    if it was the last stage and ``fallback_ms`` is given, the fallback gets
    the time left.  Same semantics as :func:`propagated_deadline` (with
    ``reserve_ms`` = its reserve), which does all requests at once.

    Returns ``(ok, degraded, elapsed_ms)``.
    """
    clock = FakeClock()
    deadline = Deadline(sla_ms, clock.now)
    m = len(latency_ms)
    for j, lat in enumerate(latency_ms):
        budget = deadline.remaining() - (reserve_ms if j == m - 1 else 0.0)
        if not call_downstream(float(lat), budget, clock):
            if j == m - 1 and fallback_ms is not None and call_downstream(fallback_ms, deadline.remaining(), clock):
                return True, True, clock.now()
            return False, False, clock.now()
    return True, False, clock.now()


def lognormal_chain_latencies(medians_ms: Sequence[float], sigmas: Sequence[float], n: int,
                              rng: np.random.Generator) -> np.ndarray:
    """(n, m) lognormal stage latencies: stage j has median ``medians_ms[j]`` and shape ``sigmas[j]``."""
    med, sig = np.asarray(medians_ms, dtype=float), np.asarray(sigmas, dtype=float)
    if med.shape != sig.shape or med.ndim != 1 or not np.all(med > 0) or not np.all(sig >= 0):
        raise ValueError("medians_ms (> 0) and sigmas (>= 0) must be 1-d arrays of the same length")
    return med * np.exp(sig * rng.standard_normal((n, med.size)))


def fixed_timeouts_closed_form(medians_ms: Sequence[float], sigmas: Sequence[float], timeouts_ms: Sequence[float]) -> float:
    """P(every stage finishes within its timeout) = prod_j F_j(t_j), the attainment of
    :func:`fixed_stage_timeouts` when the timeouts sum to at most the SLA."""
    return float(np.prod([lognormal_cdf(t, m, s) for m, s, t in zip(medians_ms, sigmas, timeouts_ms)]))


# --------------------------------------------------------------------------
# 3. Load shedding under overload
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ShedRun:
    """Per-request result of :func:`serve_with_shedding` (arrays of shape (n,), seconds).

    ``served``: the request took a server (False: shed); ``start``/``finish``
    are NaN for shed requests.
    """

    arrival: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    served: np.ndarray

    def goodput(self, sla_s: float, duration_s: float) -> float:
        """Requests answered within the SLA, per second."""
        within = self.served & (self.finish - self.arrival <= sla_s)
        return float(within.sum() / duration_s)


def serve_with_shedding(arrivals: Any, services: Any, c: int, max_wait_s: float = math.inf) -> ShedRun:
    """A FIFO queue with ``c`` servers that drops a request which has waited more than ``max_wait_s``.

    The drop happens when the request reaches the head of the queue and a
    server is free (deadline-aware shedding at dequeue): a dropped request
    costs no server time.  With ``max_wait_s = inf`` this is the plain FIFO
    G/G/c queue (:func:`course_lib.serving.des.fifo_gg_c`).  Because drops
    do not consume servers and service is FIFO, one heap of server free
    times suffices: O(n log c).

    Parameters
    ----------
    arrivals : (n,) sorted arrival times, s.
    services : (n,) service times, s.
    c : servers (concurrent slots) of the replica.
    max_wait_s : longest queueing delay still worth serving, s.
    """
    a = np.asarray(arrivals, dtype=np.float64)
    s = np.asarray(services, dtype=np.float64)
    if a.ndim != 1 or s.shape != a.shape:
        raise ValueError(f"arrivals and services must be 1-d arrays of equal length, got {a.shape} and {s.shape}")
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise ValueError(f"c must be an int >= 1, got {c!r}")
    if not max_wait_s >= 0:
        raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s!r}")
    n = a.size
    start = np.full(n, np.nan)
    served = np.zeros(n, dtype=bool)
    free = [0.0] * int(c)
    for i in range(n):
        t = a[i] if a[i] > free[0] else free[0]
        if t - a[i] > max_wait_s:
            continue  # shed: it could no longer meet its deadline
        start[i], served[i] = t, True
        heapq.heapreplace(free, t + s[i])
    return ShedRun(a, start, start + s, served)


# --------------------------------------------------------------------------
# 4. Little's law sizing
# --------------------------------------------------------------------------
def size_fleet(qps: float, latency_s: float, slots_per_replica: int, max_utilisation: float = 0.7) -> dict[str, float]:
    """Replicas for ``qps`` at ``latency_s`` per request: Little's law, then headroom.

    In flight L = qps x latency_s (:func:`~course_lib.serving.queueing.in_flight`);
    each replica holds ``slots_per_replica`` requests at once; running at most
    ``max_utilisation`` of the slots busy leaves room for bursts and queueing.

    Returns a dict with ``in_flight``, ``replicas_at_100pct`` and ``replicas``.
    """
    if isinstance(slots_per_replica, bool) or not isinstance(slots_per_replica, (int, np.integer)) or slots_per_replica < 1:
        raise ValueError(f"slots_per_replica must be an int >= 1, got {slots_per_replica!r}")
    if not 0 < max_utilisation <= 1:
        raise ValueError(f"max_utilisation must be in (0, 1], got {max_utilisation!r}")
    busy = in_flight(qps, latency_s)
    return {"in_flight": busy, "replicas_at_100pct": math.ceil(busy / slots_per_replica),
            "replicas": math.ceil(busy / (slots_per_replica * max_utilisation))}


# --------------------------------------------------------------------------
# 5. Sync vs async: how many requests a replica can hold in flight
# --------------------------------------------------------------------------
def threaded_io_throughput(n_requests: int, wait_s: float, threads: int) -> dict[str, float]:
    """Serve ``n_requests`` that each wait ``wait_s`` on I/O (a downstream call), one per thread.

    A synchronous server holds at most ``threads`` requests in flight, so by
    Little's law its throughput is at most ``threads / wait_s``.  Real
    threads, real ``time.sleep``: returns ``{"throughput": req/s, "wall_s": s}``.
    """
    from concurrent.futures import ThreadPoolExecutor

    if n_requests < 1 or threads < 1 or not wait_s > 0:
        raise ValueError(f"need n_requests >= 1, threads >= 1, wait_s > 0; got {n_requests}, {threads}, {wait_s}")
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: time.sleep(wait_s), range(n_requests)))
    wall = time.perf_counter() - start
    return {"throughput": n_requests / wall, "wall_s": wall}


def async_io_throughput(n_requests: int, wait_s: float, concurrency: int, timeout_s: float | None = None) -> dict[str, float]:
    """The same requests as coroutines on one asyncio event loop, at most ``concurrency`` in flight.

    Each request awaits ``asyncio.sleep(wait_s)`` under ``asyncio.wait_for``
    with ``timeout_s`` (its remaining budget; None: no deadline).  One thread
    holds thousands of waiting requests.  The loop runs in a helper thread, so
    this works inside Jupyter (whose own loop is already running).
    Returns ``{"throughput": req/s, "wall_s": s, "timed_out": share}``.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    if n_requests < 1 or concurrency < 1 or not wait_s > 0:
        raise ValueError(f"need n_requests >= 1, concurrency >= 1, wait_s > 0; got {n_requests}, {concurrency}, {wait_s}")

    async def main() -> int:
        gate = asyncio.Semaphore(concurrency)
        late = 0

        async def one() -> None:
            nonlocal late
            async with gate:
                try:
                    await asyncio.wait_for(asyncio.sleep(wait_s), timeout_s)
                except asyncio.TimeoutError:
                    late += 1

        await asyncio.gather(*(one() for _ in range(n_requests)))
        return late

    start = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(asyncio.run, main()).result(timeout=120)
    wall = time.perf_counter() - start
    return {"throughput": n_requests / wall, "wall_s": wall, "timed_out": late / n_requests}
