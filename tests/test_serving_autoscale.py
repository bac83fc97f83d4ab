"""Unit tests of course_lib.serving.autoscale (lesson 07.07)."""

import math

import numpy as np
import pytest

from course_lib.serving import autoscale as a


def test_hpa_documented_examples():
    assert a.hpa_desired_replicas(4, 200, 100) == 8      # 200m / 100m = 2.0: doubled
    assert a.hpa_desired_replicas(4, 50, 100) == 2       # 50m / 100m = 0.5: halved
    assert a.hpa_desired_replicas(10, 105, 100) == 10    # ratio 1.05 inside the 0.1 tolerance
    assert a.hpa_desired_replicas(10, 1.25, 1.0, tolerance=0.25) == 10    # the edge is inside (<=); 1.25 is exact in binary
    assert a.hpa_desired_replicas(10, 120, 100) == 12


def test_hpa_ceil_and_clamp():
    assert a.hpa_desired_replicas(3, 150, 100) == 5      # ceil(4.5), not round-half-even 4
    assert a.hpa_desired_replicas(10, 81, 100) == 9      # ceil(8.1)
    assert a.hpa_desired_replicas(4, 200, 100, max_replicas=6) == 6
    assert a.hpa_desired_replicas(4, 0, 100, min_replicas=2) == 2
    assert a.hpa_desired_replicas(5, 1.0, 1.0, min_replicas=8, max_replicas=9) == 8


@pytest.mark.parametrize("args,kwargs", [((3, -1, 1), {}), ((3, 1, 0), {}), ((3, 1, 1), {"min_replicas": 3, "max_replicas": 2}),
                                         ((-1, 1, 1), {}), ((3, float("nan"), 1), {}), ((2.5, 1, 1), {})])
def test_hpa_bad_input(args, kwargs):
    with pytest.raises(ValueError):
        a.hpa_desired_replicas(*args, **kwargs)


def test_stabilize_takes_window_max():
    hist = [(0.0, 9), (15.0, 5), (300.0, 4)]
    assert a.stabilize(hist, 300.0, 300.0) == 9          # the window [now - 300, now] includes t = 0
    assert a.stabilize(hist, 300.0, 290.0) == 5
    assert a.stabilize(hist, 300.0, 0.0) == 4
    with pytest.raises(ValueError):
        a.stabilize([], 0.0, 10.0)


def test_steady_state_closed_form_and_simulation():
    assert a.steady_state_replicas(137, 10, 0.6) == 23
    assert a.steady_state_replicas(60, 10, 0.6) == 10    # exact multiple: no extra replica from float error
    qps = np.full(400, 137.0)
    for pol in (a.hpa_cpu_policy(10, 0.6, tolerance=0.0), a.queue_depth_policy(10, 0.6)):
        r = a.simulate(qps, pol, mu=10, slo_s=0.5, initial_replicas=1, cold_start_s=60)
        assert r.ready[-50:].min() == r.ready[-50:].max() == 23


def test_trace_shape_and_spike():
    t, q = a.make_traffic_trace(100.0, np.random.default_rng(0), spike_start_h=10, spike_minutes=30, spike_factor=3)
    assert t.shape == q.shape == (5760,)
    spike = (t >= 36000) & (t < 37800)
    before = (t >= 36000 - 1800) & (t < 36000)
    assert 2.3 < q[spike].mean() / q[before].mean() < 3.7


def test_simulation_spot_cost_and_fixed_fleet():
    qps = np.full(240, 50.0)
    on = a.simulate(qps, a.fixed_policy(10), mu=10, slo_s=0.5, initial_replicas=10)
    spot = a.simulate(qps, a.fixed_policy(10), mu=10, slo_s=0.5, initial_replicas=10, spot=True,
                      interruptions_per_hour=2.0, seed=1)
    assert on.cost == pytest.approx(10 * 1.0 * 1.0)    # 10 replicas x 1 h x $1
    assert on.violation_minutes == 0 and on.scale_events == 0
    assert spot.interruptions > 0 and spot.cost < 0.4 * on.cost
    assert spot.replica_hours == pytest.approx(10.0)    # replacements are billed while they cold-start
    assert spot.ready.min() < 10


def test_overload_is_a_violation_and_bad_input():
    r = a.simulate(np.array([50.0, 200.0, 50.0]), a.fixed_policy(10), mu=10, slo_s=0.5, initial_replicas=10)
    assert r.violated.tolist() == [False, True, True]    # the backlog of step 2 still drains in step 3
    assert math.isinf(a.step_p99(100.0, 10.0, 10, 0.0))
    with pytest.raises(ValueError):
        a.simulate(np.array([-1.0]), a.fixed_policy(1), mu=10, slo_s=0.5, initial_replicas=1)
    with pytest.raises(ValueError):
        a.simulate(np.array([1.0]), a.fixed_policy(1), mu=0, slo_s=0.5, initial_replicas=1)


def test_queue_depth_drains_backlog_and_window_cuts_flapping():
    pol = a.queue_depth_policy(10, 0.5, drain_s=60)
    obs = a.Observation(t_s=0.0, ready=10, spec=10, utilisation=1.0, busy=10.0, backlog=1_200.0)
    assert pol(obs) == 24                                 # (10 busy + 1200 / (10 * 60) = 2 to drain) / 0.5 = 24
    q = a.make_traffic_trace(100.0, np.random.default_rng(3), burstiness=0.25, spike_factor=1.0)[1][:1440]
    events = [a.simulate(q, a.hpa_cpu_policy(10, 0.6, window_s=w), mu=10, slo_s=0.5, initial_replicas=20).scale_events
              for w in (0.0, 300.0)]
    assert events[0] > 2 * events[1]
