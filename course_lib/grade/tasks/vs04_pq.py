"""Tests for the exercise of lesson 02.04 (product quantization): ``adc_table`` and ``adc_distances``.

Each test isolates one likely mistake: a square root on the sub-distances,
strided instead of contiguous sub-vectors, inner products instead of squared
L2, a wrong shape or dtype, the table indexed the wrong way round, a sum over
the wrong axis, uint8 arithmetic that wraps.  The data are small and exact
(float32 with tolerances of 1e-4 relative), and built so that a wrong answer
cannot pass by accident (m, ksub, dsub and n all differ).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_04 = "02_vector_search/04_pq"


# --------------------------------------------------------------------------- references and data
def _ref_table(q: np.ndarray, C: np.ndarray) -> np.ndarray:
    m, _, dsub = C.shape
    return ((q.reshape(m, 1, dsub).astype(np.float64) - C) ** 2).sum(-1)


def _ref_distances(codes: np.ndarray, T: np.ndarray) -> np.ndarray:
    m = T.shape[0]
    return T.astype(np.float64)[np.arange(m), codes.astype(np.int64)].sum(axis=1)


def _codebooks(seed: int, m: int = 4, ksub: int = 16, dsub: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A query (m*dsub,) and codebooks (m, ksub, dsub), float32, with m, ksub, dsub all different."""
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((m, ksub, dsub)).astype(np.float32)
    q = (2.0 * rng.standard_normal(m * dsub)).astype(np.float32)  # not near the centroids: sqrt(x) != x
    return q, C


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-4, atol=1e-5))


def _table_mistakes(q: np.ndarray, C: np.ndarray) -> dict[str, np.ndarray]:
    """The tables that each likely mistake produces (to name the mistake, and to let each test judge only its own)."""
    m, _, dsub = C.shape
    ref = _ref_table(q, C)
    ip = np.einsum("jkd,jd->jk", C.astype(np.float64), q.reshape(m, dsub))
    return {
        "sqrt": np.sqrt(ref),
        "ip": ip, "-ip": -ip, "-2ip": -2 * ip,
        "strided": _ref_table(q.reshape(dsub, m).T.ravel(), C),
    }


def _judge(got: np.ndarray, want: np.ndarray, mistakes: dict[str, np.ndarray], mine: tuple[str, ...], message: str) -> None:
    """Pass if ``got`` is right, or shows a *different* known mistake (another test reports that one).

    Fail with ``message`` if it shows one of this test's mistakes (``mine``), and
    with a generic message if it matches nothing known.
    """
    if _close(got, want):
        return
    if any(_close(got, mistakes[name]) for name in mine):
        raise TestFailure(message)
    if any(_close(got, w) for name, w in mistakes.items() if name not in mine):
        return
    raise TestFailure(f"wrong values: got {np.round(got.ravel()[:3], 4)}, expected {np.round(want.ravel()[:3], 4)}, ...")


def _call_table(fn: Callable[..., Any], q: np.ndarray, C: np.ndarray) -> np.ndarray:
    out = np.asarray(fn(q.copy(), C.copy()))
    m, ksub, _ = C.shape
    if out.shape != (m, ksub):
        raise TestFailure(f"expected a table of shape (m, ksub) = {(m, ksub)}, got {out.shape}")
    if not np.issubdtype(out.dtype, np.floating):
        raise TestFailure(f"expected a float table, got dtype {out.dtype}")
    return out


def _call_distances(fn: Callable[..., Any], codes: np.ndarray, T: np.ndarray) -> np.ndarray:
    out = np.asarray(fn(codes.copy(), T.copy()))
    if out.shape != (len(codes),):
        raise TestFailure(f"expected one distance per code, shape (n,) = ({len(codes)},), got {out.shape}")
    if not np.issubdtype(out.dtype, np.floating):
        raise TestFailure(f"expected float distances, got dtype {out.dtype}")
    return out


# --------------------------------------------------------------------------- adc_table
table_task = register(
    "vector_search.adc_table",
    function="adc_table",
    title="ADC look-up table of one query",
    lesson=LESSON_04,
    points=2,
    timeout_s=30,
)


@table_task.test("shape (m, ksub): one row per sub-space, one column per centroid",
                 hint="codebooks has shape (m, ksub, dsub): sum the squared differences over the last axis (dsub), "
                      "which leaves (m, ksub); do not sum over the centroids or return (ksub, m)")
