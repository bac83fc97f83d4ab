"""Vectors: similarity measures, exact k-NN and recall@k.

Everything here is exact and written in plain numpy, the ground truth that
every approximate index in chapter 02 is measured against.

Conventions (the same as faiss):

* ``metric="l2"`` returns **squared** Euclidean distances, smaller is nearer.
* ``metric="ip"`` returns inner products, larger is nearer (MIPS).
* ``metric="cosine"`` returns cosine similarities, larger is nearer.
* Search results are ``(D, I)``: ``D`` float32 of shape (n_queries, k), ``I``
  int64 of shape (n_queries, k), each row sorted best first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .validate import as_matrix, check_ids, check_k, check_same_dim

Metric = Literal["l2", "ip", "cosine"]
METRICS: tuple[str, ...] = ("l2", "ip", "cosine")
#: Memory budget of one block of scores in :func:`exact_knn` (float32 entries).
SCORE_BLOCK_BYTES = 64 * 2**20


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: expected one of {METRICS}")


def normalize(X: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``X`` scaled to unit L2 norm (float32). Zero rows stay zero."""
    X = as_matrix(X, "X")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.maximum(norms, eps)).astype(np.float32)


def pairwise_sq_l2(Q: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Squared L2 distances, shape (n_queries, n), by ||q||^2 + ||x||^2 - 2 q.x.

    The expansion turns n_queries * n distance computations into one matrix
    product (BLAS sgemm), which is why exact search is fast at all.  Rounding
    can make it slightly negative for near-duplicates, so it is clipped at 0.
    """
    Q = as_matrix(Q, "Q")
    X = as_matrix(X, "X")
    check_same_dim(Q, X, "Q", "X")
    q2 = np.einsum("ij,ij->i", Q, Q)[:, None]
    x2 = np.einsum("ij,ij->i", X, X)[None, :]
    D = q2 + x2 - 2.0 * (Q @ X.T)
    np.maximum(D, 0.0, out=D)
    return D


def pairwise_ip(Q: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Inner products Q @ X.T, shape (n_queries, n)."""
    Q = as_matrix(Q, "Q")
    X = as_matrix(X, "X")
    check_same_dim(Q, X, "Q", "X")
    return Q @ X.T


def pairwise_cosine(Q: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Cosine similarities, shape (n_queries, n): the inner product of normalised rows."""
    return pairwise_ip(normalize(Q), normalize(X))


def pairwise(Q: np.ndarray, X: np.ndarray, metric: Metric = "l2") -> np.ndarray:
    """Dispatch to :func:`pairwise_sq_l2`, :func:`pairwise_ip` or :func:`pairwise_cosine`."""
    _check_metric(metric)
    return {"l2": pairwise_sq_l2, "ip": pairwise_ip, "cosine": pairwise_cosine}[metric](Q, X)


def topk_smallest(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest values of ``D`` and their column ids, sorted ascending.

    Selecting is cheaper than sorting: ``argpartition`` finds the k smallest
    of n in O(n) per row, and only those k are sorted (O(k log k)) instead of
    all n (O(n log n)).  Wide rows use :func:`threshold_topk`, which is the
    same idea with smaller constants.  Ties are broken by the smaller id, the
    same rule as faiss, so results are reproducible.
    """
    D = np.asarray(D)
    if D.ndim != 2:
        raise ValueError(f"D must be 2-D (n_queries, n), got shape {D.shape}")
    k = check_k(k, D.shape[1], what="the number of columns")
    if k == 1:  # nearest only (k-means assignment): argmin returns the first, i.e. smallest, tied id
        ids = D.argmin(axis=1)[:, None]
        return np.take_along_axis(D, ids, axis=1), ids.astype(np.int64)
    stride = D.shape[1] // (k * 256)
    if stride >= 2:
        return threshold_topk(D, k, stride)
    if k == D.shape[1]:  # everything, sorted by value, then by id
        order = np.argsort(D, axis=1, kind="stable")
        return np.take_along_axis(D, order, axis=1), order.astype(np.int64)
    # The k-th smallest value bounds the answer.  argpartition alone would pick an
    # arbitrary subset of the values tied with it; keeping every value <= bound and
    # sorting those few survivors by (value, id) gives ties to the smaller id.
    bound = np.partition(D, k - 1, axis=1)[:, k - 1 : k]
    return _smallest_under_bound(np.ascontiguousarray(D), k, bound)


def threshold_topk(D: np.ndarray, k: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of wide rows by "bound, filter, sort the few survivors".

    1. The k-th smallest value of every ``stride``-th column is an upper bound
       on the row's true k-th smallest value (a subset's k-th smallest can only
       be larger), and finding it touches only n / stride values.
    2. One vectorised comparison keeps the values at or below that bound: at
       least k per row, about k * stride on average.
    3. Sort those few survivors by (row, value, id) and take the first k of each row.

    ``D`` must be C-contiguous (it is flattened); :func:`topk_smallest` picks ``stride``.

    Radix/threshold selection on GPUs (and faiss's block-wise heaps) use the
    same trick: never move the whole row around, only the candidates.
    """
    D = np.ascontiguousarray(D)
    if D.ndim != 2:
        raise ValueError(f"D must be 2-D (n_queries, n), got shape {D.shape}")
    k = check_k(k, D.shape[1], what="the number of columns")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= D.shape[1] // k:
        raise ValueError(f"stride must be an int in [1, n // k = {D.shape[1] // k}], got {stride!r}")
    bound = np.partition(D[:, ::stride], k - 1, axis=1)[:, k - 1 : k]
    return _smallest_under_bound(D, k, bound)


def _smallest_under_bound(D: np.ndarray, k: int, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest values of each row of C-contiguous ``D`` among those <= ``bound`` (n_rows, 1).

    Every row must hold at least k values <= its bound.  Ties go to the smaller id.
    """
    n_rows, n = D.shape
    # flatnonzero on the flattened mask is ~10x faster than a 2-D nonzero, and
    # it returns the survivors in row-major order: by row, then by column id.
    flat = np.flatnonzero(D <= bound)
    rows, cols = np.divmod(flat, n)
    vals = D.ravel()[flat]
    # Sort by value, then stably by row: within a row, equal values keep their
    # column order, so ties go to the smaller id.
    order = np.argsort(vals, kind="stable")
    order = order[np.argsort(rows[order], kind="stable")]
    take = np.searchsorted(rows[order], np.arange(n_rows))[:, None] + np.arange(k)
    picked = order[take]
    return vals[picked], cols[picked].astype(np.int64)


def exact_knn(
    Q: np.ndarray,
    X: np.ndarray,
    k: int,
    metric: Metric = "l2",
    *,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of each query: brute force, done well.

    Parameters
    ----------
    Q : (n_queries, d) queries.
    X : (n, d) database.
    k : neighbours per query, 1 <= k <= n.
    metric : "l2" (squared distances, ascending), "ip" or "cosine" (similarities, descending).
    block_size : queries per block; bounds the (block_size, n) score matrix in
        memory.  Default: as many as fit in :data:`SCORE_BLOCK_BYTES` (64 MiB).

    Returns
    -------
    D : (n_queries, k) float32, best first.
    I : (n_queries, k) int64 database ids.
    """
    _check_metric(metric)
    Q = as_matrix(Q, "Q")
    X = as_matrix(X, "X")
    check_same_dim(Q, X, "Q", "X")
    k = check_k(k, X.shape[0])
    if metric == "cosine":
        Q, X = normalize(Q), normalize(X)
    if block_size is None:
        block_size = max(1, SCORE_BLOCK_BYTES // (4 * X.shape[0]))
    elif isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    x2 = np.einsum("ij,ij->i", X, X) if metric == "l2" else None
    D_out = np.empty((Q.shape[0], k), dtype=np.float32)
    I_out = np.empty((Q.shape[0], k), dtype=np.int64)
    # One score buffer for every block: a fresh 64 MiB array per block would
    # cost as much in page faults as the selection itself.
    buffer = np.empty((min(block_size, Q.shape[0]), X.shape[0]), dtype=np.float32)
    for start in range(0, Q.shape[0], block_size):
        Qb = Q[start : start + block_size]
        scores = buffer[: len(Qb)]
        if metric == "l2":
            # rank by ||x||^2 - 2 q.x; ||q||^2 is constant per row, so it is added to the k winners only.
            # The -2 multiplies the small query block, not the big (block, n) score matrix.
            np.matmul(-2.0 * Qb, X.T, out=scores)
            scores += x2
            d, i = topk_smallest(scores, k)
            d += np.einsum("ij,ij->i", Qb, Qb)[:, None]
            np.maximum(d, 0.0, out=d)
        else:
            np.matmul(-Qb, X.T, out=scores)  # negated: the most similar get the smallest scores
            d, i = topk_smallest(scores, k)
            d = -d
        D_out[start : start + len(Qb)] = d
        I_out[start : start + len(Qb)] = i
    return D_out, I_out


@dataclass(frozen=True)
class GroundTruth:
    """Exact neighbours of a query set: ``I`` and ``D`` of shape (n_queries, k)."""

    D: np.ndarray
    I: np.ndarray
    metric: str

    @property
    def k(self) -> int:
        return int(self.I.shape[1])


def ground_truth(Q: np.ndarray, X: np.ndarray, k: int = 100, metric: Metric = "l2") -> GroundTruth:
    """Exact top-``min(k, n)`` neighbours, kept once and reused to score every index."""
    X = as_matrix(X, "X")
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        k = min(int(k), X.shape[0])  # never more neighbours than the database holds
    D, I = exact_knn(Q, X, k, metric)  # exact_knn rejects a non-positive or non-int k
    return GroundTruth(D=D, I=I, metric=metric)


def exact_distances(Q: np.ndarray, X: np.ndarray, I: np.ndarray, metric: Metric = "l2") -> np.ndarray:
    """Exact distance (or similarity) between each query and each id in its row of ``I``.

    Entries with id -1 get +inf for "l2" and -inf for "ip"/"cosine" (never a hit).
    """
    _check_metric(metric)
    Q = as_matrix(Q, "Q")
    X = as_matrix(X, "X")
    check_same_dim(Q, X, "Q", "X")
    I = check_ids(I, "I")
    if I.shape[0] != Q.shape[0]:
        raise ValueError(f"I has {I.shape[0]} rows but there are {Q.shape[0]} queries")
    if I.size and (I.max() >= X.shape[0] or I.min() < -1):
        raise ValueError(f"I holds ids outside [-1, {X.shape[0] - 1}]")
    if metric == "cosine":
        Q, X = normalize(Q), normalize(X)
    V = X[np.maximum(I, 0)]  # (nq, k, d)
    if metric == "l2":
        out = ((V - Q[:, None, :]) ** 2).sum(-1)
        out[I < 0] = np.inf
    else:
        out = np.einsum("qkd,qd->qk", V, Q)
        out[I < 0] = -np.inf
    return out.astype(np.float32)


def recall_at_k(
    I_pred: np.ndarray,
    I_true: np.ndarray,
    k: int,
    *,
    D_pred: np.ndarray | None = None,
    D_true: np.ndarray | None = None,
    metric: Metric = "l2",
    tol: float = 1e-3,
) -> float:
    """Mean recall@k over queries: the share of the true k nearest that were returned.

    Without distances this is the plain id overlap
    ``|pred[:k] ∩ true[:k]| / k`` (duplicate and -1 ids never count).

    With ``D_pred`` (the *exact* distances of the returned ids, see
    :func:`exact_distances`) and ``D_true`` it is **tie-aware**, as in
    ann-benchmarks: a returned neighbour is a hit when its distance is no worse
    than the k-th true distance (within ``tol``).  When several points sit at
    exactly the k-th distance, any of them is a correct answer, and an exact
    method that breaks the tie differently must still score 1.0.
    """
    _check_metric(metric)
    I_pred = check_ids(I_pred, "I_pred")
    I_true = check_ids(I_true, "I_true")
    if I_pred.shape[0] != I_true.shape[0]:
        raise ValueError(f"I_pred has {I_pred.shape[0]} queries but I_true has {I_true.shape[0]}")
    k = check_k(k, I_true.shape[1], what="the ground truth's columns")
    if I_pred.shape[1] < k:
        raise ValueError(f"I_pred has only {I_pred.shape[1]} columns, need at least k={k}")
    if (D_pred is None) != (D_true is None):
        raise ValueError("give both D_pred and D_true (tie-aware) or neither (id overlap)")
    hits = np.zeros(I_pred.shape[0])
    if D_pred is None:
        for row, (pred, true) in enumerate(zip(I_pred[:, :k], I_true[:, :k])):
            hits[row] = len(set(pred[pred >= 0].tolist()) & set(true.tolist()))
    else:
        D_pred = np.asarray(D_pred, dtype=np.float64)
        D_true = np.asarray(D_true, dtype=np.float64)
        if D_pred.shape != I_pred.shape or D_true.shape != I_true.shape:
            raise ValueError("D_pred/D_true must have the shapes of I_pred/I_true")
        kth = D_true[:, k - 1]
        for row in range(I_pred.shape[0]):
            ids, first = np.unique(I_pred[row, :k], return_index=True)
            d = D_pred[row, :k][first[ids >= 0]]
            good = d <= kth[row] + tol if metric == "l2" else d >= kth[row] - tol
            hits[row] = min(int(good.sum()), k)
    return float(hits.mean() / k)


def same_neighbours(
    D_a: np.ndarray, I_a: np.ndarray, D_b: np.ndarray, I_b: np.ndarray, *, tol: float = 1e-4
) -> np.ndarray:
    """Per query, do two exact searches agree, up to ties?

    They agree when the sorted distances match within ``tol`` (relative to the
    scale of the distances) and the ids match wherever the distance is not tied
    with a neighbour's: two ids may swap places only if their distances are equal.
    Returns a boolean array of shape (n_queries,).
    """
    D_a, D_b = np.asarray(D_a, np.float64), np.asarray(D_b, np.float64)
    I_a, I_b = check_ids(I_a, "I_a"), check_ids(I_b, "I_b")
    if not (D_a.shape == D_b.shape == I_a.shape == I_b.shape):
        raise ValueError(
            f"shapes differ: D_a {D_a.shape}, I_a {I_a.shape}, D_b {D_b.shape}, I_b {I_b.shape}"
        )
    scale = np.maximum(np.abs(D_a).max(axis=1, keepdims=True), 1.0)
    close = np.abs(D_a - D_b) <= tol * scale
    ok = close.all(axis=1)
    for row in np.flatnonzero(ok):
        a, b, d = I_a[row], I_b[row], D_a[row]
        differ = a != b
        if not differ.any():
            continue
        # ids may differ only inside groups of tied distances: compare the sets per group
        groups = np.concatenate([[0], np.cumsum(np.abs(np.diff(d)) > tol * scale[row, 0])])
        edge = d[-1]
        for g in np.unique(groups[differ]):
            members = groups == g
            if np.abs(d[members][0] - edge) <= tol * scale[row, 0]:
                continue  # the tie straddles the k-th place: any choice is correct
            if set(a[members].tolist()) != set(b[members].tolist()):
                ok[row] = False
                break
    return ok
