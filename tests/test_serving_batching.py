"""Batching policy, simulation (against simpy and the FIFO recursion), the threaded server and the open-loop client."""

import math

import numpy as np
import pytest

from course_lib.serving import batching as bt
from course_lib.serving.batching import (
    BatchingServer, DynamicBatcher, LoggedService, ServiceCurve, ServerProcess, no_batching, open_loop_load,
    simpy_batching, simulate_batching, sleeping_model_fn, static_batching,
)
from course_lib.serving.des import fifo_gg_c, poisson_arrivals


# ----------------------------------------------------------------------------- the policy
def test_empty_queue_waits_for_an_arrival():
    assert DynamicBatcher(8, 0.01).next_batch([], 5.0) == (0, None)


def test_full_batch_runs_at_once_and_is_capped():
    pol = DynamicBatcher(4, 1.0)
    assert pol.next_batch([0.0, 0.1, 0.2, 0.3], 0.3) == (4, None)
    assert pol.next_batch([0.0] * 10, 0.0) == (4, None)


def test_waits_until_the_oldest_request_has_waited_max_wait():
    pol = DynamicBatcher(8, 0.010)
    size, wake = pol.next_batch([1.000, 1.004], 1.005)
    assert size == 0 and wake == pytest.approx(1.010)
    assert pol.next_batch([1.000, 1.004], 1.010) == (2, None)


def test_triton_preferred_sizes_largest_formable_runs_at_once():
    # Triton's documented example: preferred [4, 8] and 7 waiting -> a batch of 4
    pol = DynamicBatcher(16, 0.100, preferred_sizes=[4, 8])
    assert pol.next_batch([0.0] * 7, 0.0) == (4, None)
    assert pol.next_batch([0.0] * 9, 0.0) == (8, None)
    assert pol.next_batch([0.0] * 3, 0.0) == (0, pytest.approx(0.1))
    assert pol.next_batch([0.0] * 3, 0.2) == (3, None)


def test_no_wait_runs_whatever_is_there():
    assert DynamicBatcher(8, 0.0).next_batch([0.0, 0.5], 0.5) == (2, None)
    assert no_batching().next_batch([0.0, 0.1, 0.2], 0.2) == (1, None)


def test_static_batching_waits_for_a_full_batch_forever():
    pol = static_batching(4)
    assert pol.next_batch([0.0, 1.0, 2.0], 1e9) == (0, None)
    assert pol.next_batch([0.0, 1.0, 2.0, 3.0], 3.0) == (4, None)


@pytest.mark.parametrize("kwargs", [
    dict(max_batch_size=0), dict(max_batch_size=2.0), dict(max_batch_size=True),
    dict(max_batch_size=4, max_wait_s=-1), dict(max_batch_size=4, max_wait_s=float("nan")),
    dict(max_batch_size=4, preferred_sizes=[5]), dict(max_batch_size=4, preferred_sizes=[0]),
])
def test_bad_policy_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        DynamicBatcher(**kwargs)


# ----------------------------------------------------------------------------- the service curve
def test_service_curve_fit_recovers_a_line_and_capacity():
    curve = ServiceCurve.fit([1, 2, 4, 8], [0.012, 0.014, 0.018, 0.026])
    assert curve.a == pytest.approx(0.010) and curve.c == pytest.approx(0.002)
    assert curve.capacity(8) == pytest.approx(8 / 0.026)


@pytest.mark.parametrize("sizes,times", [([1], [0.1]), ([2, 2], [0.1, 0.2]), ([1, 2], [0.1, -0.2]), ([1, 2], [0.1])])
def test_service_curve_fit_rejects_bad_points(sizes, times):
    with pytest.raises(ValueError):
        ServiceCurve.fit(sizes, times)


