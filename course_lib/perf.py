"""Timing and memory: one way to measure, so every number in the course means the same.

:func:`time_fn` runs a function with warm-up and repeats and reports the
median, p99 and best time.  :func:`compare` puts several timings measured in
the same run side by side as ratios against a reference, which is the only
way the course ever asserts on speed (absolute seconds depend on the machine).
"""

from __future__ import annotations

import gc
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated calls of one function."""

    name: str
    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.times, 99))

    @property
    def best(self) -> float:
        return float(min(self.times))

    def per_item(self, n_items: int) -> float:
        """Median seconds per item (e.g. per query) for a batch of ``n_items``."""
        return self.median / n_items

    def __str__(self) -> str:
        return f"{self.name}: median {self.median * 1e3:.2f} ms, p99 {self.p99 * 1e3:.2f} ms (n={len(self.times)})"


def time_fn(
    fn: Callable[..., Any],
    *args: Any,
    name: str | None = None,
    repeats: int = 5,
    warmup: int = 1,
    min_time: float = 0.0,
    **kwargs: Any,
) -> Timing:
    """Time ``fn(*args, **kwargs)``.

    Parameters
    ----------
    repeats : timed calls (at least 1).
    warmup : untimed calls first (caches, lazy initialisation, page faults).
    min_time : keep repeating until this many seconds were timed in total,
        for functions too fast for a handful of calls to be stable.

    Garbage collection is disabled during each timed call (as ``timeit`` does)
    so that a collection triggered by earlier code is not billed to ``fn``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats=}, {warmup=}")
    for _ in range(warmup):
        fn(*args, **kwargs)
    times: list[float] = []
    gc_was_enabled = gc.isenabled()
    try:
        while len(times) < repeats or sum(times) < min_time:
            gc.disable()
            start = time.perf_counter()
            fn(*args, **kwargs)
            times.append(time.perf_counter() - start)
            if gc_was_enabled:
                gc.enable()
            if len(times) >= 10_000:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(name=name or getattr(fn, "__name__", "fn"), times=tuple(times))


def compare(
    timings: list[Timing], reference: str, *, items: int | dict[str, int] | None = None, unit: str = "items"
) -> list[dict[str, Any]]:
    """Rows of a comparison table: median, p99 and ``ratio`` against the reference.

    ``ratio`` = time per item / the reference's time per item: 1.5 means
    "1.5x the reference's time" (slower); below 1 is faster.  ``items`` is the
    number of items (e.g. queries) each call processed: one int for all, or a
    dict by timing name when some methods ran on fewer items (default 1 each).
    With ``items``, the rows also give the count and the rate, named after
    ``unit`` (e.g. ``unit="queries"`` gives ``queries`` and ``queries_per_s``).
    """
    by_name = {t.name: t for t in timings}
    if reference not in by_name:
        raise ValueError(f"reference {reference!r} is not among the timings {sorted(by_name)}")

    def n_of(name: str) -> int:
        n = items.get(name, 1) if isinstance(items, dict) else (1 if items is None else items)
        if n < 1:
            raise ValueError(f"items for {name!r} must be >= 1, got {n}")
        return n

    ref = by_name[reference].median / n_of(reference)
    rows = []
    for t in timings:
        row: dict[str, Any] = {
            "method": t.name,
            "median_ms": round(t.median * 1e3, 3),
            "p99_ms": round(t.p99 * 1e3, 3),
            "ratio_vs_" + reference: round(t.median / n_of(t.name) / ref, 3),
        }
        if items is not None:
            row[unit] = n_of(t.name)
            row[f"{unit}_per_s"] = round(n_of(t.name) / t.median, 1)
        rows.append(row)
    return rows


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (never decreases)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


@dataclass(frozen=True)
class MemoryUse:
    """Peak bytes allocated through Python and numpy while a function ran."""

    peak_bytes: int
    result: Any

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def traced_peak_memory(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> MemoryUse:
    """Run ``fn`` under ``tracemalloc`` and report the peak of new allocations.

    numpy reports its buffers to tracemalloc, so this counts the temporary
    (n_queries, n) score matrix of brute-force search.  Memory allocated by C++
    libraries (faiss, torch) is invisible to it: use :func:`peak_rss_mb` there.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        result = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return MemoryUse(peak_bytes=max(0, peak - base), result=result)
