"""course_lib.vec: exact search against a naive argsort and against faiss; recall; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import vec


def naive(Q, X, k, metric):
    if metric == "cosine":
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    if metric == "l2":
        D = ((Q[:, None, :].astype(np.float64) - X[None].astype(np.float64)) ** 2).sum(-1)
    else:
        D = -(Q.astype(np.float64) @ X.T.astype(np.float64))
    I = np.argsort(D, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(D, I, axis=1)
    return (d if metric == "l2" else -d), I


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("k", [1, 7, 50])
def test_exact_knn_matches_naive(rng, metric, k):
    X = rng.standard_normal((50, 9)).astype(np.float32)
    Q = rng.standard_normal((6, 9)).astype(np.float32)
    D, I = vec.exact_knn(Q, X, k, metric, block_size=4)
    D_ref, I_ref = naive(Q, X, k, metric)
    assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == I.shape == (6, k)
    np.testing.assert_allclose(D, D_ref, rtol=1e-4, atol=1e-4)
    sign = 1 if metric == "l2" else -1
    assert vec.same_neighbours(sign * D, I, sign * D_ref.astype(np.float32), I_ref).all()


def test_exact_knn_matches_faiss(rng):
    faiss = pytest.importorskip("faiss")
    X = rng.standard_normal((2000, 32)).astype(np.float32)
    Q = rng.standard_normal((50, 32)).astype(np.float32)
    for metric, index in (("l2", faiss.IndexFlatL2(32)), ("ip", faiss.IndexFlatIP(32))):
        index.add(X)
        Df, If = index.search(Q, 10)
        D, I = vec.exact_knn(Q, X, 10, metric)
        sign = 1 if metric == "l2" else -1
        assert vec.same_neighbours(sign * D, I, sign * Df, If).all()


def test_ties_broken_by_smaller_id():
    X = np.zeros((5, 2), np.float32)
    D, I = vec.exact_knn(np.zeros((1, 2), np.float32), X, 3)
    assert I.tolist() == [[0, 1, 2]]
    assert D.tolist() == [[0, 0, 0]]


def test_pairwise_identities(rng):
    X = vec.normalize(rng.standard_normal((20, 5)))
    Q = vec.normalize(rng.standard_normal((4, 5)))
    np.testing.assert_allclose(vec.pairwise_sq_l2(Q, X), 2 - 2 * vec.pairwise_cosine(Q, X), atol=1e-5)
    np.testing.assert_allclose(vec.pairwise(Q, X, "ip"), Q @ X.T, atol=1e-6)
    assert (vec.pairwise_sq_l2(X, X) >= 0).all()


@pytest.mark.parametrize(
    "Q, X, k, message",
    [
        (np.ones((2, 3)), np.ones((5, 4)), 1, "dimension mismatch"),
        (np.ones(3), np.ones((5, 3)), 1, "2-D"),
        (np.ones((2, 3)), np.ones((5, 3)), 6, "larger than"),
        (np.ones((2, 3)), np.ones((5, 3)), 0, ">= 1"),
        (np.ones((2, 3)), np.ones((5, 3)), 1.5, "positive int"),
        (np.full((2, 3), np.nan), np.ones((5, 3)), 1, "NaN"),
        (np.ones((2, 3)), np.ones((0, 3)), 1, "empty"),
        (np.array([["a", "b"]]), np.ones((5, 2)), 1, "numeric"),
    ],
)
def test_exact_knn_bad_input(Q, X, k, message):
    with pytest.raises(ValueError, match=message):
        vec.exact_knn(Q, X, k)


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        vec.exact_knn(np.ones((1, 2)), np.ones((3, 2)), 1, metric="manhattan")


def test_recall_plain():
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    assert vec.recall_at_k(truth, truth, 3) == 1.0
    assert vec.recall_at_k(np.array([[3, 2, 1], [7, 8, 9]]), truth, 3) == 0.5
    assert vec.recall_at_k(np.array([[1, 1, -1], [4, 5, 6]]), truth, 3) == pytest.approx((1 / 3 + 1) / 2)
    assert vec.recall_at_k(np.array([[1, 9, 9], [4, 9, 9]]), truth, 1) == 1.0


def test_recall_tie_aware():
    # four points at the same distance: any two of them are a correct top-2
    X = np.array([[1, 0], [0, 1], [-1, 0], [0, -1], [5, 5]], np.float32)
    Q = np.zeros((1, 2), np.float32)
    gt = vec.ground_truth(Q, X, k=2)
    pred = np.array([[3, 2]])
    assert vec.recall_at_k(pred, gt.I, 2) < 1.0
    D_pred = vec.exact_distances(Q, X, pred)
    assert vec.recall_at_k(pred, gt.I, 2, D_pred=D_pred, D_true=gt.D) == 1.0
    far = np.array([[4, 0]])
    assert vec.recall_at_k(far, gt.I, 2, D_pred=vec.exact_distances(Q, X, far), D_true=gt.D) == 0.5


def test_recall_bad_input():
    with pytest.raises(ValueError, match="queries"):
        vec.recall_at_k(np.zeros((2, 3), int), np.zeros((3, 3), int), 2)
    with pytest.raises(ValueError, match="larger than"):
        vec.recall_at_k(np.zeros((2, 3), int), np.zeros((2, 3), int), 4)
    with pytest.raises(ValueError, match="integer"):
        vec.recall_at_k(np.zeros((2, 3)), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="both"):
        vec.recall_at_k(np.zeros((2, 3), int), np.zeros((2, 3), int), 2, D_pred=np.zeros((2, 3)))


def test_exact_distances_padding(rng):
    X = rng.standard_normal((10, 3)).astype(np.float32)
    Q = rng.standard_normal((2, 3)).astype(np.float32)
    d = vec.exact_distances(Q, X, np.array([[0, -1], [1, 2]]))
    assert np.isinf(d[0, 1]) and d[0, 1] > 0
    np.testing.assert_allclose(d[1, 0], ((Q[1] - X[1]) ** 2).sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        vec.exact_distances(Q, X, np.array([[10], [0]]))


def test_same_neighbours_detects_wrong_ids():
    D = np.array([[0.1, 0.2, 0.3]], np.float32)
    assert vec.same_neighbours(D, np.array([[1, 2, 3]]), D, np.array([[1, 2, 3]])).all()
    assert not vec.same_neighbours(D, np.array([[1, 2, 3]]), D, np.array([[1, 4, 3]])).any()
    tied = np.array([[0.1, 0.2, 0.2]], np.float32)
    assert vec.same_neighbours(tied, np.array([[1, 2, 3]]), tied, np.array([[1, 3, 2]])).all()
    assert vec.same_neighbours(tied, np.array([[1, 2, 3]]), tied, np.array([[1, 2, 9]])).all()  # tie at the k-th place
    assert not vec.same_neighbours(D, np.array([[1, 2, 3]]), D * 2, np.array([[1, 2, 3]])).any()


def test_topk_smallest_k_equals_n(rng):
    D = rng.random((3, 4))
    vals, ids = vec.topk_smallest(D, 4)
    np.testing.assert_array_equal(ids, np.argsort(D, axis=1))


@pytest.mark.parametrize("k", [1, 5, 10])
def test_threshold_select_equals_full_sort(rng, k):
    # wide rows take the bound-filter-sort path; include heavy ties and a sorted (adversarial) row
    D = rng.integers(0, 50, size=(7, 40_000)).astype(np.float32)
    D[0] = np.arange(40_000)[::-1]
    D[1] = 3.0
    vals, ids = vec.topk_smallest(D, k)
    ref_ids = np.lexsort((np.broadcast_to(np.arange(D.shape[1]), D.shape), D), axis=1)[:, :k]
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(vals, np.take_along_axis(D, ref_ids, axis=1))


def test_threshold_topk_validates(rng):
    D = rng.random((2, 100))
    with pytest.raises(ValueError, match="stride"):
        vec.threshold_topk(D, 10, 11)
    with pytest.raises(ValueError, match="stride"):
        vec.threshold_topk(D, 10, 0)
    vals, ids = vec.threshold_topk(D, 10, 10)  # stride = n // k keeps exactly k sample columns: still exact
    np.testing.assert_array_equal(ids, np.argsort(D, axis=1)[:, :10])


def test_k1_takes_the_smallest_tied_id(rng):
    D = np.array([[3.0, 1.0, 1.0, 2.0]], np.float32)
    vals, ids = vec.topk_smallest(D, 1)
    assert ids.tolist() == [[1]] and vals.tolist() == [[1.0]] and ids.dtype == np.int64
    X = rng.standard_normal((300, 5)).astype(np.float32)
    Q = rng.standard_normal((20, 5)).astype(np.float32)
    np.testing.assert_array_equal(vec.exact_knn(Q, X, 1)[1], vec.exact_knn(Q, X, 3)[1][:, :1])


def test_topk_smallest_gives_ties_to_the_smaller_id_on_every_path():
    """Ties at the k-th place go to the smaller id, whichever selection path runs (found by lesson 04.01)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        D = rng.integers(0, 5, size=(3, int(rng.integers(2, 300)))).astype(np.float32)
        k = int(rng.integers(1, D.shape[1] + 1))
        _, ids = vec.topk_smallest(D, k)
        want = np.lexsort((np.broadcast_to(np.arange(D.shape[1]), D.shape), D), axis=1)[:, :k]
        np.testing.assert_array_equal(ids, want)
    _, ids = vec.topk_smallest(np.zeros((1, 6302)), 100)  # all tied: the argpartition path
    np.testing.assert_array_equal(ids[0], np.arange(100))
