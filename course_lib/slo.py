"""Requirements to SLOs: traffic from business numbers, error budgets, burn-rate alerts, latency of a chain.

The four tools of lesson 01.03, each a short function:

* **Traffic.** :class:`TrafficSpec` turns daily active users (DAU), requests
  per user per day, a peak factor and a read share into average and peak QPS.
  :func:`diurnal_profile` and :func:`sample_traffic` make a synthetic week of
  traffic on which :func:`peak_factor` *measures* the peak factor over a chosen
  window instead of assuming it.
* **Error budgets.** :func:`allowed_bad_minutes` and :func:`budget_consumed`:
  an SLO of 99.9 % over 30 days allows 43.2 bad minutes, and burning at rate b
  for m minutes spends b * m / 43,200 of the budget.
* **Burn-rate alerts.** :func:`burn_rate_alerts` is the multi-window,
  multi-burn-rate alert of the Google SRE Workbook (chapter "Alerting on SLOs")
  on per-minute counts; :func:`score_alerts` measures precision, recall,
  detection delay and the budget spent before detection against labelled
  incidents.
* **Latency of a chain of stages.** :func:`sample_stage_latencies` (Monte Carlo
  with correlated lognormal stages) and :func:`fenton_wilkinson` (the
  closed-form lognormal approximation of a sum, by moment matching).

Units: traffic in requests and seconds, alerting in minutes (one row of
``events`` per minute), latency in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import numpy as np

from .validate import check_number
from scipy.special import ndtri

SECONDS_PER_DAY = 86_400
MINUTES_PER_DAY = 1_440
#: The SLO period of the SRE Workbook's examples: 30 days, in minutes.
PERIOD_MINUTES = 30 * MINUTES_PER_DAY
#: Page: 2 % of a 30-day budget in 1 h (checked over 5 min), or 5 % in 6 h (checked over 30 min).
SRE_PAGE: tuple[tuple[int, int, float], ...] = ((60, 5, 14.4), (360, 30, 6.0))
#: Ticket: 10 % of a 30-day budget in 3 days (checked over 6 h).
SRE_TICKET: tuple[tuple[int, int, float], ...] = ((3 * MINUTES_PER_DAY, 360, 1.0),)


def _positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    return check_number(value, name, low=0, low_open=not allow_zero)


def _fraction(value: Any, name: str) -> float:
    """A number strictly between 0 and 1 (an SLO such as 0.999, a quantile such as 0.99)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < float(value) < 1:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1 (e.g. 0.999), got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# 1. Traffic: business numbers -> QPS, and a synthetic week on which to measure the peak factor
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficSpec:
    """Business numbers and the request rates they imply.

    Parameters
    ----------
    dau : daily active users.
    requests_per_user_per_day : backend requests one active user causes per day.
    peak_factor : peak QPS / average QPS (measure it: :func:`peak_factor`).
    read_fraction : share of requests that only read (the rest write).
    """

    dau: float
    requests_per_user_per_day: float
    peak_factor: float
    read_fraction: float = 1.0

    def __post_init__(self) -> None:
        _positive(self.dau, "dau")
        _positive(self.requests_per_user_per_day, "requests_per_user_per_day")
        if _positive(self.peak_factor, "peak_factor") < 1:
            raise ValueError(f"peak_factor is peak QPS / average QPS, so it is >= 1; got {self.peak_factor}")
        if not 0 <= _positive(self.read_fraction, "read_fraction", allow_zero=True) <= 1:
            raise ValueError(f"read_fraction must be in [0, 1], got {self.read_fraction}")

    @property
    def requests_per_day(self) -> float:
        return self.dau * self.requests_per_user_per_day

    @property
    def avg_qps(self) -> float:
        """Average requests per second: DAU * requests per user per day / 86,400."""
        return self.requests_per_day / SECONDS_PER_DAY

    @property
    def peak_qps(self) -> float:
        return self.peak_factor * self.avg_qps

    @property
    def peak_read_qps(self) -> float:
        return self.read_fraction * self.peak_qps

    @property
    def peak_write_qps(self) -> float:
        return (1 - self.read_fraction) * self.peak_qps

    def as_row(self) -> dict[str, float]:
        """The spec as one table row (QPS rounded to 0.1)."""
        return {
            "requests/day": self.requests_per_day,
            "avg QPS": round(self.avg_qps, 1),
            "peak factor": self.peak_factor,
            "peak QPS": round(self.peak_qps, 1),
            "peak read QPS": round(self.peak_read_qps, 1),
            "peak write QPS": round(self.peak_write_qps, 1),
        }


