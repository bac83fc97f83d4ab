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


# --------------------------------------------------------------------------
# Generation requests for the LLM-serving lessons (chapter 07, batching)
# --------------------------------------------------------------------------
import math  # noqa: E402  (kept with the code that uses it: this section was appended)
from dataclasses import dataclass  # noqa: E402

from ..validate import check_int, check_number  # noqa: E402

#: The output-length laws :func:`make_llm_requests` knows.
LENGTH_DISTS: tuple[str, ...] = ("exponential", "lognormal", "fixed")


@dataclass(frozen=True, eq=False)
class LLMRequest:
    """One generation request: a prompt and how many tokens to generate.

    Attributes
    ----------
    rid : request id (its index in the list that :func:`make_llm_requests` returns).
    prompt : int64 array (T,), token ids in [0, vocab_size).
    max_new_tokens : tokens to generate, >= 1 (the request stops there: no EOS in these lessons).
    arrival_s : arrival time, seconds after the start of the run.
    """

    rid: int
    prompt: np.ndarray
    max_new_tokens: int
    arrival_s: float


def make_llm_requests(
    n: int,
    *,
    seed: int = 0,
    vocab_size: int = 512,
    prompt_len: tuple[int, int] = (4, 16),
    mean_new_tokens: float = 24.0,
    length_dist: str = "exponential",
    sigma: float = 1.0,
    max_new_tokens: int | None = None,
    arrival_rate: float | None = None,
) -> list[LLMRequest]:
    """``n`` seeded generation requests with skewed output lengths and optional Poisson arrivals.

    Output lengths L (tokens to generate; mean ``m`` = ``mean_new_tokens``):

    * ``"exponential"``: L = 1 + floor(X), X ~ Exponential with P(X > x) = (1 - 1/m)**x.
      That is exactly the geometric law on {1, 2, ...}: P(L = k) = p (1 - p)**(k - 1) with
      p = 1/m, so E[L] = m (needs m >= 1; m = 1 gives L = 1).  Memoryless, like an EOS token
      that ends a sequence with probability p at every step.
    * ``"lognormal"``: L = max(1, round(Y)), Y lognormal with shape ``sigma`` and E[Y] = m
      (log-mean ln m - sigma**2 / 2), so E[L] = m up to the rounding and the clip at 1
      (much heavier tail than the geometric law for sigma >= 1).
    * ``"fixed"``: L = round(m) for every request.

    With ``max_new_tokens`` every length is then capped at it (which lowers the mean).

    Prompts: lengths uniform on the inclusive range ``prompt_len``, tokens uniform in
    [0, ``vocab_size``).  Arrivals: with ``arrival_rate`` (requests/s) a Poisson process
    (i.i.d. exponential gaps of mean 1/rate, first arrival after one gap, as
    ``des.poisson_arrivals``); with None every request arrives at 0.0.  The random draws
    come in a fixed order (prompt lengths, lengths, prompt tokens, arrivals), so changing
    ``arrival_rate`` leaves the prompts and lengths unchanged.

    Returns
    -------
    list of ``n`` :class:`LLMRequest`, ``rid`` = 0..n-1, in arrival order.
    """
    n = check_int(n, "n", low=1)
    vocab_size = check_int(vocab_size, "vocab_size", low=1)
    if not isinstance(prompt_len, (tuple, list)) or len(prompt_len) != 2:
        raise ValueError(f"prompt_len must be a (min, max) pair of ints, got {prompt_len!r}")
    lo = check_int(prompt_len[0], "prompt_len[0]", low=1)
    hi = check_int(prompt_len[1], "prompt_len[1]", low=lo)
    m = check_number(mean_new_tokens, "mean_new_tokens", low=1.0)
    if length_dist not in LENGTH_DISTS:
        raise ValueError(f"unknown length_dist {length_dist!r}: expected one of {LENGTH_DISTS}")
    sigma = check_number(sigma, "sigma", low=0.0, low_open=True)
    cap = None if max_new_tokens is None else check_int(max_new_tokens, "max_new_tokens", low=1)
    rate = None if arrival_rate is None else check_number(arrival_rate, "arrival_rate", low=0.0, low_open=True)
    rng = np.random.default_rng(check_int(seed, "seed", low=0))

    t_len = rng.integers(lo, hi + 1, size=n)
    if length_dist == "exponential":
        # P(X > x) = (1 - 1/m)^x  <=>  X ~ Exponential(scale = -1 / ln(1 - 1/m))
        scale = 0.0 if m == 1.0 else -1.0 / math.log1p(-1.0 / m)
        lengths = 1 + np.floor(rng.exponential(1.0, size=n) * scale).astype(np.int64)
    elif length_dist == "lognormal":
        y = rng.lognormal(math.log(m) - sigma**2 / 2, sigma, size=n)
        lengths = np.maximum(1, np.rint(y)).astype(np.int64)
    else:
        lengths = np.full(n, int(round(m)), dtype=np.int64)
    if cap is not None:
        lengths = np.minimum(lengths, cap)
    prompts = [rng.integers(0, vocab_size, size=int(t), dtype=np.int64) for t in t_len]
    arrivals = np.zeros(n) if rate is None else np.cumsum(rng.exponential(1.0 / rate, size=n))
    return [LLMRequest(i, prompts[i], int(lengths[i]), float(arrivals[i])) for i in range(n)]
