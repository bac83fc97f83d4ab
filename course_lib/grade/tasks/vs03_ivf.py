"""Tests for the exercise of lesson 02.03 (k-means and IVF-Flat): ``kmeanspp_init``.

k-means++ is random, so most tests are statistical: they draw many seedings
with different seeds and compare frequencies with the probabilities the
algorithm prescribes, with tolerances of about five standard deviations (a
correct implementation fails them with probability well under 1e-5, and the
seeds are fixed, so a verdict never flickers).  No test requires one
particular way of drawing from ``rng``: any correct use of it passes.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_03 = "02_vector_search/03_ivf"

kmeanspp = register(
    "vector_search.kmeanspp_init",
    function="kmeanspp_init",
    title="k-means++ seeding (D^2 sampling)",
    lesson=LESSON_03,
    points=2,
    timeout_s=30,
)


# --------------------------------------------------------------------------- helpers
def _call(fn: Callable[..., Any], X: np.ndarray, k: int, seed: int) -> np.ndarray:
    out = fn(X.copy(), k, np.random.default_rng(seed))
    C = np.asarray(out)
    if C.shape != (k, X.shape[1]):
        raise TestFailure(f"expected centres of shape (k, d) = {(k, X.shape[1])}, got {C.shape}")
    if not np.issubdtype(C.dtype, np.floating):
        raise TestFailure(f"expected a float array of centres, got dtype {C.dtype}")
    return C


def _row_ids(C: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Which row of X each centre is (the first match); TestFailure if a centre is not a row of X."""
    d2 = ((C[:, None, :].astype(np.float64) - X[None, :, :].astype(np.float64)) ** 2).sum(-1)
    ids = d2.argmin(axis=1)
    if (d2[np.arange(len(C)), ids] > 1e-10).any():
        raise TestFailure("every centre must be a copy of a row of X (k-means++ picks data points, it does not average them)")
    return ids


def _clusters(seed: int, per_cluster: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Three tight 2-D clusters centred at x = 0, 10 and 20: points and cluster labels."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    labels = np.repeat(np.arange(3), per_cluster)
    X = centres[labels] + 0.01 * rng.standard_normal((3 * per_cluster, 2))
    return X.astype(np.float32), labels


# --------------------------------------------------------------------------- tests
@kmeanspp.test(
    "returns k rows of X as a (k, d) float array",
    hint="return np.stack of the chosen rows X[i] (shape (k, d)), not their indices and not new points",
)
def _shape_and_rows(fn: Callable[..., Any]) -> None:
    X = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    for k in (1, 4, 7):
        C = _call(fn, X, k, seed=k)
        ids = _row_ids(C, X)
        if len(set(ids.tolist())) != k:
            raise TestFailure(f"k={k}: a data point was chosen twice ({sorted(ids.tolist())}); a chosen point has D(x) = 0, so probability 0")


@kmeanspp.test(
    "the first centre is a uniformly random row",
    hint="draw the first centre uniformly with the rng you are given (e.g. rng.integers(n)); not X[0], not the mean, not the farthest point",
)
def _first_uniform(fn: Callable[..., Any]) -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]], dtype=np.float32)  # one outlier: must not attract the first pick
    trials = 2000
    counts = np.zeros(len(X))
    for seed in range(trials):
        counts[_row_ids(_call(fn, X, 1, seed), X)[0]] += 1
    share = counts / trials
    # each share ~ 0.2 with standard deviation 0.009: [0.15, 0.25] is more than 5 sigma wide
    if share.min() < 0.15 or share.max() > 0.25:
        raise TestFailure(f"with k=1 each of 5 points should be chosen ~20% of the time; got {np.round(share, 3).tolist()}")


