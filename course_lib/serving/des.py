"""A small discrete-event simulation (DES) kernel, the workhorse of chapter 07.

Three layers, each usable alone:

1. :class:`Simulator`: a clock and a heap of ``(time, seq, callback)`` events.
   ``seq`` is a running counter, so events at equal times run in the order
   they were scheduled (FIFO) and every run is deterministic.
2. Arrival processes: functions returning a sorted array of arrival times (s)
   drawn from a seeded ``np.random.Generator``: Poisson, any time-varying
   rate by Lewis-Shedler thinning (a diurnal day, a flash crowd), and bursts
   from a two-state Markov-modulated Poisson process (MMPP).
3. Queues: :class:`FifoServers`, c identical servers in front of one FIFO
   queue, driven by the simulator; and :func:`fifo_gg_c`, the same queue
   computed without events by the Kiefer-Wolfowitz recursion (each request
   takes the earliest-free server), exact and much faster.  Both record, per
   request, arrival, start of service, finish and server.

Units: seconds throughout (rates in 1/s).  Later lessons (batching, load
shedding, autoscaling) build their own servers on :class:`Simulator`.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import slo
from ..reliability import LogNormal


# --------------------------------------------------------------------------
# 1. The event loop
# --------------------------------------------------------------------------
class Event:
    """A scheduled callback; :meth:`cancel` it and the loop skips it (lazy deletion)."""

    __slots__ = ("time", "seq", "fn", "args", "cancelled")

    def __init__(self, time: float, seq: int, fn: Callable[..., Any], args: tuple) -> None:
        self.time, self.seq, self.fn, self.args, self.cancelled = time, seq, fn, args, False

    def __lt__(self, other: Event) -> bool:  # heap order: time, then scheduling order
        return (self.time, self.seq) < (other.time, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


class Simulator:
    """Clock plus event heap.  ``now`` only moves forward, to the time of the next event.

    Example
    -------
    >>> sim = Simulator()
    >>> _ = sim.schedule(2.0, print, "two")
    >>> _ = sim.schedule(1.0, print, "one")
    >>> sim.run()
    one
    two
    2
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now: float = float(start)
        self._heap: list[Event] = []
        self._seq = 0
        self.n_events = 0  # callbacks run so far (cancelled events not counted)

    def schedule(self, delay: float, fn: Callable[..., Any], *args: Any) -> Event:
        """Run ``fn(*args)`` at ``now + delay`` (``delay`` >= 0, seconds)."""
        if not delay >= 0:  # also rejects NaN
            raise ValueError(f"delay must be >= 0 seconds (events cannot go back in time), got {delay!r}")
        return self.schedule_at(self.now + delay, fn, *args)

    def schedule_at(self, time: float, fn: Callable[..., Any], *args: Any) -> Event:
        """Run ``fn(*args)`` at absolute ``time`` (>= ``now``)."""
        if not time >= self.now:
            raise ValueError(f"cannot schedule at t={time!r}: the clock is already at {self.now!r}")
        event = Event(float(time), self._seq, fn, args)
        self._seq += 1
        heapq.heappush(self._heap, event)
        return event

    def peek(self) -> float:
        """Time of the next pending event (inf when none)."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].time if self._heap else math.inf

    def run(self, until: float | None = None, max_events: int | None = None) -> int:
        """Process events in time order; return how many ran.

        Stops when the heap is empty, before the first event later than
        ``until`` (the clock is then set to ``until``), or after ``max_events``.
        """
        ran = 0
        heap = self._heap
        while heap and (max_events is None or ran < max_events):
            if until is not None and heap[0].time > until:
                break
            event = heapq.heappop(heap)
            if event.cancelled:
                continue
            self.now = event.time
            event.fn(*event.args)
            ran += 1
        if until is not None and (not heap or heap[0].time > until) and until > self.now:
            self.now = float(until)
        self.n_events += ran
        return ran

    def __len__(self) -> int:
        return len(self._heap)


# --------------------------------------------------------------------------
# 2. Arrival processes
# --------------------------------------------------------------------------
def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def poisson_arrivals(rate: float, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times (s) of a Poisson process of ``rate`` per second on [0, ``duration``).

    Interarrival gaps are iid Exponential(rate): cumulative sums of
    exponentials, stopped at ``duration``.  Returns a sorted float64 array of
    random length (mean ``rate * duration``).
    """
    rate, duration = _positive(rate, "rate"), _positive(duration, "duration")
    _check_rng(rng)
    expected = rate * duration
    n_draw = int(expected + 6 * math.sqrt(expected) + 10)  # more than enough with prob. ~1 - 1e-9
    times = np.cumsum(rng.exponential(1.0 / rate, n_draw))
    while times[-1] < duration:  # rare: top up
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate, n_draw))])
    return times[times < duration]


