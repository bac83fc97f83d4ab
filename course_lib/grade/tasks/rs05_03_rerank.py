"""Tests for the exercise of lesson 05.03 (video recommendations): ``mmr_rerank``.

The task, as the exercise states it: ``mmr_rerank(scores, sim, lam, k)`` returns
the k candidate indices (int array, pick order) that Maximal Marginal Relevance
(Carbonell and Goldstein, SIGIR 1998) selects greedily: the first pick is the
best score; each next pick maximises ``lam * score_i - (1 - lam) * max_{j in S} sim_ij``
over the unpicked candidates; ties go to the lower index.  ``k > n`` and a
``sim`` whose shape is not (n, n) raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "05_recsys/03_video_recsys_capstone"


def _reference(scores: np.ndarray, sim: np.ndarray, lam: float, k: int) -> list[int]:
    """Plain loops over candidates: a different route from course_lib's vectorised version."""
    picked = [max(range(len(scores)), key=lambda i: (scores[i], -i))]
    while len(picked) < k:
        best, best_gain = -1, -np.inf
        for i in range(len(scores)):
            if i in picked:
                continue
            gain = lam * scores[i] - (1 - lam) * max(sim[i][j] for j in picked)
            if gain > best_gain:
                best, best_gain = i, gain
        picked.append(best)
    return picked


def _problem(seed: int, n: int = 15, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, dim))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return rng.random(n), V @ V.T


def _picks(fn: Callable[..., Any], scores: Any, sim: Any, lam: float, k: int) -> list[int]:
    s, S = np.array(scores, dtype=float), np.array(sim, dtype=float)
    out = fn(s.copy(), S.copy(), lam, k)
    try:
        arr = np.asarray(out).astype(np.int64).ravel()
    except (TypeError, ValueError):
        raise TestFailure(f"expected an array of k integer indices, got {type(out).__name__}") from None
    if arr.shape != (k,):
        raise TestFailure(f"expected {k} indices, got {arr.shape[0]}: {arr.tolist()}")
    return arr.tolist()


mmr_task = register(
    "recsys.mmr_rerank",
    function="mmr_rerank",
    title="Maximal Marginal Relevance re-ranking",
    lesson=LESSON,
    points=2,
    timeout_s=30,
)


@mmr_task.test("a hand-worked 4-item example", hint="first pick = argmax score; then gain_i = lam * score_i - (1 - lam) * (max similarity of i to the items ALREADY picked), over unpicked items only")
def _hand(fn: Callable[..., Any]) -> None:
    scores = [0.9, 0.85, 0.5, 0.3]
    sim = [[1.0, 0.9, 0.1, 0.0], [0.9, 1.0, 0.2, 0.1], [0.1, 0.2, 1.0, 0.3], [0.0, 0.1, 0.3, 1.0]]
    got = _picks(fn, scores, sim, 0.5, 3)
    if got != [0, 2, 3]:
        raise TestFailure(f"scores {scores}, lam 0.5, k 3: expected [0, 2, 3] (item 1 is a near copy of item 0), got {got}")


@mmr_task.test("lam = 1 sorts by score (ties by lower index)", hint="with lam = 1 the similarity term vanishes: the picks must be the candidates by decreasing score; use np.argmax (first maximum) so equal scores go to the lower index")
def _lam_one(fn: Callable[..., Any]) -> None:
    s, S = _problem(0)
    got = _picks(fn, s, S, 1.0, 6)
    want = np.argsort(-s, kind="stable")[:6].tolist()
    if got != want:
        raise TestFailure(f"lam = 1: expected {want}, got {got}")
    got = _picks(fn, np.ones(5), np.eye(5), 1.0, 5)
    if got != [0, 1, 2, 3, 4]:
        raise TestFailure(f"all scores equal: ties go to the lower index, expected [0, 1, 2, 3, 4], got {got}")


@mmr_task.test("lam = 0: after the first pick, the least similar item", hint="the first pick is always the best score, even at lam = 0; after that, minimise the MAX similarity to the picked set (not the sum or the mean)")
def _lam_zero(fn: Callable[..., Any]) -> None:
    s, S = _problem(1)
    got = _picks(fn, s, S, 0.0, 5)
    want = _reference(s, S, 0.0, 5)
    if got != want:
        raise TestFailure(f"lam = 0: expected {want}, got {got}")


@mmr_task.test("matches a reference on random problems", hint="update the max similarity of every candidate after each pick; never pick an item twice; the penalty is (1 - lam) * max_sim, subtracted")
def _random(fn: Callable[..., Any]) -> None:
    for seed in range(2, 12):
        s, S = _problem(seed)
        lam = [0.2, 0.5, 0.7, 0.9][seed % 4]
        k = 3 + seed % 8
        got, want = _picks(fn, s, S, lam, k), _reference(s, S, lam, k)
        if got != want:
            raise TestFailure(f"seed {seed}, lam {lam}, k {k}: expected {want}, got {got}")


@mmr_task.test("returns k distinct indices, k = n included", hint="mark picked items so they are not chosen again (e.g. set their gain to -inf)")
def _distinct(fn: Callable[..., Any]) -> None:
    s, S = _problem(20, n=8)
    got = _picks(fn, s, S, 0.3, 8)
    if sorted(got) != list(range(8)):
        raise TestFailure(f"k = n = 8 must return a permutation of 0..7, got {got}")


@mmr_task.test("k > n and a sim of the wrong shape raise ValueError", hint="check 1 <= k <= len(scores) and sim.shape == (n, n) before the loop, and raise ValueError")
def _bad(fn: Callable[..., Any]) -> None:
    s, S = _problem(3, n=6)
    for what, args in (("k = 7 > n = 6", (s, S, 0.5, 7)), ("sim of shape (5, 5) for 6 scores", (s, S[:5, :5], 0.5, 3))):
        try:
            fn(*args)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001 - the learner's code may raise anything
            raise TestFailure(f"{what}: expected ValueError, got {type(err).__name__}: {err}") from None
        raise TestFailure(f"{what}: expected ValueError, nothing was raised")
