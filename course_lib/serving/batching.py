"""Request batching for model serving: the policy, a real threaded server, an open-loop load generator, a simulation.

One forward pass over a batch of ``b`` requests costs about ``t(b) = a + c*b``
seconds: ``a`` is paid once per call (Python and framework overhead, reading
the weights from memory), ``c`` per request.  Batching amortises ``a``, so the
most a single model instance can serve is ``b / t(b)`` requests per second,
which grows with ``b`` towards ``1/c``.  The price is waiting: a request that
arrives to an empty queue either runs alone (cheap now, wasteful later) or
waits for company.  This module puts every piece of that trade-off side by side:

1. :class:`DynamicBatcher`, the policy: Triton's dynamic batcher (largest
   preferred batch size as soon as it can be formed, otherwise wait at most
   ``max_wait_s`` after the oldest request, then run what is there).  With
   ``max_batch_size=1`` it is no batching; with ``max_wait_s=inf`` and no
   preferred sizes it is static batching (always exactly ``B``).
2. :func:`simulate_batching`, the same policy object driven by the discrete-
   event kernel of :mod:`course_lib.serving.des` with a service curve
   ``t(b)``; :func:`simpy_batching` is the reference model written in simpy.
3. :class:`BatchingServer`, a threaded TCP server on 127.0.0.1 that runs a
   real model with the same policy object (or with the ``batched`` package's
   ``BatchProcessor`` for comparison), and :func:`open_loop_load`, a client
   that sends at precomputed times and measures each latency from the
   *scheduled* send time, so a slow server cannot slow the client down and
   hide its own queueing (no coordinated omission).

Wire format (both directions): a 12-byte header ``<QI`` (request id, payload
length) followed by a tensor frame from :func:`course_lib.serving.protocols.encode_tensor`.

Units: seconds, requests per second.  Clocks: ``time.perf_counter`` (monotonic).
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..validate import check_int, check_number
from .des import Simulator
from .protocols import decode_tensor, encode_tensor

HEADER = struct.Struct("<QI")  # request id (u64), payload length in bytes (u32)
MAX_PAYLOAD = 64 * 1024 * 1024


# --------------------------------------------------------------------------
# 1. The policy
# --------------------------------------------------------------------------
class DynamicBatcher:
    """When to run a batch, and how big: Triton's dynamic-batching rule.

    Asked with the arrival times of the waiting requests (oldest first) and
    the current time, :meth:`next_batch` answers either "run the first
    ``size`` requests now" or "ask me again at ``wake_at``" (or "when the next
    request arrives", ``wake_at=None``).  The same object drives the real
    server and the simulation, so both run exactly the same policy.

    Parameters
    ----------
    max_batch_size : largest batch the model accepts (>= 1).
    max_wait_s : longest a request may wait for others to join its batch
        (Triton ``max_queue_delay_microseconds``, Ray Serve
        ``batch_wait_timeout_s``); 0 = never wait; ``math.inf`` = wait until
        the batch is full.
    preferred_sizes : batch sizes worth running at once (Triton
        ``preferred_batch_size``), each <= ``max_batch_size``.  Without them
        only a full batch (``max_batch_size``) runs before the wait expires.
    """

    def __init__(self, max_batch_size: int, max_wait_s: float = 0.0, preferred_sizes: Sequence[int] = ()) -> None:
        self.max_batch_size = check_int(max_batch_size, "max_batch_size", low=1)
        if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, (int, float, np.integer, np.floating)) \
                or math.isnan(max_wait_s) or max_wait_s < 0:
            raise ValueError(f"max_wait_s must be a number >= 0 (seconds; math.inf = wait for a full batch), got {max_wait_s!r}")
        self.max_wait_s = float(max_wait_s)
        sizes = sorted({check_int(p, "each preferred size", low=1, high=self.max_batch_size) for p in preferred_sizes})
        self.preferred_sizes = tuple(sizes)

    def next_batch(self, queue: Sequence[float], now: float) -> tuple[int, float | None]:
        """Decide for an idle model instance.

        Parameters
        ----------
        queue : arrival times (s) of the waiting requests, oldest first.
        now : current time (s), on the same clock.

        Returns
        -------
        (size, wake_at) : ``size > 0``: run the first ``size`` requests now
            (``wake_at`` is None).  ``size == 0``: wait; ask again at
            ``wake_at`` (s), or when a request arrives if ``wake_at`` is None.

        The rule, in order: an empty queue waits for an arrival; the largest
        preferred size that can be formed runs at once (without preferred
        sizes: a full batch of ``max_batch_size``); once the oldest request
        has waited ``max_wait_s``, whatever is there runs (at most
        ``max_batch_size``); otherwise wait until that moment.
        """
        n = len(queue)
        if n == 0:
            return 0, None
        formable = [p for p in self.preferred_sizes if p <= n]
        if formable:
            return formable[-1], None
        if n >= self.max_batch_size:
            return self.max_batch_size, None
        if math.isinf(self.max_wait_s):
            return 0, None  # static: only a full batch runs
        deadline = queue[0] + self.max_wait_s
        if now >= deadline:
            return n, None
        return 0, deadline

    def __repr__(self) -> str:
        pref = f", preferred_sizes={list(self.preferred_sizes)}" if self.preferred_sizes else ""
        return f"DynamicBatcher(max_batch_size={self.max_batch_size}, max_wait_s={self.max_wait_s:g}{pref})"


def no_batching() -> DynamicBatcher:
    """One request per forward pass, as soon as the model is free."""
    return DynamicBatcher(1, 0.0)


def static_batching(batch_size: int) -> DynamicBatcher:
    """Always exactly ``batch_size`` requests: wait, however long, for the batch to fill."""
    return DynamicBatcher(batch_size, math.inf)


# --------------------------------------------------------------------------
# 2. The service curve t(b) = a + c*b
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceCurve:
    """Forward-pass time of a batch of ``b`` requests, ``t(b) = a + c*b`` seconds.

    Attributes
    ----------
    a : fixed cost per call (s).
    c : cost per request in the batch (s).
    """

    a: float
    c: float

    def __post_init__(self) -> None:
        check_number(self.a, "a", low=0)
        check_number(self.c, "c", low=0)
        if self.a + self.c <= 0:
            raise ValueError("t(1) = a + c must be > 0")

    def __call__(self, b: int) -> float:
        return self.a + self.c * b

    def capacity(self, b: int) -> float:
        """Most requests per second one instance serves with batches of ``b``: ``b / t(b)``."""
        return b / self(b)

    @classmethod
    def fit(cls, sizes: Sequence[int], times: Sequence[float]) -> ServiceCurve:
        """The line through measured (batch size, seconds) points with the smallest *relative* squared error.

        Weighting each point by ``1/t`` keeps the small batches (milliseconds)
        from being drowned by the large ones (hundreds of milliseconds), so
        ``t(1)`` is fitted as well as ``t(32)``.  ``a`` and ``c`` are clipped at 0.
        """
        b = np.asarray(sizes, dtype=np.float64)
        t = np.asarray(times, dtype=np.float64)
        if b.ndim != 1 or b.shape != t.shape or b.size < 2 or np.unique(b).size < 2:
            raise ValueError(f"need >= 2 distinct batch sizes with one time each, got sizes {b.shape} and times {t.shape}")
        if not (np.all(np.isfinite(t)) and np.all(t > 0) and np.all(b >= 1)):
            raise ValueError("batch sizes must be >= 1 and times finite and > 0")
        c, a = np.polyfit(b, t, 1, w=1.0 / t)  # polyfit weights multiply the residuals: relative error
        return cls(a=float(max(a, 0.0)), c=float(max(c, 0.0)))


class LoggedService:
    """``t(b) = curve(b) * r + e``: the curve's shape, and the slowdowns ``r`` and extra times ``e`` a real server logged.

    For the server's k-th batch (size ``b_k``): ``r_k`` = its forward-pass time
    / ``curve(b_k)`` (how much slower the CPU ran than in the quiet
    measurement: it scales with the work), and ``e_k`` = the rest of the time
    the instance was busy (writing the answers, any stall before the worker
    looked at the queue again: a fixed cost, added as is).  A bare line
    ``a + c*b`` has no variance, and queueing delay grows with service-time
    variance (Pollaczek-Khinchine: the mean wait is proportional to
    ``1 + SCV``).  On a shared machine the slowdowns also come in streaks
    (another process holds the core for a while), which independent noise
    misses.  Two ways to put the log back into a simulation:

    * ``order="time"``: a batch simulated at time ``t`` gets the ``(r, e)`` of the
      logged batch that was running at ``t`` (the streaks stay where they were);
    * ``order="shuffle"``: pairs drawn i.i.d. (seeded), only their distribution kept.

    Parameters
    ----------
    curve : the :class:`ServiceCurve` (e.g. measured in isolation).
    ratios : (m,) logged forward-pass times / ``curve(b)``, all > 0.
    times : (m,) start times (s) of the logged batches on the simulation's clock, sorted; needed for ``"time"``.
    order : ``"time"`` or ``"shuffle"``.
    seed : the stream for ``"shuffle"``.
    extra : (m,) seconds added to each batch (>= 0); default 0.
    """

    def __init__(self, curve: ServiceCurve, ratios: Any, times: Any = None, order: str = "time", seed: int = 0,
                 extra: Any = None) -> None:
        r = np.asarray(ratios, dtype=np.float64)
        if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
            raise ValueError(f"ratios must be a non-empty 1-D array of finite numbers > 0, got shape {r.shape}")
        if order not in ("time", "shuffle"):
            raise ValueError(f"order must be 'time' or 'shuffle', got {order!r}")
        if order == "time":
            t = np.asarray(times if times is not None else [], dtype=np.float64)
            if t.shape != r.shape or np.any(np.diff(t) < 0) or not np.all(np.isfinite(t)):
                raise ValueError(f"order='time' needs sorted, finite start times, one per ratio ({r.size}), got shape {t.shape}")
            self.times = t
        e = np.zeros_like(r) if extra is None else np.asarray(extra, dtype=np.float64)
        if e.shape != r.shape or not np.all(np.isfinite(e)) or np.any(e < 0):
            raise ValueError(f"extra must hold one finite number >= 0 (s) per ratio ({r.size}), got shape {e.shape}")
        self.curve, self.ratios, self.extra, self.order = curve, r, e, order
        self.needs_time = order == "time"  # simulate_batching then calls service(b, now)
        self.rng = np.random.default_rng(seed)

    def __call__(self, b: int, now: float | None = None) -> float:
        if self.order == "time":
            if now is None:
                raise ValueError("order='time' needs the simulation time: call service(b, now)")
            k = max(int(np.searchsorted(self.times, now, side="right")) - 1, 0)
        else:
            k = int(self.rng.integers(self.ratios.size))
        return self.curve(b) * float(self.ratios[k]) + float(self.extra[k])

    @classmethod
    def from_log(cls, curve: ServiceCurve, log: ServerLog, origin: float = 0.0, order: str = "time", seed: int = 0) -> LoggedService:
        """From a :class:`ServerLog`; ``origin`` is the client's time zero on the server's clock (``LoadResult.origin``)."""
        b = np.asarray(log.batch_sizes, dtype=np.float64)
        if b.size == 0:
            raise ValueError("the server log has no batches")
        start = np.asarray(log.batch_start, dtype=np.float64)
        busy = log.busy_s()
        computed = np.asarray(log.batch_computed, dtype=np.float64) if len(log.batch_computed) == b.size \
            else start + busy  # an older log without the forward-pass end: all of it scales
        forward = computed - start
        idx = np.argsort(start, kind="stable")
        ratios = (forward / (curve.a + curve.c * b))[idx]
        extra = np.maximum(busy - forward, 0.0)[idx]
        return cls(curve, ratios, start[idx] - origin, order, seed, extra=extra)


def measure_service_curve(
    model_fn: Callable[[np.ndarray], Any], make_batch: Callable[[int], np.ndarray], sizes: Sequence[int],
    *, repeats: int = 5, warmup: int = 2,
) -> dict[int, float]:
    """Median seconds of ``model_fn(make_batch(b))`` for each batch size ``b`` (one thread: wrap in ``config.single_thread()``)."""
    repeats = check_int(repeats, "repeats", low=1)
    warmup = check_int(warmup, "warmup", low=0)
    out: dict[int, float] = {}
    for b in sizes:
        b = check_int(b, "batch size", low=1)
        x = make_batch(b)
        for _ in range(warmup):
            model_fn(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model_fn(x)
            times.append(time.perf_counter() - t0)
        out[b] = float(np.median(times))
    return out


# --------------------------------------------------------------------------
# 3. Simulation
# --------------------------------------------------------------------------
def _finite_percentile(latency: np.ndarray, q: float) -> float:
    """``q``-th percentile (0-100) of the finite entries (NaN = never answered), NaN when there are none."""
    lat = latency[np.isfinite(latency)]
    return float(np.percentile(lat, q)) if lat.size else math.nan


def _throughput(ends: np.ndarray, starts: np.ndarray) -> float:
    """Answered requests per second, from the first start to the last finite end (0 when none)."""
    served = int(np.isfinite(ends).sum())
    return served / (np.nanmax(ends) - starts.min()) if served else 0.0


@dataclass
class BatchRun:
    """Per-request and per-batch record of one batching run (simulated or measured).

    Attributes
    ----------
    arrival, start, finish : (n,) seconds; ``start``/``finish`` are NaN for a
        request never served (a static batch that never filled).
    batch_sizes, batch_start, batch_finish : one entry per batch run.
    """

    arrival: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    batch_sizes: np.ndarray
    batch_start: np.ndarray
    batch_finish: np.ndarray

    @property
    def latency(self) -> np.ndarray:
        """Arrival to response (s), NaN if never served."""
        return self.finish - self.arrival

    @property
    def served(self) -> int:
        return int(np.isfinite(self.finish).sum())

    @property
    def throughput(self) -> float:
        """Requests served per second, first arrival to last response."""
        return _throughput(self.finish, self.arrival)

    @property
    def utilisation(self) -> float:
        """Fraction of the run (first arrival to last response) the model was computing."""
        if self.batch_sizes.size == 0:
            return 0.0
        return float((self.batch_finish - self.batch_start).sum() / (self.batch_finish.max() - self.arrival.min()))

    @property
    def mean_batch(self) -> float:
        return float(self.batch_sizes.mean()) if self.batch_sizes.size else 0.0

    def overtaken(self) -> int:
        """Requests answered after some request that arrived later than them (0 for a FIFO batcher)."""
        order = np.argsort(self.arrival, kind="stable")
        fin = np.where(np.isfinite(self.finish), self.finish, np.inf)[order]
        later_min = np.minimum.accumulate(fin[::-1])[::-1]  # earliest finish among this and later arrivals
        return int(np.sum(fin[:-1] > later_min[1:]))

    def percentile(self, q: float) -> float:
        """``q``-th percentile (0-100) of the latency of served requests (s)."""
        return _finite_percentile(self.latency, q)


class ArrivalView(Sequence):
    """The arrival times of a FIFO queue, oldest first, without copying the queue.

    What a policy's ``next_batch(queue, now)`` receives from the simulation
    and the server: ``len(view)`` and ``view[0]`` are O(1), so a decision
    costs the same with 10 or 100,000 requests waiting (a list built per
    decision would make an overloaded simulation quadratic).
    """

    __slots__ = ("_items", "_time")

    def __init__(self, items: deque, time_of: Callable[[Any], float]) -> None:
        self._items, self._time = items, time_of

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._time(x) for x in list(self._items)[i]]
        return self._time(self._items[i])


def _check_arrivals(arrivals: Any) -> np.ndarray:
    a = np.asarray(arrivals, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"arrivals must be a non-empty 1-D array of times (s), got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(np.diff(a) < 0):
        raise ValueError("arrivals must be finite and sorted in time")
    return a


def _check_policy(batcher: Any) -> None:
    if not callable(getattr(batcher, "next_batch", None)):
        raise ValueError(f"batcher must have a next_batch(queue, now) method (e.g. DynamicBatcher), got {type(batcher).__name__}")


def _check_decision(decision: Any, n_waiting: int, now: float) -> tuple[int, float | None]:
    """Validate a policy's answer, so a wrong one fails loudly instead of hanging the run."""
    try:
        size, wake = decision
    except (TypeError, ValueError):
        raise ValueError(f"next_batch must return (size, wake_at), got {decision!r}") from None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 0 <= size <= n_waiting:
        raise ValueError(f"next_batch returned size {size!r} with {n_waiting} requests waiting")
    if size == 0 and wake is not None and not (isinstance(wake, (int, float, np.integer, np.floating))
                                               and now < wake < math.inf):
        raise ValueError(f"next_batch asked to wake at {wake!r}: it must be a finite time after now={now!r} "
                         "(return None to wait for the next arrival)")
    return int(size), (None if size else wake)


