"""Tests of course_lib.serving.lowlat: the HDR-style histogram against hdrh, the SPSC ring
(edges, wrap-around, a producer and a consumer thread, two processes over shared memory)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from course_lib.serving import lowlat as ll


def test_histogram_matches_hdrhistogram_bucket_for_bucket():
    from hdrh.histogram import HdrHistogram

    x = np.random.default_rng(0).lognormal(9, 1.5, 5_000).astype(np.int64) + 1
    for digits in (2, 3):
        ours = ll.HdrStyleHistogram(10**9, digits)
        ours.record(x)
        ref = HdrHistogram(1, 10**9, digits)
        for v in x.tolist():
            ref.record_value(v)
        assert ours.counts.size == ref.counts_len
        assert np.array_equal(ours.counts, np.asarray(ref.counts[: ref.counts_len]))
        for p in (1, 50, 90, 99, 99.9, 100):
            assert ours.value_at_percentile(p) == ref.get_value_at_percentile(p)


def test_histogram_precision_bound_against_exact_percentiles():
    x = np.random.default_rng(1).pareto(1.5, 20_000)
    x = (1_000 * (1 + x)).astype(np.int64)
    h = ll.HdrStyleHistogram(int(x.max()) + 1, 2)
    h.record(x)
    for p in (50, 99, 99.9):
        exact = ll.order_statistic(x, p)
        assert exact <= h.value_at_percentile(p) <= exact * (1 + h.relative_precision)


def test_histogram_small_values_are_exact_and_bad_input_raises():
    h = ll.HdrStyleHistogram(1_000, 3)
    h.record(np.arange(1, 101))
    assert h.value_at_percentile(50) == 50 and h.value_at_percentile(100) == 100
    with pytest.raises(ValueError):
        h.record(np.array([-1]))
    with pytest.raises(ValueError):
        h.record(np.array([0.5]))
    with pytest.raises(ValueError):
        ll.HdrStyleHistogram(1_000, 6)
    with pytest.raises(ValueError):
        ll.HdrStyleHistogram(10**6, 2).value_at_percentile(50)


def test_ring_edges_capacity_and_wraparound():
    ring = ll.SPSCRing(1)
    assert ring.pop() is None and ring.push(7) and not ring.push(8) and ring.pop() == 7 and ring.pop() is None
    ring = ll.SPSCRing(5)
    out, nxt = [], 0
    for step in range(1_000):  # many wrap-arounds with a varying fill level
        for _ in range(step % 4 + 1):
            if ring.push(nxt):
                nxt += 1
        for _ in range(step % 3 + 1):
            item = ring.pop()
            if item is not None:
                out.append(item)
        assert 0 <= len(ring) <= 5
    while (item := ring.pop()) is not None:
        out.append(item)
    assert out == list(range(nxt))
    assert [ring.push(i) for i in range(6)] == [True] * 5 + [False]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            ll.SPSCRing(bad)


def test_ring_two_threads_keep_order_and_lose_nothing():
    ring, n, got = ll.SPSCRing(8), 20_000, []
    deadline = time.monotonic() + 10

    def consume():
        while len(got) < n and time.monotonic() < deadline:
            item = ring.pop()
            if item is not None:
                got.append(item)
            else:
                time.sleep(0)  # empty: let the producer thread run (the GIL would switch only every 5 ms)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        i = 0
        while i < n and time.monotonic() < deadline:
            if ring.push(i):
                i += 1
            else:
                time.sleep(0)
    finally:
        t.join(timeout=10)
    assert not t.is_alive()
    assert got == list(range(n))


def test_two_processes_ring_and_queue():
    ring = ll.ring_transfer(5_000, capacity=64, timeout_s=20)
    assert (ring.n_sent, ring.n_received, ring.in_order) == (5_000, 5_000, True)
    queue = ll.queue_transfer(2_000, timeout_s=20)
    assert (queue.n_received, queue.in_order) == (2_000, True)
    with pytest.raises(ValueError):
        ll.ring_transfer(0)


def test_shared_ring_is_unlinked():
    from multiprocessing import shared_memory

    ring = ll.SPSCRing.create_shared(4)
    name = ring.name
    other = ll.SPSCRing(4, name)
    try:
        assert ring.push(3) and other.pop() == 3
    finally:
        other.close()
        ring.close()
        ring.unlink()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)