def diurnal_profile(
    t_s: np.ndarray,
    *,
    peak_hour: float = 20.0,
    amplitude: float = 0.5,
    second_harmonic: float = 0.15,
    weekend_factor: float = 0.8,
) -> np.ndarray:
    """Relative request rate at times ``t_s`` (seconds from Monday 00:00), mean 1 over whole weeks.

    A day is two cosines that peak together at ``peak_hour`` (the second, at
    twice the frequency, also makes a morning bump 12 h earlier); Saturday and
    Sunday are scaled by ``weekend_factor``.  The weekly mean is divided out, so
    the analytic peak factor is ``(1 + amplitude + second_harmonic) / ((5 + 2 weekend_factor) / 7)``.

    Returns an array shaped like ``t_s``, dimensionless.
    """
    if amplitude < 0 or second_harmonic < 0 or amplitude + second_harmonic >= 1:
        raise ValueError(f"need amplitude, second_harmonic >= 0 with a sum < 1 (so the rate stays > 0), got {amplitude}, {second_harmonic}")
    if not 0 < weekend_factor:
        raise ValueError(f"weekend_factor must be > 0, got {weekend_factor}")
    t_s = np.asarray(t_s, dtype=np.float64)
    phase = 2 * np.pi * ((t_s / 3600.0 - peak_hour) % 24.0) / 24.0
    daily = 1.0 + amplitude * np.cos(phase) + second_harmonic * np.cos(2 * phase)
    weekend = (t_s // SECONDS_PER_DAY) % 7 >= 5
    weekly_mean = (5 + 2 * weekend_factor) / 7
    return daily * np.where(weekend, weekend_factor, 1.0) / weekly_mean


def analytic_peak_factor(*, amplitude: float = 0.5, second_harmonic: float = 0.15, weekend_factor: float = 0.8) -> float:
    """Peak / mean of :func:`diurnal_profile` without noise (a weekday's ``peak_hour``)."""
    return (1 + amplitude + second_harmonic) / ((5 + 2 * weekend_factor) / 7)


def sample_traffic(
    mean_qps: float, days: int, rng: np.random.Generator, *, bin_s: int = 1, burstiness: float = 0.1, **profile: float
) -> np.ndarray:
    """Synthetic request counts per ``bin_s``-second bin over ``days`` days, starting Monday 00:00.

    rate(t) = mean_qps * :func:`diurnal_profile` (t) * noise(minute), where the
    noise is a mean-1 lognormal with log-sd ``burstiness``, drawn once per
    minute (traffic is burstier than Poisson), and the count in a bin is
    Poisson(rate * bin_s).  ``bin_s`` must divide 60 or be 60.

    Returns int64 array of shape (days * 86,400 / bin_s,).
    """
    _positive(mean_qps, "mean_qps")
    if isinstance(days, bool) or not isinstance(days, (int, np.integer)) or days < 1:
        raise ValueError(f"days must be a positive int, got {days!r}")
    if not isinstance(bin_s, (int, np.integer)) or bin_s < 1 or 60 % bin_s:
        raise ValueError(f"bin_s must be a divisor of 60 (1, 2, ..., 30, 60), got {bin_s!r}")
    _positive(burstiness, "burstiness", allow_zero=True)
    n_minutes = days * MINUTES_PER_DAY
    per_minute = 60 // bin_s
    t_mid = (np.arange(n_minutes * per_minute) + 0.5) * bin_s
    noise = np.exp(burstiness * rng.standard_normal(n_minutes) - burstiness**2 / 2)
    rate = mean_qps * bin_s * diurnal_profile(t_mid, **profile) * np.repeat(noise, per_minute)
    return rng.poisson(rate).astype(np.int64)


def peak_factor(counts: np.ndarray, bin_s: float, window_s: float) -> float:
    """Measured peak factor: the busiest ``window_s``-second window's QPS / the average QPS.

    ``counts`` (n_bins,) are requests per ``bin_s`` seconds; windows are
    consecutive, non-overlapping groups of ``window_s / bin_s`` bins (a
    trailing partial window is dropped).  The shorter the window, the higher
    the peak: short windows see Poisson and burst noise that long ones average out.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array of requests per bin, got shape {counts.shape}")
    per_window = window_s / _positive(bin_s, "bin_s")
    if per_window < 1 or abs(per_window - round(per_window)) > 1e-9:
        raise ValueError(f"window_s must be a positive multiple of bin_s={bin_s}, got {window_s}")
    per_window = int(round(per_window))
    if per_window > counts.size:
        raise ValueError(f"window of {per_window} bins is longer than the trace ({counts.size} bins)")
    n_windows = counts.size // per_window
    windows = counts[: n_windows * per_window].reshape(n_windows, per_window).sum(axis=1)
    mean = counts.mean() * per_window
    if mean <= 0:
        raise ValueError("the trace has no requests: the peak factor is undefined")
    return float(windows.max() / mean)


# ---------------------------------------------------------------------------------------------
# 2. SLOs and error budgets
# ---------------------------------------------------------------------------------------------


def allowed_bad_minutes(slo: float, period_days: float = 30) -> float:
    """Minutes of full outage an availability SLO allows per period: (1 - slo) * period."""
    return (1 - _fraction(slo, "slo")) * _positive(period_days, "period_days") * MINUTES_PER_DAY


def allowed_bad_requests(slo: float, requests: float) -> float:
    """Failed requests a request-based SLO allows out of ``requests``: (1 - slo) * requests."""
    return (1 - _fraction(slo, "slo")) * _positive(requests, "requests", allow_zero=True)


def budget_consumed(burn_rate: float, minutes: float, period_minutes: float = PERIOD_MINUTES) -> float:
    """Fraction of the period's error budget spent by burning at ``burn_rate`` for ``minutes``.

    Burn rate 1 spends the budget exactly over the period; burn rate 14.4
    for 60 min spends 14.4 * 60 / 43,200 = 2 % of a 30-day budget.
    """
    return _positive(burn_rate, "burn_rate", allow_zero=True) * _positive(minutes, "minutes", allow_zero=True) / _positive(period_minutes, "period_minutes")


def time_to_detect(burn_rate: float, threshold: float, long_minutes: float, baseline_burn: float = 0.0) -> float:
    """Minutes until a long window of ``long_minutes`` averages a burn rate above ``threshold``.

    With traffic flat, a window that held ``baseline_burn`` before an incident
    burning at ``burn_rate`` averages (b0 (L - t) + b t) / L after t minutes, which
    crosses the threshold B at t = L (B - b0) / (b - b0).  Returns ``inf`` when
    the incident is too weak to ever cross it (b <= B), or when t > L.
    The budget spent by then is ``budget_consumed(burn_rate, t)``.
    """
    b, B, L = (_positive(burn_rate, "burn_rate", allow_zero=True), _positive(threshold, "threshold"),
               _positive(long_minutes, "long_minutes"))
    b0 = _positive(baseline_burn, "baseline_burn", allow_zero=True)
    if b0 > B:
        return 0.0
    if b <= B:
        return math.inf
    return L * (B - b0) / (b - b0)


# ---------------------------------------------------------------------------------------------
# 3. Burn-rate alerts on per-minute (bad, total) counts
# ---------------------------------------------------------------------------------------------


def as_events(events: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-minute counts: (n_minutes, 2) with columns (bad, total), 0 <= bad <= total.

    Returns ``(bad, total)``, two float64 arrays of shape (n_minutes,).
    """
    arr = np.asarray(events)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"events must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"events must have shape (n_minutes, 2) with columns (bad, total), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("events contain NaN or infinity")
    bad, total = arr[:, 0], arr[:, 1]
    if (bad < 0).any() or (total < 0).any():
        raise ValueError("events must be counts >= 0")
    if (bad > total).any():
        t = int(np.argmax(bad > total))
        raise ValueError(f"minute {t} has more bad events ({bad[t]:g}) than events in total ({total[t]:g}): columns must be (bad, total)")
    return bad, total


def check_windows(windows: Any) -> list[tuple[int, int, float]]:
    """Validate a list of (long_minutes, short_minutes, burn_rate_threshold) alert conditions."""
    try:
        items = [tuple(w) for w in windows]
    except TypeError:
        raise ValueError(f"windows must be a list of (long_minutes, short_minutes, threshold), got {windows!r}") from None
    if not items:
        raise ValueError("windows is empty: give at least one (long_minutes, short_minutes, threshold)")
    out = []
    for w in items:
        if len(w) != 3:
            raise ValueError(f"each window is (long_minutes, short_minutes, threshold), got {w!r}")
        long_m, short_m, threshold = w
        for name, m in (("long_minutes", long_m), ("short_minutes", short_m)):
            if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
                raise ValueError(f"{name} must be a positive int, got {m!r} in {w!r}")
        out.append((int(long_m), int(short_m), _positive(threshold, "burn-rate threshold")))
    return out


def trailing_sum(x: np.ndarray, window: int) -> np.ndarray:
    """out[t] = x[t - window + 1] + ... + x[t], with minutes before 0 counted as 0.

    One cumulative sum makes every window O(1): the sum over (t - w, t] is
    c[t + 1] - c[t + 1 - w], where c is the running total with c[0] = 0.
    """
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=np.float64))])
    t = np.arange(1, c.size)
    return c[t] - c[np.maximum(t - window, 0)]