def simulate_batching(
    arrivals: Any, batcher: Any, service_time: Callable[[int], float], *, instances: int = 1,
) -> BatchRun:
    """One batching queue in front of ``instances`` model copies, in virtual time.

    Parameters
    ----------
    arrivals : sorted arrival times (s), shape (n,).
    batcher : a policy with ``next_batch(queue, now)`` (:class:`DynamicBatcher`).
    service_time : ``t(b)``, seconds for a batch of ``b`` (a :class:`ServiceCurve` or any callable).
    instances : model copies serving the one queue (each asks the policy when it becomes free).

    Returns
    -------
    :class:`BatchRun`.  Requests left in a queue that never dispatches (a
    static batch that never fills) keep NaN start/finish.
    """
    a = _check_arrivals(arrivals)
    _check_policy(batcher)
    if not callable(service_time):
        raise ValueError(f"service_time must be a callable t(b) -> seconds, got {type(service_time).__name__}")
    instances = check_int(instances, "instances", low=1)
    sim = Simulator()
    waiting: deque[int] = deque()
    arrivals_view = ArrivalView(waiting, a.__getitem__)
    free = instances
    timer: list[Any] = [None]
    start = np.full(a.size, np.nan)
    finish = np.full(a.size, np.nan)
    sizes: list[int] = []
    b_start: list[float] = []
    b_finish: list[float] = []

    def finished(batch: list[int]) -> None:
        nonlocal free
        finish[batch] = sim.now
        free += 1
        dispatch()

    def dispatch() -> None:
        nonlocal free
        while free and waiting:
            size, wake = _check_decision(batcher.next_batch(arrivals_view, sim.now), len(waiting), sim.now)
            if size == 0:
                if wake is not None and (timer[0] is None or timer[0].time != wake):
                    if timer[0] is not None:
                        timer[0].cancel()
                    timer[0] = sim.schedule_at(wake, dispatch)
                return
            batch = [waiting.popleft() for _ in range(size)]
            t = float(service_time(size, sim.now) if getattr(service_time, "needs_time", False) else service_time(size))
            if not t > 0:
                raise ValueError(f"service_time({size}) must be > 0 seconds, got {t!r}")
            free -= 1
            start[batch] = sim.now
            sizes.append(size)
            b_start.append(sim.now)
            b_finish.append(sim.now + t)
            sim.schedule(t, finished, batch)

    def arrive(i: int) -> None:
        waiting.append(i)
        dispatch()

    for i, t in enumerate(a):
        sim.schedule_at(t, arrive, i)
    sim.run()
    return BatchRun(a, start, finish, np.array(sizes, dtype=np.int64), np.array(b_start), np.array(b_finish))


