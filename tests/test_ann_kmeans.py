"""course_lib.ann.kmeans against faiss.Kmeans, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.ann.kmeans import _split_empty_clusters, assign_to_centroids, kmeans, kmeanspp_init
from course_lib.data import make_gaussian_mixture


def test_objective_within_2_percent_of_faiss_from_the_same_start():
    # From a random start the objective varies by ~10% between seeds (for faiss too),
    # so the fair comparison starts both from the same centroids.
    faiss = pytest.importorskip("faiss")
    X = make_gaussian_mixture(8000, 16, seed=0)
    C0 = X[np.random.default_rng(0).choice(len(X), 64, replace=False)]
    ours = kmeans(X, 64, niter=20, init=C0)
    ref = faiss.Kmeans(16, 64, niter=20, seed=1234)
    ref.train(X, init_centroids=C0)
    assert abs(ours.objective[-1] - ref.obj[-1]) / ref.obj[-1] < 0.02
    assert ours.objective[-1] <= ours.objective[0]  # Lloyd never increases the objective


def test_kmeanspp_spreads_centres(rng):
    X = np.concatenate([rng.normal(c, 0.01, size=(100, 2)) for c in (0, 10, 20)]).astype(np.float32)
    centres = kmeanspp_init(X, 3, np.random.default_rng(0))
    assert sorted(np.round(centres[:, 0] / 10).astype(int)) == [0, 1, 2]


def test_split_empty_cluster():
    centroids = np.array([[1.0, 2.0], [5.0, 5.0]], np.float32)
    counts = np.array([10, 0])
    assert _split_empty_clusters(centroids, counts, np.random.default_rng(0)) == 1
    assert counts.tolist() == [5, 5] and not np.array_equal(centroids[0], centroids[1])
    np.testing.assert_allclose(centroids[0], centroids[1], rtol=1e-2)


def test_assign_and_errors(rng):
    X = rng.standard_normal((50, 3)).astype(np.float32)
    result = kmeans(X, 4, niter=3)
    d, a = assign_to_centroids(X, result.centroids)
    np.testing.assert_array_equal(a, result.assign)
    with pytest.raises(ValueError, match="at least k"):
        kmeans(X, 51)
    with pytest.raises(ValueError, match="init"):
        kmeans(X, 2, init="farthest")
    with pytest.raises(ValueError, match="niter"):
        kmeans(X, 2, niter=0)
