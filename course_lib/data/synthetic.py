"""Seeded synthetic vector sets.

I.i.d. isotropic Gaussians are a poor stand-in for real embeddings: in high
dimension all their distances concentrate, so every index looks bad.  Real
data lies near a low-dimensional structure.  :func:`make_gaussian_mixture`
lets you choose that intrinsic dimension explicitly.
"""

from __future__ import annotations

import numpy as np

from ..validate import as_matrix


def _check_sizes(n: int, d: int) -> None:
    for name, value in (("n", n), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _random_orthonormal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows (rows <= cols)."""
    A = rng.standard_normal((cols, rows))
    Qm, _ = np.linalg.qr(A)
    return Qm.T


def make_uniform(n: int, d: int, seed: int = 0) -> np.ndarray:
    """``n`` points uniform in the unit cube [0, 1)^d, float32 (n, d)."""
    _check_sizes(n, d)
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def make_gaussian_mixture(
    n: int,
    d: int,
    *,
    n_clusters: int = 32,
    intrinsic_dim: int | None = 16,
    cluster_std: float = 0.35,
    noise_std: float = 0.02,
    seed: int = 0,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Clustered data lying near an ``intrinsic_dim``-dimensional subspace of R^d.

    Cluster centres ~ N(0, I) and points ~ centre + N(0, cluster_std^2 I) are
    drawn in ``intrinsic_dim`` dimensions, mapped into R^d by a random
    orthonormal map, and a little isotropic noise (``noise_std``) is added in
    all d dimensions.  ``intrinsic_dim=None`` means d (full rank).
    Cluster sizes are unequal (Dirichlet weights), as in real data.

    Returns float32 (n, d), and int64 labels (n,) if ``return_labels``.
    """
    _check_sizes(n, d)
    m = d if intrinsic_dim is None else intrinsic_dim
    if not 1 <= m <= d:
        raise ValueError(f"intrinsic_dim must be in [1, d={d}], got {intrinsic_dim}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_clusters, 2.0))
    labels = rng.choice(n_clusters, size=n, p=weights)
    centres = rng.standard_normal((n_clusters, m))
    low = centres[labels] + cluster_std * rng.standard_normal((n, m))
    X = low @ _random_orthonormal(m, d, rng) + noise_std * rng.standard_normal((n, d))
    X = X.astype(np.float32)
    return (X, labels.astype(np.int64)) if return_labels else X


def make_anisotropic(n: int, d: int, *, decay: float = 1.0, seed: int = 0) -> np.ndarray:
    """A rotated Gaussian whose axis scales fall as a power law, i^-decay.

    A smooth version of "low intrinsic dimension": most variance lives in the
    first few directions of an unknown basis (like PCA spectra of real embeddings).
    """
    _check_sizes(n, d)
    if decay < 0:
        raise ValueError(f"decay must be >= 0, got {decay}")
    rng = np.random.default_rng(seed)
    scales = np.arange(1, d + 1, dtype=np.float64) ** -decay
    Z = rng.standard_normal((n, d)) * scales
    return (Z @ _random_orthonormal(d, d, rng)).astype(np.float32)


def split_queries(X: np.ndarray, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold ``n_queries`` random rows out of ``X``: returns (database, queries).

    Queries must not be in the database, or every search trivially finds the
    query itself at distance 0.
    """
    X = as_matrix(X, "X")
    if not 1 <= n_queries < X.shape[0]:
        raise ValueError(f"n_queries must be in [1, {X.shape[0] - 1}], got {n_queries}")
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    return X[np.sort(perm[n_queries:])], X[np.sort(perm[:n_queries])]


def intrinsic_dimension(X: np.ndarray, k: int = 10, max_points: int = 2000, seed: int = 0) -> float:
    """Levina-Bickel maximum-likelihood estimate of the intrinsic dimension.

    For each point, with T_j the distance to its j-th neighbour,
    m_hat = ((k-1) / sum_{j<k} log(T_k / T_j)) averaged over points (the
    MacKay-Ghahramani correction: average the inverses).  Estimated on at most
    ``max_points`` points against the whole set.
    """
    from ..vec import exact_knn

    X = as_matrix(X, "X")
    if X.shape[0] < k + 2:
        raise ValueError(f"need more than k+1={k + 1} points, got {X.shape[0]}")
    rng = np.random.default_rng(seed)
    sample = X[rng.choice(X.shape[0], size=min(max_points, X.shape[0]), replace=False)]
    D, _ = exact_knn(sample, X, k + 1)
    T = np.sqrt(np.maximum(D[:, 1:], 1e-20)).astype(np.float64)  # drop the point itself
    logs = np.log(T[:, -1:] / T[:, :-1]).sum(axis=1)
    inv = logs / (k - 1)
    inv = inv[inv > 0]
    return float(1.0 / inv.mean())


def zipf_probs(n_items: int, s: float) -> np.ndarray:
    """Popularity of ``n_items`` items, ``p_i`` proportional to ``1 / i**s`` (rank i = 1, 2, ...).

    The one Zipf law of the course (query streams, cache workloads, item
    popularity).  Sample from it with ``rng.choice(n_items, size=n, p=p)``, never
    with ``np.random.zipf`` modulo ``n_items`` (a different, unbounded law).

    Returns
    -------
    float64 array of shape (n_items,), summing to 1, non-increasing.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"n_items must be an integer >= 1, got {n_items!r}")
    if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)) or not np.isfinite(s) or s < 0:
        raise ValueError(f"s must be a finite number >= 0, got {s!r}")
    w = np.arange(1, int(n_items) + 1, dtype=np.float64) ** -float(s)
    return w / w.sum()
