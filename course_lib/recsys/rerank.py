"""The last stage of a video recommender: the watch-time ranker's objective, and diverse re-ranking.

A ranker that scores every candidate independently fills the slate with near
copies of its best item (ten videos of the same match).  This module holds the
pieces lesson 05.03 builds and measures:

* :func:`fit_weighted_logreg`: logistic regression with per-example weights,
  fitted by Newton's method (IRLS).  With clicked impressions weighted by their
  watch time and unclicked ones by 1 (Covington, Adams and Sargin, RecSys 2016,
  "Deep Neural Networks for YouTube Recommendations", section 4.2), its odds
  ``exp(x w)`` estimate ``E[T] / (1 - P)``: expected watch time per impression,
  divided by the non-click rate (so about ``E[T]`` when clicks are rare);
* :func:`mmr_rerank`: Maximal Marginal Relevance (Carbonell and Goldstein,
  SIGIR 1998);
* :func:`dpp_kernel`, :func:`dpp_greedy` (greedy MAP inference for a
  determinantal point process with an incremental Cholesky factor: Chen, Zhang
  and Zhou, NeurIPS 2018, "Fast Greedy MAP Inference for Determinantal Point
  Process to Improve Recommendation Diversity", Algorithm 1, O(k^2 n)),
  :func:`dpp_greedy_naive` (the same greedy rule, one log-determinant per
  candidate per step) and :func:`dpp_exact_map` (all size-k subsets: the truth
  on small sets);
* :func:`intra_list_similarity` and :func:`topic_coverage`, the two diversity
  metrics of a slate.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from ..validate import check_k

__all__ = [
    "dpp_exact_map",
    "dpp_greedy",
    "dpp_greedy_naive",
    "dpp_kernel",
    "fit_weighted_logreg",
    "intra_list_similarity",
    "log_det",
    "mmr_rerank",
    "topic_coverage",
]


# -- the ranker's objective ---------------------------------------------------------------------


def fit_weighted_logreg(X: Any, y: Any, weight: Any, *, l2: float = 1e-6, max_iter: int = 50,
                        tol: float = 1e-10) -> np.ndarray:
    """Weighted logistic regression by Newton's method (iteratively reweighted least squares).

    Minimises ``-sum_i weight_i [y_i log sigmoid(x_i w) + (1 - y_i) log sigmoid(-x_i w)] + l2/2 |w|^2 * n``.

    Parameters
    ----------
    X : (n, d) features (add a column of ones for an intercept).
    y : (n,) labels in {0, 1}.
    weight : (n,) non-negative example weights (watch seconds for a click, 1 for a non-click).
    l2 : ridge strength per example (keeps Newton's system well posed).

    Returns
    -------
    w : (d,) float64; ``exp(X @ w)`` are the fitted odds.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],) or weight.shape != (X.shape[0],):
        raise ValueError(f"expected X (n, d), y (n,), weight (n,); got {X.shape}, {y.shape}, {weight.shape}")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("y must hold only 0 and 1")
    if np.any(weight < 0) or not np.all(np.isfinite(weight)):
        raise ValueError("weight must be finite and non-negative")
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (X @ w)))
        grad = X.T @ (weight * (p - y)) + l2 * n * w
        hess = (X * (weight * p * (1 - p))[:, None]).T @ X + l2 * n * np.eye(d)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < tol:
            break
    return w


# -- Maximal Marginal Relevance -----------------------------------------------------------------


def _scores_and_sim(scores: Any, sim: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    S = np.asarray(sim, dtype=np.float64)
    if S.shape != (s.size, s.size):
        raise ValueError(f"sim must be ({s.size}, {s.size}) to match scores, got shape {S.shape}")
    return s, S


def mmr_rerank(scores: Any, sim: Any, lam: float, k: int) -> np.ndarray:
    """Maximal Marginal Relevance: greedily pick ``argmax lam * score_i - (1 - lam) * max_{j in S} sim_ij``.

    Parameters
    ----------
    scores : (n,) relevance of each candidate (higher is better).
    sim : (n, n) similarity between candidates.
    lam : trade-off in [0, 1]; 1 = sort by score, 0 = pure novelty after the first pick.
    k : slate length, 1 <= k <= n.

    Returns
    -------
    (k,) int64 candidate indices in pick order.  The first pick is the best score;
    ties go to the lower index.
    """
    s, S = _scores_and_sim(scores, sim)
    k = check_k(k, s.size, what="the candidates")
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam!r}")
    picked = [int(np.argmax(s))]
    max_sim = S[picked[0]].copy()          # max similarity of each candidate to the slate so far
    free = np.ones(s.size, dtype=bool)
    free[picked[0]] = False
    for _ in range(k - 1):
        gain = np.where(free, lam * s - (1.0 - lam) * max_sim, -np.inf)
        j = int(np.argmax(gain))           # argmax returns the lowest index among ties
        picked.append(j)
        free[j] = False
        max_sim = np.maximum(max_sim, S[j])
    return np.asarray(picked, dtype=np.int64)


# -- determinantal point processes ----------------------------------------------------------------


def dpp_kernel(quality: Any, sim: Any) -> np.ndarray:
    """The DPP kernel ``L = diag(q) S diag(q)``: ``det L_Y = prod_{i in Y} q_i^2 * det S_Y``.

    ``quality`` (n,) positive (e.g. ``exp(alpha * relevance)``); ``sim`` (n, n) positive
    semi-definite (e.g. cosine similarities of unit vectors).  Returns float64 (n, n).
    """
    q, S = _scores_and_sim(quality, sim)
    if np.any(q <= 0):
        raise ValueError("quality must be positive")
    return q[:, None] * S * q[None, :]