def window_error_rate(events: Any, window: int) -> np.ndarray:
    """Per minute, bad / total over the trailing ``window`` minutes (0 where the window saw no traffic)."""
    bad, total = as_events(events)
    b, n = trailing_sum(bad, window), trailing_sum(total, window)
    return np.divide(b, n, out=np.zeros_like(b), where=n > 0)


def burn_rate(events: Any, slo: float, window: int) -> np.ndarray:
    """Per minute, the trailing-window error rate in units of the budget: error rate / (1 - slo)."""
    return window_error_rate(events, window) / (1 - _fraction(slo, "slo"))


def burn_rate_alerts(events: Any, slo: float, windows: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """Minutes at which a multi-window, multi-burn-rate alert is firing (SRE Workbook, "Alerting on SLOs").

    Parameters
    ----------
    events : (n_minutes, 2) counts, row t = (bad, total) during minute t.
    slo : target share of good events, e.g. 0.999.
    windows : (long_minutes, short_minutes, threshold) conditions, e.g. :data:`SRE_PAGE`.

    Returns
    -------
    int64 array, sorted: every minute t at which, for at least one condition,
    the error rate over the trailing long window (minutes t - long + 1 .. t)
    AND over the trailing short window both exceed ``threshold * (1 - slo)``
    (strictly).  Windows reaching before minute 0 use the minutes that exist;
    a window with no traffic has error rate 0 and never fires.

    The long window makes the alert significant (enough budget was spent);
    the short one makes it stop soon after the errors stop.
    """
    budget_rate = 1 - _fraction(slo, "slo")
    bad, total = as_events(events)
    firing = np.zeros(bad.size, dtype=bool)
    for long_m, short_m, threshold in check_windows(windows):
        limit = threshold * budget_rate
        both = np.ones(bad.size, dtype=bool)
        for w in (long_m, short_m):
            b, n = trailing_sum(bad, w), trailing_sum(total, w)
            rate = np.divide(b, n, out=np.zeros_like(b), where=n > 0)
            both &= rate > limit
        firing |= both
    return np.flatnonzero(firing).astype(np.int64)


def alert_episodes(minutes: Any) -> list[tuple[int, int]]:
    """Group firing minutes into episodes: runs of consecutive minutes, as (first, last) inclusive."""
    m = np.unique(np.asarray(minutes, dtype=np.int64))
    if m.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(m) > 1)
    starts = np.concatenate([[m[0]], m[breaks + 1]])
    ends = np.concatenate([m[breaks], [m[-1]]])
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


