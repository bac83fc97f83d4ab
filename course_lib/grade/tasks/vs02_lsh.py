"""Tests for the exercise of lesson 02.02 (locality-sensitive hashing): ``simhash_codes``.

The task, as the exercise states it: ``simhash_codes(X, planes)`` takes X (n, d)
and planes (nbits, d) with nbits a multiple of 64, and returns uint64 codes of
shape (n, nbits // 64) where bit j (value ``1 << j``) of word w is 1 exactly
when ``X[i] . planes[64 w + j] >= 0``.  Centring is the caller's job.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_02 = "02_vector_search/02_lsh"


def _reference(X: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Bit by bit, with shifts: deliberately a different route from course_lib's packbits."""
    bits = (X.astype(np.float64) @ planes.astype(np.float64).T) >= 0
    n, nbits = bits.shape
    out = np.zeros((n, nbits // 64), dtype=np.uint64)
    for b in range(nbits):
        out[:, b // 64] |= bits[:, b].astype(np.uint64) << np.uint64(b % 64)
    return out


def _data(seed: int, n: int = 40, d: int = 24, nbits: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # float64-exact inputs (multiples of 1/8): every projection is computed exactly in float32
    # too, so a learner's float32 matmul cannot disagree with the reference by rounding.
    X = (rng.integers(-16, 17, size=(n, d)) / 8.0).astype(np.float32)
    planes = (rng.integers(-16, 17, size=(nbits, d)) / 8.0).astype(np.float32)
    return X, planes


def _call(fn: Callable[..., Any], X: np.ndarray, planes: np.ndarray) -> np.ndarray:
    out = fn(X.copy(), planes.copy())
    codes = np.asarray(out)
    want = (X.shape[0], planes.shape[0] // 64)
    if codes.shape != want:
        raise TestFailure(f"expected codes of shape (n, nbits // 64) = {want}, got {codes.shape}")
    if codes.dtype != np.uint64:
        raise TestFailure(f"expected dtype uint64, got {codes.dtype}")
    return codes


def _first_difference(got: np.ndarray, want: np.ndarray) -> str:
    row, word = (int(i) for i in np.argwhere(got != want)[0])
    diff = int(got[row, word] ^ want[row, word])
    bit = (diff & -diff).bit_length() - 1
    return (f"row {row}, word {word}: bit {bit} (plane {64 * word + bit}) is {int(got[row, word]) >> bit & 1}, "
            f"expected {int(want[row, word]) >> bit & 1}")


def _expect_same(fn: Callable[..., Any], X: np.ndarray, planes: np.ndarray) -> None:
    got, want = _call(fn, X, planes), _reference(X, planes)
    if not np.array_equal(got, want):
        raise TestFailure(f"{np.mean(got != want):.0%} of the words differ from the expected codes; first: {_first_difference(got, want)}")


simhash = register(
    "vector_search.simhash_codes",
    function="simhash_codes",
    title="SimHash codes packed into uint64 words",
    lesson=LESSON_02,
    points=2,
    timeout_s=30,
)


@simhash.test("returns uint64 codes of shape (n, nbits // 64)", hint="one uint64 word holds 64 bits: for nbits=128 each row has 2 words; build the result with dtype np.uint64")
def _shape(fn: Callable[..., Any]) -> None:
    X, planes = _data(0, nbits=128)
    _call(fn, X, planes)


@simhash.test("one word: bit j is the sign of plane j", hint="bit order: plane j must land at value 1 << j (least significant bit first). np.packbits is big-endian (most significant bit first) unless you pass bitorder='little'")
def _one_word(fn: Callable[..., Any]) -> None:
    X, planes = _data(1, nbits=64)
    _expect_same(fn, X, planes)


@simhash.test("planes are rows: X @ planes.T", hint="planes has shape (nbits, d), one hyperplane normal per row: project with X @ planes.T, not X @ planes (with d == nbits both run, but the second uses columns)")
def _rows(fn: Callable[..., Any]) -> None:
    X, planes = _data(2, d=64, nbits=64)  # square: a transposed product runs and is wrong
    _expect_same(fn, X, planes)


@simhash.test("several words: word w holds planes 64w .. 64w+63", hint="word order: planes 0..63 go to word 0, planes 64..127 to word 1, ... When viewing bytes as uint64, use little-endian ('<u8') and make sure 8 consecutive bytes come from 64 consecutive planes")
def _several_words(fn: Callable[..., Any]) -> None:
    X, planes = _data(3, nbits=192)
    _expect_same(fn, X, planes)


@simhash.test("a projection of exactly 0 gives bit 1 (>= 0)", hint="the convention is r . x >= 0 -> 1 (as faiss): using > 0 turns a zero projection into 0")
def _zero(fn: Callable[..., Any]) -> None:
    X, planes = _data(4, nbits=64)
    X[0] = 0.0  # every projection of the zero vector is exactly 0
    X[1, :] = 0.0
    X[1, 0] = 1.0
    planes[:10, 0] = 0.0  # plane j < 10 is orthogonal to X[1]
    got, want = _call(fn, X, planes), _reference(X, planes)
    if int(got[0, 0]) != 2**64 - 1:
        raise TestFailure(f"the zero vector must get all 64 bits set (0xFFFFFFFFFFFFFFFF), got {int(got[0, 0]):#018x}")
    if not np.array_equal(got, want):
        raise TestFailure(f"codes differ: {_first_difference(got, want)}")


@simhash.test("does not centre or change its inputs", hint="centring is the caller's job: do not subtract the mean inside the function, and do not modify X or planes in place")
def _pure(fn: Callable[..., Any]) -> None:
    X, planes = _data(5, nbits=64)
    X = X + 2.0  # far from the origin: centring inside would change the codes
    X0, planes0 = X.copy(), planes.copy()
    got = fn(X, planes)
    if not (np.array_equal(X, X0) and np.array_equal(planes, planes0)):
        raise TestFailure("X or planes was modified by the call")
    want = _reference(X0, planes0)
    got = np.asarray(got)
    if got.shape != want.shape or not np.array_equal(got, want):
        raise TestFailure("codes of un-centred data differ from the signs of X @ planes.T (did you centre X?)")


@simhash.test("Hamming distances of your codes estimate angles (1 - θ/π law)", hint="check the whole pipeline: sign bits, packing, word order; XOR + popcount of two codes must count the planes that separate the two vectors")
def _hamming(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(6)
    d, nbits = 16, 1024
    X = rng.standard_normal((30, d)).astype(np.float32)
    planes = rng.standard_normal((nbits, d)).astype(np.float32)
    codes = _call(fn, X, planes)
    ham = np.bitwise_count(codes[:, None, :] ^ codes[None, :, :]).sum(axis=2)
    sep = ((X @ planes.T >= 0)[:, None, :] != (X @ planes.T >= 0)[None, :, :]).sum(axis=2)
    if not np.array_equal(ham, sep):
        raise TestFailure("popcount(code_a XOR code_b) must equal the number of planes that separate a and b")