def _table_shape(fn: Callable[..., Any]) -> None:
    q, C = _codebooks(0)
    _call_table(fn, q, C)


@table_task.test("dtype float32", hint="return a float32 table (e.g. .astype(np.float32)): tables are float32 in faiss, "
                                       "and starting from np.zeros((m, ksub)) gives float64")
def _table_dtype(fn: Callable[..., Any]) -> None:
    q, C = _codebooks(1)
    T = _call_table(fn, q, C)
    if T.dtype != np.float32:
        raise TestFailure(f"expected dtype float32, got {T.dtype}")


@table_task.test("squared distances, no square root (one sub-space)",
                 hint="do not take the square root: T[j, c] is the SQUARED distance ||q_j - c||^2, so that summing "
                      "the m entries gives the squared distance to the reconstruction (sqrt does not split over a sum)")
def _table_no_sqrt(fn: Callable[..., Any]) -> None:
    q, C = _codebooks(2, m=1, ksub=8, dsub=5)
    T = _call_table(fn, q, C)
    _judge(T, _ref_table(q, C), _table_mistakes(q, C), ("sqrt",), "your table holds distances, not squared distances")


@table_task.test("squared L2 distances, not inner products (one sub-space)",
                 hint="T[j, c] = ||q_j - c||^2 = sum((q_j - c)**2), not the inner product q_j . c (that is the table for "
                      "metric='ip', where larger is better)")
def _table_not_ip(fn: Callable[..., Any]) -> None:
    q, C = _codebooks(3, m=1, ksub=8, dsub=5)
    T = _call_table(fn, q, C)
    _judge(T, _ref_table(q, C), _table_mistakes(q, C), ("ip", "-ip", "-2ip"),
           "your table holds inner products, not squared L2 distances")


@table_task.test("sub-vector j is the contiguous slice q[j*dsub:(j+1)*dsub]",
                 hint="slice the query into m contiguous pieces, q[j*dsub:(j+1)*dsub] (or q.reshape(m, dsub)); "
                      "q[j::m] or q.reshape(dsub, m).T interleave the dimensions, and width m instead of dsub is wrong too")
def _table_slices(fn: Callable[..., Any]) -> None:
    q, C = _codebooks(4, m=4, ksub=16, dsub=3)
    T = _call_table(fn, q, C)
    _judge(T, _ref_table(q, C), _table_mistakes(q, C), ("strided",),
           "your sub-vectors interleave the dimensions (q[j::m]) instead of taking contiguous slices")


@table_task.test("agrees with course_lib on a real quantizer (m=8, ksub=256)",
                 hint="compare with course_lib.ann.pq.adc_table; check shapes with a quantizer where m, ksub and dsub differ")
def _table_real(fn: Callable[..., Any]) -> None:
    from ...ann.pq import adc_table as reference

    q, C = _codebooks(5, m=8, ksub=256, dsub=4)
    T = _call_table(fn, q, C)
    if not _close(T, reference(q, C)):
        raise TestFailure("values differ from course_lib.ann.pq.adc_table")


@table_task.test("does not modify its inputs", hint="work on new arrays: q -= ... or codebooks **= 2 changes the caller's data")
def _table_pure(fn: Callable[..., Any]) -> None:
    q, C = _codebooks(6)
    q0, C0 = q.copy(), C.copy()
    fn(q, C)
    if not (np.array_equal(q, q0) and np.array_equal(C, C0)):
        raise TestFailure("q or codebooks was changed by the call")


# --------------------------------------------------------------------------- adc_distances
dist_task = register(
    "vector_search.adc_distances",
    function="adc_distances",
    title="ADC distances by table lookups",
    lesson=LESSON_04,
    points=2,
    timeout_s=30,
)


def _distance_mistakes(codes: np.ndarray, T: np.ndarray) -> dict[str, np.ndarray]:
    m = T.shape[0]
    lookups = T.astype(np.float64)[np.arange(m), codes.astype(np.int64)]
    out = {"mean": lookups.mean(axis=1)}
    if codes.max() < m:  # only then does a swapped index not crash
        out["swapped"] = T.astype(np.float64)[codes.astype(np.int64), np.arange(m)].sum(axis=1)
    return out


def _codes(seed: int, n: int, m: int, ksub: int, dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, ksub, size=(n, m)).astype(dtype)


