"""course_lib.serving.multimodel: model cache, sticky splits, canary statistic, fair queuing."""

import math
from collections import OrderedDict

import numpy as np
import pytest

from course_lib.data import zipf_probs
from course_lib.serving import multimodel as mm


def test_model_cache_evicts_least_recent_until_the_new_model_fits():
    c = mm.ModelCache(10)
    assert not c.request("a", 4) and not c.request("b", 4)
    assert c.request("a", 4)                        # a is now the most recent
    assert not c.request("c", 5)                    # evicts b only (4 + 5 <= 10)
    assert "a" in c and "b" not in c and "c" in c and c.used == 9
    assert not c.request("d", 10) and len(c) == 1 and c.evictions == 3
    assert c.hits == 1 and c.misses == 4 and c.bytes_loaded == 23
    with pytest.raises(ValueError, match="more than the whole budget"):
        c.request("huge", 11)
    with pytest.raises(ValueError, match="size_bytes must be > 0"):
        c.request("x", 0)
    with pytest.raises(ValueError, match="loaded with 10 bytes"):
        c.request("d", 3)


def test_equal_sizes_reduce_to_an_entry_counting_lru():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 30, 3000).tolist()
    c, ref, trace, ref_trace = mm.ModelCache(7), OrderedDict(), [], []
    for k in keys:
        trace.append(c.request(k, 1))
        hit = k in ref
        ref_trace.append(hit)
        ref[k] = None
        ref.move_to_end(k)
        if len(ref) > 7:
            ref.popitem(last=False)
    assert trace == ref_trace


def test_sized_che_matches_simulation_and_reduces_to_che():
    from course_lib.resilience import che_hit_rate

    p = zipf_probs(300, 0.9)
    assert mm.che_hit_rate_sized(p, np.ones(300), 40) == pytest.approx(che_hit_rate(p, 40), abs=1e-9)
    rng = np.random.default_rng(1)
    sizes = np.exp(rng.normal(0, 0.7, 300))
    c = mm.ModelCache(60.0)
    reqs = rng.choice(300, 60_000, p=p)
    hits = [c.request(int(r), sizes[r]) for r in reqs]
    assert np.mean(hits[20_000:]) == pytest.approx(mm.che_hit_rate_sized(p, sizes, 60.0), abs=0.015)
    assert mm.che_hit_rate_sized(p, sizes, sizes.sum()) == 1.0
    with pytest.raises(ValueError, match="probability vector"):
        mm.che_hit_rate_sized([0.5, 0.6], [1, 1], 1)
    with pytest.raises(ValueError, match="sizes must be positive"):
        mm.che_hit_rate_sized([0.5, 0.5], [1, 0], 1)


def test_assignment_is_sticky_ramps_monotonically_and_salts_are_independent():
    users = range(20_000)
    five = [mm.assign_variant(u, "exp", {"new": 0.05, "old": 0.95}) for u in users]
    ten = [mm.assign_variant(u, "exp", {"new": 0.10, "old": 0.90}) for u in users]
    assert five == [mm.assign_variant(u, "exp", {"new": 0.05, "old": 0.95}) for u in users]
    assert all(b == "new" for a, b in zip(five, ten) if a == "new")       # a ramp only adds users
    share = np.mean([v == "new" for v in ten])
    assert abs(share - 0.10) < 4 * math.sqrt(0.1 * 0.9 / 20_000)
    other = np.array([mm.bucket(u, "other") < 0.5 for u in users])
    in_new = np.array([v == "new" for v in ten])
    assert abs(other[in_new].mean() - other[~in_new].mean()) < 0.04     # independent salts
    assert mm.assign_variant(7, "x", {"a": 0.0, "b": 1.0}) == "b"
    assert 0 <= mm.bucket("alice", "s") < 1 and mm.bucket("alice", "s") != mm.bucket("alice", "t")


@pytest.mark.parametrize("splits, match", [({"a": 0.5, "b": 0.4}, "sum to 1"), ({}, "non-empty"),
                                           ({"a": 1.5, "b": -0.5}, "must be"), ([("a", 1.0)], "dict")])
def test_bad_splits_are_named(splits, match):
    with pytest.raises(ValueError, match=match):
        mm.assign_variant(1, "s", splits)


def test_two_proportion_z():
    assert mm.two_proportion_z(10, 1000, 10, 1000) == 0.0
    z = mm.two_proportion_z(10, 1000, 30, 1000)
    p = 40 / 2000
    assert z == pytest.approx((0.03 - 0.01) / math.sqrt(p * (1 - p) * 2 / 1000))
    assert mm.two_proportion_z(0, 10, 0, 10) == 0.0
    with pytest.raises(ValueError, match="errors_b"):
        mm.two_proportion_z(1, 10, 11, 10)


def _backlogged(rng, weights, n=2000):
    return [mm.Job(0.0, t, float(c)) for t in weights for c in rng.exponential(5.0, n)]


def test_drr_gives_busy_tenants_their_weighted_share():
    rng = np.random.default_rng(2)
    weights = {"a": 3.0, "b": 1.0, "c": 1.0}
    done = mm.simulate_single_server(_backlogged(rng, weights), mm.DrrScheduler(weights, quantum=4.0))
    shares = mm.service_shares(done, until=8_000.0)
    for t, w in weights.items():
        assert shares[t] == pytest.approx(w / 5.0, rel=0.05)
    assert all(j.finish == pytest.approx(j.start + j.cost) for j in done)
    starts = sorted(j.start for j in done)
    assert all(b >= a for a, b in zip(starts, starts[1:]))


def test_fifo_serves_in_arrival_order_and_the_server_never_overlaps():
    rng = np.random.default_rng(3)
    jobs = [mm.Job(float(t), "x" if i % 3 else "y", float(c))
            for i, (t, c) in enumerate(zip(np.cumsum(rng.exponential(4.0, 500)), rng.exponential(3.0, 500)))]
    done = mm.simulate_single_server(jobs, mm.FifoScheduler())
    assert [j.arrival for j in sorted(done, key=lambda j: j.start)] == sorted(j.arrival for j in jobs)
    for a, b in zip(sorted(done, key=lambda j: j.start), sorted(done, key=lambda j: j.start)[1:]):
        assert b.start >= a.finish - 1e-9 and b.start >= b.arrival
    # Lindley's recursion for a FIFO single server
    w, prev_finish = [], 0.0
    for j in sorted(jobs, key=lambda j: j.arrival):
        start = max(j.arrival, prev_finish)
        prev_finish = start + j.cost
        w.append(start)
    assert [j.start for j in done] == pytest.approx(w)


def test_drr_rejects_bad_configuration():
    with pytest.raises(ValueError, match="weights"):
        mm.DrrScheduler({}, 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        mm.DrrScheduler({"a": 0}, 1.0)
    with pytest.raises(ValueError, match="unknown tenant"):
        mm.DrrScheduler({"a": 1}, 1.0).enqueue(mm.Job(0.0, "b", 1.0))
