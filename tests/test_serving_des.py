"""The DES kernel of course_lib.serving.des: event order, arrival processes, queues against simpy and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.serving import des
from course_lib.serving import queueing as Q


def test_events_run_in_time_then_fifo_order():
    sim, log = des.Simulator(), []
    for t, name in [(2.0, "c"), (1.0, "a"), (2.0, "d"), (1.0, "b")]:
        sim.schedule_at(t, log.append, name)
    assert sim.run() == 4 and log == ["a", "b", "c", "d"] and sim.now == 2.0


def test_run_until_max_events_cancel_and_nested_schedule():
    sim, log = des.Simulator(), []

    def tick(k):
        log.append((sim.now, k))
        if k < 5:
            sim.schedule(1.0, tick, k + 1)

    sim.schedule(0.0, tick, 0)
    victim = sim.schedule(2.5, log.append, "cancelled")
    victim.cancel()
    assert sim.run(until=2.7) == 3 and sim.now == 2.7
    assert sim.run(max_events=1) == 1 and log[-1] == (3.0, 3)
    sim.run()
    assert [k for _, k in log] == [0, 1, 2, 3, 4, 5] and "cancelled" not in log and sim.n_events == 6


def test_schedule_rejects_the_past():
    sim = des.Simulator(start=5.0)
    with pytest.raises(ValueError, match=">= 0"):
        sim.schedule(-1.0, print)
    with pytest.raises(ValueError, match="already at"):
        sim.schedule_at(4.0, print)


def test_poisson_arrivals_rate_and_exponential_gaps():
    rng = np.random.default_rng(0)
    t = des.poisson_arrivals(100.0, 1_000.0, rng)
    assert np.all(np.diff(t) >= 0) and t[-1] < 1_000.0
    assert abs(t.size / 100_000 - 1) < 0.01
    gaps = np.diff(t)
    assert abs(gaps.std() / gaps.mean() - 1) < 0.02  # exponential: coefficient of variation 1
    with pytest.raises(ValueError):
        des.poisson_arrivals(-1.0, 10.0, rng)
    with pytest.raises(ValueError, match="Generator"):
        des.poisson_arrivals(1.0, 10.0, 0)


def test_thinning_follows_the_rate_function():
    rng = np.random.default_rng(1)
    rate_fn, rate_max = des.flash_crowd_rate(50.0, 200.0, start_s=100.0, length_s=50.0)
    t = des.thinned_arrivals(rate_fn, rate_max, 300.0, rng)
    inside = np.sum((t >= 100) & (t < 150))
    assert abs(inside / (200 * 50) - 1) < 0.05 and abs((t.size - inside) / (50 * 250) - 1) < 0.05
    with pytest.raises(ValueError, match="rate_max"):
        des.thinned_arrivals(rate_fn, 100.0, 300.0, rng)


def test_diurnal_arrivals_mean_and_peak():
    rng = np.random.default_rng(2)
    day = 600.0
    t = des.diurnal_arrivals(100.0, day, rng, day_s=day)
    rate_fn, rate_max = des.diurnal_rate(100.0, day_s=day)
    grid = np.linspace(0, day, 10_001)[:-1]
    assert abs(t.size / (rate_fn(grid).mean() * day) - 1) < 0.02
    assert rate_fn(grid).max() == pytest.approx(rate_max, rel=1e-3)
    counts = np.histogram(t, bins=24, range=(0, day))[0]
    assert counts.argmax() in (19, 20, 21)  # the evening peak


def test_burst_arrivals_mean_rate_and_overdispersion():
    rng = np.random.default_rng(3)
    t = des.burst_arrivals(50.0, 500.0, 9.0, 1.0, 5_000.0, rng)
    mean = des.burst_mean_rate(50.0, 500.0, 9.0, 1.0)
    assert abs(t.size / (mean * 5_000.0) - 1) < 0.05
    counts = np.histogram(t, bins=5_000, range=(0, 5_000.0))[0]
    assert counts.var() / counts.mean() > 5  # Poisson would give 1


def test_lognormal_service_moments():
    dist = des.lognormal_service(0.02, 2.0)
    x = dist.sample(np.random.default_rng(4), 2_000_000)
    assert abs(x.mean() / 0.02 - 1) < 0.01 and abs(x.var() / x.mean() ** 2 / 2.0 - 1) < 0.1


@pytest.mark.parametrize("c", [1, 3, 8])
def test_event_heap_equals_recursion_equals_simpy(c):
    rng = np.random.default_rng(c)
    a = des.poisson_arrivals(0.85 * c, 3_000.0 / c, rng)
    s = rng.exponential(1.0, a.size)
    fast = des.fifo_gg_c(a, s, c)
    heap, events = des.simulate_fifo(a, s, c)
    assert np.array_equal(heap.start, fast.start) and np.array_equal(heap.server, fast.server)
    assert events == 2 * a.size
    assert np.max(np.abs(des.simpy_fifo(a, s, c) - fast.start)) < 1e-9
    many = des.fifo_gg_c_many(np.stack([a, a + 1.0]), np.stack([s, s]), c)
    assert np.array_equal(many[0], fast.start) and np.allclose(many[1] - 1.0, fast.start)


def test_fifo_hand_worked_example():
    # two servers; the third request waits for the first server to free at t=3
    run = des.fifo_gg_c([0.0, 1.0, 2.0, 2.5], [3.0, 5.0, 1.0, 1.0], 2)
    assert run.start.tolist() == [0.0, 1.0, 3.0, 4.0] and run.server.tolist() == [0, 1, 0, 0]
    assert run.wait.tolist() == [0.0, 0.0, 1.0, 1.5] and run.response.tolist() == [3.0, 5.0, 2.0, 2.5]


def test_fifo_bad_input():
    with pytest.raises(ValueError, match="sorted"):
        des.fifo_gg_c([1.0, 0.5], [1.0, 1.0], 1)
    with pytest.raises(ValueError, match="equal length"):
        des.fifo_gg_c([0.0, 1.0], [1.0], 1)
    with pytest.raises(ValueError, match="int >= 1"):
        des.fifo_gg_c([0.0], [1.0], 1.5)
    with pytest.raises(ValueError, match=">= 0"):
        des.simulate_fifo([0.0], [-1.0], 1)


def test_mm1_mean_wait_close_to_theory_and_littles_law():
    rng = np.random.default_rng(5)
    lam, mu, c = 3.0, 1.0, 4
    a = des.poisson_arrivals(lam, 40_000.0, rng)
    run = des.fifo_gg_c(a, rng.exponential(1 / mu, a.size), c)
    keep = a > 1_000.0
    assert abs(run.wait[keep].mean() / Q.mmc_mean_wait(lam, mu, c) - 1) < 0.1
    t0, t1 = 1_000.0, 39_000.0
    L = des.time_average_in_system(a, run.finish, t0, t1)
    inside = (a >= t0) & (a < t1)
    lam_hat, w_hat = inside.sum() / (t1 - t0), run.response[inside].mean()
    assert abs(L / (lam_hat * w_hat) - 1) < 0.02


def test_time_average_in_system_by_hand():
    # one request in [0, 2), a second in [1, 4): N = 1, 2, 1, 0 on [0,1), [1,2), [2,4), [4,5)
    assert des.time_average_in_system([0.0, 1.0], [2.0, 4.0], 0.0, 5.0) == pytest.approx((1 + 2 + 2) / 5)
    assert des.time_average_in_system([0.0, 1.0], [2.0, np.inf], 1.5, 3.5) == pytest.approx((0.5 * 2 + 1.5) / 2)


def test_estimate_mean_wait_covers_erlang_c():
    est = des.estimate_mean_wait(3.2, lambda r, shape: r.exponential(1.0, shape), 4, np.random.default_rng(6),
                                 reps=100, n=3_000, warmup=300, rel_halfwidth=0.05, max_batches=4)
    theory = Q.mmc_mean_wait(3.2, 1.0, 4)
    assert abs(est.mean - theory) < 2 * est.halfwidth + 0.02 * theory


def test_fifo_servers_on_finish_hook():
    sim, done = des.Simulator(), []
    q = des.FifoServers(sim, 1, on_finish=done.append)
    sim.schedule_at(0.0, q.arrive, "x", 2.0)
    sim.schedule_at(1.0, q.arrive, "y", 1.0)
    sim.run()
    assert done == ["x", "y"] and q.start["y"] == 2.0 and q.in_system == 0
    with pytest.raises(ValueError, match="twice"):
        q.arrive("x", 1.0)


def test_hedged_without_hedging_equals_fifo_and_budget_caps_backups():
    rng = np.random.default_rng(7)
    a = des.poisson_arrivals(3.0, 2_000.0, rng)
    s, b = rng.exponential(1.0, a.size), rng.exponential(1.0, a.size)
    plain = des.simulate_hedged(a, s, b, 4, None)
    assert np.allclose(plain.latency, des.fifo_gg_c(a, s, 4).response) and plain.n_backups == 0
    hedged = des.simulate_hedged(a, s, b, 4, 2.0, budget=0.05)
    assert 0 < hedged.n_backups <= 0.05 * a.size and hedged.utilisation > plain.utilisation
    with pytest.raises(ValueError, match="budget"):
        des.simulate_hedged(a, s, b, 4, 2.0, budget=2.0)
