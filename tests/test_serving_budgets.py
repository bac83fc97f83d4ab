"""Tests of course_lib.serving.budgets: breaker vs pybreaker, deadline propagation, shedding, sizing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.resilience import Stage, prob_sum_within
from course_lib.serving import budgets as b
from course_lib.serving.des import fifo_gg_c, lognormal_service, poisson_arrivals


def _ours(fail_max, reset_timeout):
    return lambda clock: b.CircuitBreaker(fail_max, reset_timeout, clock=clock)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fail_max,reset_timeout", [(1, 0), (2, 1), (3, 5), (5, 20)])
def test_breaker_equals_pybreaker_on_random_traces(seed, fail_max, reset_timeout):
    times, fails = b.failure_trace(400, np.random.default_rng(seed), mean_gap=2.0)
    assert b.breaker_trace(_ours(fail_max, reset_timeout), times, fails) == b.pybreaker_trace(fail_max, reset_timeout, times, fails)


def test_breaker_hand_case():
    # fail, fail (trips at fail_max=2), rejected before the timeout, trial at exactly opened_at + 10 fails,
    # rejected, trial succeeds -> closed; a success in between resets the count
    times = [0, 1, 5, 11, 12, 21, 22, 23, 24, 25]
    fails = [1, 1, 0, 1, 0, 0, 1, 0, 1, 1]
    want = [("failed", "closed"), ("tripped", "open"), ("rejected", "open"), ("tripped", "open"),
            ("rejected", "open"), ("ok", "closed"), ("failed", "closed"), ("ok", "closed"),
            ("failed", "closed"), ("tripped", "open")]
    got = b.breaker_trace(_ours(2, 10), times, [bool(f) for f in fails])
    assert got == want
    assert b.pybreaker_trace(2, 10, times, [bool(f) for f in fails]) == want


def test_breaker_raises_and_returns():
    clock = b.FakeClock()
    cb = b.CircuitBreaker(1, 5, clock=clock.now)
    assert cb.call(lambda x: x + 1, 1) == 2
    with pytest.raises(b.CircuitOpenError) as info:
        cb.call(lambda: 1 / 0)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(b.CircuitOpenError):
        cb.call(lambda: 1)
    clock.sleep(5)
    assert cb.call(lambda: "ok") == "ok" and cb.state == "closed" and cb.fail_counter == 0


@pytest.mark.parametrize("kwargs", [{"fail_max": 0}, {"fail_max": 1.5}, {"reset_timeout": -1},
                                    {"reset_timeout": math.nan}, {"clock": 3}])
def test_breaker_bad_input(kwargs):
    with pytest.raises(ValueError):
        b.CircuitBreaker(**kwargs)


def test_propagation_matches_closed_forms():
    med, sig = [1.0, 2.0, 3.0], [0.5, 0.5, 0.6]
    lat = b.lognormal_chain_latencies(med, sig, 200_000, np.random.default_rng(0))
    lo, hi = prob_sum_within([Stage(str(i), m, s, 0.0) for i, (m, s) in enumerate(zip(med, sig))], 10.0)
    p = b.propagated_deadline(lat, 10.0).attainment
    assert abs(p - (lo + hi) / 2) < 4 * math.sqrt(p * (1 - p) / lat.shape[0]) + (hi - lo)
    q = b.fixed_stage_timeouts(lat, [2, 3, 5], 10.0).attainment
    cf = b.fixed_timeouts_closed_form(med, sig, [2, 3, 5])
    assert abs(q - cf) < 4 * math.sqrt(cf * (1 - cf) / lat.shape[0])
    # propagation dominates every fixed split on the same draws
    assert p >= q


def test_propagation_stops_early_and_fallback():
    lat = np.array([[5.0, 9.0], [1.0, 1.0], [12.0, 1.0]])
    r = b.propagated_deadline(lat, 10.0)
    assert r.ok.tolist() == [False, True, False]
    assert r.elapsed_ms.tolist() == [10.0, 2.0, 10.0]  # nothing runs past the deadline
    r = b.propagated_deadline(lat, 10.0, fallback_ms=np.array([1.0, 1.0, 1.0]))
    assert r.ok.tolist() == [True, True, False] and r.degraded.tolist() == [True, False, False]
    assert np.all(r.elapsed_ms <= 10.0)


def test_budget_bad_input():
    with pytest.raises(ValueError):
        b.propagated_deadline(np.ones(3), 10.0)
    with pytest.raises(ValueError):
        b.fixed_stage_timeouts(np.ones((3, 2)), [1.0], 10.0)
    with pytest.raises(ValueError):
        b.propagated_deadline(np.ones((3, 2)), 10.0, fallback_ms=np.ones(2))


def test_shedding_without_drops_is_fifo_and_helps_under_overload():
    rng = np.random.default_rng(1)
    svc = lognormal_service(0.002, 1.0)
    a = poisson_arrivals(1.5 * 4 / 0.002, 2.0, rng)
    s = svc.sample(rng, a.size)
    plain = b.serve_with_shedding(a, s, 4)
    assert np.allclose(plain.finish, fifo_gg_c(a, s, 4).finish) and plain.served.all()
    shed = b.serve_with_shedding(a, s, 4, max_wait_s=0.006)
    assert np.nanmax(shed.start - shed.arrival) <= 0.006
    assert shed.goodput(0.010, 2.0) > 5 * plain.goodput(0.010, 2.0)
    with pytest.raises(ValueError):
        b.serve_with_shedding(a, s, 0)


def test_size_fleet():
    out = b.size_fleet(1_000_000, 0.010, 100, 0.5)
    assert out == {"in_flight": 10_000.0, "replicas_at_100pct": 100, "replicas": 200}
    with pytest.raises(ValueError):
        b.size_fleet(1e6, 0.01, 0)


def test_event_engine_equals_vectorised():
    rng = np.random.default_rng(3)
    lat = b.lognormal_chain_latencies([1.0, 2.0, 3.0], [0.5, 0.5, 0.6], 3_000, rng)
    fb = b.lognormal_chain_latencies([2.0], [0.4], 3_000, rng)[:, 0]
    for fallback in (None, fb):
        vec = b.propagated_deadline(lat, 10.0, fallback_ms=fallback)
        reserve = 0.0 if fallback is None else float(fb.max())
        ev = [b.run_chain(row, 10.0, None if fallback is None else float(fallback[i]), reserve) for i, row in enumerate(lat)]
        assert [e[0] for e in ev] == vec.ok.tolist() and [e[1] for e in ev] == vec.degraded.tolist()
        assert np.allclose([e[2] for e in ev], vec.elapsed_ms, atol=1e-12)
    clock = b.FakeClock(5.0)
    d = b.Deadline(10.0, clock.now)
    clock.sleep(4.0)
    assert d.remaining() == 6.0
    with pytest.raises(ValueError):
        b.Deadline(0.0, clock.now)


def test_sync_vs_async_io():
    sync = b.threaded_io_throughput(80, 0.002, 4)
    assert sync["throughput"] <= 1.05 * 4 / 0.002  # Little's law: at most threads / wait
    fast = b.async_io_throughput(400, 0.002, 200)
    assert fast["timed_out"] == 0.0 and fast["throughput"] > 2 * sync["throughput"]
    assert b.async_io_throughput(50, 0.05, 50, timeout_s=0.001)["timed_out"] == 1.0
    with pytest.raises(ValueError):
        b.async_io_throughput(0, 0.01, 1)
