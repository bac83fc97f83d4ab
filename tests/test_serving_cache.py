"""course_lib.serving.cache: LRU / LFU / TTL / W-TinyLFU caches, closed forms, single-flight, canonical keys."""

from __future__ import annotations

import threading
import time

import cachetools
import numpy as np
import pytest

from course_lib.data import zipf_probs
from course_lib.serving import cache as C


def zipf_stream(n_items: int, s: float, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(n_items, size=n, p=zipf_probs(n_items, s))


# ---------------------------------------------------------------- LRU
def test_lru_by_hand_and_recency_order():
    c = C.LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now most recent: b is the victim
    c.put("c", 3)
    assert "b" not in c and c.keys() == ["a", "c"]
    c.put("a", 10)  # an update refreshes recency
    c.put("d", 4)
    assert c.keys() == ["a", "d"] and c.get("a") == 10 and c.get("zzz", "miss") == "miss"
    assert (c.hits, c.misses) == (2, 1) and len(c) == 2


def test_lru_capacity_zero_and_one():
    c = C.LRUCache(0)
    c.put(1, 1)
    assert len(c) == 0 and c.get(1) is None
    c = C.LRUCache(1)
    assert C.replay(c, [1, 1, 2, 1, 1]).tolist() == [False, True, False, False, True]


def test_lru_cached_none_is_a_hit():
    c = C.LRUCache(2)
    c.put("k", None)
    assert C.replay(c, ["k"]).tolist() == [True]


@pytest.mark.parametrize("capacity", [1, 7, 100])
def test_lru_trace_equals_cachetools_functools_and_fast_path(capacity):
    keys = zipf_stream(500, 0.9, 30_000, seed=capacity)
    ours = C.replay(C.LRUCache(capacity), keys)
    assert np.array_equal(ours, C.mapping_hits(cachetools.LRUCache(capacity), keys))
    assert np.array_equal(ours, C.lru_cache_hits(keys, capacity))
    assert np.array_equal(ours, C.lru_hits(keys, capacity))


def test_lru_hits_cacheable_and_warm():
    assert C.lru_hits([1, 2, 1, 3, 1, 2], 2).tolist() == [False, False, True, False, True, False]
    assert C.lru_hits([1, 1, 1], 2, cacheable=[False, True, True]).tolist() == [False, False, True]
    assert C.lru_hits([5, 6], 1, warm_keys=[5]).tolist() == [True, False]


# ---------------------------------------------------------------- LFU
def test_lfu_in_cache_trace_equals_cachetools():
    keys = zipf_stream(500, 0.9, 30_000, seed=3)
    for capacity in (1, 10, 60):
        ours = C.replay(C.LFUCache(capacity), keys)
        ref = C.mapping_hits(cachetools.LFUCache(capacity), keys)
        assert abs(ours.mean() - ref.mean()) < 0.005  # what cachetools documents (ties are unspecified) ...
        assert np.array_equal(ours, ref)  # ... and what cachetools 8 does: ties oldest-first, as ours


def test_lfu_evicts_least_frequent_then_oldest():
    c = C.LFUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.put("c", 3)  # b (count 1) goes, a (count 2) stays
    assert "b" not in c and "a" in c and "c" in c
    c.put("d", 4)  # c and d would tie at 1: c is the victim
    assert "c" not in c and "a" in c


def test_perfect_lfu_declines_a_less_popular_newcomer_and_reaches_static_optimum():
    c = C.LFUCache(1, perfect=True)
    for k in ["a", "a", "a"]:
        if c.get(k) is None:
            c.put(k, k)
    c.get("b")
    c.put("b", "b")  # count 1 <= 3: declined
    assert "a" in c and "b" not in c
    p = zipf_probs(2_000, 0.9)
    keys = np.random.default_rng(1).choice(len(p), size=150_000, p=p)
    h = C.replay(C.LFUCache(50, perfect=True), keys[50_000:], warm_keys=keys[:50_000]).mean()
    assert h == pytest.approx(C.static_optimal_hit_rate(p, 50), abs=0.005)


# ---------------------------------------------------------------- closed forms
@pytest.mark.parametrize("s, static, lru", [(0.8, 0.300, 0.157), (1.0, 0.530, 0.391)])
def test_reference_values(s, static, lru):
    p = zipf_probs(10_000, s)
    assert C.static_optimal_hit_rate(p, 100) == pytest.approx(static, abs=5e-4)
    assert C.che_hit_rate(p, 100) == pytest.approx(lru, abs=5e-4)


def test_che_close_to_simulation():
    p = zipf_probs(2_000, 0.9)
    keys = np.random.default_rng(6).choice(len(p), size=250_000, p=p)
    measured = C.lru_hits(keys[50_000:], 150, warm_keys=keys[:50_000]).mean()
    assert measured == pytest.approx(C.che_hit_rate(p, 150), abs=0.005)
    assert C.che_hit_rate(np.full(100, 0.01), 25) == pytest.approx(0.25, abs=1e-9)
    assert C.static_optimal_hit_rate(p, 0) == 0.0 and C.static_optimal_hit_rate(p, 5_000) == pytest.approx(1.0)


def test_ttl_closed_form_limits():
    lam = np.array([0.0, 1.0, 10.0])
    zero = C.ttl_closed_form(lam, 1.0, 0.0)
    assert np.all(zero.hit_rate == 0) and np.all(zero.stale_rate == 0) and np.all(zero.mean_age == 0)
    frozen = C.ttl_closed_form(lam, 0.0, 2.0)  # nothing ever changes: nothing is stale
    assert np.all(frozen.stale_rate == 0) and frozen.hit_rate[2] == pytest.approx(20 / 21)
    st = C.ttl_closed_form(lam, 1e9, 1.0)  # changes constantly: every hit is stale
    assert np.allclose(st.stale_rate, st.hit_rate, atol=1e-6)


# ---------------------------------------------------------------- TTL
def test_ttl_expiry_on_an_injected_clock_matches_cachetools():
    now = [0.0]
    ours = C.TTLCache(3, ttl=1.0, clock=lambda: now[0])
    ref = cachetools.TTLCache(3, ttl=1.0, timer=lambda: now[0])
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.exponential(0.2, 3_000))
    keys = rng.integers(0, 6, 3_000)
    got, want = [], []
    for t, k in zip(times.tolist(), keys.tolist()):
        now[0] = t
        hit = ours.get(k) is not None
        if not hit:
            ours.put(k, k)
        got.append(hit)
        want.append(C.mapping_hits(ref, [k])[0])
    assert got == want and 0.1 < np.mean(got) < 0.9