@dist_task.test("one distance per code: shape (n,)",
                hint="sum the m lookups of each code, i.e. over axis=1 of the (n, m) array of table[j, codes[:, j]]; "
                     "summing over axis 0 mixes different codes")
def _dist_shape(fn: Callable[..., Any]) -> None:
    T = np.random.default_rng(10).random((3, 16)).astype(np.float32)
    _call_distances(fn, _codes(11, n=7, m=3, ksub=3), T)  # codes < m: only the shape is judged here


@dist_task.test("one sub-space: the distance is table[0, code]",
                hint="look up table[j, codes[i, j]]: the row is the sub-space j, the column is the code")
def _dist_one(fn: Callable[..., Any]) -> None:
    T = np.random.default_rng(12).random((1, 16)).astype(np.float32)
    codes = _codes(13, n=9, m=1, ksub=16)
    got = _call_distances(fn, codes, T)
    if not _close(got, T[0, codes[:, 0]].astype(np.float64)):
        raise TestFailure(f"got {np.round(got[:3], 4)}, expected {np.round(T[0, codes[:3, 0]], 4)}")


@dist_task.test("the table is indexed [sub-space, code], not [code, sub-space]",
                hint="table has shape (m, ksub): write table[j, codes[:, j]] (or table[np.arange(m), codes]), "
                     "not table[codes[:, j], j] or table[codes]")
def _dist_orientation(fn: Callable[..., Any]) -> None:
    T = np.random.default_rng(14).random((3, 16)).astype(np.float32)
    codes = _codes(15, n=6, m=3, ksub=3)  # codes < m, so a swapped index does not even crash
    got = _call_distances(fn, codes, T)
    _judge(got, _ref_distances(codes, T), _distance_mistakes(codes, T), ("swapped",),
           "you looked up table[code, j] instead of table[j, code]")


@dist_task.test("sums the m lookups (not their mean, not one of them)",
                hint="the ADC distance is the SUM over the m sub-spaces of table[j, codes[i, j]]")
def _dist_sum(fn: Callable[..., Any]) -> None:
    T = np.random.default_rng(16).random((4, 16)).astype(np.float32)
    codes = _codes(17, n=10, m=4, ksub=16)
    got = _call_distances(fn, codes, T)
    _judge(got, _ref_distances(codes, T), _distance_mistakes(codes, T), ("mean",), "you averaged the lookups: sum them")


@dist_task.test("uint8 codes with ksub=256 and m=8 (no wrap-around)",
                hint="uint8 arithmetic wraps at 256: cast the codes to int (codes.astype(np.int64)) before computing "
                     "flat indices such as codes + j * ksub")
def _dist_uint8(fn: Callable[..., Any]) -> None:
    T = np.random.default_rng(18).random((8, 256)).astype(np.float32)
    codes = _codes(19, n=50, m=8, ksub=256)
    got = _call_distances(fn, codes, T)
    if not _close(got, _ref_distances(codes, T)):
        raise TestFailure("wrong distances with uint8 codes and 256 centroids per sub-space")


@dist_task.test("ADC = squared distance from the query to each code's reconstruction",
                hint="with a correct table (course_lib's adc_table), sum_j table[j, codes[:, j]] must equal "
                     "||q - decode(codes)||^2; check which axis you sum over")
def _dist_identity(fn: Callable[..., Any]) -> None:
    from ...ann.pq import ProductQuantizer, adc_table as reference_table

    q, C = _codebooks(20, m=8, ksub=256, dsub=4)
    pq = ProductQuantizer.from_centroids(C)
    codes = _codes(21, n=40, m=8, ksub=256)
    got = _call_distances(fn, codes, reference_table(q, C))
    want = ((pq.decode(codes).astype(np.float64) - q) ** 2).sum(axis=1)
    if not _close(got, want):
        raise TestFailure(f"got {np.round(got[:3], 3)}, expected ||q - decode(code)||^2 = {np.round(want[:3], 3)}")


@dist_task.test("does not modify its inputs", hint="work on new arrays: codes += offsets changes the caller's codes")
def _dist_pure(fn: Callable[..., Any]) -> None:
    T = np.random.default_rng(22).random((4, 16)).astype(np.float32)
    codes = _codes(23, n=10, m=4, ksub=16)
    T0, codes0 = T.copy(), codes.copy()
    fn(codes, T)
    if not (np.array_equal(T, T0) and np.array_equal(codes, codes0)):
        raise TestFailure("codes or table was changed by the call")
