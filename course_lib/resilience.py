"""Resilience: timeouts, retries with backoff inside a deadline, fallbacks and caches, on a fake clock.

One request path (embed -> retrieve -> re-rank -> respond) is run two ways:

* a **prototype**: each stage called once, synchronously, no timeout, no
  cache, no fallback;
* a **production** design: a result cache in front, a timeout on every
  attempt, retries with jittered exponential backoff inside one end-to-end
  deadline, and a cheaper fallback for the last stage whose answers are
  served as *degraded*.

Faults are injected: every attempt has a lognormal latency and fails with a
fixed probability; the last stage's provider can also be down for a share of
requests (then every attempt at it fails: a *correlated* fault).  Time is a
:class:`FakeClock`, so a simulated hour takes microseconds and every run is
reproducible.

There are two engines with the same semantics and the same random numbers
(:class:`Draws`): :func:`run_request` plays one request event by event with
:func:`retry_with_deadline` (the code a service would run), and
:func:`simulate` plays all requests at once with numpy arrays.  They agree
request by request, which is how the fast one is trusted.

Closed forms come from :mod:`course_lib.reliability`: an attempt succeeds
with probability ``(1 - fail_prob) * P(latency <= timeout)``, a stage with
``k`` attempts with ``retry_availability(q, k)``, the stages in series, the
fallback in parallel with the last stage, and the cache in parallel with the
whole path (a hit is an answer).  They are exact while the *worst-case* time
of a request fits in the deadline (:func:`worst_case_ms`): then the deadline
never cuts a retry.  Latencies are in milliseconds throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

from .reliability import compose_availability, retry_availability
from .data.synthetic import zipf_probs  # noqa: F401  (re-exported: lesson 01.05 reads it from here)
from .serving.cache import che_hit_rate, lru_hits  # noqa: F401  (moved to chapter 07's cache module; lesson 01.05 reads them here)

# Outcome codes of a request (see OUTCOMES for their names).
FAILED, FULL, DEGRADED, CACHED, LATE = 0, 1, 2, 3, 4
#: Name of each outcome code: "late" is an answer that came after the deadline (the user had gone).
OUTCOMES: tuple[str, ...] = ("failed", "full", "degraded", "cached", "late")


# --------------------------------------------------------------------------
# 1. A fake clock and retries with a deadline
# --------------------------------------------------------------------------
def _check_real(value: Any, name: str, *, low: float | None = None, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (Real, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number{' or inf' if allow_inf else ''}, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value!r}")
    return value


def _check_int(value: Any, name: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


class FakeClock:
    """A clock that moves only when told to: ``sleep`` advances it, nothing else does.

    Simulations run on it instantly and reproducibly.  The unit is whatever
    the caller uses consistently (seconds for :func:`retry_with_deadline`'s
    examples, milliseconds in the pipeline simulators).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = _check_real(start, "start")

    def now(self) -> float:
        """The current time."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (>= 0); time never goes backwards."""
        self._now += _check_real(seconds, "sleep duration", low=0.0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


class DeadlineExceeded(TimeoutError):
    """The deadline came before a successful answer."""


def retry_with_deadline(
    call: Callable[[], Any],
    attempts: int,
    deadline: float,
    clock: Any,
    base_delay: float = 0.1,
    jitter: Callable[[float], float] | None = None,
) -> Any:
    """Call ``call()`` until it succeeds, at most ``attempts`` times, within ``deadline``.

    Parameters
    ----------
    call : no-argument function; it fails by raising an ``Exception``.
    attempts : most calls to make, >= 1.
    deadline : absolute time on ``clock`` by which an answer is needed (``inf``: none).
    clock : anything with ``now()`` and ``sleep(s)`` (a :class:`FakeClock` in tests).
    base_delay : the backoff after the k-th failure is ``base_delay * 2**(k-1)``
        (exponential), >= 0.
    jitter : optional function from that delay to the delay actually slept,
        e.g. ``lambda d: rng.uniform(0, d)`` ("full jitter"), so that clients
        that failed together do not retry together.

    Returns
    -------
    The value of the first successful call.

    Raises
    ------
    DeadlineExceeded
        if the deadline has passed before an attempt could start, if the next
        attempt could not start before the deadline (checked *before*
        sleeping, so we never sleep past it), or if a call succeeded only
        after the deadline.  Chained to the last error.
    Exception
        the last error of ``call`` when all ``attempts`` failed first.
    ValueError
        for invalid arguments, before any call.
    """
    if not callable(call):
        raise ValueError(f"call must be a function of no arguments, got {type(call).__name__}")
    attempts = _check_int(attempts, "attempts", low=1)
    deadline = _check_real(deadline, "deadline", allow_inf=True)
    base_delay = _check_real(base_delay, "base_delay", low=0.0)
    if not (callable(getattr(clock, "now", None)) and callable(getattr(clock, "sleep", None))):
        raise ValueError(f"clock needs now() and sleep(s) methods, got {type(clock).__name__}")
    if jitter is not None and not callable(jitter):
        raise ValueError(f"jitter must be None or a function of the delay, got {type(jitter).__name__}")

    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        if clock.now() >= deadline:  # never start an attempt at or after the deadline
            raise DeadlineExceeded(f"deadline {deadline:g} reached before attempt {attempt}") from last_error
        try:
            result = call()
        except Exception as err:  # any exception is a failed attempt
            last_error = err
        else:
            if clock.now() > deadline:  # the caller has stopped waiting: a late answer is a failure
                raise DeadlineExceeded(f"attempt {attempt} answered at {clock.now():g}, after the deadline {deadline:g}")
            return result
        if attempt == attempts:
            break
        delay = base_delay * 2 ** (attempt - 1)
        if jitter is not None:
            delay = _check_real(jitter(delay), "jitter(delay)", low=0.0)
        if clock.now() + delay >= deadline:  # the next attempt could not start in time: stop now
            raise DeadlineExceeded(f"no time left for attempt {attempt + 1} before the deadline {deadline:g}") from last_error
        clock.sleep(delay)
    assert last_error is not None
    raise last_error


# --------------------------------------------------------------------------
# 2. The pipeline, the designs and their random numbers
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One dependency on the request path.

    Attributes
    ----------
    name : e.g. "embed".
    median_ms : median latency of one call (ms); latencies are lognormal.
    sigma : lognormal shape: p99 = median * exp(2.326 sigma).
    fail_prob : probability that one attempt returns an error (the injected fault).
    timeout_ms : per-attempt timeout of the production design (``inf``: none).
    attempts : most attempts of the production design, >= 1.
    cost : cost of one call in cost units (the main LLM call is 1).
    """

    name: str
    median_ms: float
    sigma: float
    fail_prob: float
    timeout_ms: float = math.inf
    attempts: int = 1
    cost: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a stage needs a non-empty name, got {self.name!r}")
        _check_real(self.median_ms, f"{self.name}.median_ms", low=1e-12)
        _check_real(self.sigma, f"{self.name}.sigma", low=0.0)
        if not 0.0 <= _check_real(self.fail_prob, f"{self.name}.fail_prob") <= 1.0:
            raise ValueError(f"{self.name}.fail_prob must be in [0, 1], got {self.fail_prob!r}")
        if _check_real(self.timeout_ms, f"{self.name}.timeout_ms", allow_inf=True) <= 0:
            raise ValueError(f"{self.name}.timeout_ms must be > 0, got {self.timeout_ms!r}")
        _check_int(self.attempts, f"{self.name}.attempts", low=1)
        _check_real(self.cost, f"{self.name}.cost", low=0.0)


@dataclass(frozen=True)
class Pipeline:
    """The request path: stages in order, a fallback for the last one, and the service level.

    Attributes
    ----------
    stages : the stages, called in order; each needs the previous one's output.
    fallback : a cheaper stand-in for the **last** stage (its answer is degraded), or None.
    deadline_ms : end-to-end deadline from arrival: an answer after it is a failure.
    backoff_ms : base of the exponential backoff (full jitter: U(0, base * 2**j)).
    cache_ms : time of one cache lookup (hit or miss).
    outage_prob : share of requests that arrive while the last stage's provider is
        down: every attempt at it fails (a fault retries cannot fix).
    """

    stages: tuple[Stage, ...]
    fallback: Stage | None = None
    deadline_ms: float = 1000.0
    backoff_ms: float = 10.0
    cache_ms: float = 1.0
    outage_prob: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple) or not self.stages or not all(isinstance(s, Stage) for s in self.stages):
            raise ValueError(f"stages must be a non-empty tuple of Stage, got {self.stages!r}")
        if self.fallback is not None and not isinstance(self.fallback, Stage):
            raise ValueError(f"fallback must be a Stage or None, got {type(self.fallback).__name__}")
        if _check_real(self.deadline_ms, "deadline_ms") <= 0:
            raise ValueError(f"deadline_ms must be > 0, got {self.deadline_ms!r}")
        _check_real(self.backoff_ms, "backoff_ms", low=0.0)
        _check_real(self.cache_ms, "cache_ms", low=0.0)
        if not 0.0 <= _check_real(self.outage_prob, "outage_prob") <= 1.0:
            raise ValueError(f"outage_prob must be in [0, 1], got {self.outage_prob!r}")

    @property
    def columns(self) -> tuple[Stage, ...]:
        """The stages, then the fallback (if any): the columns of call counts."""
        return self.stages + ((self.fallback,) if self.fallback is not None else ())


@dataclass(frozen=True)
class Design:
    """Which production features are on.

    ``timeouts``: a timeout on every attempt and the end-to-end deadline, passed
    down to each stage (an attempt gets at most the time left);
    ``retries``: each stage's ``attempts`` instead of 1; ``fallback``: the
    pipeline's fallback when the last stage fails; ``cache``: an LRU result
    cache in front of the whole path.
    """

    name: str
    timeouts: bool = False
    retries: bool = False
    fallback: bool = False
    cache: bool = False


PROTOTYPE = Design("prototype")
PRODUCTION = Design("production", timeouts=True, retries=True, fallback=True, cache=True)


@dataclass(frozen=True)
class Draws:
    """Every random number of a simulation, drawn once, so that both engines (and
    every design) see the same requests: common random numbers.

    Columns follow :attr:`Pipeline.columns` (the stages, then the fallback).

    Attributes
    ----------
    latency_ms : (n, n_columns, max_attempts) latency of attempt j at each column.
    u_fail : (n, n_columns, max_attempts) uniform: attempt j fails when u < fail_prob.
    u_jitter : (n, n_columns, max_attempts - 1) uniform: backoff j is base * 2**j * u.
    u_outage : (n,) uniform: the request meets an outage when u < outage_prob.
    latency_key : the latency parameters the draws were made for (checked on use).
    """

    latency_ms: np.ndarray
    u_fail: np.ndarray
    u_jitter: np.ndarray
    u_outage: np.ndarray
    latency_key: tuple = field(repr=False)

    @property
    def n(self) -> int:
        return int(self.latency_ms.shape[0])


def _latency_key(pipeline: Pipeline) -> tuple:
    return tuple((s.median_ms, s.sigma) for s in pipeline.columns)


def draw_requests(pipeline: Pipeline, n: int, rng: np.random.Generator) -> Draws:
    """Draw the random numbers of ``n`` requests for ``pipeline``.

    Failure probabilities, timeouts, attempts (up to the largest now set) and
    the designs may change afterwards: the same draws then give a controlled
    comparison.  Latency medians and shapes may not (a ValueError says so).
    """
    n = _check_int(n, "n", low=1)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator (config.seed_everything), got {type(rng).__name__}")
    cols = pipeline.columns
    k = max(s.attempts for s in cols)
    z = rng.standard_normal((n, len(cols), k))
    median = np.array([s.median_ms for s in cols])[None, :, None]
    sigma = np.array([s.sigma for s in cols])[None, :, None]
    return Draws(
        latency_ms=median * np.exp(sigma * z),
        u_fail=rng.random((n, len(cols), k)),
        u_jitter=rng.random((n, len(cols), max(k - 1, 0))),
        u_outage=rng.random(n),
        latency_key=_latency_key(pipeline),
    )


def _check_draws(pipeline: Pipeline, draws: Draws) -> None:
    if not isinstance(draws, Draws):
        raise ValueError(f"draws must come from draw_requests, got {type(draws).__name__}")
    if draws.latency_key != _latency_key(pipeline):
        raise ValueError("these draws were made for other latency parameters (or another fallback): call draw_requests again")
    k = max(s.attempts for s in pipeline.columns)
    if draws.latency_ms.shape[2] < k:
        raise ValueError(f"the draws hold {draws.latency_ms.shape[2]} attempts per stage, the pipeline allows {k}")


def _stage_deadline(pipeline: Pipeline, design: Design, last: bool) -> float:
    """The deadline passed down to a stage: the end-to-end one, minus the fallback's
    timeout for the last stage (a reserve, so the fallback always has its full time)."""
    if not design.timeouts:
        return math.inf
    reserve = pipeline.fallback.timeout_ms if (last and design.fallback and pipeline.fallback is not None) else 0.0
    return pipeline.deadline_ms - reserve


# --------------------------------------------------------------------------
# 3. Engine one: a request, event by event, with retry_with_deadline
# --------------------------------------------------------------------------
class StageError(Exception):
    """A failed attempt at a stage."""


class InjectedFault(StageError):
    """The stage answered with an error (the injected fault)."""


class StageTimeout(StageError):
    """The attempt took longer than its timeout (or than the time left)."""


@dataclass
class RequestResult:
    """What one request got: ``outcome`` code, latency (ms), calls per column, the answer."""

    outcome: int
    latency_ms: float
    calls: list[int]
    value: Any = None


def run_request(
    pipeline: Pipeline,
    design: Design,
    draws: Draws,
    i: int,
    *,
    work: dict[str, Callable[[Any], Any]] | None = None,
    payload: Any = None,
    trace: list[dict] | None = None,
) -> RequestResult:
    """Play request ``i`` on a :class:`FakeClock` (a cache miss; see :func:`serve_with_cache`).

    ``work`` maps stage names to real functions (each gets the previous
    stage's output, the first gets ``payload``); ``trace``, if a list,
    receives one dict per attempt (stage, attempt, start, end, status).
    """
    _check_draws(pipeline, draws)
    if not 0 <= i < draws.n:
        raise ValueError(f"request index must be in [0, {draws.n}), got {i}")
    work = work or {}
    clock = FakeClock(pipeline.cache_ms if design.cache else 0.0)  # the cache lookup (a miss) came first
    calls = [0] * len(pipeline.columns)
    down = bool(draws.u_outage[i] < pipeline.outage_prob)  # the LLM provider is out for this request

    def call_stage(col: int, stage: Stage, deadline: float, fails: bool, value: Any) -> Any:
        """One stage with its timeout and retries; raises StageError or DeadlineExceeded."""
        timeout = stage.timeout_ms if design.timeouts else math.inf

        def attempt() -> Any:
            j = calls[col]
            calls[col] += 1
            start, latency = clock.now(), float(draws.latency_ms[i, col, j])
            limit = min(timeout, deadline - start)  # never wait past the deadline
            error = fails or draws.u_fail[i, col, j] < stage.fail_prob
            status = "timeout" if latency > limit else "error" if error else "ok"
            clock.sleep(limit if status == "timeout" else latency)
            if trace is not None:
                trace.append({"stage": stage.name, "attempt": j, "start": start, "end": clock.now(), "status": status})
            if status == "timeout":
                raise StageTimeout(f"{stage.name}: no answer within {limit:g} ms")
            if status == "error":
                raise InjectedFault(f"{stage.name}: injected error")
            return work[stage.name](value) if stage.name in work else value

        def full_jitter(delay: float) -> float:  # U(0, delay), from the shared draws
            return delay * float(draws.u_jitter[i, col, calls[col] - 1])

        attempts = stage.attempts if design.retries else 1
        return retry_with_deadline(attempt, attempts, deadline, clock, pipeline.backoff_ms, jitter=full_jitter)

    value, outcome = payload, FULL
    for col, stage in enumerate(pipeline.stages):
        last = col == len(pipeline.stages) - 1
        try:
            value = call_stage(col, stage, _stage_deadline(pipeline, design, last), down and last, value)
        except (StageError, DeadlineExceeded):
            outcome = FAILED
            if last and design.fallback and pipeline.fallback is not None:
                try:  # the cheaper stand-in, with whatever time is left before the end-to-end deadline
                    value = call_stage(col + 1, pipeline.fallback, _stage_deadline(pipeline, design, False), False, value)
                    outcome = DEGRADED
                except (StageError, DeadlineExceeded):
                    pass
            break
    if outcome != FAILED and clock.now() > pipeline.deadline_ms:
        outcome = LATE
    return RequestResult(outcome, clock.now(), calls, value if outcome != FAILED else None)


# --------------------------------------------------------------------------
# 4. Engine two: every request at once, with arrays
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class SimResult:
    """Per-request results of one design.

    outcome : (n,) int8 codes (FAILED, FULL, DEGRADED, CACHED, LATE).
    latency_ms : (n,) time until the answer or the error.
    calls : (n, n_columns) attempts made at each stage (last column: the fallback, if any).
    deadline_cut : (n,) True where the deadline (not a timeout) cut an attempt or a retry.
    """

    design: str
    outcome: np.ndarray
    latency_ms: np.ndarray
    calls: np.ndarray
    deadline_cut: np.ndarray


def _stage_arrays(col: int, stage: Stage, pending: np.ndarray, t: np.ndarray, calls: np.ndarray, cut: np.ndarray,
                  draws: Draws, deadline: float, design: Design, backoff_ms: float, down: np.ndarray) -> np.ndarray:
    """The requests where ``pending`` (n,) is True try stage ``col``: :func:`retry_with_deadline`'s
    rules, one attempt index at a time for all requests.  Returns (n,) bool: who succeeded.
    Updates in place ``t`` (n,) elapsed ms, ``calls`` (n, n_columns) and ``cut`` (n,)."""
    timeout = stage.timeout_ms if design.timeouts else math.inf
    attempts = stage.attempts if design.retries else 1
    ok = np.zeros_like(pending)
    pending = pending.copy()
    too_late = pending & (t >= deadline)  # never start an attempt at or after the deadline
    cut |= too_late
    pending &= ~too_late
    for j in range(attempts):
        latency = draws.latency_ms[:, col, j]
        limit = np.minimum(timeout, deadline - t)
        timed_out = latency > limit
        error = (draws.u_fail[:, col, j] < stage.fail_prob) | down
        cut |= pending & timed_out & (limit < timeout)
        t[pending] += np.where(timed_out, limit, latency)[pending]
        calls[pending, col] += 1
        answered = pending & ~timed_out & ~error
        late = answered & (t > deadline)  # only by rounding: limit keeps answers within the deadline
        ok |= answered & ~late
        pending &= ~answered
        if j + 1 < attempts:
            delay = backoff_ms * 2**j * draws.u_jitter[:, col, j]
            give_up = pending & (t + delay >= deadline)  # no time for another attempt: stop before sleeping
            cut |= give_up
            pending &= ~give_up
            t[pending] += delay[pending]
    return ok


def simulate(pipeline: Pipeline, design: Design, draws: Draws) -> SimResult:
    """Every request of ``draws`` through ``design`` as a cache miss (the cache is
    applied by :func:`serve_with_cache`).  Same semantics as :func:`run_request`."""
    _check_draws(pipeline, draws)
    n, n_stages = draws.n, len(pipeline.stages)
    t = np.full(n, float(pipeline.cache_ms) if design.cache else 0.0, dtype=np.float64)
    calls = np.zeros((n, len(pipeline.columns)), dtype=np.int32)
    cut = np.zeros(n, dtype=bool)
    down = draws.u_outage < pipeline.outage_prob
    alive = np.ones(n, dtype=bool)
    for col, stage in enumerate(pipeline.stages):
        last = col == n_stages - 1
        before_last = alive
        alive = _stage_arrays(col, stage, alive, t, calls, cut, draws, _stage_deadline(pipeline, design, last),
                              design, pipeline.backoff_ms, down if last else np.zeros(n, dtype=bool))
    outcome = np.where(alive, FULL, FAILED).astype(np.int8)
    if design.fallback and pipeline.fallback is not None:
        need = before_last & ~alive  # reached the last stage and it failed
        rescued = _stage_arrays(n_stages, pipeline.fallback, need, t, calls, cut, draws,
                                _stage_deadline(pipeline, design, False), design, pipeline.backoff_ms,
                                np.zeros(n, dtype=bool))
        outcome[rescued] = DEGRADED
    outcome[(outcome != FAILED) & (t > pipeline.deadline_ms)] = LATE
    return SimResult(design.name, outcome, t, calls, cut)


# --------------------------------------------------------------------------
# 5. The cache: a Zipf stream of queries, an LRU, and Che's approximation
# --------------------------------------------------------------------------
def serve_with_cache(miss: SimResult, hits: np.ndarray, pipeline: Pipeline) -> SimResult:
    """The requests as served: a hit answers in ``cache_ms`` with no call, a miss as simulated."""
    hits = np.asarray(hits, dtype=bool)
    if hits.shape != miss.outcome.shape:
        raise ValueError(f"hits must have shape {miss.outcome.shape}, got {hits.shape}")
    return SimResult(
        miss.design,
        np.where(hits, CACHED, miss.outcome).astype(np.int8),
        np.where(hits, pipeline.cache_ms, miss.latency_ms),
        np.where(hits[:, None], 0, miss.calls).astype(np.int32),
        miss.deadline_cut & ~hits,
    )


def run_design(pipeline: Pipeline, design: Design, draws: Draws, keys: np.ndarray, capacity: int,
               warm_keys: np.ndarray | None = None) -> SimResult:
    """:func:`simulate`, then the cache if the design has one (only full answers are cached)."""
    miss = simulate(pipeline, design, draws)
    if not design.cache:
        return miss
    if len(keys) != draws.n:
        raise ValueError(f"need one key per request: {draws.n} requests, {len(keys)} keys")
    hits = lru_hits(keys, capacity, cacheable=miss.outcome == FULL, warm_keys=warm_keys)
    return serve_with_cache(miss, hits, pipeline)


# --------------------------------------------------------------------------
# 6. Closed forms
# --------------------------------------------------------------------------
def lognormal_cdf(x: float, median: float, sigma: float) -> float:
    """P(L <= x) for L = median * exp(sigma Z), Z standard normal."""
    if x <= 0:
        return 0.0
    if math.isinf(x):
        return 1.0
    if sigma == 0:
        return float(x >= median)
    return 0.5 * math.erfc(-math.log(x / median) / (sigma * math.sqrt(2.0)))


def attempt_success(stage: Stage, design: Design) -> float:
    """P(one attempt succeeds) = (1 - fail_prob) * P(latency <= timeout): a timeout is a failure."""
    timeout = stage.timeout_ms if design.timeouts else math.inf
    return (1.0 - stage.fail_prob) * lognormal_cdf(timeout, stage.median_ms, stage.sigma)


def worst_case_ms(pipeline: Pipeline, design: Design) -> float:
    """The longest a request can take: every attempt times out, every backoff is the
    longest possible, then the fallback times out too.  ``inf`` without timeouts.

    When this fits in the deadline, the deadline never cuts an attempt or a
    retry, and :func:`closed_form` is exact.
    """
    if not design.timeouts:
        return math.inf
    stages = list(pipeline.stages) + ([pipeline.fallback] if design.fallback and pipeline.fallback else [])
    total = pipeline.cache_ms if design.cache else 0.0
    for s in stages:
        k = s.attempts if design.retries else 1
        total += k * s.timeout_ms + pipeline.backoff_ms * (2 ** (k - 1) - 1)  # backoffs: base * (1 + 2 + ... + 2^(k-2))
    return total


def prob_sum_within(stages: Sequence[Stage], budget_ms: float, grid: int = 20_000) -> tuple[float, float]:
    """P(the sum of the stages' lognormal latencies <= budget), bracketed as (lower, upper).

    Each latency is put in bins of width dx = budget / grid; the bin indices
    are summed by convolving their distributions (FFT).  A sum of bin indices
    J says the true sum lies in [J dx, (J + m) dx) for m stages, so
    P(J <= grid - m) <= P(sum <= budget) <= P(J <= grid): a bracket, not a guess.
    """
    budget_ms = _check_real(budget_ms, "budget_ms")
    grid = _check_int(grid, "grid", low=10)
    if budget_ms <= 0:
        return 0.0, 0.0
    from scipy.special import ndtr  # the normal CDF, vectorised

    edges = budget_ms / grid * np.arange(grid + 2)
    size = 1 << (len(stages) * (grid + 1)).bit_length()  # a power of two > the linear convolution's length: fast FFT, no wrap-around
    spectrum = np.ones(size // 2 + 1, dtype=np.complex128)
    for s in stages:
        z = np.log(np.maximum(edges, 1e-300) / s.median_ms) / max(s.sigma, 1e-12)
        cdf = np.where(edges > 0, ndtr(z), 0.0)
        spectrum *= np.fft.rfft(np.diff(cdf), size)  # mass of bins 0..grid
    pmf = np.clip(np.fft.irfft(spectrum, size), 0.0, None)
    return float(min(1.0, pmf[: grid - len(stages) + 1].sum())), float(min(1.0, pmf[: grid + 1].sum()))


def _stage_closed_form(stage: Stage, design: Design, outage: float = 0.0) -> tuple[float, float]:
    """(P(the stage succeeds), expected attempts) for one stage of ``design``.

    With per-attempt success q and k attempts: P = 1 - (1-q)^k and
    E[attempts] = 1 + (1-q) + ... + (1-q)^(k-1).  During an outage (probability
    ``outage``) all k attempts are made and all fail.
    """
    q, k = attempt_success(stage, design), (stage.attempts if design.retries else 1)
    tries = float(k) if q == 0 else (1 - (1 - q) ** k) / q
    return (1 - outage) * retry_availability(q, k), (1 - outage) * tries + outage * k


def availability_spec(pipeline: Pipeline, design: Design, hit_rate: float = 0.0) -> dict:
    """The design as a :func:`~course_lib.reliability.compose_availability` spec.

    * a stage with k attempts: ``retry_availability(q, k)``, q from :func:`attempt_success`;
    * the last stage during an outage fails whatever the retries: times (1 - outage_prob);
    * the fallback: in parallel with the last stage;
    * without timeouts, the end-to-end deadline is one more component in series:
      P(sum of latencies <= deadline) (:func:`prob_sum_within`, midpoint of the bracket);
    * the cache: in parallel with the whole path, "up" with the hit rate.
    """
    if not design.timeouts and (design.retries or design.fallback):
        raise ValueError("no closed form for retries or a fallback without timeouts: the deadline then depends on sums of retries")
    hit_rate = _check_real(hit_rate, "hit_rate")
    if not 0 <= hit_rate <= 1:
        raise ValueError(f"hit_rate must be in [0, 1], got {hit_rate}")
    terms: list[Any] = []
    for col, s in enumerate(pipeline.stages):
        last = col == len(pipeline.stages) - 1
        r = _stage_closed_form(s, design, pipeline.outage_prob if last else 0.0)[0]
        if last and design.fallback and pipeline.fallback is not None:
            r = {"parallel": [r, _stage_closed_form(pipeline.fallback, design)[0]]}
        terms.append(r)
    if not design.timeouts:
        budget = pipeline.deadline_ms - (pipeline.cache_ms if design.cache else 0.0)
        lo, hi = prob_sum_within(pipeline.stages, budget)
        terms.append((lo + hi) / 2)
    path = {"series": terms}
    return {"parallel": [hit_rate, path]} if design.cache else path


def closed_form(pipeline: Pipeline, design: Design, hit_rate: float = 0.0) -> dict[str, Any]:
    """Availability, degraded share and expected calls per request, in closed form.

    Exact when :func:`worst_case_ms` fits in the deadline (or, without
    timeouts, for the prototype: one attempt per stage).  ``hit_rate`` is the
    cache's (ignored without a cache).

    Returns
    -------
    dict with ``availability``, ``degraded`` (share served by the fallback),
    ``calls`` (expected attempts per request at each column of
    :attr:`Pipeline.columns`), ``spec`` and ``exact`` (the budget rule holds).
    """
    h = hit_rate if design.cache else 0.0
    spec = availability_spec(pipeline, design, h)
    n_stages = len(pipeline.stages)
    reach, calls = 1.0 - h, []  # P(a request reaches the stage), expected attempts there
    for col, s in enumerate(pipeline.stages):
        last = col == n_stages - 1
        r, tries = _stage_closed_form(s, design, pipeline.outage_prob if last else 0.0)
        calls.append(reach * tries)
        reach_last, reach = reach, reach * r
    degraded = 0.0
    if pipeline.fallback is not None:
        needs_fallback = reach_last - reach  # reached the last stage, and it failed
        r_fb, tries_fb = _stage_closed_form(pipeline.fallback, design)
        calls.append(needs_fallback * tries_fb if design.fallback else 0.0)
        degraded = needs_fallback * r_fb if design.fallback else 0.0
    exact = worst_case_ms(pipeline, design) <= pipeline.deadline_ms if design.timeouts else not design.retries
    return {"availability": compose_availability(spec), "degraded": degraded, "calls": np.array(calls),
            "spec": spec, "exact": bool(exact)}


# --------------------------------------------------------------------------
# 7. Summaries
# --------------------------------------------------------------------------
def summarize(result: SimResult, pipeline: Pipeline) -> dict[str, Any]:
    """One row of the comparison table: availability, shares, latency percentiles, calls and cost.

    Availability counts full, degraded and cached answers within the deadline;
    latency is over all requests (time until the answer or the error).
    """
    out = result.outcome
    served = np.isin(out, (FULL, DEGRADED, CACHED))
    cols = pipeline.columns
    calls = result.calls.mean(axis=0)
    reached = (result.calls > 0).sum(axis=0)
    row: dict[str, Any] = {
        "design": result.design,
        "availability_%": float(100 * served.mean()),
        "degraded_%": float(100 * np.mean(out == DEGRADED)),
        "cache_hits_%": float(100 * np.mean(out == CACHED)),
        "late_%": float(100 * np.mean(out == LATE)),
        "p50_ms": float(np.percentile(result.latency_ms, 50)),
        "p99_ms": float(np.percentile(result.latency_ms, 99)),
        "calls_per_request": float(calls.sum()),
        "cost_per_request": float(calls @ np.array([s.cost for s in cols])),
    }
    for c, s in enumerate(cols):
        row[f"{s.name}_amplification"] = float(result.calls[:, c].sum() / reached[c]) if reached[c] else float("nan")
    return row
