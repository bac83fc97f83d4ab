"""Low-latency building blocks (lesson 07.05): an HDR-style latency histogram, a lock-free
single-producer/single-consumer ring (in process memory or in ``multiprocessing.shared_memory``),
and safe two-process runs of that ring against ``multiprocessing.Queue``.

Everything here is plain Python + numpy, written to be read: the histogram reproduces
HdrHistogram's bucket layout (Gil Tene's design) bucket for bucket, and the ring is the
classic Lamport queue: one writer per index, payload written before the index that publishes it.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

__all__ = ["interleaved_latencies", "HdrStyleHistogram", "SPSCRing", "Transfer", "ring_transfer", "queue_transfer", "order_statistic"]


# --------------------------------------------------------------------------- timing harness
def interleaved_latencies(fns: dict, n: int, max_s: float = 10.0, warmup: int = 20) -> dict[str, np.ndarray]:
    """Time each zero-argument function ``n`` times, round robin (so that noise from other jobs
    hits every variant alike), stopping early after ``max_s`` seconds.

    Returns
    -------
    dict name -> int64 array of shape (m,), m <= n: one latency per call, in nanoseconds.
    """
    if n < 1 or not fns:
        raise ValueError(f"need n >= 1 and at least one function, got n={n}, {len(fns)} functions")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    out = {name: np.empty(n, dtype=np.int64) for name in names}
    clock, stop = time.perf_counter_ns, time.perf_counter_ns() + int(max_s * 1e9)
    m = 0
    while m < n and clock() < stop:
        for name in names:
            fn = fns[name]
            t0 = clock()
            fn()
            out[name][m] = clock() - t0
        m += 1
    return {name: out[name][:m] for name in names}


# --------------------------------------------------------------------------- histogram
class HdrStyleHistogram:
    """Log-bucketed histogram of non-negative integers with a fixed relative precision.

    The value range is cut into power-of-two *buckets*; each bucket is split into
    ``sub_bucket_half_count`` equal *sub-buckets*, so a recorded value is known up to a relative
    error of at most ``1 / sub_bucket_half_count`` (below ``10**-significant_digits``), whatever its
    size: 1 µs and 1 s get the same relative resolution with a few thousand counters.
    The layout (indices, equivalent ranges, percentile rank rule) is HdrHistogram's.

    Parameters
    ----------
    highest : int
        Largest value that can be recorded (e.g. ns), >= 2.
    significant_digits : int
        Decimal digits of precision, 1 to 5.
    """

    def __init__(self, highest: int, significant_digits: int = 3) -> None:
        if not isinstance(significant_digits, (int, np.integer)) or not 1 <= significant_digits <= 5:
            raise ValueError(f"significant_digits must be an int in 1..5, got {significant_digits!r}")
        if not isinstance(highest, (int, np.integer)) or highest < 2:
            raise ValueError(f"highest must be an int >= 2, got {highest!r}")
        self.highest = int(highest)
        self.significant_digits = int(significant_digits)
        # sub_bucket_count: smallest power of two >= 2 * 10**digits (single-unit resolution up to there)
        magnitude = math.ceil(math.log2(2 * 10**significant_digits))
        self.half_magnitude = magnitude - 1
        self.sub_bucket_count = 2**magnitude
        self.sub_bucket_half_count = self.sub_bucket_count // 2
        self.sub_bucket_mask = self.sub_bucket_count - 1
        n_buckets = 1
        smallest_untrackable = self.sub_bucket_count
        while smallest_untrackable <= self.highest:
            smallest_untrackable *= 2
            n_buckets += 1
        self.counts = np.zeros((n_buckets + 1) * self.sub_bucket_half_count, dtype=np.int64)

    @property
    def relative_precision(self) -> float:
        """Upper bound on (bucket width) / (value) for any recorded value."""
        return 1.0 / self.sub_bucket_half_count

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def _bucket(self, values: np.ndarray) -> np.ndarray:
        # bit length of (value | mask): the power of two that contains the value
        _, exponent = np.frexp((values | self.sub_bucket_mask).astype(np.float64))
        return exponent.astype(np.int64) - (self.half_magnitude + 1)

    def index_of(self, values: np.ndarray) -> np.ndarray:
        """Counter index of each value, shape like ``values``."""
        v = np.asarray(values, dtype=np.int64)
        bucket = self._bucket(v)
        sub = v >> bucket
        return ((bucket + 1) << self.half_magnitude) + (sub - self.sub_bucket_half_count)

    def record(self, values: np.ndarray) -> None:
        """Add integer values (shape (n,), 0 <= value <= highest) to the histogram."""
        v = np.asarray(values)
        if v.size == 0:
            return
        if not np.issubdtype(v.dtype, np.integer):
            raise ValueError(f"values must be integers (e.g. nanoseconds), got dtype {v.dtype}")
        if v.min() < 0 or v.max() > self.highest:
            raise ValueError(f"values must lie in [0, {self.highest}], got [{v.min()}, {v.max()}]")
        self.counts += np.bincount(self.index_of(v.ravel()), minlength=self.counts.size)

    def lowest_equivalent(self, index: np.ndarray) -> np.ndarray:
        """Smallest value that lands in counter ``index``."""
        i = np.asarray(index, dtype=np.int64)
        bucket = (i >> self.half_magnitude) - 1
        sub = (i & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count
        first = bucket < 0
        sub = np.where(first, sub - self.sub_bucket_half_count, sub)
        bucket = np.where(first, 0, bucket)
        return sub << bucket

    def highest_equivalent(self, index: np.ndarray) -> np.ndarray:
        """Largest value that lands in counter ``index``."""
        i = np.asarray(index, dtype=np.int64)
        bucket = np.maximum((i >> self.half_magnitude) - 1, 0)
        return self.lowest_equivalent(i) + (np.int64(1) << bucket) - 1

    def value_at_percentile(self, percentile: float) -> int:
        """HdrHistogram's percentile: the highest value equivalent to the rank-``k`` sample,
        ``k = max(1, int(p / 100 * n + 0.5))``."""
        n = self.total
        if n == 0:
            raise ValueError("the histogram is empty")
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        rank = max(1, int(percentile * n / 100 + 0.5))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return int(self.highest_equivalent(index))


def order_statistic(values: np.ndarray, percentile: float) -> float:
    """Exact percentile with the histogram's rank rule: the ``k``-th smallest value,
    ``k = max(1, int(p / 100 * n + 0.5))``."""
    v = np.sort(np.asarray(values).ravel())
    if v.size == 0:
        raise ValueError("no values")
    k = max(1, int(percentile * v.size / 100 + 0.5))
    return float(v[min(k, v.size) - 1])


# --------------------------------------------------------------------------- SPSC ring
_HEAD, _TAIL, _HEADER = 0, 8, 16   # int64 slot offsets: head and tail on separate 64-byte cache lines


class SPSCRing:
    """Lock-free single-producer single-consumer ring of int64 items (Lamport's queue).

    ``capacity`` items fit; the array has ``capacity + 1`` slots because one slot is always
    kept empty, so that ``head == tail`` means empty and ``tail + 1 == head`` (mod size) means full.
    The producer alone writes ``tail``, the consumer alone writes ``head``; an item is written
    *before* the ``tail`` store that publishes it, and read *before* the ``head`` store that frees it.

    Parameters
    ----------
    capacity : int
        Items the ring holds, >= 1.
    shm_name : str or None
        None: plain process memory. Otherwise attach to the existing shared-memory block of
        that name (made by :meth:`create_shared`).
    """

    def __init__(self, capacity: int, shm_name: str | None = None, *, _create: bool = False) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.capacity = int(capacity)
        self.size = self.capacity + 1
        nbytes = 8 * (_HEADER + self.size)
        self._shm = None
        if shm_name is None and not _create:
            buf = bytearray(nbytes)
        else:
            self._shm = shared_memory.SharedMemory(name=shm_name, create=_create, size=nbytes)
            buf = self._shm.buf
        self.slots = np.ndarray((_HEADER + self.size,), dtype=np.int64, buffer=buf)
        if _create:
            self.slots[:] = 0
        self._view = memoryview(buf).cast("B").cast("q")  # fast scalar access (8-byte aligned stores)

    @classmethod
    def create_shared(cls, capacity: int) -> "SPSCRing":
        """A ring in a new shared-memory block; the creator must call :meth:`close` and :meth:`unlink`."""
        return cls(capacity, None, _create=True)

    @property
    def name(self) -> str | None:
        return None if self._shm is None else self._shm.name

    def push(self, item: int) -> bool:
        """Producer side: append ``item``; False (nothing written) when the ring is full."""
        v = self._view
        tail = v[_TAIL]
        nxt = tail + 1
        if nxt == self.size:
            nxt = 0
        if nxt == v[_HEAD]:
            return False
        v[_HEADER + tail] = item      # 1. the payload
        v[_TAIL] = nxt                # 2. then publish it
        return True

    def pop(self) -> int | None:
        """Consumer side: the oldest item, or None when the ring is empty."""
        v = self._view
        head = v[_HEAD]
        if head == v[_TAIL]:
            return None
        item = v[_HEADER + head]      # 1. read the payload
        nxt = head + 1
        v[_HEAD] = 0 if nxt == self.size else nxt   # 2. then free the slot
        return item

    def __len__(self) -> int:
        return (self._view[_TAIL] - self._view[_HEAD]) % self.size

    def close(self) -> None:
        """Drop this process's mapping (views first, or SharedMemory.close refuses)."""
        self._view.release()
        self.slots = None
        if self._shm is not None:
            self._shm.close()

    def unlink(self) -> None:
        if self._shm is not None:
            self._shm.unlink()


# --------------------------------------------------------------------------- two-process runs
@dataclass
class Transfer:
    """Outcome of sending ``n_sent`` sequence numbers 0..n-1 to another process."""

    n_sent: int
    n_received: int
    in_order: bool
    seconds: float      # first send to last receive (perf_counter is system-wide on Linux)

    @property
    def items_per_s(self) -> float:
        return self.n_received / self.seconds if self.seconds > 0 else float("nan")


def _ring_consumer(name: str, capacity: int, n: int, timeout_s: float, result) -> None:
    ring = SPSCRing(capacity, name)
    try:
        result.put("ready")
        expected, in_order, deadline = 0, True, time.monotonic() + timeout_s
        spins = 0
        while expected < n:
            item = ring.pop()
            if item is None:
                spins += 1
                if spins % 256 == 0:
                    if time.monotonic() > deadline:
                        break
                    os.sched_yield()
                continue
            in_order &= item == expected
            expected += 1
        result.put((expected, in_order, time.perf_counter()))
    finally:
        ring.close()


def _queue_consumer(queue, n: int, timeout_s: float, result) -> None:
    import queue as _q

    result.put("ready")
    expected, in_order, deadline = 0, True, time.monotonic() + timeout_s
    while expected < n:
        try:
            item = queue.get(timeout=max(0.01, deadline - time.monotonic()))
        except _q.Empty:
            break
        in_order &= item == expected
        expected += 1
    result.put((expected, in_order, time.perf_counter()))


def _run(target, args, ctx, result, produce, n: int, timeout_s: float) -> Transfer:
    proc = ctx.Process(target=target, args=args, daemon=True)
    proc.start()
    try:
        if result.get(timeout=timeout_s) != "ready":
            raise RuntimeError("consumer did not start")
        start = time.perf_counter()
        sent = produce(time.monotonic() + timeout_s)
        received, in_order, end = result.get(timeout=timeout_s)
        return Transfer(sent, received, bool(in_order), end - start)
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


def ring_transfer(n: int, capacity: int = 1024, timeout_s: float = 20.0) -> Transfer:
    """Send 0..n-1 from this process through a shared-memory :class:`SPSCRing` to a consumer process
    that checks order and completeness. The shared block is always closed and unlinked."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ctx = mp.get_context("spawn")
    ring = SPSCRing.create_shared(capacity)
    result = ctx.Queue()
    try:
        def produce(deadline: float) -> int:
            i, spins = 0, 0
            while i < n:
                if ring.push(i):
                    i += 1
                    continue
                spins += 1
                if spins % 256 == 0:
                    if time.monotonic() > deadline:
                        break
                    os.sched_yield()
            return i

        return _run(_ring_consumer, (ring.name, capacity, n, timeout_s, result), ctx, result, produce, n, timeout_s)
    finally:
        ring.close()
        ring.unlink()
        result.close()


def queue_transfer(n: int, timeout_s: float = 20.0) -> Transfer:
    """The same transfer through ``multiprocessing.Queue`` (a pipe, a lock, pickling and a feeder thread)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ctx = mp.get_context("spawn")
    queue, result = ctx.Queue(), ctx.Queue()
    try:
        def produce(deadline: float) -> int:
            for i in range(n):
                queue.put(i)
            return n

        return _run(_queue_consumer, (queue, n, timeout_s, result), ctx, result, produce, n, timeout_s)
    finally:
        queue.close()
        result.close()
