"""Tests for the 02.06 HNSW exercise: the neighbour-selection heuristic (paper Algorithm 4)."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_06 = "02_vector_search/06_hnsw"


def _reference(q_dists: np.ndarray, cand_ids: np.ndarray, cand_vectors: np.ndarray, M: int) -> list[int]:
    from ...ann.hnsw import select_neighbors_heuristic

    return select_neighbors_heuristic(q_dists, cand_ids, cand_vectors, M).tolist()


def _call(fn: Callable[..., Any], q_dists: np.ndarray, cand_ids: np.ndarray, cand_vectors: np.ndarray, M: int) -> list[int]:
    out = fn(q_dists.copy(), cand_ids.copy(), cand_vectors.copy(), M)
    try:
        ids = np.asarray(out).ravel()
    except Exception:  # noqa: BLE001
        raise TestFailure(f"expected a sequence of ids, got {type(out).__name__}") from None
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TestFailure(f"ids must be integers, got dtype {ids.dtype}")
    return ids.astype(np.int64).tolist()


def _case(q: np.ndarray, V: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q_dists, cand_ids, cand_vectors) for base point q and candidate rows V."""
    V = np.asarray(V, dtype=np.float64)
    q_dists = ((V - np.asarray(q, dtype=np.float64)) ** 2).sum(1)
    if ids is None:
        ids = np.arange(100, 100 + len(V))
    return q_dists, np.asarray(ids, dtype=np.int64), V


def _clustered(seed: int, c: int = 60, d: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates in a few tight clumps around q: the heuristic keeps about one per clump."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, d)) * 3.0
    V = centres[rng.integers(0, 5, c)] + 0.3 * rng.standard_normal((c, d))
    q_dists, ids, V = _case(np.zeros(d), V, rng.permutation(1000)[:c])
    order = np.argsort(q_dists)  # sorted input: isolates every mistake but the ordering one
    return q_dists[order], ids[order], V[order]


task = register(
    "vector_search.select_neighbors_heuristic",
    function="select_neighbors_heuristic",
    title="HNSW neighbour selection heuristic (Algorithm 4)",
    lesson=LESSON_06,
    points=3,
    timeout_s=30,
)


@task.test("returns at most M distinct ids taken from the candidates", hint="returning more than M: stop as soon as M neighbours are kept; return ids (cand_ids[i]), not positions i")
def _at_most_m(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(0)
    q_dists, ids, V = _case(np.zeros(4), rng.standard_normal((50, 4)))
    for M in (1, 3, 8):
        got = _call(fn, q_dists, ids, V, M)
        if len(got) > M:
            raise TestFailure(f"M={M} but {len(got)} ids were returned")
        if len(set(got)) != len(got) or not set(got) <= set(ids.tolist()):
            raise TestFailure(f"the ids must be distinct candidates' ids, got {got[:10]}")
        if not got:
            raise TestFailure("the closest candidate is always kept, got an empty selection")


@task.test("the closest candidate is kept first", hint="the first candidate to consider is the one closest to q, and with nothing kept yet it is always kept")
def _closest_first(fn: Callable[..., Any]) -> None:
    q_dists, ids, V = _clustered(1)
    got = _call(fn, q_dists, ids, V, 4)
    if not got or got[0] != int(ids[np.argmin(q_dists)]):
        raise TestFailure(f"expected the selection to start with id {int(ids[np.argmin(q_dists)])}, got {got}")


@task.test("skips candidates that a kept neighbour already covers", hint="simple selection instead of the heuristic: do not just take the M closest; drop a candidate e when some kept r has d(e, r) < d(e, q)")
def _not_simple(fn: Callable[..., Any]) -> None:
    # two candidates almost on top of each other, one far in another direction
    q_dists, ids, V = _case([0.0, 0.0], [[1.0, 0.0], [1.05, 0.05], [0.0, -1.5]], [7, 8, 9])
    got = _call(fn, q_dists, ids, V, 2)
    if got != [7, 9]:
        raise TestFailure(f"with M=2 the heuristic keeps [7, 9] (8 is covered by 7), got {got}")


@task.test("compares with every kept neighbour, not only the best one", hint="comparing with the best (first) kept neighbour only: a candidate must be closer to q than to *each* kept neighbour")
def _all_kept(fn: Callable[..., Any]) -> None:
    # 1 is kept first; 2 is kept (far from 1); 3 is far from 1 but next to 2: it must be dropped
    q_dists, ids, V = _case([0.0, 0.0], [[1.0, 0.0], [0.0, 1.1], [0.1, 1.3]], [1, 2, 3])
    got = _call(fn, q_dists, ids, V, 3)
    if got != [1, 2]:
        raise TestFailure(f"expected [1, 2] (3 is closer to 2 than to q), got {got}")


@task.test("works when the candidates arrive unsorted", hint="forgetting to process candidates in order of distance: sort them by q_dists first (np.argsort), closest first")
def _unsorted(fn: Callable[..., Any]) -> None:
    q_dists, ids, V = _clustered(2)
    perm = np.random.default_rng(3).permutation(len(ids))
    want = _reference(q_dists, ids, V, 6)
    got = _call(fn, q_dists[perm], ids[perm], V[perm], 6)
    if got != want:
        raise TestFailure(f"expected {want}, got {got}")


@task.test("same selection as hnswlib's getNeighborsByHeuristic2 on random clustered candidates", hint="keep e only if d(e, q) <= d(e, r) for every kept r (reject on a strict d(e, r) < d(e, q)); return the kept ids closest first")
def _random_cases(fn: Callable[..., Any]) -> None:
    for seed in range(5):
        q_dists, ids, V = _clustered(10 + seed, c=80, d=6)
        for M in (4, 16):
            want = _reference(q_dists, ids, V, M)
            got = _call(fn, q_dists, ids, V, M)
            if got != want:
                raise TestFailure(f"case {seed}, M={M}: expected {want}, got {got}")