def thinned_arrivals(
    rate_fn: Callable[[np.ndarray], np.ndarray], rate_max: float, duration: float, rng: np.random.Generator
) -> np.ndarray:
    """Arrivals (s) of a Poisson process with time-varying rate ``rate_fn(t)`` on [0, duration).

    Lewis-Shedler thinning: draw a Poisson process at the constant rate
    ``rate_max`` and keep a point at time t with probability
    ``rate_fn(t) / rate_max``.  Exact when ``rate_fn(t) <= rate_max``
    everywhere; a value above ``rate_max`` raises ``ValueError``.
    """
    rate_max = _positive(rate_max, "rate_max")
    candidates = poisson_arrivals(rate_max, duration, rng)
    rates = np.asarray(rate_fn(candidates), dtype=np.float64)
    if rates.shape != candidates.shape:
        raise ValueError(f"rate_fn must map an array of times to rates of the same shape, got {rates.shape} for {candidates.shape}")
    if np.any(rates < 0) or np.any(rates > rate_max * (1 + 1e-12)):
        raise ValueError(f"rate_fn must stay within [0, rate_max={rate_max}]; it reached {rates.min():.6g}..{rates.max():.6g}")
    return candidates[rng.random(candidates.size) * rate_max < rates]


def diurnal_rate(mean_rate: float, day_s: float = 86_400.0, **profile: float) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """A daily traffic curve as a rate function, plus its maximum, for :func:`thinned_arrivals`.

    Reuses :func:`course_lib.slo.diurnal_profile` (two cosines peaking in the
    evening, mean 1 over a week) and squeezes one day into ``day_s`` seconds,
    so a simulation can cover a whole day's shape in minutes of simulated time.
    Weekday only (t starts Monday 00:00).  Returns ``(rate_fn, rate_max)``.
    """
    mean_rate, day_s = _positive(mean_rate, "mean_rate"), _positive(day_s, "day_s")
    scale = 86_400.0 / day_s
    amplitude = profile.get("amplitude", 0.5)
    harmonic = profile.get("second_harmonic", 0.15)
    weekend = profile.get("weekend_factor", 0.8)

    def rate_fn(t: np.ndarray) -> np.ndarray:
        return mean_rate * slo.diurnal_profile(np.asarray(t, dtype=np.float64) * scale, **profile)

    return rate_fn, mean_rate * slo.analytic_peak_factor(amplitude=amplitude, second_harmonic=harmonic, weekend_factor=weekend)


def diurnal_arrivals(mean_rate: float, duration: float, rng: np.random.Generator, *, day_s: float = 86_400.0, **profile: float) -> np.ndarray:
    """Arrivals (s) following :func:`diurnal_rate` (one day squeezed into ``day_s`` s), by thinning."""
    rate_fn, rate_max = diurnal_rate(mean_rate, day_s, **profile)
    return thinned_arrivals(rate_fn, rate_max, duration, rng)