def log_det(L: np.ndarray, subset: Any) -> float:
    """``log det L[subset, subset]`` (-inf when the submatrix is singular or not positive definite)."""
    idx = np.asarray(subset, dtype=np.int64)
    sign, value = np.linalg.slogdet(L[np.ix_(idx, idx)])
    return float(value) if sign > 0 else -np.inf


def _kernel(L: Any, k: int) -> tuple[np.ndarray, int]:
    L = np.asarray(L, dtype=np.float64)
    if L.ndim != 2 or L.shape[0] != L.shape[1] or L.shape[0] == 0:
        raise ValueError(f"L must be a non-empty square matrix, got shape {L.shape}")
    if not np.allclose(L, L.T, rtol=1e-6, atol=1e-9 * np.abs(L).max()):
        raise ValueError("L must be symmetric")
    return (L + L.T) / 2, check_k(k, L.shape[0], what="the candidates")   # remove rounding asymmetry


def dpp_greedy(L: Any, k: int, eps: float = 1e-10) -> np.ndarray:
    """Greedy MAP inference for a DPP with an incremental Cholesky factor (Chen et al. 2018, Algorithm 1).

    Each step adds the item with the largest marginal gain ``log det L_{Y+i} - log det L_Y = log d_i^2``,
    where ``d_i^2`` is the squared Cholesky diagonal item ``i`` would get.  After picking ``j``, every
    candidate's Cholesky row grows by ``e_i = (L_ji - <c_j, c_i>) / d_j`` and ``d_i^2 -= e_i^2``:
    O(n k) per step, O(n k^2) in all, no determinant ever computed.

    Parameters
    ----------
    L : (n, n) positive semi-definite kernel.
    k : items to pick.
    eps : stop early when no candidate has ``d_i^2 > eps`` (the rest would make ``L_Y`` singular).

    Returns
    -------
    (m,) int64 item indices in pick order, m <= k (m < k only if L has rank < k).
    """
    L, k = _kernel(L, k)
    n = L.shape[0]
    C = np.zeros((k, n))                  # row t holds the t-th Cholesky entry of every candidate
    d2 = np.diag(L).copy()                # squared Cholesky diagonal if i were added now
    picked: list[int] = []
    j = int(np.argmax(d2))
    while d2[j] > eps:
        picked.append(j)
        if len(picked) == k:
            break
        t = len(picked) - 1
        e = (L[j] - C[:t, j] @ C[:t]) / np.sqrt(d2[j])
        C[t] = e
        d2 = d2 - e ** 2
        d2[picked] = -np.inf
        j = int(np.argmax(d2))
    return np.asarray(picked, dtype=np.int64)


def dpp_greedy_naive(L: Any, k: int) -> np.ndarray:
    """The same greedy rule as :func:`dpp_greedy`, recomputing ``log det L_{Y+i}`` for every candidate.

    O(n k^4); the reference that :func:`dpp_greedy` must match pick for pick.
    """
    L, k = _kernel(L, k)
    picked: list[int] = []
    for _ in range(k):
        gains = np.full(L.shape[0], -np.inf)
        for i in range(L.shape[0]):
            if i not in picked:
                gains[i] = log_det(L, picked + [i])
        j = int(np.argmax(gains))
        if not np.isfinite(gains[j]):
            break
        picked.append(j)
    return np.asarray(picked, dtype=np.int64)


def dpp_exact_map(L: Any, k: int) -> tuple[np.ndarray, float]:
    """Exact MAP of a k-DPP by enumeration: the size-k subset with the largest ``log det L_Y``.

    Only for small n (C(12, 6) = 924 subsets).  Returns ``(subset (k,) int64 sorted, log det)``.
    """
    L, k = _kernel(L, k)
    n = L.shape[0]
    if n > 20:
        raise ValueError(f"exact MAP enumerates C(n, k) subsets; n = {n} is too large (at most 20)")
    subsets = np.array(list(combinations(range(n), k)), dtype=np.int64)       # (C(n, k), k)
    blocks = L[subsets[:, :, None], subsets[:, None, :]]                       # (C(n, k), k, k)
    sign, value = np.linalg.slogdet(blocks)
    value = np.where(sign > 0, value, -np.inf)
    best = int(np.argmax(value))
    return subsets[best], float(value[best])


# -- diversity metrics ----------------------------------------------------------------------------


def intra_list_similarity(slates: Any, item_vecs: Any) -> np.ndarray:
    """Mean pairwise cosine similarity inside each slate (Ziegler et al. 2005): lower = more diverse.

    ``slates`` (n, L) int item ids, L >= 2; ``item_vecs`` (n_items, d).  Returns float64 (n,).
    """
    slates = np.asarray(slates)
    if slates.ndim != 2 or slates.shape[1] < 2:
        raise ValueError(f"slates must be (n, L) with L >= 2, got shape {slates.shape}")
    V = np.asarray(item_vecs, dtype=np.float64)
    V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    E = V[slates]                                                   # (n, L, d)
    G = np.einsum("nld,nmd->nlm", E, E)
    Lsz = slates.shape[1]
    return (G.sum(axis=(1, 2)) - np.trace(G, axis1=1, axis2=2)) / (Lsz * (Lsz - 1))


def topic_coverage(slates: Any, item_topic: Any) -> np.ndarray:
    """Distinct topics per slate: float64 (n,) counts (divide by L for a fraction)."""
    slates = np.asarray(slates)
    if slates.ndim != 2:
        raise ValueError(f"slates must be (n, L), got shape {slates.shape}")
    T = np.sort(np.asarray(item_topic)[slates], axis=1)
    return 1.0 + (np.diff(T, axis=1) != 0).sum(axis=1).astype(np.float64)