@kmeanspp.test(
    "later centres are drawn with probability proportional to D(x)^2",
    hint="weight each point by its SQUARED distance D(x)^2 to the nearest chosen centre, normalised to sum 1, and draw from those weights: "
    "not D(x), not uniformly, and not always the farthest point",
)
def _d2_weighting(fn: Callable[..., Any]) -> None:
    # 1-D points 0, 1, 4.  Given the first centre, the farthest point is drawn next with probability
    # 16/17 (first 0), 9/10 (first 1) or 16/25 (first 4) under D^2, but 4/5, 3/4, 4/7 under D.
    X = np.array([[0.0], [1.0], [4.0]], dtype=np.float32)
    d2 = (X - X.T) ** 2
    trials = 4000
    observed, expected = 0.0, 0.0
    for seed in range(trials):
        first, second = _row_ids(_call(fn, X, 2, seed), X)
        if first == second:
            raise TestFailure("the second centre equals the first: a chosen point has D(x) = 0 and must get probability 0")
        far = int(d2[first].argmax())
        observed += second == far
        expected += d2[first, far] / d2[first].sum()
    observed, expected = observed / trials, expected / trials
    # standard deviation of the observed share ~ 0.006; D-weighting would give ~0.12 less
    if abs(observed - expected) > 0.03:
        raise TestFailure(
            f"on points [0, 1, 4] (k=2) the second centre was the point farthest from the first in {observed:.1%} of {trials} draws; "
            f"D^2 sampling gives {expected:.1%}"
        )


@kmeanspp.test(
    "D(x) is the distance to the NEAREST centre chosen so far",
    hint="after each new centre c, update D2 = np.minimum(D2, squared distances to c): not the distance to the first centre only, "
    "not to the last one only, not a sum over centres",
)
def _min_update(fn: Callable[..., Any]) -> None:
    X, labels = _clusters(0)
    covered = 0
    trials = 40
    for seed in range(trials):
        covered += len(set(labels[_row_ids(_call(fn, X, 3, seed), X)].tolist())) == 3
    # correct D^2 sampling puts one centre in each tight cluster with probability > 0.9999
    if covered < trials - 1:
        raise TestFailure(
            f"three tight clusters at x = 0, 10, 20 and k=3: all three clusters got a centre in only {covered}/{trials} seedings "
            f"(k-means++ does it essentially always)"
        )


@kmeanspp.test(
    "fewer distinct points than k: no crash, no NaN",
    hint="when every point coincides with a chosen centre, sum(D^2) = 0 and dividing by it gives NaN: then pick any point (e.g. uniformly)",
)
def _duplicates(fn: Callable[..., Any]) -> None:
    X = np.array([[1.0, 1.0]] * 4 + [[3.0, 3.0]] * 4, dtype=np.float32)  # two distinct points, each 4 times
    for seed in range(5):
        C = _call(fn, X, 5, seed)
        if not np.isfinite(C).all():
            raise TestFailure("centres contain NaN or infinity")
        distinct = {tuple(row) for row in np.asarray(C, np.float64).round(6).tolist()}
        if distinct != {(1.0, 1.0), (3.0, 3.0)}:
            raise TestFailure(f"X has two distinct points and k=5: both must be among the centres, got {sorted(distinct)}")
        _row_ids(C, X)
    same = np.ones((6, 3), dtype=np.float32)
    C = _call(fn, same, 3, 0)
    if not np.allclose(C, 1.0):
        raise TestFailure("all points identical: every centre must be that point")


@kmeanspp.test(
    "k = n chooses every point exactly once",
    hint="off-by-one in the loop: after the first centre draw k - 1 more; with k = n the D^2 weights leave exactly one point each time",
)
def _k_equals_n(fn: Callable[..., Any]) -> None:
    X = np.random.default_rng(3).standard_normal((12, 3)).astype(np.float32)
    for seed in range(3):
        ids = _row_ids(_call(fn, X, len(X), seed), X)
        if sorted(ids.tolist()) != list(range(len(X))):
            raise TestFailure(f"k = n = {len(X)}: expected every row once, got rows {sorted(ids.tolist())}")


@kmeanspp.test(
    "all randomness comes from the rng argument",
    hint="use only the rng you are given (rng.integers, rng.choice, rng.random): not np.random.* (global state) and not a new np.random.default_rng()",
)
def _uses_rng(fn: Callable[..., Any]) -> None:
    X = np.random.default_rng(4).standard_normal((200, 4)).astype(np.float32)
    np.random.seed(1)
    a = _call(fn, X, 8, seed=42)
    np.random.seed(2)
    b = _call(fn, X, 8, seed=42)
    if not np.array_equal(a, b):
        raise TestFailure("two calls with identically seeded rngs returned different centres")


@kmeanspp.test("does not modify X", hint="do not write into X (no in-place normalising or shuffling): work on copies or index into it")
def _pure(fn: Callable[..., Any]) -> None:
    X = np.random.default_rng(5).standard_normal((50, 3)).astype(np.float32)
    X0 = X.copy()
    fn(X, 5, np.random.default_rng(0))
    if not np.array_equal(X, X0):
        raise TestFailure("X was changed by the call")
