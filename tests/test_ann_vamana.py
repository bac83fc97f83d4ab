"""Vamana / DiskANN (course_lib.ann.vamana): graph invariants, recall against faiss, disk layout, IO counting."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import data, vec
from course_lib.ann import Index
from course_lib.ann.vamana import (
    SECTOR_BYTES,
    DiskANNIndex,
    DiskLayout,
    VamanaIndex,
    adjacency_lists,
    greedy_search,
    medoid,
    random_regular_graph,
    read_node,
    robust_prune,
    write_disk_index,
)

N, D, NQ = 1200, 16, 60


@pytest.fixture(scope="module")
def dataset():
    X = data.make_gaussian_mixture(N + NQ, D, intrinsic_dim=8, seed=1)
    Xb, Q = data.split_queries(X, NQ, seed=1)
    return Xb, Q, vec.ground_truth(Q, Xb, 10)


@pytest.fixture(scope="module")
def built(dataset):
    Xb, _, _ = dataset
    return VamanaIndex(D, R=16, L=32, alpha=1.2, seed=0).add(Xb)


@pytest.fixture(scope="module")
def pq(dataset):
    from course_lib.ann.pq import ProductQuantizer

    return ProductQuantizer(D, 4, niter=8).train(dataset[0])


# ------------------------------------------------------------------ building blocks
def test_random_regular_graph_has_R_distinct_non_self_neighbours():
    g = random_regular_graph(200, 12, np.random.default_rng(0))
    assert g.shape == (200, 12) and g.dtype == np.int32
    for i, row in enumerate(g):
        assert len(set(row.tolist())) == 12 and i not in row and row.min() >= 0
    assert (random_regular_graph(5, 8, np.random.default_rng(0)) >= 0).sum(axis=1).tolist() == [4] * 5


def test_medoid_is_the_point_nearest_the_mean():
    X = np.array([[0, 0], [10, 0], [4, 1], [0, 10]], dtype=np.float32)
    assert medoid(X) == 2


def test_robust_prune_keeps_nearest_drops_covered_points_and_respects_R():
    X = np.array([[0, 0], [1, 0], [2, 0], [0, 1.5], [3, 0.1]], dtype=np.float32)
    assert robust_prune(0, np.array([0, 2, 1, 3, 4, 1]), X, 1.2, 8).tolist() == [1, 3]
    assert robust_prune(0, np.array([1, 2, 3, 4]), X, 1.2, 1).tolist() == [1]
    # larger alpha prunes less: (2, 0) survives a = 1 only when alpha * d2(a, b) = alpha * 1 > d2(p, b) = 4
    assert 2 in robust_prune(0, np.array([1, 2]), X, 4.5, 8).tolist()


def test_robust_prune_alpha_on_squared_distances():
    # d(p, p') / d(p*, p') = 1.15: the squared ratio 1.32 >= 1.2 prunes p'
    r2 = 1.15**2
    b = float(np.sqrt((2.25 - r2 * 0.25) / (r2 - 1)))
    X = np.array([[0, 0], [1, 0], [1.5, b]], dtype=np.float32)
    assert robust_prune(0, np.array([1, 2]), X, 1.2, 4).tolist() == [1]
    assert robust_prune(0, np.array([1, 2]), X, 1.4, 4).tolist() == [1, 2]


# ------------------------------------------------------------------ the in-memory index
def test_graph_invariants(built):
    nb, deg = built.neighbors, built.degrees
    assert nb.dtype == np.int32 and nb.shape == (N, 16)
    assert deg.max() <= 16 and deg.min() >= 1
    for i in range(N):
        row = nb[i, : deg[i]]
        assert (nb[i, deg[i] :] == -1).all() and (row >= 0).all()
        assert i not in row and len(set(row.tolist())) == len(row)
    assert built.reachable_fraction() == 1.0


def test_recall_and_comparison_with_faiss_hnsw(dataset, built):
    faiss = pytest.importorskip("faiss")
    Xb, Q, gt = dataset
    _, I = built.search(Q, 10, L=32)
    ours = vec.recall_at_k(I, gt.I, 10)
    ref = faiss.IndexHNSWFlat(D, 8)  # 2M = 16 links at level 0, as R
    ref.hnsw.efConstruction = 32
    ref.add(Xb)
    ref.hnsw.efSearch = 32
    _, I_ref = ref.search(Q, 10)
    assert ours >= 0.95
    assert ours >= vec.recall_at_k(I_ref, gt.I, 10) - 0.03


def test_exhaustive_list_is_exact_and_counts_every_distance(dataset, built):
    Xb, Q, gt = dataset
    D_, I = built.search(Q[:5], 10, L=N)
    assert built.stats.ndis == 5 * N  # every node reached once, each distance computed once
    assert vec.same_neighbours(D_, I, gt.D[:5, :10], gt.I[:5, :10], tol=1e-3).all()


def test_distance_count_matches_greedy_search(dataset, built):
    Xb, Q, _ = dataset
    built.search(Q[:3], 5, L=20, beam_width=2)
    x2 = (Xb.astype(np.float64) ** 2).sum(1).astype(np.float32)
    adj = adjacency_lists(built.neighbors, built.degrees)
    total = sum(greedy_search(Xb, x2, adj, built.entry, q, 20, 2).ndis for q in Q[:3])
    assert built.stats.ndis == total and built.last_hops.shape == (3,)


def test_beam_width_cuts_hops(dataset, built):
    _, Q, _ = dataset
    built.search(Q, 10, L=32, beam_width=1)
    h1 = built.last_hops.mean()
    built.search(Q, 10, L=32, beam_width=4)
    assert built.last_hops.mean() < 0.5 * h1


def test_two_passes_equal_one_pass_plus_refine(dataset):
    Xs = dataset[0][:300]
    direct = VamanaIndex(D, R=8, L=16, alpha=1.2, seed=0).add(Xs)
    again = VamanaIndex(D, R=8, L=16, alpha=1.0, passes=1, seed=0).add(Xs).refine(1.2)
    assert np.array_equal(again.neighbors, direct.neighbors) and again.entry == direct.entry


def test_second_add_inserts_new_points(dataset):
    Xb, Q, _ = dataset
    Xs = Xb[:400]
    idx = VamanaIndex(D, R=12, L=24, seed=0).add(Xs[:300]).add(Xs[300:])
    assert idx.ntotal == 400 and idx.reachable_fraction() == 1.0
    gt = vec.ground_truth(Q, Xs, 10)
    assert vec.recall_at_k(idx.search(Q, 10, L=32)[1], gt.I, 10) >= 0.9


def test_save_load_round_trip(tmp_path, dataset, built):
    _, Q, _ = dataset
    D1, I1 = built.search(Q, 10, L=24, beam_width=2)
    again = Index.load(built.save(tmp_path / "v.npz"))
    D2, I2 = again.search(Q, 10, L=24, beam_width=2)
    assert isinstance(again, VamanaIndex) and np.array_equal(I1, I2) and np.array_equal(D1, D2)


def test_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        VamanaIndex(4, alpha=0.9)
    with pytest.raises(ValueError, match="R"):
        VamanaIndex(4, R=0)
    with pytest.raises(ValueError, match="l2"):
        VamanaIndex(4, metric="ip")
    idx = VamanaIndex(4, R=4, L=8).add(np.random.default_rng(0).random((30, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown search parameter"):
        idx.search(np.zeros((1, 4), np.float32), 3, ef=10)
    with pytest.raises(ValueError, match="beam_width"):
        idx.search(np.zeros((1, 4), np.float32), 3, beam_width=0)
    with pytest.raises(ValueError, match="dimension mismatch"):
        idx.search(np.zeros((1, 5), np.float32), 3)
    with pytest.raises(ValueError, match="refine"):
        VamanaIndex(4).refine(1.2)


# ------------------------------------------------------------------ the disk layout and DiskANN search
def test_layout_sizes():
    small = DiskLayout(n=3000, d=32, R=32)
    assert (small.record_bytes, small.nodes_per_sector, small.sectors_per_node, small.n_sectors) == (260, 15, 1, 1 + 200)
    big = DiskLayout(n=10, d=1100, R=32)  # 4532-byte records: two sectors per node
    assert (big.nodes_per_sector, big.sectors_per_node, big.n_sectors) == (0, 2, 21)


@pytest.mark.parametrize("d", [16, 1100])
def test_disk_records_round_trip(tmp_path, d):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, d)).astype(np.float32)
    nb = random_regular_graph(37, 8, rng)
    deg = rng.integers(1, 9, size=37).astype(np.int32)
    layout = write_disk_index(tmp_path / "g.disk", X, nb, deg, entry=5)
    assert (tmp_path / "g.disk").stat().st_size == layout.n_sectors * SECTOR_BYTES
    mm = np.memmap(tmp_path / "g.disk", dtype=np.uint8, mode="r").reshape(-1, SECTOR_BYTES)
    for i in range(37):
        v, nbrs = read_node(mm, layout, i)
        assert np.array_equal(v, X[i]) and nbrs == nb[i, : deg[i]].tolist()


def test_disk_search_recall_ios_and_exact_rerank(tmp_path, dataset, built, pq):
    Xb, Q, gt = dataset
    disk = DiskANNIndex.from_vamana(built, pq, tmp_path / "idx.disk")
    D_, I = disk.search(Q, 10, L=24, beam_width=4)
    assert vec.recall_at_k(I, gt.I, 10) >= 0.9
    # re-ranked distances are the exact ones of the returned ids
    assert np.allclose(D_, vec.exact_distances(Q, Xb, I), rtol=1e-4, atol=1e-4)
    # every round trip reads at most W sectors; the list of L candidates is read at least once each
    assert (disk.last_ios <= 4 * disk.last_round_trips).all() and (disk.last_ios >= 24).all()
    _, I_pq = disk.search(Q, 10, L=24, beam_width=4, rerank=False)
    assert vec.recall_at_k(I_pq, gt.I, 10) < vec.recall_at_k(I, gt.I, 10)
    assert disk.bytes_per_vector == 4 and disk.layout.record_bytes == 4 * D + 4 + 4 * 16


def test_disk_beam_width_trades_round_trips_for_ios(tmp_path, dataset, built, pq):
    _, Q, _ = dataset
    disk = DiskANNIndex.from_vamana(built, pq, tmp_path / "idx.disk")
    disk.search(Q, 10, L=24, beam_width=1)
    ios1, rt1 = disk.last_ios.mean(), disk.last_round_trips.mean()
    assert ios1 == rt1
    disk.search(Q, 10, L=24, beam_width=4)
    assert disk.last_round_trips.mean() < 0.5 * rt1 and disk.last_ios.mean() >= ios1 - 1


def test_disk_save_load_and_train_add_route(tmp_path, dataset):
    Xb, Q, _ = dataset
    Xs = Xb[:400]
    disk = DiskANNIndex(D, R=12, L=24, pq_m=4, path=tmp_path / "a.disk")
    disk.pq.niter = 5
    disk.train(Xs).add(Xs)
    D1, I1 = disk.search(Q, 5, L=16, beam_width=2)
    again = Index.load(disk.save(tmp_path / "a.npz"))
    D2, I2 = again.search(Q, 5, L=16, beam_width=2)
    assert np.array_equal(I1, I2) and np.array_equal(D1, D2) and np.array_equal(disk.last_ios, again.last_ios)
    with pytest.raises(ValueError, match="written once"):
        disk.add(Xb[:10])
    (tmp_path / "a.disk").unlink()
    with pytest.raises(ValueError, match="no disk index file"):
        Index.load(tmp_path / "a.npz")


def test_disk_default_path_is_a_temporary_file(dataset, built, pq):
    disk = DiskANNIndex.from_vamana(built, pq)
    path = disk.path
    assert path.exists()
    disk._mm = None
    del disk
    import gc

    gc.collect()
    assert not path.exists()
