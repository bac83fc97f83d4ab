"""Reliability: availability of composed systems, retries, and fan-out tails.

Two halves, both closed form first and Monte Carlo second:

* **availability** of a component graph (:func:`compose_availability`, checked
  by :func:`simulate_availability`, which injects failures), retries, nines
  and downtime budgets;
* **fan-out latency**: a request that waits for N leaves is as slow as the
  slowest (:func:`fanout_quantile`, :func:`p_any_slow`), and hedged requests
  cut that tail (:func:`hedged_fanout_quantile`, :func:`simulate_fanout`).

A *spec* describes how components combine.  The grammar, nested arbitrarily:

* a number ``a`` in [0, 1]: one component, up with probability ``a``;
* ``{"series": [spec, ...]}``: every child must be up (a request path);
* ``{"parallel": [spec, ...]}``: at least one child up (redundant replicas);
* ``{"quorum": k, "of": [spec, ...]}``: at least ``k`` of the ``n`` children
  up (a replicated store that needs a majority).

Children are assumed to fail **independently**.  That assumption is the
single biggest caveat of every number computed here: correlated failures
(a shared rack, a bad deploy, a region outage) make real redundancy worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

#: Keys a composite spec may use.
SPEC_KEYS: tuple[str, ...] = ("series", "parallel", "quorum")


# --------------------------------------------------------------------------
# Spec validation
# --------------------------------------------------------------------------
def _check_leaf(a: Any, path: str) -> float:
    if isinstance(a, bool) or not isinstance(a, Real):
        raise ValueError(f"{path}: an availability must be a number in [0, 1], got {a!r}")
    a = float(a)
    if not (0.0 <= a <= 1.0):  # also rejects NaN
        raise ValueError(f"{path}: availability must be in [0, 1], got {a!r}")
    return a


def _children(spec: dict, key: str, path: str) -> list:
    kids = spec[key]
    if not isinstance(kids, (list, tuple)):
        raise ValueError(f"{path}.{key}: expected a list of specs, got {type(kids).__name__}")
    if len(kids) == 0:
        raise ValueError(f"{path}.{key}: empty list, need at least one child spec")
    return list(kids)


def _parse(spec: Any, path: str) -> tuple[str, Any]:
    """Check one level of ``spec``; return (kind, payload).

    kind is "leaf" (payload: float), "series"/"parallel" (payload: children)
    or "quorum" (payload: (k, children)).
    """
    if isinstance(spec, dict):
        keys = set(spec)
        if keys == {"series"} or keys == {"parallel"}:
            (key,) = keys
            return key, _children(spec, key, path)
        if keys == {"quorum", "of"}:
            kids = _children(spec, "of", path)
            k = spec["quorum"]
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
                raise ValueError(f"{path}.quorum: k must be an int, got {k!r}")
            if not (1 <= k <= len(kids)):
                raise ValueError(f"{path}.quorum: k must be in 1..{len(kids)} (n children), got {k}")
            return "quorum", (int(k), kids)
        unknown = sorted(map(str, keys - {"series", "parallel", "quorum", "of"}))
        if unknown:
            raise ValueError(
                f"{path}: unknown key(s) {unknown}; expected exactly one of "
                "{'series': [...]}, {'parallel': [...]}, {'quorum': k, 'of': [...]}"
            )
        raise ValueError(
            f"{path}: malformed spec with keys {sorted(map(str, keys))}; expected exactly one of "
            "{'series': [...]}, {'parallel': [...]}, {'quorum': k, 'of': [...]}"
        )
    if isinstance(spec, (Real, np.number)) and not isinstance(spec, bool):
        return "leaf", _check_leaf(spec, path)
    raise ValueError(
        f"{path}: a spec must be a number in [0, 1] or a dict, got {type(spec).__name__} {spec!r}"
    )


# --------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------
def at_least_k_of(probs: list[float] | np.ndarray, k: int) -> float:
    """P(at least ``k`` of ``n`` independent events), event i with prob ``probs[i]``.

    The Poisson-binomial distribution, by dynamic programming: after seeing
    ``i`` events, ``dist[j]`` = P(exactly j of them happened).  Adding event
    ``i+1`` with probability p gives ``dist'[j] = dist[j] (1-p) + dist[j-1] p``.
    O(n^2) time, exact (no binomial-coefficient assumption of equal p).
    """
    probs = [_check_leaf(p, f"probs[{i}]") for i, p in enumerate(probs)]
    n = len(probs)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (0 <= k <= n):
        raise ValueError(f"k must be an int in 0..{n}, got {k!r}")
    dist = np.zeros(n + 1)
    dist[0] = 1.0
    for i, p in enumerate(probs, start=1):
        dist[1 : i + 1] = dist[1 : i + 1] * (1.0 - p) + dist[0:i] * p
        dist[0] *= 1.0 - p
    return float(min(1.0, max(0.0, dist[k:].sum())))


def _compose(spec: Any, path: str) -> float:
    """Availability of ``spec``, recursively; ``path`` names the node in error messages."""
    kind, payload = _parse(spec, path)  # validates this level: ValueError on a bad spec
    if kind == "leaf":
        return payload
    if kind == "series":
        return math.prod(_compose(c, f"{path}.series[{i}]") for i, c in enumerate(payload))
    if kind == "parallel":
        down = math.prod(1.0 - _compose(c, f"{path}.parallel[{i}]") for i, c in enumerate(payload))
        return 1.0 - down
    k, kids = payload
    return at_least_k_of([_compose(c, f"{path}.of[{i}]") for i, c in enumerate(kids)], k)


def compose_availability(spec: Any) -> float:
    """Availability of a system described by ``spec`` (see the module docstring).

    Parameters
    ----------
    spec : float | dict
        A number in [0, 1], ``{"series": [...]}``, ``{"parallel": [...]}`` or
        ``{"quorum": k, "of": [...]}``, nested arbitrarily.

    Returns
    -------
    float
        P(the system is up), assuming independent component failures.

    Examples
    --------
    >>> compose_availability({"series": [0.99, {"parallel": [0.9, 0.9]}]})  # 0.99 * 0.99
    0.9801
    """
    return _compose(spec, "spec")


def retry_availability(a: float, attempts: int) -> float:
    """P(at least one of ``attempts`` independent tries succeeds) = 1 - (1 - a)^attempts.

    Independence is the optimistic part: a retry against the same broken
    replica fails again, so real retries gain less than this formula.
    """
    a = _check_leaf(a, "a")
    if isinstance(attempts, bool) or not isinstance(attempts, (int, np.integer)) or attempts < 1:
        raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
    return 1.0 - (1.0 - a) ** int(attempts)


def nines(availability: float) -> float:
    """Number of nines, -log10(1 - availability): 0.999 -> 3.0, 0.9995 -> 3.3."""
    a = _check_leaf(availability, "availability")
    return math.inf if a == 1.0 else -math.log10(1.0 - a)


#: Length of the periods used for downtime budgets, in seconds (a year of 365.25 days).
PERIODS_S: dict[str, float] = {
    "year": 365.25 * 86400,
    "30-day month": 30 * 86400,
    "week": 7 * 86400,
    "day": 86400,
}


def downtime_s(availability: float, period: str = "year") -> float:
    """Allowed downtime, in seconds per ``period`` ("year", "30-day month", "week", "day").

    ``(1 - availability) * period length``: 99.9 % of a 30-day month leaves 43.2 minutes.
    """
    a = _check_leaf(availability, "availability")
    if period not in PERIODS_S:
        raise ValueError(f"unknown period {period!r}: expected one of {list(PERIODS_S)}")
    return (1.0 - a) * PERIODS_S[period]


# --------------------------------------------------------------------------
# Monte Carlo with injected failures
# --------------------------------------------------------------------------
class Estimate(NamedTuple):
    """A Monte Carlo estimate of a probability and its standard error sqrt(p (1 - p) / n)."""

    mean: float
    stderr: float


def _sample_up(spec: Any, n: int, rng: np.random.Generator, path: str) -> np.ndarray:
    """Inject failures: one boolean per trial, True when ``spec`` is up in that trial."""
    kind, payload = _parse(spec, path)
    if kind == "leaf":
        return rng.random(n) < payload  # each component fails independently w.p. 1 - a
    if kind in ("series", "parallel"):
        combine = np.logical_and if kind == "series" else np.logical_or
        up = _sample_up(payload[0], n, rng, f"{path}.{kind}[0]")
        for i, child in enumerate(payload[1:], start=1):
            combine(up, _sample_up(child, n, rng, f"{path}.{kind}[{i}]"), out=up)
        return up
    k, kids = payload
    n_up = np.zeros(n, dtype=np.int32)
    for i, child in enumerate(kids):
        n_up += _sample_up(child, n, rng, f"{path}.of[{i}]")
    return n_up >= k


def simulate_availability(spec: Any, n_trials: int, rng: np.random.Generator) -> Estimate:
    """Monte Carlo availability of ``spec``: inject independent failures, count the trials that stay up.

    In each of ``n_trials`` trials every component is drawn up (probability
    ``a``) or down, and the spec's structure decides whether the system is up.

    Parameters
    ----------
    spec : a spec as in :func:`compose_availability`.
    n_trials : number of independent trials (memory: about 5 bytes per trial).
    rng : a ``np.random.Generator``.

    Returns
    -------
    Estimate
        ``(mean, stderr)``: the fraction of trials up and its binomial
        standard error.  The closed form should lie within about 3 stderr.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    compose_availability(spec)  # validate the whole spec before drawing anything
    up = _sample_up(spec, int(n_trials), rng, "spec")
    p = float(up.mean())
    return Estimate(p, math.sqrt(p * (1.0 - p) / n_trials))


