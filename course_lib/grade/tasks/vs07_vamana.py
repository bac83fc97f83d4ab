"""Tests for lesson 02.07 (DiskANN / Vamana): ``robust_prune``."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_07 = "02_vector_search/07_diskann_vamana"

prune = register(
    "vector_search.robust_prune",
    function="robust_prune",
    title="RobustPrune(p, V, alpha, R): Vamana's neighbour selection",
    lesson=LESSON_07,
    points=3,
    timeout_s=30,
)


def _reference(p: int, cand_ids: np.ndarray, X: np.ndarray, alpha: float, R: int) -> set[int]:
    from ...ann.vamana import robust_prune as reference

    return set(reference(p, cand_ids, X, alpha, R).tolist())


def _call(fn: Callable[..., Any], p: int, cand_ids: Any, X: np.ndarray, alpha: float, R: int) -> list[int]:
    out = fn(p, np.asarray(cand_ids, dtype=np.int64).copy(), X.copy(), alpha, R)
    try:
        ids = np.asarray(out).ravel()
    except Exception:
        raise TestFailure(f"expected an array of ids, got {type(out).__name__}") from None
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TestFailure(f"the ids must be integers, got dtype {ids.dtype}")
    return ids.astype(np.int64).tolist()


def _points(*xy: tuple[float, float]) -> np.ndarray:
    return np.array(xy, dtype=np.float32)


@prune.test("returns at most R distinct candidate ids, never p", hint="return an array of ids chosen from cand_ids (not positions in cand_ids), without repeats")
def _shape(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    cand = np.arange(1, 60)
    got = _call(fn, 0, cand, X, 1.2, 8)
    if not got:
        raise TestFailure("returned no neighbours: the nearest candidate is always kept")
    if len(got) != len(set(got)):
        raise TestFailure(f"an id is returned twice: {got}")
    if not set(got) <= set(cand.tolist()):
        raise TestFailure(f"returned ids that are not candidates: {sorted(set(got) - set(cand.tolist()))}")


@prune.test("a point behind a kept neighbour is pruned, one off to the side is kept", hint="wrong direction of the inequality: p' is dropped when alpha * d(p*, p') <= d(p, p'), i.e. when p' is closer to the kept p* than to p")
def _direction(fn: Callable[..., Any]) -> None:
    # p = origin; a = (1, 0) is the nearest; b = (2, 0) lies behind a (reached through a); c = (0, 1.5) is off to the side
    X = _points((0, 0), (1, 0), (2, 0), (0, 1.5))
    got = _call(fn, 0, [1, 2, 3], X, 1.2, 4)
    if set(got) != {1, 3}:
        raise TestFailure(f"p=(0,0), candidates a=(1,0), b=(2,0), c=(0,1.5), alpha=1.2: expected {{a, c}} = [1, 3], got {sorted(got)}")


@prune.test("candidates are taken in order of distance to p", hint="not taking candidates in order of distance: sort them by d(p, .) first, so p* is always the nearest one left")
def _order(fn: Callable[..., Any]) -> None:
    # far candidates listed first: processing them in the given order keeps the wrong ones
    X = _points((0, 0), (3, 0), (2, 0), (1, 0), (0, 2.5), (0, 1.2))
    got = _call(fn, 0, [1, 2, 4, 3, 5], X, 1.0, 4)
    if set(got) != {3, 5}:
        raise TestFailure(f"expected the nearest point on each ray to be kept ([3, 5]), got {sorted(got)}")


@prune.test("never more than R neighbours", hint="returning more than R: stop as soon as R neighbours are kept")
def _at_most_R(fn: Callable[..., Any]) -> None:
    # 12 points on a circle around p: none prunes another with alpha = 1.5 (they are far apart), so only R limits
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    X = np.vstack([[0, 0], np.c_[np.cos(angles), np.sin(angles)] * (1 + 0.01 * np.arange(12))[:, None]]).astype(np.float32)
    for R in (1, 3, 5):
        got = _call(fn, 0, np.arange(1, 13), X, 1.5, R)
        if len(got) != R:
            raise TestFailure(f"12 well-separated candidates, R={R}: expected exactly {R} neighbours, got {len(got)}")
        if 1 not in got:
            raise TestFailure(f"R={R}: the nearest candidate (id 1) must be kept, got {sorted(got)}")


@prune.test("p itself (and repeats) in the candidate set are ignored; the nearest candidate is kept", hint="p is never its own neighbour: remove it (and duplicate ids) from the candidates first; and keep p* itself before dropping the points it covers")
def _self(fn: Callable[..., Any]) -> None:
    X = _points((0, 0), (1, 0), (0, 1.5), (-2, 0.1))
    got = _call(fn, 0, [0, 1, 1, 2, 0, 3, 2], X, 1.2, 4)
    if 0 in got:
        raise TestFailure(f"p (id 0) was returned as its own neighbour: {got}")
    if len(got) != len(set(got)):
        raise TestFailure(f"an id is returned twice: {got}")
    if set(got) != {1, 2, 3}:
        raise TestFailure(f"expected [1, 2, 3] (none covers another), got {sorted(got)}")


@prune.test("alpha compares squared distances", hint="squared vs plain distances: compare alpha * ||x_p* - x_p'||^2 with ||x_p - x_p'||^2 (squared, as DiskANN does), not the square roots")
def _squared(fn: Callable[..., Any]) -> None:
    # p' with d(p, p') / d(p*, p') = 1.15: squared ratio 1.32 >= alpha = 1.2 -> pruned; the plain ratio 1.15 < 1.2 would keep it
    ratio2 = 1.15**2
    b = float(np.sqrt((2.25 - ratio2 * 0.25) / (ratio2 - 1)))
    X = _points((0, 0), (1, 0), (1.5, b))
    got = _call(fn, 0, [1, 2], X, 1.2, 4)
    if set(got) != {1}:
        raise TestFailure(f"d(p, p') / d(p*, p') = 1.15 and alpha = 1.2 on squared distances (1.15^2 = 1.32 >= 1.2): p' must be pruned, got {sorted(got)}")


@prune.test("same neighbours as RobustPrune on random data, alpha in {1.0, 1.2, 1.5}", hint="keep p*, drop every p' with alpha * d2(p*, p') <= d2(p, p'), move on to the nearest survivor; stop at R or when none is left")
def _random(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    for trial, alpha in enumerate((1.0, 1.2, 1.5)):
        p = int(rng.integers(200))
        cand = rng.choice(200, size=80, replace=False)
        got, want = set(_call(fn, p, cand, X, alpha, 10)), _reference(p, cand, X, alpha, 10)
        if got != want:
            raise TestFailure(f"alpha={alpha}: expected {sorted(want)}, got {sorted(got)}")


@prune.test("does not modify its inputs", hint="sort copies (np.argsort, fancy indexing), not cand_ids or X in place")
def _pure(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 4)).astype(np.float32)
    cand = rng.permutation(np.arange(1, 50))
    X0, cand0 = X.copy(), cand.copy()
    fn(0, cand, X, 1.2, 6)
    if not (np.array_equal(X, X0) and np.array_equal(cand, cand0)):
        raise TestFailure("cand_ids or X was changed by the call")
