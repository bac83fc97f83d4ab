"""Tests for the chapter 02 (vector search) exercises."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_01 = "02_vector_search/01_similarity_and_recall"


# --------------------------------------------------------------------------- helpers
def _reference_topk_cosine(Q: np.ndarray, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Qn @ Xn.T
    I = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, I, axis=1), I


def _call_topk(fn: Callable[..., Any], Q: np.ndarray, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    out = fn(Q.copy(), X.copy(), k)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TestFailure(f"expected a tuple (scores, ids), got {type(out).__name__}")
    S, I = (np.asarray(a) for a in out)
    want = (Q.shape[0], k)
    if S.shape != want or I.shape != want:
        raise TestFailure(f"expected scores and ids of shape {want}, got {S.shape} and {I.shape}")
    if not np.issubdtype(I.dtype, np.integer):
        raise TestFailure(f"ids must be integers, got dtype {I.dtype}")
    return S.astype(np.float64), I


def _data(seed: int, n: int = 300, d: int = 16, nq: int = 7, scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Random queries and database; ``scale=False`` gives unit rows, so that a
    test about another mistake does not also fail for a missing normalisation."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Q = rng.standard_normal((nq, d)).astype(np.float32)
    if scale:  # very different norms: a dot product ranks differently from a cosine
        X *= rng.uniform(0.1, 10.0, size=(n, 1)).astype(np.float32)
        Q *= rng.uniform(0.1, 10.0, size=(nq, 1)).astype(np.float32)
    else:
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return Q, X


def _assert_same_topk(S: np.ndarray, I: np.ndarray, S_ref: np.ndarray, I_ref: np.ndarray, all_scores: np.ndarray) -> None:
    """Scores must match; ids may differ only where scores tie."""
    if np.abs(S - S_ref).max() > 1e-4:
        row = int(np.abs(S - S_ref).max(axis=1).argmax())
        raise TestFailure(
            f"scores differ from the exact cosine top-k (query {row}: got {np.round(S[row, :3], 4)}, "
            f"expected {np.round(S_ref[row, :3], 4)}, ...)"
        )
    true_scores = np.take_along_axis(all_scores, I, axis=1)
    if np.abs(true_scores - S_ref).max() > 1e-4:
        raise TestFailure("the ids you return do not have the scores you return")


# --------------------------------------------------------------------------- topk_cosine
topk = register(
    "vector_search.topk_cosine",
    function="topk_cosine",
    title="Exact top-k by cosine similarity",
    lesson=LESSON_01,
    points=2,
    timeout_s=30,
)


@topk.test("returns (scores, ids), each of shape (n_queries, k)", hint="return a tuple (S, I); S[i, j] is the cosine of query i with its j-th neighbour X[I[i, j]]")
def _topk_shapes(fn: Callable[..., Any]) -> None:
    Q, X = _data(0)
    _call_topk(fn, Q, X, 5)


@topk.test("same neighbours as exact cosine search on unit vectors", hint="cosine similarity of unit vectors is their dot product: S = Q @ X.T, then take the k largest per row")
def _topk_unit(fn: Callable[..., Any]) -> None:
    Q, X = _data(1, scale=False)
    S, I = _call_topk(fn, Q, X, 10)
    S_ref, I_ref = _reference_topk_cosine(Q, X, 10)
    _assert_same_topk(S, I, S_ref, I_ref, Q.astype(np.float64) @ X.T.astype(np.float64))


@topk.test("normalises vectors of different lengths", hint="forgetting to normalise: divide every row of Q and of X by its L2 norm before the dot product, otherwise long vectors win (that is MIPS, not cosine)")
def _topk_normalises(fn: Callable[..., Any]) -> None:
    Q, X = _data(2, scale=True)
    S, I = _call_topk(fn, Q, X, 10)
    S_ref, I_ref = _reference_topk_cosine(Q, X, 10)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    _assert_same_topk(S, I, S_ref, I_ref, Qn.astype(np.float64) @ Xn.T.astype(np.float64))
    if np.max(np.abs(S)) > 1 + 1e-4:
        raise TestFailure(f"a cosine similarity is in [-1, 1], got {np.max(np.abs(S)):.3f}")


@topk.test("sorted best first", hint="np.argpartition finds the k largest but does not sort them: sort those k by score, descending")
def _topk_sorted(fn: Callable[..., Any]) -> None:
    Q, X = _data(3, scale=False)
    S, _ = _call_topk(fn, Q, X, 20)
    if (np.diff(S, axis=1) > 1e-6).any():
        raise TestFailure("scores in a row must be in descending order (most similar first)")


@topk.test("k = 1 and k = n both work", hint="off-by-one in k: argpartition(-S, k - 1) puts the k largest in the first k columns; then slice [:, :k]. k == n needs no partition at all")
def _topk_edges(fn: Callable[..., Any]) -> None:
    Q, X = _data(4, n=50, scale=False)
    for k in (1, 50):
        S, I = _call_topk(fn, Q, X, k)
        S_ref, I_ref = _reference_topk_cosine(Q, X, k)
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        _assert_same_topk(S, I, S_ref, I_ref, Qn.astype(np.float64) @ Xn.T.astype(np.float64))


@topk.test("ties: any tied neighbour is correct, but no id twice", hint="with duplicate vectors several ids share a score; any of them is right, but each row must list distinct ids")
def _topk_ties(fn: Callable[..., Any]) -> None:
    Q, X = _data(5, n=40, scale=False)
    X = np.repeat(X, 3, axis=0)  # every vector three times: ties everywhere
    S, I = _call_topk(fn, Q, X, 7)
    for row in I:
        if len(set(row.tolist())) != len(row):
            raise TestFailure(f"an id appears twice in one row: {row.tolist()}")
    S_ref, I_ref = _reference_topk_cosine(Q, X, 7)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    _assert_same_topk(S, I, S_ref, I_ref, Qn.astype(np.float64) @ Xn.T.astype(np.float64))


@topk.test("does not modify its inputs", hint="normalising in place (Q /= ...) changes the caller's arrays: make new arrays instead")
def _topk_pure(fn: Callable[..., Any]) -> None:
    Q, X = _data(6)
    Q0, X0 = Q.copy(), X.copy()
    fn(Q, X, 3)
    if not (np.array_equal(Q, Q0) and np.array_equal(X, X0)):
        raise TestFailure("Q or X was changed by the call")


# --------------------------------------------------------------------------- recall_at_k
recall = register(
    "vector_search.recall_at_k",
    function="recall_at_k",
    title="recall@k of approximate neighbour ids",
    lesson=LESSON_01,
    points=1,
    timeout_s=30,
)


def _recall(fn: Callable[..., Any], pred: Any, truth: Any, k: int) -> float:
    out = fn(np.asarray(pred), np.asarray(truth), k)
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise TestFailure(f"expected a number, got {type(out).__name__}") from None
    return value


def _expect(fn: Callable[..., Any], pred: Any, truth: Any, k: int, want: float) -> None:
    got = _recall(fn, pred, truth, k)
    if abs(got - want) > 1e-9:
        raise TestFailure(f"recall_at_k(pred={np.asarray(pred).tolist()}, truth={np.asarray(truth).tolist()}, k={k}) = {got}, expected {want}")


@recall.test("perfect and disjoint answers", hint="recall@k = |pred[:k] ∩ truth[:k]| / k, averaged over queries")
def _recall_basic(fn: Callable[..., Any]) -> None:
    _expect(fn, [[1, 2, 3]], [[1, 2, 3]], 3, 1.0)
    _expect(fn, [[4, 5, 6]], [[1, 2, 3]], 3, 0.0)


@recall.test("order does not matter", hint="recall compares sets of ids, not positions: use a set intersection, not pred == truth")
def _recall_order(fn: Callable[..., Any]) -> None:
    _expect(fn, [[3, 1, 2]], [[1, 2, 3]], 3, 1.0)


@recall.test("only the first k columns count", hint="off-by-one / wrong slice: take pred[:, :k] and truth[:, :k], and divide by k")
def _recall_k(fn: Callable[..., Any]) -> None:
    _expect(fn, [[1, 9, 2, 3]], [[1, 2, 3, 4]], 2, 0.5)
    _expect(fn, [[1, 2, 7, 8]], [[1, 2, 3, 4]], 2, 1.0)


@recall.test("averaged over queries", hint="compute the recall of each query (row), then take the mean")
def _recall_mean(fn: Callable[..., Any]) -> None:
    _expect(fn, [[1, 2], [1, 9]], [[1, 2], [1, 2]], 2, 0.75)


@recall.test("a repeated id counts once; -1 (no result) never counts", hint="returning the same neighbour twice must not score twice: intersect sets, and ignore -1 padding")
def _recall_dupes(fn: Callable[..., Any]) -> None:
    _expect(fn, [[1, 1, 1]], [[1, 2, 3]], 3, 1 / 3)
    _expect(fn, [[1, -1, -1]], [[1, 2, 3]], 3, 1 / 3)


@recall.test("agrees with course_lib.vec.recall_at_k on a real search", hint="check shapes: pred and truth are (n_queries, >= k) arrays of ids")
def _recall_real(fn: Callable[..., Any]) -> None:
    from ...vec import recall_at_k as reference

    rng = np.random.default_rng(7)
    truth = np.stack([rng.permutation(100)[:20] for _ in range(25)])
    pred = truth.copy()
    noise = rng.random(pred.shape) < 0.3
    pred[noise] = rng.integers(100, 200, size=noise.sum())
    got, want = _recall(fn, pred, truth, 10), reference(pred, truth, 10)
    if abs(got - want) > 1e-9:
        raise TestFailure(f"got {got:.4f}, expected {want:.4f}")