def flash_crowd_rate(base_rate: float, peak_rate: float, start_s: float, length_s: float) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """Rate function of a flash crowd: ``base_rate``, then ``peak_rate`` on [start, start + length).

    Returns ``(rate_fn, rate_max)`` for :func:`thinned_arrivals`.
    """
    base_rate, peak_rate = _positive(base_rate, "base_rate"), _positive(peak_rate, "peak_rate")
    length_s = _positive(length_s, "length_s")

    def rate_fn(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return np.where((t >= start_s) & (t < start_s + length_s), peak_rate, base_rate)

    return rate_fn, max(base_rate, peak_rate)


def burst_arrivals(
    calm_rate: float, burst_rate: float, mean_calm_s: float, mean_burst_s: float, duration: float, rng: np.random.Generator
) -> np.ndarray:
    """Arrivals (s) of an on/off Markov-modulated Poisson process (MMPP-2): bursty traffic.

    The source alternates between a calm state (Poisson at ``calm_rate``)
    and a burst state (``burst_rate``), staying in each for an exponential
    time of mean ``mean_calm_s`` / ``mean_burst_s``; it starts calm.  The
    long-run mean rate is ``(calm_rate * mean_calm_s + burst_rate * mean_burst_s)
    / (mean_calm_s + mean_burst_s)`` (:func:`burst_mean_rate`).
    """
    calm_rate, burst_rate = _positive(calm_rate, "calm_rate"), _positive(burst_rate, "burst_rate")
    means = (_positive(mean_calm_s, "mean_calm_s"), _positive(mean_burst_s, "mean_burst_s"))
    duration = _positive(duration, "duration")
    _check_rng(rng)
    pieces, t, state = [], 0.0, 0
    while t < duration:
        stay = min(rng.exponential(means[state]), duration - t)
        pieces.append(t + poisson_arrivals((calm_rate, burst_rate)[state], stay, rng))
        t, state = t + stay, 1 - state
    return np.concatenate(pieces)


def burst_mean_rate(calm_rate: float, burst_rate: float, mean_calm_s: float, mean_burst_s: float) -> float:
    """Long-run arrival rate (1/s) of :func:`burst_arrivals`."""
    return (calm_rate * mean_calm_s + burst_rate * mean_burst_s) / (mean_calm_s + mean_burst_s)


def lognormal_service(mean_s: float, scv: float) -> LogNormal:
    """A lognormal service-time distribution with the given mean (s) and squared coefficient of variation.

    ``scv`` = Var / mean^2 (1 for an exponential).  sigma^2 = ln(1 + scv) and
    median = mean / sqrt(1 + scv).  Returns :class:`course_lib.reliability.LogNormal`
    (its unit is whatever ``mean_s`` is in; draw with ``.sample(rng, n)``).
    """
    mean_s, scv = _positive(mean_s, "mean_s"), _positive(scv, "scv")
    return LogNormal(median_ms=mean_s / math.sqrt(1.0 + scv), sigma=math.sqrt(math.log1p(scv)))


# --------------------------------------------------------------------------
# 3. The c-server FIFO queue
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueRun:
    """Per-request record of a FIFO queue run (arrays of shape (n,), seconds; ``server`` int64)."""

    arrival: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    server: np.ndarray

    @property
    def wait(self) -> np.ndarray:
        """Time in the queue, start - arrival (s)."""
        return self.start - self.arrival

    @property
    def response(self) -> np.ndarray:
        """Time in the system, finish - arrival (s): what the client sees."""
        return self.finish - self.arrival


def _check_arrays(arrivals: Any, services: Any, c: Any) -> tuple[np.ndarray, np.ndarray, int]:
    a = np.asarray(arrivals, dtype=np.float64)
    s = np.asarray(services, dtype=np.float64)
    if a.ndim != 1 or s.shape != a.shape:
        raise ValueError(f"arrivals and services must be 1-d arrays of equal length, got shapes {a.shape} and {s.shape}")
    if a.size and (np.any(np.diff(a) < 0) or not np.all(np.isfinite(a))):
        raise ValueError("arrivals must be finite and sorted (non-decreasing)")
    if np.any(~(s >= 0)) or not np.all(np.isfinite(s)):
        raise ValueError("service times must be finite and >= 0")
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise ValueError(f"c (number of servers) must be an int >= 1, got {c!r}")
    return a, s, int(c)


def fifo_gg_c(arrivals: Any, services: Any, c: int) -> QueueRun:
    """FIFO G/G/c queue by the Kiefer-Wolfowitz recursion: no events, exact.

    Requests are served in arrival order; request i starts at
    ``max(arrival_i, earliest time a server is free)`` on that server.  A heap
    holds ``(free_at, server)`` for the c servers, so ties go to the server
    freed first, then to the lower id (the same rule as :class:`FifoServers`).
    For c = 1 this is Lindley's recursion.  One heap operation per request:
    O(n log c), with no event objects, so several times faster than the event heap.

    Parameters
    ----------
    arrivals : (n,) sorted arrival times, s.
    services : (n,) service times, s.
    c : number of servers.
    """
    a, s, c = _check_arrays(arrivals, services, c)
    n = a.size
    start = np.empty(n)
    server = np.empty(n, dtype=np.int64)
    free = [(0.0, k) for k in range(c)]  # (free_at, server id), already a valid heap
    for i in range(n):
        free_at, k = free[0]
        t = a[i] if a[i] > free_at else free_at
        start[i], server[i] = t, k
        heapq.heapreplace(free, (t + s[i], k))
    return QueueRun(a, start, start + s, server)


def fifo_gg_c_many(arrivals: Any, services: Any, c: int) -> np.ndarray:
    """Start times of R independent FIFO G/G/c queues at once: :func:`fifo_gg_c` vectorised over rows.

    The loop runs over request index i, and each step serves request i of
    every replication in one numpy operation, so R replications cost about
    as much Python overhead as one.  ``np.argmin`` picks the earliest-free
    server, the lowest id on ties: the same rule, hence the same floats, as
    :func:`fifo_gg_c` row by row.  Independent replications also give an
    honest confidence interval (the replication means are iid).

    Parameters
    ----------
    arrivals, services : (R, n) arrays, one replication per row (arrivals sorted in each row), s.
    c : number of servers.

    Returns
    -------
    (R, n) float64 start-of-service times, s (wait = start - arrivals).
    """
    a = np.asarray(arrivals, dtype=np.float64)
    s = np.asarray(services, dtype=np.float64)
    if a.ndim != 2 or s.shape != a.shape:
        raise ValueError(f"arrivals and services must be 2-d arrays (R, n) of equal shape, got {a.shape} and {s.shape}")
    _check_arrays(a[0], s[0], c)
    if np.any(np.diff(a, axis=1) < 0) or np.any(~(s >= 0)):
        raise ValueError("each row of arrivals must be sorted and service times must be >= 0")
    rows = np.arange(a.shape[0])
    free = np.zeros((a.shape[0], int(c)))  # when each server of each replication is next free
    start = np.empty_like(a)
    for i in range(a.shape[1]):
        k = np.argmin(free, axis=1)
        t = np.maximum(a[:, i], free[rows, k])
        start[:, i] = t
        free[rows, k] = t + s[:, i]
    return start


@dataclass(frozen=True)
class WaitEstimate:
    """Mean wait in queue (s) from independent replications, with its 95% confidence half-width."""

    mean: float
    halfwidth: float
    n_requests: int  # requests counted (after each replication's warm-up)
    replications: int


def estimate_mean_wait(
    lam: float,
    sample_service: Callable[[np.random.Generator, tuple[int, int]], np.ndarray],
    c: int,
    rng: np.random.Generator,
    *,
    reps: int = 400,
    n: int = 5_000,
    warmup: int = 500,
    rel_halfwidth: float = 0.03,
    max_batches: int = 10,
) -> WaitEstimate:
    """Mean wait of a FIFO M/G/c queue by independent replications, run until the estimate is precise.

    Each batch simulates ``reps`` replications of ``n`` Poisson(``lam``)
    arrivals with :func:`fifo_gg_c_many`, drops each one's first ``warmup``
    requests (it starts empty, not in steady state) and keeps its mean wait.
    Batches are added until the 95% half-width (1.96 x standard error of the
    replication means) is below ``rel_halfwidth`` x the mean, or
    ``max_batches`` ran.  ``sample_service(rng, shape)`` draws service times (s).
    """
    _positive(lam, "lam")
    _check_rng(rng)
    if not 0 <= warmup < n:
        raise ValueError(f"need 0 <= warmup < n, got warmup={warmup}, n={n}")
    means: list[np.ndarray] = []
    for _ in range(max_batches):
        arrivals = np.cumsum(rng.exponential(1.0 / lam, (reps, n)), axis=1)
        services = np.asarray(sample_service(rng, (reps, n)), dtype=np.float64)
        wait = fifo_gg_c_many(arrivals, services, c) - arrivals
        means.append(wait[:, warmup:].mean(axis=1))
        m = np.concatenate(means)
        mean, half = float(m.mean()), float(1.96 * m.std(ddof=1) / math.sqrt(m.size))
        if half <= rel_halfwidth * mean:
            break
    return WaitEstimate(mean, half, m.size * (n - warmup), m.size)


class FifoServers:
    """c identical servers behind one FIFO queue, driven by a :class:`Simulator`.

    Call :meth:`arrive` (or schedule it) with a request id and its service
    time; the model starts it on an idle server (the one idle longest, then
    the lowest id) or queues it, and on each finish hands the head of the
    queue to the freed server.  ``on_finish(req_id)`` is called when a
    request completes (hook for fan-out, hedging, autoscaling ...).
    Per-request times are kept in dicts: ``arrival``, ``start``, ``finish``, ``server``.
    """

    def __init__(self, sim: Simulator, c: int, on_finish: Callable[[Any], None] | None = None) -> None:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise ValueError(f"c (number of servers) must be an int >= 1, got {c!r}")
        self.sim, self.c, self.on_finish = sim, int(c), on_finish
        self._idle: list[tuple[float, int]] = [(0.0, k) for k in range(self.c)]  # (idle since, id)
        self._queue: deque[tuple[Any, float]] = deque()
        self.arrival: dict[Any, float] = {}
        self.start: dict[Any, float] = {}
        self.finish: dict[Any, float] = {}
        self.server: dict[Any, int] = {}

    @property
    def in_system(self) -> int:
        """Requests waiting or in service now."""
        return len(self.arrival) - len(self.finish)

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def arrive(self, req_id: Any, service_s: float) -> None:
        """A request arrives now and needs ``service_s`` seconds of one server."""
        if req_id in self.arrival:
            raise ValueError(f"request id {req_id!r} arrived twice")
        self.arrival[req_id] = self.sim.now
        if self._idle:
            _, k = heapq.heappop(self._idle)
            self._begin(req_id, service_s, k)
        else:
            self._queue.append((req_id, service_s))

    def _begin(self, req_id: Any, service_s: float, k: int) -> None:
        self.start[req_id], self.server[req_id] = self.sim.now, k
        self.sim.schedule(service_s, self._done, req_id, k)

    def _done(self, req_id: Any, k: int) -> None:
        self.finish[req_id] = self.sim.now
        if self._queue:
            nxt, service_s = self._queue.popleft()
            self._begin(nxt, service_s, k)
        else:
            heapq.heappush(self._idle, (self.sim.now, k))
        if self.on_finish is not None:
            self.on_finish(req_id)

    def result(self) -> QueueRun:
        """The finished requests as arrays, in arrival order."""
        ids = sorted(self.finish, key=lambda r: (self.arrival[r], self.start[r]))
        take = lambda d: np.array([d[r] for r in ids])  # noqa: E731
        return QueueRun(take(self.arrival).astype(np.float64), take(self.start).astype(np.float64),
                        take(self.finish).astype(np.float64), take(self.server).astype(np.int64))


def simulate_fifo(arrivals: Any, services: Any, c: int) -> tuple[QueueRun, int]:
    """Run a FIFO c-server queue on the event heap; return ``(QueueRun, events processed)``.

    Each arrival is an event that schedules the next one (the usual DES
    pattern, so the heap stays small), and each finish is an event.
    """
    a, s, c = _check_arrays(arrivals, services, c)
    sim = Simulator()
    queue = FifoServers(sim, c)
    n = a.size

    def arrive(i: int) -> None:
        queue.arrive(i, s[i])
        if i + 1 < n:
            sim.schedule_at(a[i + 1], arrive, i + 1)

    if n:
        sim.schedule_at(a[0], arrive, 0)
    events = sim.run()
    run = queue.result()
    return QueueRun(a, run.start, run.finish, run.server), events


def simpy_fifo(arrivals: Any, services: Any, c: int) -> np.ndarray:
    """Start-of-service times (s) of the same FIFO queue in simpy (``simpy.Resource(capacity=c)``): the reference.

    A source process sleeps the interarrival gaps and starts one process
    per request: request the resource, record ``env.now``, hold it for the
    service time, release.
    """
    import simpy

    a, s, c = _check_arrays(arrivals, services, c)
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=c)
    start = np.empty(a.size)

    def request(i: int):
        with servers.request() as req:
            yield req
            start[i] = env.now
            yield env.timeout(s[i])

    def source():
        for i in range(a.size):
            yield env.timeout(a[i] - env.now)
            env.process(request(i))

    env.process(source())
    env.run()
    return start