def simpy_batching(arrivals: Any, max_batch_size: int, max_wait_s: float, service_time: Callable[[int], float]) -> np.ndarray:
    """Finish times (s) of the same single-instance batcher (no preferred sizes) written in simpy: the reference.

    A server process waits for a first request, then for the batch to fill
    or the oldest request's wait to reach ``max_wait_s`` (``AnyOf`` of a
    "full" event and a timeout), takes up to ``max_batch_size`` and holds
    the server for ``service_time(size)``.
    """
    import simpy

    a = _check_arrivals(arrivals)
    max_batch_size = check_int(max_batch_size, "max_batch_size", low=1)
    env = simpy.Environment()
    waiting: deque[int] = deque()
    finish = np.full(a.size, np.nan)
    state: dict[str, Any] = {"arrived": env.event()}

    def source():
        for i in range(a.size):
            yield env.timeout(a[i] - env.now)
            waiting.append(i)
            state["arrived"].succeed()
            state["arrived"] = env.event()

    def server():
        while True:
            while not waiting:
                yield state["arrived"]
            deadline = a[waiting[0]] + max_wait_s
            while len(waiting) < max_batch_size and env.now < deadline:
                if math.isinf(deadline):
                    yield state["arrived"]
                else:
                    yield env.any_of([state["arrived"], env.timeout(deadline - env.now)])
            batch = [waiting.popleft() for _ in range(min(max_batch_size, len(waiting)))]
            yield env.timeout(service_time(len(batch)))
            finish[batch] = env.now

    env.process(source())
    env.process(server())
    env.run()  # ends when no event is left (a static batch that never fills leaves NaN finishes)
    return finish


