"""Tests for course_lib.ann.choose: the rules, the memory model against faiss, validation, the exercise's rule table."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.ann import choose
from course_lib.ann.choose import Recommendation, build_faiss, recommend_index, recommend_index_simple


def test_flat_for_small_n_and_exact_search() -> None:
    assert recommend_index(5_000, 384, 5_000 * 2_000, 0.9).factory == "Flat"
    r = recommend_index(2_000_000, 128, 2_000_000 * 600, 1.0)
    assert (r.family, r.fits_budget) == ("Flat", True)
    r = recommend_index(2_000_000, 128, 2_000_000 * 400, 1.0)  # raw vectors do not fit
    assert (r.family, r.fits_budget) == ("Flat", False)


def test_hnsw_ivf_pq_by_budget() -> None:
    n, d = 1_000_000, 128
    assert recommend_index(n, d, n * 1000, 0.95).factory == "HNSW32"
    assert recommend_index(n, d, n * 1000, 0.95).params == {"M": 32, "ef": 32}
    r = recommend_index(n, d, n * 530, 0.9)
    assert r.family == "IVF-Flat" and r.factory == "IVF4000,Flat" and r.params["nprobe"] == 16
    r = recommend_index(n, d, n * 100, 0.9)
    assert r.family == "IVF-PQ" and r.params["m"] == 64 and r.bytes_per_vector <= 100
    r = recommend_index(n, d, n * 8.6, 0.5)  # no room for an id: PQ flat scan
    assert r.family == "PQ" and r.fits_budget and r.bytes_per_vector <= 8.6
    r = recommend_index(n, d, n * 0.5, 0.5)
    assert not r.fits_budget


def test_updates_and_filters_choose_ivf() -> None:
    n, d = 1_000_000, 128
    assert recommend_index(n, d, n * 1000, 0.9, updates_per_s=100).family == "HNSW"
    assert recommend_index(n, d, n * 1000, 0.9, updates_per_s=101).family == "IVF-Flat"
    assert recommend_index(n, d, n * 1000, 0.9, needs_filtering=True).family == "IVF-Flat"
    assert recommend_index(n, d, n * 60, 0.9, needs_filtering=True).family == "IVF-PQ"
    assert all(isinstance(s, str) and s for s in recommend_index(n, d, n * 1000, 0.9, needs_filtering=True).reasons)


def test_knobs_grow_with_recall() -> None:
    assert [choose.choose_ef(t) for t in (0.5, 0.9, 0.95, 0.99, 0.999)] == [16, 16, 32, 64, 128]
    assert choose.choose_nprobe(0.999, 10) == 10  # capped at nlist
    assert choose.choose_nlist(20_000) == 512 and choose.choose_nlist(1_000_000) == 4000 and choose.choose_nlist(10) == 1


@pytest.mark.parametrize("kw", [{"n": 0}, {"n": -3}, {"n": 2.5}, {"d": 0}, {"mem_budget_bytes": 0},
                                {"mem_budget_bytes": float("inf")}, {"recall_target": 0.0},
                                {"recall_target": 1.0001}, {"updates_per_s": -1}, {"n": True}])
def test_bad_input(kw: dict) -> None:
    args = {"n": 1000, "d": 32, "mem_budget_bytes": 1e6, "recall_target": 0.9, **kw}
    with pytest.raises(ValueError):
        recommend_index(**args)


@pytest.mark.parametrize("n, d, bpv, target", [(3000, 16, 40, 0.5), (3000, 16, 66, 0.9), (3000, 16, 200, 0.9),
                                                (12000, 16, 40, 0.5), (12000, 16, 80, 0.9), (12000, 16, 400, 0.9)])
def test_memory_model_matches_faiss(n: int, d: int, bpv: float, target: float) -> None:
    X = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    rec = recommend_index(n, d, n * bpv, target)
    index = build_faiss(rec, X, pq_train_points=2560, pq_niter=4)
    import faiss

    measured = faiss.serialize_index(index).nbytes / index.ntotal
    assert measured <= bpv
    assert measured == pytest.approx(rec.bytes_per_vector, rel=0.02)
    assert index.ntotal == n


def test_build_faiss_sets_knob_and_disables_polysemous() -> None:
    import faiss

    X = np.random.default_rng(1).standard_normal((2000, 8)).astype(np.float32)
    index = build_faiss(Recommendation("IVF-PQ", "IVF16,PQ4", {"nlist": 16, "m": 4, "nprobe": 5}, 0.0), X, pq_niter=3)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    assert ivf.nprobe == 5 and not ivf.do_polysemous_training
    hnsw = build_faiss(Recommendation("HNSW", "HNSW8", {"M": 8, "ef": 40}, 0.0), X)
    assert hnsw.hnsw.efSearch == 40


def test_simple_rule_table() -> None:
    f = recommend_index_simple
    assert f(10_000, 32, 10_000 * 128, 0.5, 0) == ("Flat", 128.0)
    assert f(1_000_000, 128, 100e6, 0.9, 0) == ("IVF4000,PQ64", 72.0)
    assert f(1_000_000, 128, 2e9, 0.9, 0) == ("HNSW32", 768.0)
    assert f(1_000_000, 128, 2e9, 0.9, 101)[0] == "IVF4000,Flat"
    assert f(1_000_000, 128, 1_000_000 * 519, 0.9, 0) == ("IVF4000,PQ128", 136.0)
    assert f(20_000, 32, 20_000 * 9, 0.5, 0) == ("IVF564,PQ1", 9.0)
    for args in [(1_000_000, 128, 511e6, 1.0, 0), (1_000_000, 128, 8e6, 0.5, 0), (0, 3, 1, 0.5, 0), (10, 3, 1e3, 0.0, 0)]:
        with pytest.raises(ValueError):
            f(*args)


def test_simple_table_agrees_with_full_on_family() -> None:
    names = {"Flat": "Flat", "HNSW32": "HNSW"}
    for n, d, bpv in [(20_000, 32, 1024), (20_000, 32, 160), (20_000, 32, 32), (5_000, 384, 4096), (10**7, 128, 100)]:
        simple = recommend_index_simple(n, d, n * bpv, 0.9, 0)[0]
        simple = names.get(simple, "IVF-PQ" if ",PQ" in simple else "IVF-Flat")
        assert simple == recommend_index(n, d, n * bpv, 0.9).family