def test_ttl_boundary_and_capacity():
    now = [0.0]
    c = C.TTLCache(2, ttl=1.0, clock=lambda: now[0])
    c.put("a", 1)
    now[0] = 0.999
    assert c.get("a") == 1
    now[0] = 1.0  # valid while now < written + ttl
    assert c.get("a") is None
    c.put("a", 1)
    c.put("b", 2)
    c.put("c", 3)  # full, nothing expired: LRU "a" goes
    assert c.get("a") is None and c.get("c") == 3
    now[0] = 5.0
    c.put("d", 4)  # the expired ones are dropped first
    assert len(c) == 1
    assert C.TTLCache(0, 1.0).get("x") is None


# ---------------------------------------------------------------- W-TinyLFU
def test_wtinylfu_beats_lru_on_one_hit_wonders():
    n = 60_000
    rng = np.random.default_rng(0)
    zipf = rng.choice(5_000, size=n, p=zipf_probs(5_000, 1.0))
    keys = np.where(rng.random(n) < 0.5, 5_000 + np.arange(n), zipf)
    lru = C.replay(C.LRUCache(100), keys[10_000:], warm_keys=keys[:10_000]).mean()
    tiny = C.replay(C.WTinyLFU(100), keys[10_000:], warm_keys=keys[:10_000]).mean()
    assert tiny > lru + 0.05


def test_wtinylfu_structure_and_small_capacities():
    c = C.WTinyLFU(100)
    assert (c.window_size, c.main_size, c.protected_size, c.sample_size) == (1, 99, 79, 1000)
    keys = zipf_stream(300, 1.0, 20_000)
    h = C.replay(c, keys)
    assert len(c) == 100 and c.hits == h.sum()
    assert not C.replay(C.WTinyLFU(0), [1, 1, 1]).any()
    assert C.replay(C.WTinyLFU(1), [1, 1, 2, 1]).tolist() == [False, True, False, False]


def test_count_min_sketch_never_undercounts_and_ages():
    s = C.CountMinSketch(64)
    for k in range(200):
        for _ in range(k % 7):
            s.increment(C._key_hash(k))
    assert all(s.estimate(C._key_hash(k)) >= min(k % 7, 15) for k in range(200))
    before = s.estimate(C._key_hash(6))
    s.halve()
    assert s.estimate(C._key_hash(6)) == before // 2 or s.estimate(C._key_hash(6)) <= before
    assert C._key_hash("query") == C._key_hash("query") != C._key_hash("query ")


