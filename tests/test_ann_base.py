"""The shared index API (course_lib.ann.base) through the exact FlatIndex."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.ann import FlatIndex, Index, NotTrainedError


@pytest.fixture
def data(rng):
    return rng.standard_normal((300, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_matches_faiss(data, metric):
    faiss = pytest.importorskip("faiss")
    X, Q = data
    ref = faiss.IndexFlatL2(8) if metric == "l2" else faiss.IndexFlatIP(8)
    ref.add(X)
    index = FlatIndex(8, metric).add(X)
    D, I = index.search(Q, 10)
    Dr, Ir = ref.search(Q, 10)
    np.testing.assert_array_equal(I, Ir)
    np.testing.assert_allclose(D, Dr, rtol=1e-4, atol=1e-4)
    assert D.dtype == np.float32 and I.dtype == np.int64
    assert index.stats.dist_per_query == 300 and index.bytes_per_vector == 32


def test_pads_when_fewer_than_k(data):
    X, Q = data
    D, I = FlatIndex(8).add(X[:3]).search(Q, 5)
    assert (I[:, 3:] == -1).all() and np.isinf(D[:, 3:]).all() and (I[:, :3] >= 0).all()
    D, I = FlatIndex(8, "ip").add(X[:3]).search(Q, 5)
    assert (D[:, 3:] == -np.inf).all()


def test_save_load_round_trip(data, tmp_path):
    X, Q = data
    index = FlatIndex(8, "ip").add(X)
    path = index.save(tmp_path / "flat.npz")
    again = Index.load(path)
    assert isinstance(again, FlatIndex) and again.ntotal == 300 and again.metric == "ip"
    for a, b in zip(index.search(Q, 7), again.search(Q, 7), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda idx, X, Q: idx.add(X[:, :4]), ValueError, "dimension mismatch"),
        (lambda idx, X, Q: idx.search(Q, 0), ValueError, "positive int"),
        (lambda idx, X, Q: idx.search(Q, 2.5), ValueError, "positive int"),
        (lambda idx, X, Q: idx.search(np.full_like(Q, np.nan), 1), ValueError, "NaN"),
        (lambda idx, X, Q: idx.search(Q.astype(str), 1), ValueError, "float array"),
        (lambda idx, X, Q: idx.add(X[:0]), ValueError, "empty"),
        (lambda idx, X, Q: idx.search(Q, 1, nprobe=3), ValueError, "unknown search parameter"),
    ],
)
def test_bad_input(data, call, error, message):
    X, Q = data
    index = FlatIndex(8).add(X)
    with pytest.raises(error, match=message):
        call(index, X, Q)


def test_empty_and_untrained(data):
    X, Q = data
    with pytest.raises(ValueError, match="empty"):
        FlatIndex(8).search(Q, 1)

    class NeedsTraining(FlatIndex):
        needs_training = True

        def _train(self, X):
            pass

    with pytest.raises(NotTrainedError, match="train"):
        NeedsTraining(8).add(X)
    with pytest.raises(NotTrainedError):
        NeedsTraining(8).search(Q, 1)
    assert NeedsTraining(8).train(X).add(X).ntotal == 300


def test_constructor_and_load_errors(tmp_path):
    with pytest.raises(ValueError, match="positive int"):
        FlatIndex(0)
    with pytest.raises(ValueError, match="metric"):
        FlatIndex(4, "cosine")
    with pytest.raises(ValueError, match="no index file"):
        Index.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a course_lib index"):
        Index.load(tmp_path / "other.npz")
