"""Closed forms of queueing theory: what a simulation of a serving fleet must reproduce.

Notation (Kendall): arrivals at rate ``lam`` (requests/s), service rate
``mu`` per server (1/mean service time, 1/s), ``c`` servers, offered load
``a = lam / mu`` (Erlangs, "servers' worth of work"), utilisation
``rho = a / c`` (must be < 1 or the queue grows without bound).

* M/M/c: Erlang B by its stable recursion, Erlang C = P(wait > 0), mean
  wait, the waiting-time tail P(W > t) and quantiles, the response-time tail,
  and the fewest servers meeting a wait quantile (sizing).
* M/M/1: the c = 1 special case, in closed form.
* M/G/1: Pollaczek-Khinchine.  G/G/1: Kingman.  G/G/c: Allen-Cunneen.
* Little's law L = lam W.

Times are in the unit of ``1 / mu`` (seconds if rates are per second).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import brentq


def _rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite rate > 0, got {value!r}")
    return float(value)


def _servers(c: Any) -> int:
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise ValueError(f"c (number of servers) must be an int >= 1, got {c!r} ({type(c).__name__})")
    return int(c)


def _stable(lam: Any, mu: Any, c: Any) -> tuple[float, float, int]:
    lam, mu, c = _rate(lam, "lam"), _rate(mu, "mu"), _servers(c)
    if lam >= c * mu:
        raise ValueError(
            f"unstable queue: utilisation rho = lam / (c mu) = {lam:g} / ({c} x {mu:g}) = {lam / (c * mu):.4g} >= 1. "
            "Requests arrive at least as fast as c servers can serve them (lam >= c mu), so the queue "
            "and the wait grow without bound: there is no steady state. Add servers or shed load."
        )
    return lam, mu, c


def erlang_b(c: int, a: float) -> float:
    """Erlang B: P(all c servers busy) in a loss system M/M/c/c with offered load ``a`` Erlangs.

    Recursion B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)): no factorials, no
    overflow, accurate for thousands of servers.
    """
    c = _servers(c)
    if isinstance(a, bool) or not (isinstance(a, (int, float, np.integer, np.floating)) and math.isfinite(a) and a >= 0):
        raise ValueError(f"offered load a must be a finite number >= 0, got {a!r}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(lam: float, mu: float, c: int) -> float:
    """Erlang C: probability that an arriving request waits (all c servers busy), M/M/c.

    C = B / (1 - rho (1 - B)) with B = Erlang B(c, a), a = lam / mu, rho = a / c.
    For c = 1 it is rho.  Raises ``ValueError`` when rho >= 1 (no steady state).
    """
    lam, mu, c = _stable(lam, mu, c)
    a = lam / mu
    rho = a / c
    b = erlang_b(c, a)
    return b / (1.0 - rho * (1.0 - b))


def mmc_mean_wait(lam: float, mu: float, c: int) -> float:
    """Mean time in queue W_q = C / (c mu - lam) of M/M/c."""
    return erlang_c(lam, mu, c) / (c * mu - lam)


def mmc_mean_response(lam: float, mu: float, c: int) -> float:
    """Mean time in system W = W_q + 1 / mu of M/M/c."""
    return mmc_mean_wait(lam, mu, c) + 1.0 / mu


def mmc_wait_tail(t: Any, lam: float, mu: float, c: int) -> np.ndarray:
    """P(W_q > t) = C exp(-(c mu - lam) t) for t >= 0 (FIFO M/M/c): a wait is 0 w.p. 1 - C, else exponential."""
    cc = erlang_c(lam, mu, c)
    t = np.asarray(t, dtype=np.float64)
    if np.any(t < 0):
        raise ValueError("t must be >= 0")
    return cc * np.exp(-(c * mu - lam) * t)


def mmc_wait_quantile(q: float, lam: float, mu: float, c: int) -> float:
    """The q-quantile of the wait in queue of FIFO M/M/c: 0 if q <= 1 - C, else ln(C / (1 - q)) / (c mu - lam)."""
    if not 0 <= q < 1:
        raise ValueError(f"q must be in [0, 1), got {q!r}")
    cc = erlang_c(lam, mu, c)
    return 0.0 if 1.0 - q >= cc else math.log(cc / (1.0 - q)) / (c * mu - lam)


def mmc_response_tail(t: Any, lam: float, mu: float, c: int) -> np.ndarray:
    """P(W_q + S > t) of FIFO M/M/c (time in system).

    W_q is 0 w.p. 1 - C, else Exponential(theta), theta = c mu - lam, and
    the service S ~ Exponential(mu) is independent of it, so
    P(T > t) = (1 - C) e^{-mu t} + C (theta e^{-mu t} - mu e^{-theta t}) / (theta - mu)
    (the hypoexponential tail; its limit theta -> mu is e^{-mu t} (1 + mu t)).
    """
    cc = erlang_c(lam, mu, c)
    theta = c * mu - lam
    t = np.asarray(t, dtype=np.float64)
    if abs(theta - mu) < 1e-9 * mu:
        both = np.exp(-mu * t) * (1.0 + mu * t)
    else:
        both = (theta * np.exp(-mu * t) - mu * np.exp(-theta * t)) / (theta - mu)
    return np.where(t < 0, 1.0, (1.0 - cc) * np.exp(-mu * t) + cc * both)


def mmc_response_quantile(q: float, lam: float, mu: float, c: int) -> float:
    """The q-quantile of the time in system of FIFO M/M/c (root of P(T > t) = 1 - q)."""
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    erlang_c(lam, mu, c)  # validates
    hi = 1.0 / mu
    while float(mmc_response_tail(hi, lam, mu, c)) > 1 - q:
        hi *= 2.0
    return float(brentq(lambda t: float(mmc_response_tail(t, lam, mu, c)) - (1 - q), 0.0, hi, xtol=1e-12, rtol=1e-12))


def servers_for_wait_quantile(lam: float, mu: float, q: float, t_max: float, c_max: int = 100_000) -> int:
    """Fewest servers c with P(W_q > t_max) <= 1 - q in M/M/c, e.g. "p99 wait under 10 ms".

    Starts at the fewest servers that are stable, floor(lam / mu) + 1, and
    adds one at a time (P(W_q > t) falls as c grows).
    """
    lam, mu = _rate(lam, "lam"), _rate(mu, "mu")
    if not 0 < q < 1 or not t_max >= 0:
        raise ValueError(f"need 0 < q < 1 and t_max >= 0, got q={q!r}, t_max={t_max!r}")
    c = int(math.floor(lam / mu)) + 1
    while c <= c_max:
        if float(mmc_wait_tail(t_max, lam, mu, c)) <= 1 - q:
            return c
        c += 1
    raise ValueError(f"no c <= {c_max} meets P(W > {t_max}) <= {1 - q:g}")


# --------------------------------------------------------------------------
# M/M/1, M/G/1, G/G/1, G/G/c
# --------------------------------------------------------------------------
def mm1_mean_wait(lam: float, mu: float) -> float:
    """Mean wait in queue of M/M/1: rho / (mu - lam)."""
    lam, mu, _ = _stable(lam, mu, 1)
    return (lam / mu) / (mu - lam)


def mm1_response_quantile(q: float, lam: float, mu: float) -> float:
    """Time in system of M/M/1 is Exponential(mu - lam): quantile -ln(1 - q) / (mu - lam)."""
    lam, mu, _ = _stable(lam, mu, 1)
    if not 0 <= q < 1:
        raise ValueError(f"q must be in [0, 1), got {q!r}")
    return -math.log1p(-q) / (mu - lam)


def _scv(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} (squared coefficient of variation, Var / mean^2) must be a finite number >= 0, got {value!r}")
    return float(value)


def pollaczek_khinchine_wait(lam: float, mean_s: float, scv_s: float) -> float:
    """Mean wait of M/G/1 (exact): W_q = rho / (1 - rho) * (1 + cs^2) / 2 * E[S].

    ``mean_s``: mean service time; ``scv_s``: its Var / mean^2 (1 for
    exponential, 0 for deterministic).  Only the first two moments matter.
    """
    lam, mu, _ = _stable(lam, 1.0 / _rate(mean_s, "mean_s"), 1)
    rho = lam * mean_s
    return rho / (1.0 - rho) * (1.0 + _scv(scv_s, "scv_s")) / 2.0 * mean_s


def kingman_wait(lam: float, mean_s: float, scv_a: float, scv_s: float) -> float:
    """Kingman's approximation of the mean wait of G/G/1: rho / (1 - rho) * (ca^2 + cs^2) / 2 * E[S].

    Exact for M/G/1 (ca^2 = 1); accurate in heavy traffic (rho -> 1).
    """
    lam, mu, _ = _stable(lam, 1.0 / _rate(mean_s, "mean_s"), 1)
    rho = lam * mean_s
    return rho / (1.0 - rho) * (_scv(scv_a, "scv_a") + _scv(scv_s, "scv_s")) / 2.0 * mean_s


def allen_cunneen_wait(lam: float, mean_s: float, c: int, scv_a: float, scv_s: float) -> float:
    """Allen-Cunneen approximation of the mean wait of G/G/c: the M/M/c wait times (ca^2 + cs^2) / 2.

    Exact for M/M/c; for M/G/c (ca^2 = 1) it is the usual two-moment
    approximation, good to a few percent for moderate cs^2 and worse for
    heavy-tailed service.
    """
    mu = 1.0 / _rate(mean_s, "mean_s")
    return mmc_mean_wait(lam, mu, c) * (_scv(scv_a, "scv_a") + _scv(scv_s, "scv_s")) / 2.0


# --------------------------------------------------------------------------
# Little's law
# --------------------------------------------------------------------------
def littles_law_L(lam: float, w: float) -> float:
    """Mean number in the system L = lam W (requests), for any stable queue, any discipline."""
    return _rate(lam, "lam") * float(w)


def in_flight(qps: float, latency_s: float) -> float:
    """Requests in flight (concurrency) a service must hold: Little's law with W = ``latency_s``.

    E.g. 1,000,000 QPS at 10 ms = 10,000 concurrent requests.
    """
    return littles_law_L(qps, _rate(latency_s, "latency_s"))