@dataclass(frozen=True)
class Incident:
    """A labelled stretch of a synthetic trace: minutes [start, end) at ``error_rate``.

    ``should_alert`` is the label: True for incidents worth a human (they
    spend a real share of the budget), False for blips that must stay quiet.
    """

    name: str
    start: int
    end: int
    error_rate: float
    should_alert: bool

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"incident {self.name!r}: need 0 <= start < end, got [{self.start}, {self.end})")
        if not 0 <= self.error_rate <= 1:
            raise ValueError(f"incident {self.name!r}: error_rate must be in [0, 1], got {self.error_rate}")


def error_rate_profile(n_minutes: int, baseline: float, incidents: Sequence[Incident]) -> np.ndarray:
    """Per-minute error probability: ``baseline``, replaced by each incident's rate inside it."""
    if not 0 <= baseline <= 1:
        raise ValueError(f"baseline must be an error rate in [0, 1], got {baseline}")
    p = np.full(int(n_minutes), float(baseline))
    for inc in incidents:
        if inc.end > n_minutes:
            raise ValueError(f"incident {inc.name!r} ends at minute {inc.end}, after the trace ({n_minutes} minutes)")
        p[inc.start : inc.end] = inc.error_rate
    return p


def sample_events(total: np.ndarray, error_rate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_minutes, 2) int64 events: bad ~ Binomial(total, error_rate) each minute, next to ``total``."""
    total = np.asarray(total, dtype=np.int64)
    p = np.asarray(error_rate, dtype=np.float64)
    if total.shape != p.shape or total.ndim != 1:
        raise ValueError(f"total and error_rate must be 1-D of the same length, got {total.shape} and {p.shape}")
    if (total < 0).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("need total >= 0 and 0 <= error_rate <= 1")
    return np.stack([rng.binomial(total, p), total], axis=1).astype(np.int64)


@dataclass(frozen=True)
class AlertScore:
    """How one alerting policy did on a labelled trace.

    An episode (a run of firing minutes) is a *true* alert when it starts
    inside an incident labelled ``should_alert``; otherwise it is a false
    alarm.  Delays and budgets are per ``should_alert`` incident, None if missed.
    """

    episodes: int
    true_episodes: int
    incidents_detected: int
    incidents: int
    delay_min: dict[str, int | None]
    budget_at_detection: dict[str, float | None]

    @property
    def false_episodes(self) -> int:
        return self.episodes - self.true_episodes

    @property
    def precision(self) -> float:
        """True alert episodes / all episodes (1.0 for a policy that never fires: nothing was wrong)."""
        return self.true_episodes / self.episodes if self.episodes else 1.0

    @property
    def recall(self) -> float:
        """Incidents that needed an alert and got one / incidents that needed one."""
        return self.incidents_detected / self.incidents if self.incidents else 1.0


def score_alerts(firing: Any, incidents: Sequence[Incident], events: Any, slo: float) -> AlertScore:
    """Score firing minutes against labelled incidents.

    Detection of an incident is its first firing minute in [start, end); the
    delay is that minute - start, and the budget at detection is the bad
    events in [start, detection] over the 30-day budget at the trace's mean
    traffic, (1 - slo) * mean(total per minute) * 43,200.
    """
    bad, total = as_events(events)
    budget = allowed_bad_requests(slo, float(total.mean()) * PERIOD_MINUTES)
    firing = np.unique(np.asarray(firing, dtype=np.int64))
    needed = [inc for inc in incidents if inc.should_alert]
    episodes = alert_episodes(firing)
    true_episodes = sum(any(inc.start <= s < inc.end for inc in needed) for s, _ in episodes)
    delay: dict[str, int | None] = {}
    spent: dict[str, float | None] = {}
    for inc in needed:
        inside = firing[(firing >= inc.start) & (firing < inc.end)]
        if inside.size:
            first = int(inside[0])
            delay[inc.name] = first - inc.start
            spent[inc.name] = float(bad[inc.start : first + 1].sum() / budget) if budget > 0 else math.inf
        else:
            delay[inc.name], spent[inc.name] = None, None
    detected = sum(d is not None for d in delay.values())
    return AlertScore(len(episodes), true_episodes, detected, len(needed), delay, spent)


# ---------------------------------------------------------------------------------------------
# 4. The latency of a chain of stages: Monte Carlo vs Fenton-Wilkinson
# ---------------------------------------------------------------------------------------------


def lognormal_from_quantiles(median_ms: Any, p99_ms: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of lognormal latencies with the given median and p99 (per stage).

    median = exp(mu) and p99 = exp(mu + z99 sigma), with z99 = 2.326 the
    standard normal 99th percentile, so sigma = ln(p99 / median) / z99.
    """
    med = np.atleast_1d(np.asarray(median_ms, dtype=np.float64))
    p99 = np.atleast_1d(np.asarray(p99_ms, dtype=np.float64))
    if med.shape != p99.shape or med.ndim != 1:
        raise ValueError(f"median_ms and p99_ms must be 1-D of the same length, got {med.shape} and {p99.shape}")
    if not (np.isfinite(med).all() and np.isfinite(p99).all() and (med > 0).all() and (p99 > med).all()):
        raise ValueError("need 0 < median_ms < p99_ms (finite) for every stage")
    return np.log(med), np.log(p99 / med) / ndtri(0.99)