# --------------------------------------------------------------------------
# 4. A real server on loopback
# --------------------------------------------------------------------------
def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Exactly ``n`` bytes from ``sock``, or None if the peer closed first."""
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send_message(sock: socket.socket, rid: int, array: np.ndarray) -> None:
    """Send one framed tensor message (header + :func:`encode_tensor` frame)."""
    body = encode_tensor(array)
    sock.sendall(HEADER.pack(rid, len(body)) + body)


def recv_message(sock: socket.socket) -> tuple[int, np.ndarray] | None:
    """Receive one framed tensor message; None when the peer closed the connection."""
    head = _recv_exact(sock, HEADER.size)
    if head is None:
        return None
    rid, length = HEADER.unpack(head)
    if length > MAX_PAYLOAD:
        raise ValueError(f"message of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    body = _recv_exact(sock, length)
    if body is None:
        return None
    return rid, decode_tensor(body)


@dataclass
class _Pending:
    rid: int
    conn: Any
    arrival: float
    x: np.ndarray


@dataclass
class ServerLog:
    """What the server saw, as plain lists (picklable across processes).

    Per request, in the order the server finished them: ``rids`` (the client's
    request id), ``batch_index`` (which batch carried it), ``arrival`` at the
    server, batch ``start`` (NaN for the ``batched`` backend, which does not
    say) and ``finish`` (its answer handed to the socket; s, ``time.perf_counter``).  Per batch: ``batch_sizes``,
    ``batch_start``, ``batch_computed`` (the forward pass done), ``batch_finish``
    (its last answer written to its socket) and ``batch_free`` (the worker's
    next decision: see :meth:`busy_s`).
    """

    rids: list[int] = field(default_factory=list)
    batch_index: list[int] = field(default_factory=list)
    arrival: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    finish: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    batch_start: list[float] = field(default_factory=list)
    batch_finish: list[float] = field(default_factory=list)
    batch_free: list[float] = field(default_factory=list)
    batch_computed: list[float] = field(default_factory=list)

    def busy_s(self) -> np.ndarray:
        """Per batch, how long the model instance was unavailable (s): start to the worker's next decision.

        That is the forward pass, the sends and anything that delayed the
        worker before it asked the policy again (a GC pause, the OS running
        another thread): all of it is time the queue waits.  Falls back to
        ``batch_finish`` where no next decision was logged (the last batch,
        the ``batched`` backend).
        """
        start = np.asarray(self.batch_start, dtype=np.float64)
        end = np.asarray(self.batch_finish, dtype=np.float64).copy()
        k = min(len(self.batch_free), end.size)
        end[:k] = np.maximum(end[:k], np.asarray(self.batch_free[:k], dtype=np.float64))
        return end - start

    def latency_by_rid(self, n: int) -> np.ndarray:
        """Server-side latency (arrival at the server to response sent, s) of request ids 0..n-1; NaN if absent."""
        out = np.full(n, np.nan)
        rid = np.asarray(self.rids, dtype=np.int64)
        ok = (rid >= 0) & (rid < n)
        out[rid[ok]] = (np.asarray(self.finish) - np.asarray(self.arrival))[ok]
        return out

    def overtaken(self) -> int:
        """Requests that left in a later batch than some request that reached the server after them (0 when FIFO)."""
        if not self.batch_index:
            return 0
        order = np.argsort(self.arrival, kind="stable")
        k = np.asarray(self.batch_index, dtype=np.int64)[order]
        later_min = np.minimum.accumulate(k[::-1])[::-1]  # smallest batch index among this and later arrivals
        return int(np.sum(k[:-1] > later_min[1:]))

    def run(self) -> BatchRun:
        """The server's own record as a :class:`BatchRun` (server-side latencies, no network)."""
        order = np.argsort(self.arrival, kind="stable")
        return BatchRun(
            np.asarray(self.arrival)[order], np.asarray(self.start)[order], np.asarray(self.finish)[order],
            np.asarray(self.batch_sizes, dtype=np.int64), np.asarray(self.batch_start), np.asarray(self.batch_finish),
        )