# --------------------------------------------------------------------------
# Fan-out latency: leaf distributions, the max over N leaves, hedging
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class LogNormal:
    """Leaf latency exp(N(log median, sigma^2)), in ms: a light(ish) tail."""

    median_ms: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.median_ms > 0 and self.sigma > 0):
            raise ValueError(f"LogNormal needs median_ms > 0 and sigma > 0, got {self.median_ms}, {self.sigma}")

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        return self.median_ms * np.exp(self.sigma * rng.standard_normal(size))

    def cdf(self, x_ms: ArrayLike) -> np.ndarray:
        x = np.asarray(x_ms, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return ndtr(np.log(np.maximum(x, 0.0) / self.median_ms) / self.sigma)

    def quantile(self, q: ArrayLike) -> np.ndarray:
        return self.median_ms * np.exp(self.sigma * ndtri(_check_q(q)))


@dataclass(frozen=True)
class Pareto:
    """Leaf latency with a power-law tail, P(X > x) = (scale / x)^alpha for x >= scale, in ms.

    alpha <= 2 has infinite variance: a few requests are enormously slow.
    """

    scale_ms: float
    alpha: float

    def __post_init__(self) -> None:
        if not (self.scale_ms > 0 and self.alpha > 0):
            raise ValueError(f"Pareto needs scale_ms > 0 and alpha > 0, got {self.scale_ms}, {self.alpha}")

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        # inverse-CDF sampling: scale * (1 - U)^(-1/alpha) = scale * exp(E / alpha) with
        # E = -log(1 - U) ~ Exp(1), drawn directly (faster than a power of a uniform)
        return self.scale_ms * np.exp(rng.standard_exponential(size) / self.alpha)

    def cdf(self, x_ms: ArrayLike) -> np.ndarray:
        x = np.asarray(x_ms, dtype=np.float64)
        return np.where(x < self.scale_ms, 0.0, 1.0 - (self.scale_ms / np.maximum(x, self.scale_ms)) ** self.alpha)

    def quantile(self, q: ArrayLike) -> np.ndarray:
        return self.scale_ms * (1.0 - _check_q(q)) ** (-1.0 / self.alpha)


Leaf = LogNormal | Pareto


def _check_q(q: ArrayLike) -> np.ndarray:
    arr = np.asarray(q, dtype=np.float64)
    if not np.all((arr >= 0) & (arr < 1)):
        raise ValueError(f"quantile levels must be in [0, 1), got {q!r}")
    return arr


def p_any_slow(p: float, n: int) -> float:
    """P(at least one of ``n`` independent leaves is slow), each slow w.p. ``p``: 1 - (1 - p)^n."""
    p = _check_leaf(p, "p")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return 1.0 - (1.0 - p) ** int(n)


def fanout_quantile(leaf: Leaf, q: float, n: int) -> float:
    """Quantile ``q`` of the max of ``n`` iid leaf latencies, in ms.

    P(max <= x) = F(x)^n, so the q-quantile of the max is the leaf's
    quantile at level q^(1/n): the p99 over 100 leaves is a leaf's p99.99.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return float(leaf.quantile(float(_check_q(q)) ** (1.0 / n)))


def hedged_cdf(leaf: Leaf, x_ms: ArrayLike, hedge_at_ms: float) -> np.ndarray:
    """CDF of one hedged leaf call: primary at 0, a backup sent at ``hedge_at_ms`` if no answer yet.

    Latency = min(X1, t + X2) with X1, X2 iid, t = ``hedge_at_ms``, so
    P(T > x) = S(x) for x <= t and S(x) * S(x - t) for x > t (S = 1 - F).
    """
    x = np.asarray(x_ms, dtype=np.float64)
    surv = 1.0 - leaf.cdf(x)
    backup_surv = np.where(x > hedge_at_ms, 1.0 - leaf.cdf(x - hedge_at_ms), 1.0)
    return 1.0 - surv * backup_surv


def hedged_fanout_quantile(leaf: Leaf, q: float, n: int, hedge_at_ms: float) -> float:
    """Quantile ``q`` of the max of ``n`` hedged leaves, in ms (root of F_h(x) = q^(1/n))."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    level = float(_check_q(q)) ** (1.0 / n)
    hi = fanout_quantile(leaf, q, n)  # hedging only helps: F_h >= F, so the root is below
    lo = float(leaf.quantile(1e-9))
    return float(brentq(lambda x: float(hedged_cdf(leaf, x, hedge_at_ms)) - level, lo, hi, xtol=1e-9, rtol=1e-12))


class FanoutRun(NamedTuple):
    """Simulated fan-out requests.

    ``latency_ms``: end-to-end latency of each request (ms), hedged if hedging was on;
    ``unhedged_ms``: the same requests, same primary draws, without hedging (a paired
    comparison; equal to ``latency_ms`` when hedging is off); ``n_backups``: backup
    requests sent.
    """

    latency_ms: np.ndarray
    unhedged_ms: np.ndarray
    n_backups: int


def simulate_fanout(
    leaf: Leaf,
    n_leaves: int,
    n_requests: int,
    rng: np.random.Generator,
    *,
    hedge_at_ms: float | None = None,
    block_elems: int = 2**22,
) -> FanoutRun:
    """Simulate ``n_requests`` requests, each waiting for all ``n_leaves`` leaves.

    A request's latency is the max over its leaves.  With ``hedge_at_ms``,
    a leaf call still unanswered at that time gets a backup request to
    another replica; the leaf answers with whichever returns first.

    Parameters
    ----------
    leaf : the latency distribution of one leaf call (:class:`LogNormal`, :class:`Pareto`).
    n_leaves, n_requests : fan-out width N and number of simulated requests.
    rng : a ``np.random.Generator``.
    hedge_at_ms : send a backup after this delay (ms); None disables hedging.
    block_elems : leaf latencies drawn per block (bounds memory to ~ 8 * block_elems bytes).

    Returns
    -------
    FanoutRun
        ``latency_ms`` and ``unhedged_ms`` of shape (n_requests,), and
        ``n_backups``, the number of backup requests sent (extra load =
        n_backups / (n_requests * n_leaves)).
    """
    for name, val in (("n_leaves", n_leaves), ("n_requests", n_requests)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be an int >= 1, got {val!r}")
    if hedge_at_ms is not None and not hedge_at_ms > 0:
        raise ValueError(f"hedge_at_ms must be > 0 or None, got {hedge_at_ms!r}")
    out, unhedged = np.empty(n_requests), np.empty(n_requests)
    n_backups = 0
    rows = max(1, block_elems // n_leaves)
    for start in range(0, n_requests, rows):
        stop = min(start + rows, n_requests)
        lat = leaf.sample(rng, (stop - start, n_leaves))  # primary calls, one row per request
        unhedged[start:stop] = lat.max(axis=1)  # the request waits for its slowest leaf
        if hedge_at_ms is not None:
            late = lat > hedge_at_ms  # no answer yet when the hedge timer fires
            n_late = int(late.sum())
            lat[late] = np.minimum(lat[late], hedge_at_ms + leaf.sample(rng, n_late))  # first answer wins
            n_backups += n_late
        out[start:stop] = lat.max(axis=1)
    return FanoutRun(out, unhedged if hedge_at_ms is not None else out, n_backups)