def lognormal_quantile(mu: Any, sigma: Any, q: float) -> np.ndarray:
    """The q-quantile of lognormal(mu, sigma): exp(mu + sigma * Phi^-1(q))."""
    return np.exp(np.asarray(mu, dtype=np.float64) + np.asarray(sigma, dtype=np.float64) * ndtri(_fraction(q, "q")))


def correlation_matrix(k: int, rho: float) -> np.ndarray:
    """(k, k) equicorrelation matrix: 1 on the diagonal, ``rho`` elsewhere (0 <= rho <= 1)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not 0 <= rho <= 1:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    C = np.full((k, k), float(rho))
    np.fill_diagonal(C, 1.0)
    return C


def _stage_params(mu: Any, sigma: Any, corr: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1 or mu.shape != sigma.shape:
        raise ValueError(f"mu and sigma must be 1-D of the same length (one per stage), got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()) or (sigma < 0).any():
        raise ValueError("mu must be finite and sigma finite and >= 0")
    k = mu.size
    C = correlation_matrix(k, float(corr)) if np.ndim(corr) == 0 else np.asarray(corr, dtype=np.float64)
    if C.shape != (k, k):
        raise ValueError(f"corr must be a number or a ({k}, {k}) correlation matrix, got shape {C.shape}")
    if not np.allclose(C, C.T) or not np.allclose(np.diag(C), 1.0) or np.linalg.eigvalsh(C).min() < -1e-10:
        raise ValueError("corr must be symmetric, with 1 on the diagonal, and positive semi-definite")
    return mu, sigma, C


def sample_stage_latencies(mu: Any, sigma: Any, corr: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws of k stage latencies: exp(mu + sigma * Z), Z ~ N(0, corr).

    ``corr`` is the correlation of the log-latencies: one number (the same
    for every pair) or a (k, k) matrix.  The factor is V sqrt(Lambda) from
    an eigendecomposition rather than a Cholesky factor, so corr = 1 (every
    stage slow together, a singular matrix) works too.

    Returns float64 array of shape (n, k), in the units of exp(mu) (ms).
    """
    mu, sigma, C = _stage_params(mu, sigma, corr)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    Z = rng.standard_normal((int(n), mu.size))
    if not np.array_equal(C, np.eye(mu.size)):  # independent stages need no mixing
        lam, V = np.linalg.eigh(C)
        Z = Z @ (V * np.sqrt(np.maximum(lam, 0.0))).T
    Z *= sigma  # in place: exp(mu + sigma Z) without (n, k) temporaries
    Z += mu
    return np.exp(Z, out=Z)