class _Connection:
    """A client socket plus a lock, so responses from different threads never interleave."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, rid: int, array: np.ndarray) -> None:
        with self.lock:
            try:
                send_message(self.sock, rid, array)
            except OSError:
                pass  # the client went away; its request is lost to it, not to the server


class BatchingServer:
    """A threaded model server on 127.0.0.1: one reader thread per connection, one model worker.

    Readers put each request in one FIFO queue; the worker asks the policy
    (``batcher.next_batch(arrival times, now)``) when to run, stacks the
    batch's inputs (all requests must have the same shape), calls
    ``model_fn(x)`` once per batch (``x``: (b, ...) -> (b, ...)) and sends each
    row back on its request's connection.

    With ``backend="batched"`` the batching is done by the ``batched``
    package instead (``batched.BatchProcessor(batch_size, timeout_ms)``):
    each request is handed to a thread that calls the processor and blocks
    until its result is ready, the way a threaded web framework uses it.

    Use as a context manager (the server stops, threads joined, even if the
    block raises)::

        with BatchingServer(model_fn, DynamicBatcher(16, 0.005)) as server:
            result = open_loop_load(server.port, send_times, payloads)
    """

    def __init__(
        self, model_fn: Callable[[np.ndarray], Any], batcher: DynamicBatcher | None = None, *,
        backend: str = "own", batched_size: int = 32, batched_timeout_ms: float = 5.0, handler_threads: int = 64,
    ) -> None:
        if not callable(model_fn):
            raise ValueError(f"model_fn must be callable (b, ...) -> (b, ...), got {type(model_fn).__name__}")
        if backend not in ("own", "batched"):
            raise ValueError(f"backend must be 'own' or 'batched', got {backend!r}")
        if backend == "own":
            _check_policy(batcher)
        self.model_fn = model_fn
        self.batcher = batcher
        self.backend = backend
        self.batched_size = check_int(batched_size, "batched_size", low=1)
        self.batched_timeout_ms = check_number(batched_timeout_ms, "batched_timeout_ms", low=0)
        self.handler_threads = check_int(handler_threads, "handler_threads", low=1)
        self.log = ServerLog()
        self.errors: list[str] = []
        self._queue: deque[_Pending] = deque()
        self._arrivals = ArrivalView(self._queue, lambda p: p.arrival)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[_Connection] = []
        self._listener: socket.socket | None = None
        self._processor: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._batch_of: dict[int, int] = {}  # batched backend: request id -> index of the batch that carried it
        self.port = 0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> BatchingServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        if self.backend == "batched":
            from batched import BatchProcessor

            self._processor = BatchProcessor(self._run_batched, batch_size=self.batched_size, timeout_ms=self.batched_timeout_ms)
            self._pool = ThreadPoolExecutor(self.handler_threads, thread_name_prefix="batched-handler")
        else:
            self._spawn(self._worker, "batch-worker")
        self._spawn(self._accept, "accept")
        return self

    def stop(self) -> None:
        """Stop accepting, wake and join every thread (bounded), close every socket."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._conns):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.sock.close()
        if self._processor is not None:
            self._processor.shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for t in self._threads:
            t.join(timeout=5.0)

    def __enter__(self) -> BatchingServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # -- threads -----------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock)
            self._conns.append(conn)
            self._spawn(self._read, "reader", conn)

    def _read(self, conn: _Connection) -> None:
        while not self._stop.is_set():
            try:
                msg = recv_message(conn.sock)
            except (OSError, ValueError) as err:
                if not self._stop.is_set():
                    self.errors.append(f"reader: {err}")
                return
            if msg is None:
                return
            rid, x = msg
            pending = _Pending(rid, conn, time.perf_counter(), x)
            if self.backend == "batched":
                assert self._pool is not None
                self._pool.submit(self._handle_batched, pending)
            else:
                with self._cond:
                    self._queue.append(pending)
                    self._cond.notify()

    def _worker(self) -> None:
        just_ran = False
        while True:
            with self._cond:
                while True:
                    if self._stop.is_set():
                        return
                    now = time.perf_counter()
                    if just_ran:  # the instance is free again: the end of the last batch's service
                        self.log.batch_free.append(now)
                        just_ran = False
                    size, wake = _check_decision(
                        self.batcher.next_batch(self._arrivals, now), len(self._queue), now)
                    if size:
                        batch = [self._queue.popleft() for _ in range(size)]
                        break
                    # sleep until the policy's deadline or an arrival (bounded, so stop() is seen)
                    self._cond.wait(timeout=0.1 if wake is None else min(0.1, max(wake - now, 0.0)))
            self._run_own(batch)
            just_ran = True

    def _run_own(self, batch: list[_Pending]) -> None:
        t0 = time.perf_counter()
        try:
            out = np.asarray(self.model_fn(np.stack([p.x for p in batch])))
        except Exception as err:  # noqa: BLE001 - a model error must not kill the server
            self.errors.append(f"model_fn on a batch of {len(batch)}: {type(err).__name__}: {err}")
            return
        computed = time.perf_counter()
        sent = []
        for p, row in zip(batch, out):
            sent.append(time.perf_counter())  # handed to the socket: the client cannot have it before this
            p.conn.send(p.rid, row)
        self._record(batch, t0=t0, computed=computed, sent=sent, t1=time.perf_counter())

    def _record(self, batch: list[_Pending], t0: float, computed: float, sent: list[float], t1: float) -> None:
        batch_arrivals = [p.arrival for p in batch]
        with self._cond:
            log = self.log
            log.batch_index.extend([len(log.batch_sizes)] * len(batch))
            log.rids.extend(p.rid for p in batch)
            log.arrival.extend(batch_arrivals)
            log.start.extend([t0] * len(batch_arrivals))
            log.finish.extend(sent)
            log.batch_sizes.append(len(batch_arrivals))
            log.batch_start.append(t0)
            log.batch_computed.append(computed)
            log.batch_finish.append(t1)

    # -- the `batched` package backend -------------------------------------
    def _run_batched(self, items: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = np.asarray(self.model_fn(np.stack([x for _, x in items])))
        t1 = time.perf_counter()
        with self._cond:
            for rid, _ in items:
                self._batch_of[rid] = len(self.log.batch_sizes)
            self.log.batch_sizes.append(len(items))
            self.log.batch_start.append(t0)
            self.log.batch_computed.append(t1)
            self.log.batch_finish.append(t1)
        return list(out)

    def _handle_batched(self, p: _Pending) -> None:
        try:
            row = self._processor((p.rid, p.x))  # the package sees (request id, input); the batch function stacks the inputs
        except Exception as err:  # noqa: BLE001
            if not self._stop.is_set():
                self.errors.append(f"batched: {type(err).__name__}: {err}")
            return
        t1 = time.perf_counter()
        p.conn.send(p.rid, np.asarray(row))
        with self._cond:
            self.log.batch_index.append(self._batch_of.pop(p.rid, -1))
            self.log.rids.append(p.rid)
            self.log.arrival.append(p.arrival)
            self.log.start.append(math.nan)  # the package does not say when a request's batch began
            self.log.finish.append(t1)


# --------------------------------------------------------------------------
# 5. The open-loop load generator
# --------------------------------------------------------------------------
@dataclass
class LoadResult:
    """One open-loop run as the client saw it.

    Attributes
    ----------
    scheduled : (n,) intended send times (s, relative to the run's start).
    sent : (n,) actual send times (s, same origin); ``sent - scheduled`` is the generator's own lateness.
    received : (n,) response times (s, same origin), NaN if no response came before the deadline.
    outputs : (n, ...) responses in request order (NaN rows where missing).
    origin : ``time.perf_counter()`` at the run's time zero (the same clock in every process on Linux:
        ``CLOCK_MONOTONIC``), to put a server's log on this run's time axis.
    """

    scheduled: np.ndarray
    sent: np.ndarray
    received: np.ndarray
    outputs: np.ndarray
    origin: float = 0.0

    @property
    def latency(self) -> np.ndarray:
        """Scheduled send to response (s): the delay a user would see, queueing in the client included."""
        return self.received - self.scheduled

    @property
    def served(self) -> int:
        return int(np.isfinite(self.received).sum())

    @property
    def lost(self) -> int:
        return int(self.scheduled.size - self.served)

    @property
    def throughput(self) -> float:
        """Responses per second, first scheduled send to last response."""
        return _throughput(self.received, self.scheduled)

    def percentile(self, q: float) -> float:
        """``q``-th percentile (0-100) of the latency of answered requests (s)."""
        return _finite_percentile(self.latency, q)

    @property
    def max_send_lag(self) -> float:
        """Largest ``sent - scheduled`` (s): how far the generator itself fell behind its schedule."""
        return float(np.max(self.sent - self.scheduled))


def open_loop_load(
    port: int, send_times: Any, payloads: Any, *, connections: int = 4, max_s: float = 60.0,
    host: str = "127.0.0.1",
) -> LoadResult:
    """Send ``payloads[i]`` at ``send_times[i]`` (s from now) whatever the server does; time every response.

    Open loop: one sender thread follows the precomputed schedule and never
    waits for a response, so when the server falls behind, requests pile up
    in *its* queue and their latency (measured from the scheduled time, not
    the actual send) shows it.  A closed-loop client (send, wait, send) would
    quietly send less and report the latency of a lighter load: coordinated
    omission (Gil Tene).  Requests go round-robin over ``connections`` TCP
    connections, each with its own receiver thread.  Bounded: after
    ``max_s`` seconds the run ends and missing responses count as lost.

    Parameters
    ----------
    port : server port on ``host`` (loopback only).
    send_times : (n,) sorted offsets (s) from the start of the run.
    payloads : (n, ...) one input row per request.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load generator talks to loopback only, got host {host!r}")
    port = check_int(port, "port", low=1, high=65535)
    s = _check_arrivals(send_times)
    x = np.asarray(payloads)
    if x.ndim < 1 or x.shape[0] != s.size:
        raise ValueError(f"payloads must have one row per send time ({s.size}), got shape {x.shape}")
    connections = check_int(connections, "connections", low=1, high=256)
    max_s = check_number(max_s, "max_s", low=0, low_open=True)
    n = s.size
    socks = []
    try:
        for _ in range(connections):
            sock = socket.create_connection((host, port), timeout=5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(0.2)
            socks.append(sock)
        sent = np.full(n, np.nan)
        received = np.full(n, np.nan)
        outputs: list[Any] = [None] * n
        got = [0]
        done = threading.Event()
        lock = threading.Lock()
        t0 = time.perf_counter() + 0.02
        deadline = t0 + max_s

        def receive(sock: socket.socket) -> None:
            buf = b""

            def take(k: int) -> bytes | None:
                nonlocal buf
                while len(buf) < k:
                    if done.is_set() or time.perf_counter() > deadline:
                        return None
                    try:
                        chunk = sock.recv(65536)
                    except (TimeoutError, socket.timeout):
                        continue
                    except OSError:
                        return None
                    if not chunk:
                        return None
                    buf += chunk
                out, buf = buf[:k], buf[k:]
                return out

            while True:
                head = take(HEADER.size)
                if head is None:
                    return
                rid, length = HEADER.unpack(head)
                body = take(length)
                if body is None:
                    return
                now = time.perf_counter()
                if 0 <= rid < n:
                    received[rid] = now - t0
                    outputs[rid] = decode_tensor(body)
                with lock:
                    got[0] += 1
                    if got[0] == n:
                        done.set()

        receivers = [threading.Thread(target=receive, args=(sk,), daemon=True) for sk in socks]
        for t in receivers:
            t.start()
        for i in range(n):
            target = t0 + s[i]
            now = time.perf_counter()
            if now > deadline:
                break
            if target > now:
                time.sleep(target - now)
            sent[i] = time.perf_counter() - t0
            try:
                send_message(socks[i % connections], i, x[i])
            except OSError:
                break
        done.wait(timeout=max(0.0, deadline - time.perf_counter()))
        done.set()
        for t in receivers:
            t.join(timeout=2.0)
    finally:
        for sock in socks:
            sock.close()
    shape = next((o.shape for o in outputs if o is not None), ())
    out = np.full((n, *shape), np.nan, dtype=np.float64)
    for i, o in enumerate(outputs):
        if o is not None:
            out[i] = o
    return LoadResult(s, sent, received, out, origin=t0)



# --------------------------------------------------------------------------
# 6. The server in its own process
# --------------------------------------------------------------------------
def sleeping_model_fn(a_s: float, c_s: float) -> Callable[[np.ndarray], np.ndarray]:
    """A stand-in model with a known service curve: sleeps ``a_s + c_s * b`` seconds, returns ``2 * x``.

    For tests and demos where the point is the queue, not the model.
    """
    curve = ServiceCurve(check_number(a_s, "a_s", low=0), check_number(c_s, "c_s", low=0))

    def model_fn(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        time.sleep(curve(x.shape[0]))
        return 2 * x

    return model_fn


def minilm_model_fn(seq_len: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """MiniLM (all-MiniLM-L6-v2) as a batch function: token ids (b, seq_len) int -> sentence embeddings (b, 384) float32.

    The course's MiniLM embedding (``nn.embed``: the encoder's token states,
    then ``mean_pool``).  Every request carries exactly ``seq_len`` token ids
    (no padding), so ``t(b)`` depends on the batch size only.  Runs on one CPU thread.
    """
    import torch

    from ..nn.embed import load_minilm, mean_pool

    seq_len = check_int(seq_len, "seq_len", low=2, high=512)
    torch.set_num_threads(1)
    encoder = load_minilm()

    def model_fn(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != seq_len or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"expected int token ids of shape (b, {seq_len}), got {ids.dtype} {ids.shape}")
        t = torch.as_tensor(ids, dtype=torch.long)
        batch = {"input_ids": t, "token_type_ids": torch.zeros_like(t), "attention_mask": torch.ones_like(t)}
        return mean_pool(encoder.token_states(batch), batch["attention_mask"]).numpy()

    return model_fn


def _child_main(conn: Any, factory: Callable[..., Any], args: tuple) -> None:
    """Entry point of the server process: build the model once, then obey the parent's commands."""
    try:
        model_fn = factory(*args)
    except Exception as err:  # noqa: BLE001
        conn.send(("error", f"building the model failed: {type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    server: BatchingServer | None = None
    while True:
        try:
            command, payload = conn.recv()
        except EOFError:
            break
        try:
            if command == "calibrate":
                sizes, example, repeats = payload
                row = np.asarray(example)
                reply: Any = measure_service_curve(model_fn, lambda b: np.repeat(row[None], b, axis=0), sizes, repeats=repeats)
            elif command == "serve":
                if server is not None:
                    server.stop()
                server = BatchingServer(model_fn, **payload).start()
                reply = server.port
            elif command == "stop":
                reply = (server.log, list(server.errors)) if server is not None else (ServerLog(), [])
                if server is not None:
                    server.stop()
                server = None
            elif command == "call":
                reply = np.asarray(model_fn(payload))
            elif command == "peak_rss_mb":
                import resource

                reply = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
            elif command == "exit":
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {command!r}")
            conn.send(("ok", reply))
        except Exception as err:  # noqa: BLE001
            conn.send(("error", f"{command}: {type(err).__name__}: {err}"))
    if server is not None:
        server.stop()


class ServerProcess:
    """A :class:`BatchingServer` in a separate process, so the model and the load generator do not share a GIL.

    The model is built once in the child by ``factory(*args)`` (a picklable,
    module-level function such as :func:`minilm_model_fn`); the parent then
    asks it to measure ``t(b)``, to serve with one policy after another, and
    to hand back each run's server log.  The child is started with ``spawn``
    (no inherited threads or locks) and always stopped on exit: asked
    politely, then terminated.

    Example
    -------
    >>> with ServerProcess(minilm_model_fn, 16) as proc:              # doctest: +SKIP
    ...     port = proc.serve(DynamicBatcher(16, 0.005))
    ...     result = open_loop_load(port, send_times, payloads)
    ...     log = proc.stop_serving()
    """

    def __init__(self, factory: Callable[..., Any], *args: Any, start_timeout_s: float = 180.0, call_timeout_s: float = 120.0) -> None:
        if not callable(factory):
            raise ValueError(f"factory must be a picklable callable returning model_fn, got {type(factory).__name__}")
        self.factory, self.args = factory, args
        self.start_timeout_s = check_number(start_timeout_s, "start_timeout_s", low=0, low_open=True)
        self.call_timeout_s = check_number(call_timeout_s, "call_timeout_s", low=0, low_open=True)
        self._proc: Any = None
        self._conn: Any = None

    def start(self) -> ServerProcess:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child, self.factory, self.args), daemon=True)
        self._proc.start()
        child.close()
        self._expect("start", self.start_timeout_s)
        return self

    def _expect(self, what: str, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"the server process did not answer '{what}' within {timeout:g} s")
        try:
            status, reply = self._conn.recv()
        except EOFError:
            code = self._proc.exitcode if self._proc is not None else None
            raise RuntimeError(f"the server process died while answering '{what}' (exit code {code})") from None
        if status == "error":
            raise RuntimeError(f"server process: {reply}")
        return reply

    def _ask(self, command: str, payload: Any = None) -> Any:
        if self._proc is None or not self._proc.is_alive():
            raise RuntimeError("the server process is not running (use it inside `with ServerProcess(...)`)")
        self._conn.send((command, payload))
        return self._expect(command, self.call_timeout_s)

    def calibrate(self, sizes: Sequence[int], example: np.ndarray, repeats: int = 5) -> dict[int, float]:
        """Median forward seconds for each batch size, measured inside the server process."""
        return self._ask("calibrate", (list(sizes), np.asarray(example), repeats))

    def serve(self, batcher: DynamicBatcher | None = None, **options: Any) -> int:
        """Start serving with ``batcher`` (or ``backend="batched", batched_size=..., batched_timeout_ms=...``); returns the port."""
        return self._ask("serve", dict(batcher=batcher, **options))

    def stop_serving(self) -> ServerLog:
        """Stop the current server and return its log (raises if the server recorded errors)."""
        log, errors = self._ask("stop")
        if errors:
            raise RuntimeError(f"the server recorded {len(errors)} error(s), first: {errors[0]}")
        return log

    def call(self, x: np.ndarray) -> np.ndarray:
        """``model_fn(x)`` directly in the server process (no queue, no batching policy)."""
        return self._ask("call", np.asarray(x))

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the server process so far (MB): the model's share of the lesson's memory."""
        return float(self._ask("peak_rss_mb"))

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            if self._proc.is_alive():
                self._conn.send(("exit", None))
                self._conn.poll(10.0)
        except (OSError, EOFError, BrokenPipeError):
            pass
        self._proc.join(timeout=10.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5.0)
        self._conn.close()
        self._proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
