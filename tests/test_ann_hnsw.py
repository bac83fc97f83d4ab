"""course_lib.ann.hnsw: HNSW against faiss IndexHNSWFlat and hnswlib on small data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib import data, vec
from course_lib.ann import Index
from course_lib.ann.hnsw import HNSWIndex, select_neighbors_heuristic, select_neighbors_simple

N, D, NQ, M, EFC = 1500, 16, 100, 8, 64


@pytest.fixture(scope="module")
def dataset():
    X = data.make_gaussian_mixture(N + NQ, D, intrinsic_dim=None, cluster_std=0.5, seed=1)
    xb, xq = data.split_queries(X, NQ, seed=1)
    return xb, xq, vec.ground_truth(xq, xb, 10)


@pytest.fixture(scope="module")
def index(dataset):
    xb, _, _ = dataset
    return HNSWIndex(D, M=M, ef_construction=EFC, seed=0).add(xb)


def test_recall_and_distance_count_match_faiss(dataset, index):
    faiss = pytest.importorskip("faiss")
    xb, xq, gt = dataset
    ref = faiss.IndexHNSWFlat(D, M)
    ref.hnsw.efConstruction = EFC
    ref.hnsw.prune_headroom = 0.0  # paper-faithful pruning (faiss >= 1.15 prunes to 80% by default)
    ref.add(xb)
    for ef in (16, 32):
        _, I = index.search(xq, 10, ef=ef)
        ours_ndis = index.stats.dist_per_query
        ref.hnsw.efSearch = ef
        faiss.cvar.hnsw_stats.reset()
        _, I_ref = ref.search(xq, 10)
        faiss_ndis = faiss.cvar.hnsw_stats.ndis / len(xq)
        assert vec.recall_at_k(I, gt.I, 10) >= vec.recall_at_k(I_ref, gt.I, 10) - 0.03
        assert abs(ours_ndis - faiss_ndis) <= 0.25 * faiss_ndis


def test_recall_matches_hnswlib(dataset, index):
    hnswlib = pytest.importorskip("hnswlib")
    xb, xq, gt = dataset
    ref = hnswlib.Index(space="l2", dim=D)
    ref.init_index(max_elements=len(xb), M=M, ef_construction=EFC, random_seed=0)
    ref.set_num_threads(1)
    ref.add_items(xb)
    ref.set_ef(32)
    I_ref, _ = ref.knn_query(xq, 10)
    _, I = index.search(xq, 10, ef=32)
    assert vec.recall_at_k(I, gt.I, 10) >= vec.recall_at_k(I_ref.astype(np.int64), gt.I, 10) - 0.03


def test_graph_invariants(index):
    n = index.ntotal
    assert index.deg0.max() <= 2 * M and index.deg0.min() >= 1
    assert index.levels[index.entry_point] == index.max_level == index.levels.max()
    for level in range(1, index.max_level + 1):
        nodes, links = index.layer_graph(level)
        assert (links >= 0).sum(1).max() <= M
        on_level = set(nodes.tolist())
        assert set(links[links >= 0].tolist()) <= on_level  # links stay on their layer
    links0 = index.links0
    assert ((links0 == -1) | ((links0 >= 0) & (links0 < n))).all()
    assert not (links0 == np.arange(n)[:, None]).any()  # no self loops


def test_layer0_connected(index):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = np.nonzero(index.links0 >= 0)
    A = csr_matrix((np.ones(len(rows)), (rows, index.links0[rows, cols])), shape=(index.ntotal,) * 2)
    n_comp, _ = connected_components(A + A.T, directed=False)
    assert n_comp == 1


def test_levels_are_geometric():
    idx = HNSWIndex(4, M=4, seed=3)
    levels = np.array([idx.random_level() for _ in range(20000)])
    # P(level >= l) = M**-l with mL = 1 / ln M
    for level in (1, 2):
        assert abs((levels >= level).mean() - 4.0**-level) < 0.01
    assert idx.mL == pytest.approx(1 / math.log(4))


def test_distances_are_exact(dataset, index):
    xb, xq, _ = dataset
    D_, I = index.search(xq[:10], 5, ef=20)
    np.testing.assert_allclose(D_, vec.exact_distances(xq[:10], xb, I), rtol=1e-4, atol=1e-4)
    assert (np.diff(D_, axis=1) >= 0).all()


def test_save_load_round_trip(tmp_path, dataset, index):
    _, xq, _ = dataset
    path = index.save(tmp_path / "hnsw.npz")
    other = Index.load(path)
    assert isinstance(other, HNSWIndex)
    for name in ("links0", "levels", "xb"):
        np.testing.assert_array_equal(getattr(other, name), getattr(index, name))
    assert other.entry_point == index.entry_point and other.max_level == index.max_level
    for a, b in zip(other.links_upper, index.links_upper):
        np.testing.assert_array_equal(a, b)
    D1, I1 = index.search(xq, 10, ef=24)
    D2, I2 = other.search(xq, 10, ef=24)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_array_equal(D1, D2)
    # the level generator resumes where it stopped: adding to both gives the same graph
    extra = np.random.default_rng(5).standard_normal((20, D)).astype(np.float32)
    index_copy = Index.load(path)
    index_copy.add(extra)
    other.add(extra)
    np.testing.assert_array_equal(index_copy.links0, other.links0)


def test_same_seed_same_graph(dataset):
    xb = dataset[0][:300]
    a = HNSWIndex(D, M=M, ef_construction=32, seed=7).add(xb)
    b = HNSWIndex(D, M=M, ef_construction=32, seed=7).add(xb)
    np.testing.assert_array_equal(a.links0, b.links0)
    np.testing.assert_array_equal(a.levels, b.levels)


def test_search_counts_distances_and_ef_at_least_k(dataset, index):
    _, xq, _ = dataset
    _, I = index.search(xq[:5], 30, ef=1)  # ef = max(ef, k): 30 results, not 1
    assert (I >= 0).all() and all(len(set(r)) == 30 for r in I.tolist())
    index.search(xq[:5], 10, ef=10)
    small = index.stats.ndis
    index.search(xq[:5], 10, ef=80)
    assert index.stats.ndis > small > 0


def test_tiny_index_pads():
    idx = HNSWIndex(3, M=4).add(np.eye(3, dtype=np.float32))
    D_, I = idx.search(np.zeros((1, 3), np.float32), 5)
    assert I[0, :3].tolist() and sorted(I[0, :3].tolist()) == [0, 1, 2]
    assert (I[0, 3:] == -1).all() and np.isinf(D_[0, 3:]).all()


def test_inner_product_metric():
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((800, 8)).astype(np.float32)
    xq = rng.standard_normal((20, 8)).astype(np.float32)
    idx = HNSWIndex(8, M=8, ef_construction=64, metric="ip").add(xb)
    S, I = idx.search(xq, 5, ef=64)
    S_true, I_true = vec.exact_knn(xq, xb, 5, metric="ip")
    assert vec.recall_at_k(I, I_true, 5) >= 0.9
    assert (np.diff(S, axis=1) <= 1e-6).all()  # similarities, best (largest) first


def test_bad_input():
    with pytest.raises(ValueError, match="M must be"):
        HNSWIndex(4, M=1)
    with pytest.raises(ValueError, match="ef_construction"):
        HNSWIndex(4, ef_construction=0)
    with pytest.raises(ValueError, match="backend"):
        HNSWIndex(4, backend="cuda")
    idx = HNSWIndex(4).add(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="unknown search parameter"):
        idx.search(np.ones((1, 4), np.float32), 1, nprobe=3)
    with pytest.raises(ValueError, match="ef must be"):
        idx.search(np.ones((1, 4), np.float32), 1, ef=0)
    with pytest.raises(ValueError, match="dimension mismatch"):
        idx.search(np.ones((1, 5), np.float32), 1)


def test_select_neighbors_heuristic_reference():
    q_dists = np.array([1.0, 1.21, 1.70, 2.0])
    ids = np.array([10, 11, 12, 13])
    V = np.array([[1.0, 0.0], [0.0, 1.1], [0.1, 1.3], [1.4, 0.2]])
    assert select_neighbors_heuristic(q_dists, ids, V, 4).tolist() == [10, 11]
    assert select_neighbors_heuristic(q_dists[::-1], ids[::-1], V[::-1], 4).tolist() == [10, 11]
    assert select_neighbors_heuristic(q_dists, ids, V, 1).tolist() == [10]
    assert select_neighbors_simple(q_dists[::-1], ids[::-1], 3).tolist() == [10, 11, 12]


def test_simple_selection_builds_a_working_graph(dataset):
    xb, xq, gt = dataset
    simple = HNSWIndex(D, M=M, ef_construction=32, heuristic=False).add(xb[:600])
    _, I = simple.search(xq, 10, ef=64)
    assert vec.recall_at_k(I, vec.ground_truth(xq, xb[:600], 10).I, 10) > 0.8