def fenton_wilkinson(mu: Any, sigma: Any, corr: Any = 0.0) -> tuple[float, float]:
    """(mu_S, sigma_S) of the lognormal whose mean and variance match S = sum of the stages.

    With X_i = exp(mu_i + sigma_i Z_i) and corr(Z_i, Z_j) = rho_ij:

        E[S]   = sum_i exp(mu_i + sigma_i^2 / 2)
        E[S^2] = sum_ij exp(mu_i + mu_j + (sigma_i^2 + sigma_j^2) / 2 + rho_ij sigma_i sigma_j)

    and a lognormal with those two moments has sigma_S^2 = ln(E[S^2] / E[S]^2),
    mu_S = ln E[S] - sigma_S^2 / 2 (Fenton 1960).  Its quantiles are then
    closed-form (:func:`lognormal_quantile`).
    """
    mu, sigma, C = _stage_params(mu, sigma, corr)
    m1 = np.exp(mu + sigma**2 / 2).sum()
    half_var = (sigma[:, None] ** 2 + sigma[None, :] ** 2) / 2
    m2 = np.exp(mu[:, None] + mu[None, :] + half_var + C * np.outer(sigma, sigma)).sum()
    s2 = math.log(m2 / m1**2)
    return float(math.log(m1) - s2 / 2), float(math.sqrt(max(s2, 0.0)))


def quantile_ci(samples: Any, q: float, z: float = 1.96) -> tuple[float, float, float]:
    """The empirical q-quantile with a distribution-free confidence interval.

    The number of samples below the true quantile is Binomial(n, q), so the
    order statistics at ranks n q -/+ z sqrt(n q (1 - q)) bracket it with
    about the normal coverage of ``z`` (95 % for 1.96).  Returns (estimate, lo, hi).
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"need at least 2 samples, got {x.size}")
    q = _fraction(q, "q")
    half = z * math.sqrt(q * (1 - q) / x.size)
    lo_q, hi_q = max(q - half, 0.0), min(q + half, 1.0)
    est, lo, hi = np.quantile(x, [q, lo_q, hi_q])
    return float(est), float(lo), float(hi)
