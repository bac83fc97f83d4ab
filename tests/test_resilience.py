"""course_lib.resilience: retries on a fake clock, the two simulators against each other,
the closed forms against simulation, the cache against Che's approximation, bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from course_lib import reliability as rel
from course_lib import resilience as rs
from course_lib.resilience import DeadlineExceeded, Design, FakeClock, Pipeline, Stage


class Boom(Exception):
    pass


def flaky(clock: FakeClock, outcomes: list[bool], took: float = 0.05, log: list | None = None):
    """A call that takes ``took`` seconds and then succeeds or fails as ``outcomes`` says."""
    it = iter(outcomes)

    def call():
        start = clock.now()
        if log is not None:
            log.append(start)
        clock.sleep(took)
        if next(it):
            return f"ok at {start:g}"
        raise Boom(start)

    return call


def pipeline(**changes) -> Pipeline:
    stages = (
        Stage("embed", 10, 0.5, 0.02, timeout_ms=30, attempts=3, cost=0.01),
        Stage("retrieve", 20, 0.5, 0.02, timeout_ms=50, attempts=3, cost=0.005),
        Stage("respond", 300, 0.9, 0.05, timeout_ms=1000, attempts=2, cost=1.0),
    )
    base = Pipeline(stages, Stage("small", 80, 0.4, 0.01, timeout_ms=300, cost=0.1),
                    deadline_ms=3000, backoff_ms=10, cache_ms=1, outage_prob=0.03)
    return dataclasses.replace(base, **changes)


ABLATION = [
    rs.PROTOTYPE,
    Design("timeouts", timeouts=True),
    Design("retries", timeouts=True, retries=True),
    Design("fallback", timeouts=True, retries=True, fallback=True),
    rs.PRODUCTION,
]


# ---------------------------------------------------------------- clock and retries
def test_fake_clock_only_moves_forward():
    clock = FakeClock(5.0)
    clock.sleep(0.25)
    clock.sleep(0)
    assert clock.now() == 5.25
    for bad in (-0.1, math.nan, math.inf, "1"):
        with pytest.raises(ValueError):
            clock.sleep(bad)
    assert clock.now() == 5.25


def test_first_success_makes_one_call_and_never_sleeps():
    clock, log = FakeClock(), []
    assert rs.retry_with_deadline(flaky(clock, [True], log=log), 5, 10.0, clock) == "ok at 0"
    assert log == [0.0] and clock.now() == 0.05


def test_exponential_backoff_schedule_and_jitter():
    clock, log = FakeClock(), []
    rs.retry_with_deadline(flaky(clock, [False, False, False, True], log=log), 4, 10.0, clock, base_delay=0.1)
    assert np.allclose(log, [0.0, 0.15, 0.4, 0.85])  # +0.05 call, then 0.1, 0.2, 0.4
    clock, log, asked = FakeClock(), [], []
    half = lambda d: asked.append(d) or d / 2  # noqa: E731
    rs.retry_with_deadline(flaky(clock, [False, False, True], log=log), 3, 10.0, clock, 0.1, jitter=half)
    assert np.allclose(asked, [0.1, 0.2]) and np.allclose(log, [0.0, 0.1, 0.25])


def test_all_attempts_fail_reraises_the_last_error():
    clock = FakeClock()
    with pytest.raises(Boom) as err:
        rs.retry_with_deadline(flaky(clock, [False] * 3), 3, 100.0, clock)
    assert err.value.args[0] == pytest.approx(0.4)  # the third attempt's error
    clock, log = FakeClock(), []
    with pytest.raises(Boom):
        rs.retry_with_deadline(flaky(clock, [False, True], log=log), 1, 100.0, clock)
    assert log == [0.0] and clock.now() == 0.05  # attempts=1: no retry, no sleep


def test_deadline_stops_early_without_sleeping_past_it():
    clock, log = FakeClock(), []
    with pytest.raises(DeadlineExceeded) as err:
        rs.retry_with_deadline(flaky(clock, [False] * 10, log=log), 10, 1.0, clock, 0.1)
    assert np.allclose(log, [0.0, 0.15, 0.4, 0.85])  # a 5th start would be at 0.9 + 0.8 > 1.0
    assert clock.now() == pytest.approx(0.9) and isinstance(err.value.__cause__, Boom)


def test_no_attempt_at_or_after_the_deadline_and_late_answers_fail():
    clock, log = FakeClock(2.0), []
    with pytest.raises(DeadlineExceeded):
        rs.retry_with_deadline(flaky(clock, [True], log=log), 3, 2.0, clock)
    assert log == []
    clock = FakeClock()
    with pytest.raises(DeadlineExceeded):
        rs.retry_with_deadline(flaky(clock, [True], took=2.0), 3, 1.0, clock)
    clock = FakeClock()
    assert rs.retry_with_deadline(flaky(clock, [True], took=1.0), 3, 1.0, clock) == "ok at 0"  # exactly on time
    clock = FakeClock()
    assert rs.retry_with_deadline(flaky(clock, [False, True]), 2, math.inf, clock) == "ok at 0.15"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0}, {"attempts": -1}, {"attempts": 2.0}, {"attempts": True},
        {"deadline": math.nan}, {"deadline": "soon"}, {"base_delay": -0.1}, {"base_delay": math.inf},
        {"call": None}, {"clock": object()}, {"jitter": 3},
    ],
)
def test_retry_bad_arguments(kwargs):
    clock, log = FakeClock(), []
    args = {"call": flaky(clock, [True], log=log), "attempts": 3, "deadline": 1.0, "clock": clock} | kwargs
    with pytest.raises(ValueError):
        rs.retry_with_deadline(**args)
    assert log == []


def test_negative_jitter_is_refused():
    clock = FakeClock()
    with pytest.raises(ValueError, match="jitter"):
        rs.retry_with_deadline(flaky(clock, [False, True]), 2, 9.0, clock, jitter=lambda d: -d)


# ---------------------------------------------------------------- the two engines
@pytest.mark.parametrize("deadline", [3000.0, 900.0, 400.0])  # 900 and 400: the deadline cuts retries
def test_event_engine_and_array_engine_agree_request_by_request(deadline):
    pl = pipeline(deadline_ms=deadline)
    draws = rs.draw_requests(pl, 400, np.random.default_rng(1))
    for design in ABLATION:
        sim = rs.simulate(pl, design, draws)
        for i in range(draws.n):
            one = rs.run_request(pl, design, draws, i)
            assert one.outcome == sim.outcome[i], (design.name, i)
            assert one.latency_ms == pytest.approx(sim.latency_ms[i], abs=1e-9)
            assert one.calls == sim.calls[i].tolist()


def test_real_work_flows_through_the_stages_and_the_trace_records_attempts():
    pl = pipeline(outage_prob=0.0)
    draws = rs.draw_requests(pl, 50, np.random.default_rng(2))
    work = {"embed": lambda x: x + ["e"], "retrieve": lambda x: x + ["r"], "respond": lambda x: x + ["R"], "small": lambda x: x + ["s"]}
    sim = rs.simulate(pl, rs.PRODUCTION, draws)
    i = int(np.flatnonzero(sim.outcome == rs.FULL)[0])
    trace: list[dict] = []
    out = rs.run_request(pl, rs.PRODUCTION, draws, i, work=work, payload=[], trace=trace)
    assert out.value == ["e", "r", "R"]
    assert len(trace) == sum(out.calls) and all(e["end"] >= e["start"] for e in trace)
    assert [e["status"] for e in trace].count("ok") == 3


def test_budget_rule_means_no_deadline_cuts():
    pl = pipeline()
    assert rs.worst_case_ms(pl, rs.PRODUCTION) <= pl.deadline_ms
    draws = rs.draw_requests(pl, 5000, np.random.default_rng(3))
    assert not rs.simulate(pl, rs.PRODUCTION, draws).deadline_cut.any()
    tight = pipeline(deadline_ms=1200)
    assert rs.simulate(tight, rs.PRODUCTION, draws).deadline_cut.any()
    assert not rs.closed_form(tight, rs.PRODUCTION)["exact"]


# ---------------------------------------------------------------- closed forms
@pytest.mark.parametrize("design", ABLATION, ids=lambda d: d.name)
def test_closed_form_matches_simulation(design):
    pl = pipeline(outage_prob=0.05)
    n = 60_000
    rng = np.random.default_rng(4)
    draws = rs.draw_requests(pl, n, rng)
    p = rs.zipf_probs(5000, 1.0)
    keys = rng.choice(len(p), size=n, p=p)
    res = rs.run_design(pl, design, draws, keys, capacity=200, warm_keys=keys[:5000])
    row = rs.summarize(res, pl)
    cf = rs.closed_form(pl, design, hit_rate=row["cache_hits_%"] / 100)
    assert cf["exact"]
    a = cf["availability"]
    se = math.sqrt(max(a * (1 - a), 1e-6) / n)
    assert abs(row["availability_%"] / 100 - a) <= 4 * se + 1e-4
    assert abs(row["degraded_%"] / 100 - cf["degraded"]) <= 4 * math.sqrt(max(cf["degraded"], 1e-6) / n) + 1e-4
    assert np.allclose(res.calls.mean(axis=0), cf["calls"], rtol=0.03, atol=2e-3)


def test_closed_form_is_the_composition_of_reliability_primitives():
    pl = pipeline(outage_prob=0.1)
    q = [rs.attempt_success(s, rs.PRODUCTION) for s in pl.columns]
    by_hand = 0.3 + 0.7 * (
        rel.retry_availability(q[0], 3) * rel.retry_availability(q[1], 3)
        * (1 - (1 - 0.9 * rel.retry_availability(q[2], 2)) * (1 - q[3]))
    )
    assert rs.closed_form(pl, rs.PRODUCTION, hit_rate=0.3)["availability"] == pytest.approx(by_hand, rel=1e-12)
    assert q[0] == pytest.approx(0.98 * rs.lognormal_cdf(30, 10, 0.5))


def test_prob_sum_within_brackets_monte_carlo():
    stages = pipeline().stages
    lo, hi = rs.prob_sum_within(stages, 600.0)
    assert 0 < hi - lo < 1e-3
    rng = np.random.default_rng(5)
    total = sum(s.median_ms * np.exp(s.sigma * rng.standard_normal(400_000)) for s in stages)
    mc = np.mean(total <= 600.0)
    assert lo - 4 * math.sqrt(mc * (1 - mc) / 400_000) <= mc <= hi + 4 * math.sqrt(mc * (1 - mc) / 400_000)
    one_lo, one_hi = rs.prob_sum_within(stages[:1], 25.0)  # one stage: the lognormal CDF itself
    assert one_lo - 1e-12 <= rs.lognormal_cdf(25.0, 10, 0.5) <= one_hi + 1e-12


def test_no_closed_form_for_retries_without_timeouts():
    with pytest.raises(ValueError, match="no closed form"):
        rs.closed_form(pipeline(), Design("bad", retries=True))


# ---------------------------------------------------------------- cache
def test_lru_by_hand():
    assert rs.lru_hits([1, 2, 1, 3, 1, 2], 2).tolist() == [False, False, True, False, True, False]  # FIFO would evict 1
    assert rs.lru_hits([1, 1, 1], 2, cacheable=[False, True, True]).tolist() == [False, False, True]
    assert rs.lru_hits([5, 6], 1, warm_keys=[5]).tolist() == [True, False]
    assert not rs.lru_hits([1, 1], 0).any()


def test_che_is_exact_for_uniform_popularity_and_close_for_zipf():
    assert rs.che_hit_rate(np.full(1000, 1e-3), 250) == pytest.approx(0.25, abs=1e-9)
    p = rs.zipf_probs(2000, 0.9)
    assert rs.che_hit_rate(p, 0) == 0.0 and rs.che_hit_rate(p, 2000) == 1.0
    rng = np.random.default_rng(6)
    keys = rng.choice(len(p), size=300_000, p=p)
    measured = rs.lru_hits(keys[50_000:], 150, warm_keys=keys[:50_000]).mean()
    assert measured == pytest.approx(rs.che_hit_rate(p, 150), abs=0.005)


def test_zipf_probs():
    p = rs.zipf_probs(100, 1.0)
    assert p.sum() == pytest.approx(1.0) and np.all(np.diff(p) < 0) and p[0] / p[1] == pytest.approx(2.0)
    assert np.allclose(rs.zipf_probs(10, 0.0), 0.1)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs",
    [{"median_ms": 0}, {"sigma": -1}, {"fail_prob": 1.5}, {"timeout_ms": 0}, {"attempts": 0},
     {"attempts": 1.5}, {"cost": -1}, {"name": ""}, {"fail_prob": math.nan}],
)
def test_stage_bad_input(kwargs):
    args = {"name": "x", "median_ms": 1.0, "sigma": 0.1, "fail_prob": 0.1} | kwargs
    with pytest.raises(ValueError):
        Stage(**args)


def test_pipeline_and_draws_bad_input():
    with pytest.raises(ValueError):
        Pipeline(())
    with pytest.raises(ValueError):
        pipeline(deadline_ms=0)
    with pytest.raises(ValueError):
        pipeline(outage_prob=2)
    draws = rs.draw_requests(pipeline(), 10, np.random.default_rng(0))
    slower = dataclasses.replace(pipeline(), stages=(dataclasses.replace(pipeline().stages[0], median_ms=99),) + pipeline().stages[1:])
    with pytest.raises(ValueError, match="other latency"):
        rs.simulate(slower, rs.PRODUCTION, draws)
    more = dataclasses.replace(pipeline(), stages=(dataclasses.replace(pipeline().stages[0], attempts=5),) + pipeline().stages[1:])
    with pytest.raises(ValueError, match="attempts"):
        rs.simulate(more, rs.PRODUCTION, draws)
    with pytest.raises(ValueError):
        rs.draw_requests(pipeline(), 0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        rs.draw_requests(pipeline(), 5, 42)
    with pytest.raises(ValueError):
        rs.lru_hits([0.5, 1.5], 2)
    with pytest.raises(ValueError):
        rs.che_hit_rate([0.5, 0.6], 1)
    with pytest.raises(ValueError):
        rs.run_request(pipeline(), rs.PRODUCTION, draws, 10)
