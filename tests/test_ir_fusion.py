"""course_lib.ir.fusion: RRF and convex fusion by hand, against ranx (slow: numba), bad input."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.ir import fusion


def test_rrf_by_hand():
    fused = fusion.rrf([[7, 3, 5], [3, 9]], k=60)
    want = {7: 1 / 61, 3: 1 / 62 + 1 / 61, 5: 1 / 63, 9: 1 / 62}
    assert fused.keys() == want.keys()
    for doc, value in want.items():
        assert fused[doc] == pytest.approx(value, abs=1e-15)
    assert list(fused) == [3, 7, 9, 5]  # 9 and 7? 1/61 > 1/62: 7 first, then 9 (1/62), then 5 (1/63)


def test_rrf_ties_by_smaller_id_and_k_matters():
    fused = fusion.rrf([[4, 1], [2, 8]], k=0)
    assert list(fused) == [2, 4, 1, 8] and fused[2] == fused[4] == 1.0 and fused[1] == 0.5
    assert fusion.rrf([[1]], k=10)[1] == pytest.approx(1 / 11)


def test_rrf_empty_and_single_lists():
    assert fusion.rrf([]) == {}
    assert fusion.rrf([[], []]) == {}
    one = fusion.rrf([[5, 6, 7]])
    assert list(one) == [5, 6, 7]


def test_rrf_bad_input():
    with pytest.raises(ValueError, match="more than once"):
        fusion.rrf([[1, 2, 1]])
    with pytest.raises(ValueError, match="list of rankings"):
        fusion.rrf("abc")
    with pytest.raises(ValueError, match="ranking 0"):
        fusion.rrf([5])
    with pytest.raises(ValueError, match="k must be"):
        fusion.rrf([[1]], k=-1)
    with pytest.raises(ValueError, match="k must be"):
        fusion.rrf([[1]], k=float("inf"))


def test_normalize():
    s = np.array([1.0, 3.0, 2.0])
    np.testing.assert_allclose(fusion.normalize(s, "min-max"), [0, 1, 0.5])
    z = fusion.normalize(s, "z-score")
    assert abs(z.mean()) < 1e-15 and z.std() == pytest.approx(1.0)
    assert fusion.normalize(np.array([2.0, 2.0]), "min-max").tolist() == [0.0, 0.0]
    assert fusion.normalize(np.array([2.0, 2.0]), "z-score").tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="unknown normalisation"):
        fusion.normalize(s, "minmax")
    with pytest.raises(ValueError, match="finite"):
        fusion.normalize(np.array([1.0, -np.inf]))
    with pytest.raises(ValueError, match="1-D"):
        fusion.normalize(np.ones((2, 2)))


def test_convex_by_hand():
    dense = {1: 0.9, 2: 0.5, 3: 0.1}
    sparse = {2: 20.0, 4: 10.0}
    fused = fusion.convex(dense, sparse, alpha=0.25)
    # min-max: dense -> {1: 1, 2: 0.5, 3: 0}; sparse -> {2: 1, 4: 0}
    want = {1: 0.25, 2: 0.25 * 0.5 + 0.75, 3: 0.0, 4: 0.0}
    assert fused == pytest.approx(want) and list(fused) == [2, 1, 3, 4]
    assert fusion.ranking(fusion.convex(dense, sparse, alpha=1.0)) == [1, 2, 3, 4]
    assert fusion.ranking(fusion.convex(dense, sparse, alpha=0.0)) == [2, 1, 3, 4]


def test_convex_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        fusion.convex({1: 1.0}, {1: 1.0}, alpha=1.5)
    with pytest.raises(ValueError, match="dicts"):
        fusion.convex([1.0], {1: 1.0}, alpha=0.5)
    with pytest.raises(ValueError, match="same queries"):
        fusion.convex_runs({"q1": {1: 1.0}}, {"q2": {1: 1.0}}, 0.5)


def test_top_k_run_skips_padding():
    run = fusion.top_k_run(np.array([[3.0, 1.0, -np.inf]]), np.array([[4, 2, -1]]), ["q"])
    assert run == {"q": {4: 3.0, 2: 1.0}}
    with pytest.raises(ValueError, match="shape"):
        fusion.top_k_run(np.zeros((1, 2)), np.zeros((1, 3), int), ["q"])


def _random_runs(rng, n_queries=8, depth=30, n_docs=200):
    runs = []
    for _ in range(2):
        run = {}
        for q in range(n_queries):
            ids = rng.choice(n_docs, depth, replace=False)
            run[f"q{q}"] = {int(d): float(s) for d, s in zip(ids, rng.standard_normal(depth) * 5 + 3)}
        runs.append(run)
    return runs


@pytest.mark.slow
def test_against_ranx(rng):
    """One ranx session (numba compiles on first use): RRF, and wsum with min-max and z-score."""
    ranx = pytest.importorskip("ranx")
    dense, sparse = _random_runs(rng)

    def to_ranx(run):
        return ranx.Run({q: {str(d): s for d, s in docs.items()} for q, docs in run.items()})

    def close(ours, theirs):
        for q, docs in ours.items():
            got = {int(d): s for d, s in theirs[q].items()}
            assert got.keys() == docs.keys()
            assert max(abs(got[d] - docs[d]) for d in docs) <= 1e-9

    fused = fusion.rrf_runs([dense, sparse], k=60)
    close(fused, ranx.fuse([to_ranx(dense), to_ranx(sparse)], method="rrf", params={"k": 60}).to_dict())
    for ours_norm, ranx_norm in (("min-max", "min-max"), ("z-score", "zmuv")):
        ours = fusion.convex_runs(dense, sparse, alpha=0.3, norm=ours_norm)
        theirs = ranx.fuse([to_ranx(dense), to_ranx(sparse)], norm=ranx_norm, method="wsum",
                           params={"weights": [0.3, 0.7]}).to_dict()
        close(ours, theirs)