# ---------------------------------------------------------------- feature cache (in process; Redis: test_serving_redis)
def test_feature_encoding_round_trip_and_replay():
    x = C.feature_vector(3, 2, 8)
    v, y = C.decode_features(C.encode_features(2, x))
    assert v == 2 and y.tobytes() == x.tobytes() and x.dtype == np.float32
    assert C.feature_vector(3, 2, 8).tobytes() != C.feature_vector(3, 3, 8).tobytes()
    store = C.DictStore()
    for e in range(3):
        store.set(f"feat:{e}", C.encode_features(0, C.feature_vector(e, 0, 4)))
    out = C.replay_feature_cache(np.array([1.0, 1.5, 2.0, 4.0]), np.array([0, 0, 0, 0]), np.array([1.7]), np.array([0]),
                                 ttl=2.0, store=store, dim=4)
    assert out.hit.tolist() == [False, True, True, False]
    assert out.served_version.tolist() == [0, 0, 0, 1] and out.stale.tolist() == [False, False, True, False]
    assert np.allclose(out.age, [0, 0.5, 1.0, 0]) and (out.store_reads, out.store_writes, out.mismatches) == (2, 1, 0)


def test_feature_replay_agrees_with_closed_form():
    rng = np.random.default_rng(0)
    n_items, n_req, rate, write_rate, ttl = 500, 20_000, 250.0, 25.0, 0.5
    p = zipf_probs(n_items, 1.0)
    horizon = n_req / rate
    req_t, req_k = np.sort(rng.uniform(0, horizon, n_req)), rng.choice(n_items, n_req, p=p)
    n_upd = rng.poisson(write_rate * horizon)
    upd_t, upd_k = np.sort(rng.uniform(0, horizon, n_upd)), rng.choice(n_items, n_upd, p=p)
    store = C.DictStore()
    for e in range(n_items):
        store.set(f"feat:{e}", C.encode_features(0, C.feature_vector(e, 0, 4)))
    out = C.replay_feature_cache(req_t, req_k, upd_t, upd_k, ttl, store, dim=4)
    cf = C.ttl_closed_form(rate * p, write_rate * p, ttl)
    assert out.hit.mean() == pytest.approx(float(p @ cf.hit_rate), abs=0.01)
    assert out.stale.mean() == pytest.approx(float(p @ cf.stale_rate), abs=0.025)
    assert out.age.mean() == pytest.approx(float(p @ cf.mean_age), rel=0.05)


# ---------------------------------------------------------------- single-flight, canonical keys
@pytest.mark.parametrize("n", [1, 8, 24])
def test_stampede_counts(n):
    assert C.stampede(n, coalesce=False, backend_latency_s=0.02) == n
    assert C.stampede(n, coalesce=True, backend_latency_s=0.02) == 1


def test_single_flight_shares_errors_and_forgets_the_key():
    flight = C.SingleFlight()
    started, release = threading.Event(), threading.Event()
    errors = []

    def boom():
        started.set()
        release.wait(5)
        raise KeyError("backend down")

    def call(fn):
        try:
            flight.do("k", fn)
        except KeyError as err:
            errors.append(err)

    leader = threading.Thread(target=call, args=(boom,))
    leader.start()
    assert started.wait(5)
    f = threading.Thread(target=call, args=(lambda: "never called",))
    f.start()
    deadline = time.monotonic() + 5
    while flight.shared == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    leader.join(5)
    f.join(5)
    assert flight.shared == 1 and len(errors) == 2  # the follower got the leader's error
    assert flight.do("k", lambda: 42) == 42  # the failed flight was forgotten


def test_canonical_request():
    a = C.canonical_request("q=Red  Shoes&k=10&lang=en")
    assert a == C.canonical_request("lang=EN&k=10&q=red shoes ") == "k=10&lang=en&q=red shoes"
    assert a != C.canonical_request("q=red shoes&k=20&lang=en")


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("make", [
    lambda: C.LRUCache(-1), lambda: C.LRUCache(2.5), lambda: C.LRUCache(True), lambda: C.LFUCache(-3),
    lambda: C.TTLCache(2, ttl=-1), lambda: C.TTLCache(2, ttl=1, clock=5), lambda: C.WTinyLFU(10, window_fraction=2),
    lambda: C.che_hit_rate([0.5, 0.6], 1), lambda: C.static_optimal_hit_rate([[0.5, 0.5]], 1),
    lambda: C.lru_hits([0.5, 1.5], 2), lambda: C.lru_hits([1, 2], 2, cacheable=[True]),
    lambda: C.replay(object(), [1]), lambda: C.decode_features(b"abc"), lambda: C.canonical_request(5),
    lambda: C.ttl_closed_form([1.0], -1.0, 1.0), lambda: C.stampede(0, coalesce=True),
])
def test_bad_input(make):
    with pytest.raises(ValueError):
        make()
