"""Tests for the exercise of lesson 02.05 (IVFPQ): ``encode_residuals(X, assign, centroids, pq)``.

Each test isolates one likely mistake: encoding the raw vectors instead of the
residuals, subtracting the wrong centroid (re-computing the nearest one, or an
argmax, instead of using ``assign``), returning the wrong dtype or shape, and
modifying ``X`` in place.  The data are built so that the mistakes give
different codes: the vectors sit far from the origin, the codebooks near it
(where residuals live), and ``assign`` is deliberately *not* always the nearest
centroid (an index's assignment can be stale, or made by another quantizer).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ...ann.pq import ProductQuantizer
from ..core import TestFailure, register

LESSON_05 = "02_vector_search/05_ivfpq"

encode_task = register(
    "vector_search.encode_residuals",
    function="encode_residuals",
    title="PQ codes of IVF residuals",
    lesson=LESSON_05,
    points=2,
    timeout_s=30,
)


# --------------------------------------------------------------------------- data and references
def _setting(seed: int, n: int = 60, d: int = 8, m: int = 2, ksub: int = 16, nlist: int = 5):
    """Vectors far from 0, coarse centroids, an assignment that is not always the nearest, a PQ near 0."""
    rng = np.random.default_rng(seed)
    centroids = (10.0 * rng.standard_normal((nlist, d))).astype(np.float32)
    nearest = rng.integers(0, nlist, size=n)
    X = (centroids[nearest] + 0.8 * rng.standard_normal((n, d))).astype(np.float32)
    assign = nearest.copy()
    shifted = rng.random(n) < 0.4  # 40% of the vectors are stored in another (given) cell
    assign[shifted] = (nearest[shifted] + 1) % nlist
    pq = ProductQuantizer.from_centroids(rng.standard_normal((m, ksub, d // m)).astype(np.float32))
    return X, assign.astype(np.int64), centroids, pq


def _reference(X: np.ndarray, assign: np.ndarray, centroids: np.ndarray, pq: ProductQuantizer) -> np.ndarray:
    return pq.compute_codes(X - centroids[assign])


def _call(fn: Callable[..., Any], X: np.ndarray, assign: np.ndarray, centroids: np.ndarray, pq: ProductQuantizer) -> np.ndarray:
    out = np.asarray(fn(X.copy(), assign.copy(), centroids.copy(), pq))
    if out.shape != (len(X), pq.m):
        raise TestFailure(f"expected codes of shape (n, m) = {(len(X), pq.m)}, got {out.shape}")
    return out


def _nearest(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return ((X[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)


def _farthest(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return ((X[:, None, :] - centroids[None]) ** 2).sum(-1).argmax(axis=1)


def _wrong_cells(X: np.ndarray, centroids: np.ndarray) -> dict[str, np.ndarray]:
    """Cells that a wrong solution might subtract instead of ``assign``."""
    return {
        "the nearest centroid (re-computed) instead of centroids[assign]": _nearest(X, centroids),
        "an argmax (the farthest centroid) instead of centroids[assign]": _farthest(X, centroids),
        "centroids[i % nlist] (row number) instead of centroids[assign]": np.arange(len(X)) % len(centroids),
    }


# --------------------------------------------------------------------------- tests
@encode_task.test("shape (n, m) and dtype uint8",
                  hint="return one code per vector and one entry per sub-space, as uint8 (what pq.compute_codes returns); "
                       "do not return the residuals themselves or cast the codes to int64/float")
def _dtype(fn: Callable[..., Any]) -> None:
    out = _call(fn, *_setting(0))
    if out.dtype != np.uint8:
        raise TestFailure(f"expected dtype uint8, got {out.dtype}")


@encode_task.test("encodes residuals x - c, not the raw vectors",
                  hint="the PQ of an IVFPQ index quantizes residuals: subtract each vector's centroid before encoding; "
                       "encoding X itself gives codes of the wrong thing")
def _residuals_not_raw(fn: Callable[..., Any]) -> None:
    X, assign, C, pq = _setting(1)
    out = _call(fn, X, assign, C, pq)
    if np.array_equal(out, pq.compute_codes(X)):
        raise TestFailure("these are the codes of the raw vectors X, not of the residuals")
    if np.array_equal(out, pq.compute_codes(C[assign] - X)):
        raise TestFailure("these are the codes of c - x (sign flipped), not of x - c")
    if any(np.array_equal(out, pq.compute_codes(X - C[cells])) for cells in _wrong_cells(X, C).values()):
        return  # residuals to the wrong centroid: the next test reports that mistake
    if not np.array_equal(out, _reference(X, assign, C, pq)):
        raise TestFailure("codes differ from pq.compute_codes(X - centroids[assign])")


@encode_task.test("subtracts the centroid given by assign (not a re-computed one)",
                  hint="use centroids[assign]: the cell a vector is stored in is given; do not recompute the nearest "
                       "centroid, take an argmax, or index centroids by the row number")
def _uses_assign(fn: Callable[..., Any]) -> None:
    X, assign, C, pq = _setting(2)
    out = _call(fn, X, assign, C, pq)
    for what, cells in _wrong_cells(X, C).items():
        if np.array_equal(out, pq.compute_codes(X - C[cells])):
            raise TestFailure(f"the codes match residuals to {what}")
    if np.array_equal(out, pq.compute_codes(X)):
        return  # raw vectors encoded: the previous test reports that mistake
    if not np.array_equal(out, _reference(X, assign, C, pq)):
        raise TestFailure("codes differ from pq.compute_codes(X - centroids[assign])")


@encode_task.test("does not modify X", hint="compute the residuals into a new array: X -= centroids[assign] changes the caller's vectors")
def _no_in_place(fn: Callable[..., Any]) -> None:
    X, assign, C, pq = _setting(3)
    X_arg, C_arg = X.copy(), C.copy()
    fn(X_arg, assign.copy(), C_arg, pq)
    if not np.array_equal(X_arg, X):
        raise TestFailure("X was changed by the call")
    if not np.array_equal(C_arg, C):
        raise TestFailure("centroids were changed by the call")


@encode_task.test("agrees with course_lib on a trained IVFPQ (Gaussian mixture, m=4, 256 centroids)",
                  hint="compare with course_lib.ann.ivfpq.encode_residuals: residuals X - centroids[assign], then pq.compute_codes")
def _real(fn: Callable[..., Any]) -> None:
    from ...ann.ivf import probe_lists
    from ...ann.kmeans import kmeans
    from ...data import make_gaussian_mixture

    X = make_gaussian_mixture(1200, 16, seed=7)
    C = kmeans(X, 12, niter=4).centroids
    assign = probe_lists(X, C, 1)[:, 0]
    pq = ProductQuantizer(16, 4, 8, niter=3).train(X - C[assign])
    out = _call(fn, X, assign, C, pq)
    if not np.array_equal(out, _reference(X, assign, C, pq)):
        share = float((out != _reference(X, assign, C, pq)).any(axis=1).mean())
        raise TestFailure(f"{share:.0%} of the codes differ from course_lib's encode_residuals")
