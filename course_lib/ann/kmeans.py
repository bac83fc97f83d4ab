"""k-means, the way faiss trains it: the training step of IVF (coarse centroids) and PQ (codebooks).

Lloyd's algorithm alternates two steps until the objective stops falling:

1. **assign** every point to its nearest centroid (one exact k-NN search with k=1);
2. **update** every centroid to the mean of its points.

Details that match ``faiss.Clustering`` (faiss/Clustering.cpp):

* at most ``max_points_per_centroid * k`` training points (default 256 * k), a random subset;
* initialisation by a random subset of the points (``init="random"``, faiss's
  default) or by k-means++ (Arthur & Vassilvitskii 2007);
* an empty cluster is re-seeded by splitting a large one: copy its centroid
  and push the two copies apart by a relative 1/1024, alternating signs per
  dimension (faiss's ``split_clusters``);
* the objective is the sum of squared distances of the points to their centroids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validate import as_matrix
from ..vec import exact_knn

EPS = 1.0 / 1024.0


@dataclass(frozen=True)
class KMeansResult:
    """centroids (k, d) float32, assign (n,) int64 on the training points, objective per iteration."""

    centroids: np.ndarray
    assign: np.ndarray
    objective: tuple[float, ...]


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} clusters need at least k training points, got n={n}")
    return int(k)


def kmeanspp_init(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new centre is drawn with probability proportional to D(x)^2.

    D(x) is the distance from x to the nearest centre chosen so far, so far-away
    regions get a centre early.  Returns float32 (k, d) centres (rows of X).
    """
    X = as_matrix(X, "X")
    k = _check_k(k, len(X))
    centres = np.empty((k, X.shape[1]), dtype=np.float32)
    centres[0] = X[rng.integers(len(X))]
    d2 = ((X - centres[0]) ** 2).sum(axis=1).astype(np.float64)
    for i in range(1, k):
        total = d2.sum()
        # all remaining points coincide with a centre: any choice is as good
        idx = rng.integers(len(X)) if total <= 0 else rng.choice(len(X), p=d2 / total)
        centres[i] = X[idx]
        np.minimum(d2, ((X - centres[i]) ** 2).sum(axis=1), out=d2)
    return centres


def _split_empty_clusters(centroids: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> int:
    """Re-seed empty clusters by splitting populous ones (faiss's rule). Returns how many were split."""
    n = counts.sum()
    k, d = centroids.shape
    n_split = 0
    for ci in np.flatnonzero(counts == 0):
        # pick a cluster to split with probability proportional to (size - 1)
        while True:
            cj = int(rng.integers(k))
            if counts[cj] > 1 and rng.random() < (counts[cj] - 1.0) / max(n - k, 1):
                break
        centroids[ci] = centroids[cj]
        sign = np.where(np.arange(d) % 2 == 0, 1.0, -1.0).astype(np.float32)
        centroids[ci] *= 1 + EPS * sign
        centroids[cj] *= 1 - EPS * sign
        counts[ci] = counts[cj] // 2
        counts[cj] -= counts[ci]
        n_split += 1
    return n_split


def kmeans(
    X: np.ndarray,
    k: int,
    *,
    niter: int = 25,
    seed: int = 1234,
    init: str | np.ndarray = "random",
    max_points_per_centroid: int = 256,
) -> KMeansResult:
    """Cluster ``X`` (n, d) into ``k`` centroids with Lloyd's algorithm (see the module docstring).

    ``init`` is "random", "kmeans++" or a (k, d) array of starting centroids
    (to compare with faiss from the same start: ``faiss.Kmeans.train(X, init_centroids=C0)``).
    """
    X = as_matrix(X, "X")
    k = _check_k(k, len(X))
    if isinstance(init, np.ndarray):
        start = as_matrix(init, "init")
        if start.shape != (k, X.shape[1]):
            raise ValueError(f"init centroids must have shape {(k, X.shape[1])}, got {start.shape}")
    elif init not in ("random", "kmeans++"):
        raise ValueError(f"init must be 'random', 'kmeans++' or an array of centroids, got {init!r}")
    if isinstance(niter, bool) or not isinstance(niter, (int, np.integer)) or niter < 1:
        raise ValueError(f"niter must be a positive int, got {niter!r}")
    rng = np.random.default_rng(seed)
    if len(X) > max_points_per_centroid * k:
        X = X[np.sort(rng.choice(len(X), size=max_points_per_centroid * k, replace=False))]
    if isinstance(init, np.ndarray):
        centroids = start.copy()
    elif init == "random":
        centroids = X[rng.choice(len(X), size=k, replace=False)].copy()
    else:
        centroids = kmeanspp_init(X, k, rng)
    objective: list[float] = []
    for _ in range(niter):
        D, I = exact_knn(X, centroids, 1)
        assign = I[:, 0]
        objective.append(float(D.sum(dtype=np.float64)))
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros((k, X.shape[1]), dtype=np.float64)
        np.add.at(sums, assign, X.astype(np.float64))  # same dtype on both sides: numpy's fast path
        nonempty = counts > 0
        centroids[nonempty] = (sums[nonempty] / counts[nonempty, None]).astype(np.float32)
        _split_empty_clusters(centroids, counts, rng)
    D, I = exact_knn(X, centroids, 1)
    return KMeansResult(centroids=centroids, assign=I[:, 0], objective=tuple(objective))


def assign_to_centroids(X: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row of X: (squared distance (n,), centroid id (n,))."""
    D, I = exact_knn(X, centroids, 1)
    return D[:, 0], I[:, 0]