def time_average_in_system(arrivals: Any, departures: Any, t0: float, t1: float) -> float:
    """Time-average number in system L over [t0, t1]: the integral of the step function N(t) / (t1 - t0).

    N(t) = #arrivals <= t - #departures <= t; a request with no departure
    yet (np.inf) stays in the system.  Integrated exactly, piece by piece.
    """
    if not t1 > t0:
        raise ValueError(f"need t1 > t0, got [{t0}, {t1}]")
    a = np.asarray(arrivals, dtype=np.float64)
    d = np.asarray(departures, dtype=np.float64)
    times = np.concatenate([a, d])
    steps = np.concatenate([np.ones(a.size), -np.ones(d.size)])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(steps[order])
    n_before = int(level[np.searchsorted(times, t0, side="right") - 1]) if np.any(times <= t0) else 0
    inside = (times > t0) & (times < t1)
    edges = np.concatenate([[t0], times[inside], [t1]])
    levels = np.concatenate([[n_before], level[inside]])
    return float(np.sum(levels * np.diff(edges)) / (t1 - t0))


@dataclass(frozen=True)
class HedgedRun:
    """Hedged requests through one FIFO server pool (:func:`simulate_hedged`).

    ``latency``: (n,) time to the first answer, primary or backup, s;
    ``n_backups``: backups sent; ``utilisation``: busy server-seconds / (c x time span).
    """

    latency: np.ndarray
    n_backups: int
    utilisation: float