def test_logged_service_replays_slowdowns_by_time_or_resamples():
    curve = ServiceCurve(0.01, 0.001)
    timed = LoggedService(curve, [1.0, 2.0, 1.5], times=[0.0, 1.0, 2.0])
    assert timed.needs_time
    assert [timed(1, 0.5), timed(1, 1.0), timed(1, 7.0), timed(1, -1.0)] == pytest.approx([0.011, 0.022, 0.0165, 0.011])
    log = bt.ServerLog(batch_sizes=[4, 1], batch_start=[10.5, 10.0], batch_finish=[10.528, 10.011])
    from_log = LoggedService.from_log(curve, log, origin=10.0)
    np.testing.assert_allclose(from_log.times, [0.0, 0.5])
    np.testing.assert_allclose(from_log.ratios, [1.0, 2.0])
    shuf = LoggedService(curve, [1.0, 2.0], order="shuffle", seed=3)
    assert not shuf.needs_time
    assert set(np.round([shuf(2) / curve(2) for _ in range(50)], 9)) == {1.0, 2.0}
    with pytest.raises(ValueError):
        LoggedService(curve, [1.0, 0.0], order="shuffle")
    with pytest.raises(ValueError):
        LoggedService(curve, [1.0], order="sequence")
    with pytest.raises(ValueError, match="sorted"):
        LoggedService(curve, [1.0, 1.0], times=[1.0, 0.0])
    with pytest.raises(ValueError, match="now"):
        timed(1)


def test_simulation_with_a_logged_slowdown_runs_slower_exactly_then():
    curve = ServiceCurve(0.010, 0.0)
    svc = LoggedService(curve, [1.0, 3.0, 1.0], times=[0.0, 0.1, 0.2])
    run = simulate_batching([0.0, 0.15, 0.3], no_batching(), svc)
    np.testing.assert_allclose(run.finish, [0.010, 0.18, 0.31])


