"""course_lib.ann.hnsw_numba: the compiled backend builds the numpy backend's graph and finds its results."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

pytest.importorskip("numba")

from course_lib import data  # noqa: E402
from course_lib.ann import Index  # noqa: E402
from course_lib.ann.hnsw import HNSWIndex  # noqa: E402

N, D, NQ, M, EFC = 2000, 16, 200, 8, 48


@pytest.fixture(scope="module")
def dataset():
    X = data.make_gaussian_mixture(N + NQ, D, seed=2)
    return data.split_queries(X, NQ, seed=2)


@pytest.fixture(scope="module", params=["l2", "ip"])
def pair(request, dataset):
    """(numpy index, numba index) built on the same data with the same seed."""
    xb, _ = dataset
    kw = dict(M=M, ef_construction=EFC, metric=request.param, seed=11)
    return HNSWIndex(D, **kw).add(xb), HNSWIndex(D, backend="numba", **kw).add(xb)


def assert_same_graph(a: HNSWIndex, b: HNSWIndex) -> None:
    n = a.ntotal
    assert b.ntotal == n
    np.testing.assert_array_equal(a.levels, b.levels)
    np.testing.assert_array_equal(a.links0[:n], b.links0[:n])
    np.testing.assert_array_equal(a.deg0[:n], b.deg0[:n])
    assert (a.entry_point, a.max_level) == (b.entry_point, b.max_level)
    for v in range(n):
        np.testing.assert_array_equal(a.links_upper[v], b.links_upper[v])
    assert a.deg_upper == b.deg_upper
    assert a.build_ndis == b.build_ndis
    assert a.rng.bit_generator.state == b.rng.bit_generator.state  # the level generator is in the same place


def test_same_graph(pair):
    a, b = pair
    assert b.max_level >= 1  # the upper layers are exercised too
    assert_same_graph(a, b)


@pytest.mark.parametrize("ef", [10, 50])
def test_same_search_results(pair, dataset, ef):
    a, b = pair
    _, xq = dataset
    Da, Ia = a.search(xq, 10, ef=ef)
    Db, Ib = b.search(xq, 10, ef=ef)
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_allclose(Db, Da, rtol=1e-6, atol=1e-6)
    assert a.stats.ndis == b.stats.ndis  # the same nodes were expanded


def test_incremental_add_and_simple_selection(dataset):
    xb, xq = dataset
    for heuristic in (True, False):
        kw = dict(M=4, ef_construction=24, seed=5, heuristic=heuristic)
        a = HNSWIndex(D, **kw).add(xb[:400])
        b = HNSWIndex(D, backend="numba", **kw).add(xb[:150]).add(xb[150:400])
        assert_same_graph(a, b)
        np.testing.assert_array_equal(a.search(xq[:20], 5, ef=16)[1], b.search(xq[:20], 5, ef=16)[1])


def test_save_load_round_trip(tmp_path, dataset):
    xb, xq = dataset
    index = HNSWIndex(D, M=M, ef_construction=EFC, seed=3, backend="numba").add(xb[:600])
    other = Index.load(index.save(tmp_path / "hnsw_numba.npz"))
    assert isinstance(other, HNSWIndex) and other.backend == "numba"
    assert_same_graph(index, other)
    D1, I1 = index.search(xq, 10, ef=24)
    D2, I2 = other.search(xq, 10, ef=24)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_array_equal(D1, D2)
    # building goes on identically after a load
    index.add(xb[600:700])
    other.add(xb[600:700])
    assert_same_graph(index, other)


def test_tiny_index_pads_and_ef_at_least_k():
    idx = HNSWIndex(3, M=4, backend="numba").add(np.eye(3, dtype=np.float32))
    D_, I = idx.search(np.zeros((1, 3), np.float32), 5)
    assert sorted(I[0, :3].tolist()) == [0, 1, 2]
    assert (I[0, 3:] == -1).all() and np.isinf(D_[0, 3:]).all()


def test_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match="backend"):
        HNSWIndex(4, backend="cuda")
    import course_lib.ann as ann

    monkeypatch.delitem(sys.modules, "course_lib.ann.hnsw_numba", raising=False)
    monkeypatch.delattr(ann, "hnsw_numba", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" now fails
    with pytest.raises(ImportError, match=r"backend='numba'\) needs the numba package"):
        HNSWIndex(4, backend="numba")


def test_numba_search_is_much_faster(pair, dataset):
    """A lenient ratio, never an absolute time: the machine may be slow or busy."""
    a, b = pair
    _, xq = dataset
    b.search(xq[:2], 10, ef=32)  # compiled already; make sure

    def best_of(index, reps):
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            index.search(xq, 10, ef=32)
            times.append(time.perf_counter() - t)
        return min(times)

    assert best_of(a, 2) >= 5 * best_of(b, 5)