def simulate_hedged(
    arrivals: Any, services: Any, backup_services: Any, c: int, hedge_at: float | None, *, budget: float | None = None
) -> HedgedRun:
    """Requests with a hedge timer, through c FIFO servers, on the event heap.

    Request i arrives at ``arrivals[i]`` and joins the queue.  If it has no
    answer ``hedge_at`` seconds later, a backup copy (service time
    ``backup_services[i]``) joins the same queue, and the request completes at
    whichever copy finishes first.  The loser is not cancelled: it still uses a
    server, which is the load hedging adds (Dean and Barroso's "hedged
    requests"; cancelling the loser is their "tied requests").  This is the
    case the Kiefer-Wolfowitz recursion cannot handle: whether a backup
    exists depends on the queue's state, so the arrival list is not known in advance.

    ``budget``: at most this fraction of the requests so far may have sent a
    backup (a hedging budget, like gRPC's retry throttling); None = unlimited.
    Without one, hedging can feed on itself: backups add load, load makes
    more requests late, late requests send more backups.
    """
    a, s, c = _check_arrays(arrivals, services, c)
    b = np.asarray(backup_services, dtype=np.float64)
    if b.shape != s.shape:
        raise ValueError(f"backup_services must have the shape of services {s.shape}, got {b.shape}")
    if hedge_at is not None and not hedge_at > 0:
        raise ValueError(f"hedge_at must be > 0 seconds or None, got {hedge_at!r}")
    if budget is not None and not 0 <= budget <= 1:
        raise ValueError(f"budget must be a fraction in [0, 1] or None, got {budget!r}")
    sim = Simulator()
    n_arrived = 0
    answered = np.full(a.size, np.inf)
    n_backups = 0

    def finished(req: tuple[int, int]) -> None:
        i = req[0]
        answered[i] = min(answered[i], sim.now)

    pool = FifoServers(sim, c, on_finish=finished)

    def hedge(i: int) -> None:
        nonlocal n_backups
        within_budget = budget is None or n_backups + 1 <= budget * n_arrived
        if answered[i] == np.inf and within_budget:
            n_backups += 1
            pool.arrive((i, 1), b[i])

    def arrive(i: int) -> None:
        nonlocal n_arrived
        n_arrived += 1
        pool.arrive((i, 0), s[i])
        if hedge_at is not None:
            sim.schedule(hedge_at, hedge, i)
        if i + 1 < a.size:
            sim.schedule_at(a[i + 1], arrive, i + 1)

    if a.size:
        sim.schedule_at(a[0], arrive, 0)
    sim.run()
    busy = sum(pool.finish[r] - pool.start[r] for r in pool.finish)
    span = max(pool.finish.values()) - a[0] if a.size else 1.0
    return HedgedRun(answered - a, n_backups, busy / (c * span))