# ----------------------------------------------------------------------------- the simulation
@pytest.mark.parametrize("policy", [no_batching(), DynamicBatcher(8, 0.0), DynamicBatcher(16, 0.004), DynamicBatcher(4, 0.05), static_batching(8)])
def test_simulation_equals_simpy_to_the_last_bit(policy):
    a = poisson_arrivals(150.0, 10.0, np.random.default_rng(1))
    curve = ServiceCurve(0.008, 0.004)
    ours = simulate_batching(a, policy, curve)
    ref = simpy_batching(a, policy.max_batch_size, policy.max_wait_s, curve)
    np.testing.assert_array_equal(np.isnan(ours.finish), np.isnan(ref))
    np.testing.assert_allclose(ours.finish[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=0, atol=1e-12)


def test_no_batching_is_the_single_server_fifo_queue():
    a = poisson_arrivals(40.0, 20.0, np.random.default_rng(2))
    run = simulate_batching(a, no_batching(), ServiceCurve(0.015, 0.005))
    ref = fifo_gg_c(a, np.full(a.size, 0.020), 1)
    np.testing.assert_allclose(run.finish, ref.finish, atol=1e-12)
    assert run.overtaken() == 0 and set(run.batch_sizes) == {1}


def test_overload_throughput_meets_the_b_over_t_of_b_bound():
    a = np.linspace(0, 2.0, 2001)  # 1,000 requests/s, far above capacity
    curve = ServiceCurve(0.010, 0.001)
    run = simulate_batching(a, DynamicBatcher(16, 0.0), curve)
    assert run.throughput <= curve.capacity(16) * 1.0001
    assert run.throughput == pytest.approx(curve.capacity(16), rel=0.02)
    assert run.utilisation == pytest.approx(1.0, abs=0.01)


def test_static_batch_that_never_fills_leaves_requests_unserved():
    run = simulate_batching(np.arange(10) * 0.01, static_batching(4), ServiceCurve(0.001, 0.0))
    assert run.served == 8 and np.isnan(run.finish[8:]).all()


def test_overtaken_counts_requests_answered_after_a_later_arrival():
    run = bt.BatchRun(np.array([0.0, 1.0, 2.0]), np.full(3, np.nan), np.array([5.0, 3.0, 6.0]),
                      np.array([1]), np.array([0.0]), np.array([1.0]))
    assert run.overtaken() == 1


def test_a_policy_that_would_spin_or_overdraw_fails_loudly():
    class Spin:
        def next_batch(self, queue, now):
            return 0, now  # "wake me now": would loop forever

    class Greedy:
        def next_batch(self, queue, now):
            return len(queue) + 1, None

    for policy in (Spin(), Greedy()):
        with pytest.raises(ValueError, match="next_batch"):
            simulate_batching([0.0, 0.1], policy, ServiceCurve(0.01, 0.0))
    with pytest.raises(ValueError, match="next_batch"):
        simulate_batching([0.0], object(), ServiceCurve(0.01, 0.0))
    with pytest.raises(ValueError, match="sorted"):
        simulate_batching([0.2, 0.1], no_batching(), ServiceCurve(0.01, 0.0))


# ----------------------------------------------------------------------------- the real server
def test_threaded_server_answers_every_request_in_fifo_batches():
    rng = np.random.default_rng(0)
    send = np.sort(rng.uniform(0, 0.4, 60))
    x = rng.normal(size=(60, 3)).astype(np.float32)
    with BatchingServer(sleeping_model_fn(0.004, 0.001), DynamicBatcher(8, 0.003)) as server:
        res = open_loop_load(server.port, send, x, connections=3, max_s=20)
    assert res.lost == 0 and server.errors == []
    np.testing.assert_array_equal(res.outputs, 2 * x.astype(np.float64))
    lat_server = server.log.latency_by_rid(60)
    assert np.all(lat_server <= res.latency) and np.all(lat_server > 0)
    log = server.log.run()
    assert log.served == 60 and max(server.log.batch_sizes) <= 8 and server.log.overtaken() == 0
    assert sorted(server.log.rids) == list(range(60))
    assert np.all(res.latency > 0.004)  # at least one forward pass
    assert res.max_send_lag < 0.2


def test_open_loop_latency_counts_the_queue_a_slow_server_builds():
    send = np.arange(30) * 0.005  # 200/s against a server that serves 50/s
    with BatchingServer(sleeping_model_fn(0.02, 0.0), no_batching()) as server:
        res = open_loop_load(server.port, send, np.zeros((30, 1)), max_s=20)
    assert res.lost == 0
    assert res.max_send_lag < 0.1  # the client kept its schedule ...
    assert res.latency[-1] > 0.4  # ... so the last request waited behind ~29 others


def test_batched_package_backend_serves_every_request():
    pytest.importorskip("batched")
    x = np.arange(40, dtype=np.float64).reshape(40, 1)
    with BatchingServer(sleeping_model_fn(0.002, 0.0005), backend="batched", batched_size=8, batched_timeout_ms=2) as server:
        res = open_loop_load(server.port, np.linspace(0, 0.2, 40), x, max_s=20)
    assert res.lost == 0
    np.testing.assert_array_equal(res.outputs, 2 * x)
    assert max(server.log.batch_sizes) <= 8
    assert sorted(server.log.rids) == list(range(40)) and min(server.log.batch_index) >= 0


def test_server_log_overtaken_counts_batches_that_skip_older_requests():
    log = bt.ServerLog(batch_index=[0, 2, 1, 1], arrival=[0.0, 1.0, 2.0, 3.0])
    assert log.overtaken() == 1  # the request of t=1 left in batch 2, after batch 1 carried t=2 and t=3
    assert bt.ServerLog(batch_index=[0, 0, 1], arrival=[0.0, 0.1, 0.2]).overtaken() == 0


def test_service_curve_fit_weights_relative_error():
    # a bend at small b: the relative fit keeps t(1) within a few percent, plain least squares would not
    sizes = np.array([1, 2, 4, 8, 16, 32])
    times = np.array([0.015, 0.018, 0.029, 0.045, 0.087, 0.196])
    curve = ServiceCurve.fit(sizes, times)
    assert abs(curve(1) / 0.015 - 1) < 0.35
    assert np.max(np.abs(np.array([curve(b) for b in sizes]) / times - 1)) < 0.35


def test_model_errors_are_recorded_not_fatal():
    def broken(x):
        raise RuntimeError("boom")

    with BatchingServer(broken, no_batching()) as server:
        res = open_loop_load(server.port, [0.0, 0.01], np.zeros((2, 1)), max_s=1.0)
    assert res.lost == 2 and "boom" in server.errors[0]


@pytest.mark.parametrize("kwargs,match", [
    (dict(host="10.0.0.1"), "loopback"), (dict(payloads=np.zeros((3, 1))), "one row per send time"),
    (dict(send_times=[0.2, 0.1]), "sorted"), (dict(connections=0), "connections"),
])
def test_open_loop_load_rejects_bad_input(kwargs, match):
    args = dict(port=9, send_times=[0.0, 0.1], payloads=np.zeros((2, 1)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        open_loop_load(**args)


def test_server_rejects_bad_arguments():
    with pytest.raises(ValueError):
        BatchingServer(42, no_batching())
    with pytest.raises(ValueError):
        BatchingServer(sleeping_model_fn(0.0, 0.001), None)
    with pytest.raises(ValueError):
        BatchingServer(sleeping_model_fn(0.0, 0.001), no_batching(), backend="triton")


def test_server_process_calibrates_serves_and_stops():
    with ServerProcess(sleeping_model_fn, 0.003, 0.001) as proc:
        times = proc.calibrate([1, 4], np.zeros(2), repeats=2)
        assert times[4] > times[1] >= 0.004 * 0.9
        port = proc.serve(DynamicBatcher(4, 0.002))
        res = open_loop_load(port, np.linspace(0, 0.1, 20), np.ones((20, 2)), max_s=20)
        log = proc.stop_serving()
        np.testing.assert_array_equal(proc.call(np.ones((2, 2))), 2 * np.ones((2, 2)))
        assert 10 < proc.peak_rss_mb() < 2_000
        child = proc._proc
    assert res.lost == 0 and len(log.arrival) == 20
    assert not child.is_alive()


def test_server_process_reports_a_model_that_cannot_be_built():
    with pytest.raises(RuntimeError, match="building the model failed"):
        with ServerProcess(sleeping_model_fn, -1.0, 0.0):
            pass


def test_server_process_commands_need_a_running_process():
    with pytest.raises(RuntimeError, match="not running"):
        ServerProcess(sleeping_model_fn, 0.0, 0.001).calibrate([1], np.zeros(1))
    assert math.isfinite(DynamicBatcher(2, 0.5).max_wait_s)


def test_arrival_view_reads_the_queue_without_copying_it():
    from collections import deque

    q = deque([3, 1, 2])
    times = {1: 10.0, 2: 20.0, 3: 30.0}
    view = bt.ArrivalView(q, times.__getitem__)
    assert len(view) == 3 and view[0] == 30.0 and view[-1] == 20.0 and view[1:] == [10.0, 20.0]
    q.popleft()
    assert len(view) == 2 and view[0] == 10.0  # a live view of the queue
    assert list(view) == [10.0, 20.0]


def test_policies_see_a_live_view_not_a_copy_of_the_queue():
    seen = []

    class Spy:
        def next_batch(self, queue, now):
            seen.append(type(queue))
            return (1, None) if len(queue) else (0, None)

    simulate_batching(np.linspace(0, 0.01, 50), Spy(), ServiceCurve(0.01, 0.0))
    # a list built per decision makes an overloaded run quadratic in the queue length
    assert seen and set(seen) == {bt.ArrivalView}
