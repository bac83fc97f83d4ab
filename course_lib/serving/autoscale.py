"""Autoscaling: the Kubernetes HPA rule, queue-depth (KEDA-style) scaling, cold starts and spot on a day of traffic.

Lesson 07.07.  Three pieces:

* :func:`hpa_desired_replicas` is the Horizontal Pod Autoscaler's rule from the
  Kubernetes documentation ("Algorithm details"):
  ``desired = ceil(current * currentMetric / targetMetric)``, no change inside a
  tolerance band, clamped to ``[min, max]``; :func:`stabilize` is its scale-down
  stabilization window (the maximum recommendation over the last window).
* :func:`make_traffic_trace` is a day of diurnal traffic (chapter 01's
  :func:`course_lib.slo.sample_traffic`) with a flash spike, in requests/s per
  control step.
* :func:`simulate` runs one scaling policy over a trace, one control step
  (15 s, the HPA's default sync period) at a time: replicas of capacity ``mu``
  that serve only after a cold start, spot interruptions, a fluid backlog when
  load exceeds capacity, and a p99 latency per step from M/M/c
  (:func:`course_lib.serving.queueing.mmc_wait_quantile`) plus the backlog's
  drain time.  It returns replicas, p99, SLO-violating minutes and cost.

Units: seconds, requests/s, replica-hours, dollars.  What the model leaves out
is said where it is made: Kubernetes' handling of missing and not-ready pods
(the metric here is averaged over ready replicas only), scale-up policies
(rate limits per period), and request-level queueing inside a step (each step
is treated as M/M/c at the step's mean rate, plus a fluid backlog).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np

from ..slo import diurnal_profile, sample_traffic
from .queueing import mmc_wait_quantile

#: The HPA controller's default sync period (``--horizontal-pod-autoscaler-sync-period``), s.
HPA_SYNC_S = 15.0
#: The default scale-down stabilization window (``--horizontal-pod-autoscaler-downscale-stabilization``), s.
HPA_DOWNSCALE_WINDOW_S = 300.0


def _number(value: Any, name: str, *, low: float = 0.0, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    return float(value)


def _count(value: Any, name: str, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# 1. The HPA rule
# ---------------------------------------------------------------------------------------------


def hpa_desired_replicas(
    current_replicas: int,
    current_metric: float,
    target_metric: float,
    tolerance: float = 0.1,
    min_replicas: int = 1,
    max_replicas: int = 1_000,
) -> int:
    """The Kubernetes Horizontal Pod Autoscaler's desired replica count.

    From the Kubernetes documentation, "Horizontal Pod Autoscaling", section
    "Algorithm details"::

        desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)]

    e.g. a current value of 200m against a desired 100m doubles the replicas
    (200.0 / 100.0 == 2.0); 50m halves them (50.0 / 100.0 == 0.5).  If the ratio
    is within ``tolerance`` of 1.0 (``|ratio - 1| <= 0.1`` by default) the
    controller skips scaling and keeps ``current_replicas``.  The result is
    clamped to ``[min_replicas, max_replicas]``.  The band test is in floating
    point, as in the controller (so 110 / 100 lands a hair outside 0.1).  Not modelled: the handling of
    missing and not-ready pods, and the scale-down stabilization window (see
    :func:`stabilize`).

    Parameters
    ----------
    current_replicas : replicas now (int >= 0).
    current_metric : the metric averaged over the replicas (utilisation, requests per pod, ...), >= 0.
    target_metric : the desired value of that metric, > 0.
    tolerance : relative band around 1.0 in which nothing changes, >= 0.
    min_replicas, max_replicas : the clamp, ``0 <= min_replicas <= max_replicas``.

    Returns
    -------
    int : the desired number of replicas.
    """
    current_replicas = _count(current_replicas, "current_replicas")
    current_metric = _number(current_metric, "current_metric")
    target_metric = _number(target_metric, "target_metric", low_open=True)
    tolerance = _number(tolerance, "tolerance")
    min_replicas = _count(min_replicas, "min_replicas")
    max_replicas = _count(max_replicas, "max_replicas")
    if min_replicas > max_replicas:
        raise ValueError(f"need min_replicas <= max_replicas, got {min_replicas} > {max_replicas}")
    ratio = current_metric / target_metric
    if abs(ratio - 1.0) <= tolerance:
        desired = current_replicas
    else:
        desired = math.ceil(current_replicas * ratio)
    return min(max(desired, min_replicas), max_replicas)


def stabilize(history: Sequence[tuple[float, int]], now_s: float, window_s: float) -> int:
    """Scale-down stabilization: the highest recommendation made within the last ``window_s`` seconds.

    ``history`` holds ``(time_s, recommendation)`` pairs, the newest last (it
    must include the recommendation made at ``now_s``).  Scaling up takes
    effect at once (the newest is the max); scaling down waits until every
    recommendation in the window is lower, which removes flapping.
    """
    if not history:
        raise ValueError("history is empty: append the current recommendation first")
    return max(r for t, r in history if t > now_s - window_s - 1e-9)


def steady_state_replicas(lam: float, mu: float, rho_target: float) -> int:
    """Replicas at which utilisation lam / (c mu) is at or below the target: c = ceil(lam / (mu rho_target))."""
    lam = _number(lam, "lam")
    mu = _number(mu, "mu", low_open=True)
    rho_target = _number(rho_target, "rho_target", low_open=True)
    return max(1, math.ceil(lam / (mu * rho_target) - 1e-9))


# ---------------------------------------------------------------------------------------------
# 2. A day of traffic with a flash spike
# ---------------------------------------------------------------------------------------------


def make_traffic_trace(
    mean_qps: float,
    rng: np.random.Generator,
    *,
    step_s: int = 15,
    burstiness: float = 0.1,
    spike_start_h: float = 14.0,
    spike_minutes: float = 20.0,
    spike_factor: float = 2.5,
    peak_hour: float = 20.0,
    amplitude: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """A weekday of traffic (chapter 01's diurnal profile) with a flash spike, as requests/s per step.

    The base is :func:`course_lib.slo.sample_traffic` (Poisson counts per
    ``step_s`` bin, lognormal minute-to-minute noise of log-sd ``burstiness``);
    during ``[spike_start_h, + spike_minutes)`` the rate is multiplied by
    ``spike_factor`` (the extra requests are Poisson too).

    Returns
    -------
    t_s : (n_steps,) start time of each step, s from 00:00.
    qps : (n_steps,) measured requests/s in each step.
    """
    _number(spike_factor, "spike_factor", low=1.0)
    counts = sample_traffic(mean_qps, 1, rng, bin_s=step_s, burstiness=burstiness,
                            peak_hour=peak_hour, amplitude=amplitude).astype(np.float64)
    t_s = np.arange(counts.size) * float(step_s)
    in_spike = (t_s >= spike_start_h * 3600) & (t_s < spike_start_h * 3600 + spike_minutes * 60)
    counts[in_spike] += rng.poisson(counts[in_spike] * (spike_factor - 1.0))
    return t_s, counts / step_s


def expected_qps(t_s: np.ndarray, mean_qps: float, *, peak_hour: float = 20.0, amplitude: float = 0.5) -> np.ndarray:
    """The diurnal forecast (no noise, no spike) a scheduled scaler knows in advance, requests/s."""
    return mean_qps * diurnal_profile(np.asarray(t_s, dtype=np.float64), peak_hour=peak_hour, amplitude=amplitude)


# ---------------------------------------------------------------------------------------------
# 3. Policies and the simulation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What a policy sees at the end of a control step."""

    t_s: float             # time, s
    ready: int             # replicas serving
    spec: int              # replicas requested (ready + cold-starting)
    utilisation: float     # busy fraction of the ready replicas (CPU), capped at 1.0
    busy: float            # requests in service (= utilisation * ready), a fluid count
    backlog: float         # requests waiting beyond steady-state queueing (a queue-length metric)


#: A policy maps an observation to desired replicas.  Policies with a window keep state: build a fresh one per run.
Policy = Callable[[Observation], int]


def hpa_cpu_policy(mu: float, target_util: float, *, window_s: float = 0.0, tolerance: float = 0.1,
                   min_replicas: int = 1, max_replicas: int = 1_000) -> Policy:
    """HPA on CPU utilisation (averaged over ready replicas), with an optional scale-down stabilization window."""
    history: list[tuple[float, int]] = []

    def policy(obs: Observation) -> int:
        # the metric is averaged over ready replicas, so the current count is the ready one; inside the
        # tolerance band nothing changes, so replicas still cold-starting are kept (rec = spec)
        rec = hpa_desired_replicas(max(obs.ready, 1), obs.utilisation, target_util, tolerance, min_replicas, max_replicas)
        if rec == max(obs.ready, 1):
            rec = max(obs.spec, min_replicas)
        history.append((obs.t_s, rec))
        while history and history[0][0] <= obs.t_s - window_s - 1e-9:
            history.pop(0)
        return stabilize(history, obs.t_s, window_s) if window_s > 0 else rec

    return policy


def queue_depth_policy(mu: float, target_per_replica: float, *, drain_s: float = 60.0, window_s: float = 0.0,
                       min_replicas: int = 1, max_replicas: int = 1_000) -> Policy:
    """KEDA-style scaling on queue length: the HPA rule on an AverageValue metric, desired = ceil(total / target).

    The metric is the work waiting for a replica, in replicas' worth:
    ``busy + backlog / (mu * drain_s)`` (requests in service, plus the replicas
    that would drain the backlog within ``drain_s``), divided by
    ``target_per_replica``.  It is the SQS "backlog per instance" rule (acceptable
    backlog = acceptable latency x throughput).  Unlike CPU utilisation it is
    not capped at 100 %: it grows with the overload.
    """
    mu = _number(mu, "mu", low_open=True)
    drain_s = _number(drain_s, "drain_s", low_open=True)
    history: list[tuple[float, int]] = []

    def policy(obs: Observation) -> int:
        work = obs.busy + obs.backlog / (mu * drain_s)
        rec = min(max(math.ceil(work / target_per_replica - 1e-9), min_replicas), max_replicas)
        history.append((obs.t_s, rec))
        while history and history[0][0] <= obs.t_s - window_s - 1e-9:
            history.pop(0)
        return stabilize(history, obs.t_s, window_s) if window_s > 0 else rec

    return policy


def scheduled_policy(forecast: Callable[[float], float], mu: float, target_util: float, lead_s: float,
                     fallback: Policy | None = None) -> Policy:
    """Pre-warm for the known diurnal curve: replicas for the forecast ``lead_s`` ahead (max with ``fallback``)."""

    def policy(obs: Observation) -> int:
        planned = steady_state_replicas(forecast(obs.t_s + lead_s), mu, target_util)
        return max(planned, fallback(obs)) if fallback is not None else planned

    return policy


def fixed_policy(replicas: int) -> Policy:
    """A fixed fleet: always ``replicas``."""
    replicas = _count(replicas, "replicas", low=1)
    return lambda obs: replicas


@dataclass
class SimResult:
    """Per-step traces of one policy over one trace, and its totals."""

    t_s: np.ndarray          # (n,) step start, s
    ready: np.ndarray        # (n,) replicas serving
    spec: np.ndarray         # (n,) replicas paid for (serving + cold-starting)
    p99_s: np.ndarray        # (n,) approximate p99 latency, s (inf when overloaded with no replica)
    backlog: np.ndarray      # (n,) requests waiting beyond steady-state queueing
    violated: np.ndarray     # (n,) bool: p99 above the SLO in that step
    cost: float              # dollars
    scale_events: int        # number of steps in which spec changed by the policy
    interruptions: int       # spot replicas reclaimed
    step_s: float = 15.0

    @property
    def violation_minutes(self) -> float:
        return float(self.violated.sum() * self.step_s / 60.0)

    @property
    def replica_hours(self) -> float:
        return float(self.spec.sum() * self.step_s / 3600.0)


def step_p99(lam: float, mu: float, ready: int, backlog: float, q: float = 0.99) -> float:
    """Approximate p99 latency of one step, s: M/M/c p99 wait + mean service 1/mu + backlog drain time.

    When ``lam >= ready * mu`` there is no steady state: the latency is the
    drain time of the backlog plus one service, and the step counts as
    overloaded (the caller marks it violated).
    """
    if ready <= 0:
        return math.inf
    drain = backlog / (ready * mu)
    if lam >= ready * mu * (1 - 1e-9):
        return math.inf
    return mmc_wait_quantile(q, lam, mu, ready) + 1.0 / mu + drain


def simulate(
    qps: np.ndarray,
    policy: Policy,
    *,
    mu: float,
    slo_s: float,
    initial_replicas: int,
    step_s: float = HPA_SYNC_S,
    cold_start_s: float = 120.0,
    price_per_hour: float = 1.0,
    spot: bool = False,
    spot_discount: float = 0.65,
    interruptions_per_hour: float = 0.05,
    seed: int = 0,
) -> SimResult:
    """Run ``policy`` over ``qps`` one control step at a time.

    Each step: (1) replicas whose cold start has ended start serving; (2) on
    spot, each serving replica is reclaimed with probability
    ``1 - exp(-rate * step)`` and the deployment starts a replacement (which
    cold-starts); (3) the step's requests are served by ``ready * mu`` capacity
    and the excess joins a fluid backlog; (4) p99 latency from :func:`step_p99`;
    (5) the policy sees an :class:`Observation` and returns the desired
    replicas: new ones are ready ``cold_start_s`` later, surplus ones are
    removed at once (starting ones first).  Every replica, starting or
    serving, is billed ``price_per_hour`` (x ``1 - spot_discount`` on spot).

    Parameters
    ----------
    qps : (n_steps,) offered requests/s per step.
    policy : ``Observation -> desired replicas``.
    mu : requests/s one replica serves.  slo_s : p99 latency objective, s.
    """
    qps = np.asarray(qps, dtype=np.float64)
    if qps.ndim != 1 or qps.size == 0 or np.any(qps < 0) or not np.all(np.isfinite(qps)):
        raise ValueError(f"qps must be a non-empty 1-D array of finite rates >= 0, got shape {qps.shape}")
    mu = _number(mu, "mu", low_open=True)
    slo_s = _number(slo_s, "slo_s", low_open=True)
    step_s = _number(step_s, "step_s", low_open=True)
    cold_start_s = _number(cold_start_s, "cold_start_s")
    initial_replicas = _count(initial_replicas, "initial_replicas", low=1)
    rng = np.random.default_rng(seed)
    price = price_per_hour * ((1.0 - spot_discount) if spot else 1.0)
    p_reclaim = 1.0 - math.exp(-interruptions_per_hour * step_s / 3600.0) if spot else 0.0

    n = qps.size
    ready_tr, spec_tr = np.zeros(n, np.int64), np.zeros(n, np.int64)
    p99, backlog_tr = np.zeros(n), np.zeros(n)
    ready, starting = initial_replicas, []   # starting: times at which cold-starting replicas become ready
    backlog, cost, events, reclaimed = 0.0, 0.0, 0, 0
    for i in range(n):
        t = i * step_s
        done = [s for s in starting if s <= t]
        ready += len(done)
        starting = [s for s in starting if s > t]
        if p_reclaim and ready:
            k = int(rng.binomial(ready, p_reclaim))
            ready -= k
            reclaimed += k
            starting += [t + cold_start_s] * k          # the deployment replaces them; they cold-start
        lam = qps[i]
        capacity = ready * mu
        backlog = max(0.0, backlog + (lam - capacity) * step_s)
        p99[i] = step_p99(lam, mu, ready, backlog)
        backlog_tr[i] = backlog
        ready_tr[i], spec_tr[i] = ready, ready + len(starting)
        cost += spec_tr[i] * price * step_s / 3600.0
        busy = min(lam, capacity) / capacity if capacity > 0 else 1.0
        desired = max(int(policy(Observation(t, ready, ready + len(starting), busy, min(lam, capacity) / mu, backlog))), 0)
        spec = ready + len(starting)
        if desired > spec:
            starting += [t + step_s + cold_start_s] * (desired - spec)
        elif desired < spec:
            drop = spec - desired
            starting.sort()
            while drop and starting:
                starting.pop()
                drop -= 1
            ready -= drop
        events += desired != spec
    return SimResult(t_s=np.arange(n) * step_s, ready=ready_tr, spec=spec_tr, p99_s=p99, backlog=backlog_tr,
                     violated=p99 > slo_s, cost=cost, scale_events=int(events), interruptions=reclaimed, step_s=step_s)
