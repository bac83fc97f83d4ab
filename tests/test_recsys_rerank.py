"""Tests for course_lib.recsys.rerank: MMR, greedy/exact DPP MAP, weighted LR, diversity metrics."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.recsys.rerank import (
    dpp_exact_map, dpp_greedy, dpp_greedy_naive, dpp_kernel, fit_weighted_logreg,
    intra_list_similarity, log_det, mmr_rerank, topic_coverage,
)


def _problem(seed: int, n: int = 12, dim: int = 16):
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, dim))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return rng.standard_normal(n), V @ V.T


def test_mmr_hand_worked_example():
    scores = np.array([0.9, 0.85, 0.5, 0.3])
    sim = np.array([[1.0, 0.9, 0.1, 0.0], [0.9, 1.0, 0.2, 0.1], [0.1, 0.2, 1.0, 0.3], [0.0, 0.1, 0.3, 1.0]])
    # pick 0; then gains at lam = 0.5: item1 0.5*0.85-0.5*0.9=-0.025, item2 0.25-0.05=0.2, item3 0.15-0=0.15 -> 2
    # then max sims: item1 max(0.9, 0.2)=0.9 -> -0.025; item3 max(0.0, 0.3)=0.3 -> 0.0 -> 3
    assert mmr_rerank(scores, sim, 0.5, 3).tolist() == [0, 2, 3]
    assert mmr_rerank(scores, sim, 0.5, 4).tolist() == [0, 2, 3, 1]


def test_mmr_lam_one_sorts_by_score_and_ties_go_to_lower_index():
    s, S = _problem(0)
    assert mmr_rerank(s, S, 1.0, 12).tolist() == np.argsort(-s, kind="stable").tolist()
    assert mmr_rerank(np.ones(5), np.eye(5), 1.0, 5).tolist() == [0, 1, 2, 3, 4]


def test_mmr_lam_zero_picks_least_similar():
    s, S = _problem(1)
    out = mmr_rerank(s, S, 0.0, 4)
    assert out[0] == int(np.argmax(s))
    rest = np.setdiff1d(np.arange(12), out[:1])
    assert out[1] == rest[np.argmin(S[out[0], rest])]


def test_mmr_bad_input():
    s, S = _problem(2)
    with pytest.raises(ValueError):
        mmr_rerank(s, S, 0.5, 13)
    with pytest.raises(ValueError):
        mmr_rerank(s, S[:5, :5], 0.5, 3)
    with pytest.raises(ValueError):
        mmr_rerank(s, S, 1.5, 3)


@pytest.mark.parametrize("seed", range(25))
def test_dpp_greedy_equals_naive_and_is_near_exact(seed):
    s, S = _problem(seed)
    L = dpp_kernel(np.exp(0.5 * s), S)
    k = 4 + seed % 3
    g = dpp_greedy(L, k)
    assert g.tolist() == dpp_greedy_naive(L, k).tolist()
    best, value = dpp_exact_map(L, k)
    assert log_det(L, best) == pytest.approx(value)
    assert log_det(L, g) <= value + 1e-9
    assert np.exp(log_det(L, g) - value) >= 0.9


def test_dpp_exact_matches_enumeration_by_hand():
    s, S = _problem(3, n=6)
    L = dpp_kernel(np.exp(s), S)
    from itertools import combinations
    want = max(combinations(range(6), 3), key=lambda c: np.linalg.det(L[np.ix_(c, c)]))
    assert dpp_exact_map(L, 3)[0].tolist() == list(want)


def test_dpp_greedy_stops_at_rank_and_bad_input():
    V = np.random.default_rng(0).standard_normal((8, 3))
    L = V @ V.T
    assert len(dpp_greedy(L, 6)) == 3
    with pytest.raises(ValueError):
        dpp_greedy(np.ones((3, 4)), 2)
    with pytest.raises(ValueError):
        dpp_greedy(np.eye(3), 4)
    with pytest.raises(ValueError):
        dpp_kernel(-np.ones(3), np.eye(3))


def test_weighted_logreg_odds_are_weighted_ratio():
    # one categorical feature: the saturated model's odds = sum of positive weights / negative count
    rng = np.random.default_rng(0)
    g = rng.integers(0, 3, 30_000)
    y = (rng.random(g.size) < np.array([0.05, 0.1, 0.2])[g]).astype(float)
    T = np.where(y == 1, rng.exponential(np.array([100.0, 200.0, 50.0])[g]), 1.0)
    X = np.eye(3)[g]
    w = fit_weighted_logreg(X, y, T, l2=0.0)
    for c in range(3):
        m = g == c
        assert np.exp(w[c]) == pytest.approx(T[m & (y == 1)].sum() / (m & (y == 0)).sum(), rel=1e-8)
    with pytest.raises(ValueError):
        fit_weighted_logreg(X, y * 2, T)


def test_diversity_metrics():
    V = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert intra_list_similarity([[0, 1], [0, 2]], V).tolist() == pytest.approx([1.0, 0.0])
    assert intra_list_similarity([[0, 1, 2]], V)[0] == pytest.approx(1 / 3)
    assert topic_coverage([[0, 1, 2], [0, 2, 0]], np.array([5, 7, 5])).tolist() == [2.0, 1.0]
    with pytest.raises(ValueError):
        intra_list_similarity([[0]], V)
