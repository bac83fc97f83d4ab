"""IVFPQ and IVFPQ + refine (course_lib.ann.ivfpq) against faiss IndexIVFPQ / IndexRefineFlat."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from course_lib import config, data, vec  # noqa: E402
from course_lib.ann import Index, NotTrainedError  # noqa: E402
from course_lib.ann.ivf import probe_lists  # noqa: E402
from course_lib.ann.ivfpq import IVFPQIndex, IVFPQRefineIndex, encode_residuals, precompute_term2, refine  # noqa: E402
from course_lib.ann.pq import ProductQuantizer  # noqa: E402

D, N, NQ, NLIST, M, K = 16, 4000, 40, 32, 4, 10


@pytest.fixture(scope="module")
def dataset():
    X = data.make_gaussian_mixture(N + NQ, D, intrinsic_dim=8, seed=3)
    return data.split_queries(X, NQ, seed=3)


@pytest.fixture(scope="module")
def ours(dataset):
    X, _ = dataset
    with config.single_thread():
        return IVFPQIndex(D, NLIST, M, pq_niter=6).train(X).add(X)


def faiss_ivfpq_from(index: IVFPQIndex):
    """An empty faiss IndexIVFPQ with our coarse centroids and PQ codebooks (no faiss training)."""
    metric = faiss.METRIC_L2 if index.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    quantizer = faiss.IndexFlatL2(index.d) if index.metric == "l2" else faiss.IndexFlatIP(index.d)
    quantizer.add(index.centroids)
    f = faiss.IndexIVFPQ(quantizer, index.d, index.nlist, index.m, index.nbits, metric)
    f.referenced_objects = [quantizer]  # keep the quantizer alive
    f.by_residual = index.by_residual
    faiss.copy_array_to_vector(index.pq.centroids.ravel(), f.pq.centroids)
    f.is_trained = True
    if index.by_residual and index.metric == "l2":
        f.precompute_table()
    return f


def recall(Q, X, I, gt):
    return vec.recall_at_k(I, gt.I, K, D_pred=vec.exact_distances(Q, X, I), D_true=gt.D)


# --------------------------------------------------------------------------- same parts as faiss: same answers
@pytest.mark.parametrize("nprobe", [1, 4, NLIST])
def test_same_results_as_faiss_with_shared_parts(dataset, ours, nprobe):
    X, Q = dataset
    f = faiss_ivfpq_from(ours)
    f.add(X)
    f.nprobe = nprobe
    Df, If = f.search(Q, K)
    Do, Io = ours.search(Q, K, nprobe=nprobe)
    np.testing.assert_allclose(Do, Df, rtol=1e-4, atol=1e-4)
    assert vec.same_neighbours(Do, Io, Df, If, tol=1e-4).mean() >= 0.95  # ties between equal codes may swap


def test_codes_in_lists_identical_to_faiss(dataset, ours):
    X, _ = dataset
    f = faiss_ivfpq_from(ours)
    f.add(X)
    invlists = f.invlists
    for l in range(NLIST):
        n = invlists.list_size(l)
        assert n == ours.list_sizes()[l]
        codes = faiss.rev_swig_ptr(invlists.get_codes(l), n * f.code_size).reshape(n, M)
        ids = faiss.rev_swig_ptr(invlists.get_ids(l), n)
        s = slice(ours.offsets[l], ours.offsets[l + 1])
        assert np.array_equal(ids, ours.ids[s])
        assert np.array_equal(codes, ours.codes[s])


def test_precomputed_tables_give_the_same_distances(dataset, ours):
    _, Q = dataset
    D1, I1 = ours.search(Q, K, nprobe=8, use_precomputed=True)
    D2, I2 = ours.search(Q, K, nprobe=8, use_precomputed=False)
    np.testing.assert_allclose(D1, D2, rtol=1e-4, atol=1e-4)
    assert vec.same_neighbours(D1, I1, D2, I2, tol=1e-4).mean() >= 0.95


def test_term2_is_norm_plus_cross_term(ours):
    T2 = precompute_term2(ours.centroids, ours.pq)
    assert T2.shape == (NLIST, M, 256) and T2.dtype == np.float32
    codes = np.random.default_rng(0).integers(0, 256, size=(5, M)).astype(np.uint8)
    r = ours.pq.decode(codes)
    for l in (0, 7):
        want = (r**2).sum(1) + 2 * r @ ours.centroids[l]
        got = T2[l][np.arange(M), codes.astype(int)].sum(1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric,by_residual", [("ip", True), ("l2", False)])
def test_other_modes_match_faiss(dataset, metric, by_residual):
    X, Q = dataset
    with config.single_thread():
        base = IVFPQIndex(D, NLIST, M, metric=metric, by_residual=by_residual, pq_niter=4).train(X)
    f = faiss_ivfpq_from(base)
    base.add(X)
    f.add(X)
    f.nprobe = 4
    Df, If = f.search(Q, K)
    Do, Io = base.search(Q, K, nprobe=4)
    np.testing.assert_allclose(Do, Df, rtol=1e-4, atol=1e-3)
    assert (Io == If).mean() >= 0.95


# --------------------------------------------------------------------------- trained independently: same quality
def test_recall_close_to_faiss_trained_by_faiss(dataset, ours):
    X, Q = dataset
    gt = vec.ground_truth(Q, X, K)
    with config.single_thread():
        f = faiss.IndexIVFPQ(faiss.IndexFlatL2(D), D, NLIST, M, 8)
        f.pq.cp.niter = 6
        f.train(X)
        f.add(X)
    for nprobe in (1, 8):
        f.nprobe = nprobe
        _, If = f.search(Q, K)
        _, Io = ours.search(Q, K, nprobe=nprobe)
        assert abs(recall(Q, X, Io, gt) - recall(Q, X, If, gt)) <= 0.05


def test_pq_trained_on_raw_vectors_is_worse(dataset, ours):
    """The classic bug: codebooks trained on x, then used to encode residuals x - c(x)."""
    X, Q = dataset
    gt = vec.ground_truth(Q, X, K)
    with config.single_thread():
        raw_pq = ProductQuantizer(D, M, 8, niter=6).train(X)
    bug = IVFPQIndex.from_parts(ours.centroids, raw_pq).add(X)
    _, Ib = bug.search(Q, K, nprobe=8)
    _, Io = ours.search(Q, K, nprobe=8)
    assert recall(Q, X, Io, gt) >= recall(Q, X, Ib, gt) + 0.1


def test_recall_grows_with_nprobe(dataset, ours):
    X, Q = dataset
    gt = vec.ground_truth(Q, X, K)
    r = [recall(Q, X, ours.search(Q, K, nprobe=p)[1], gt) for p in (1, 4, NLIST)]
    assert r[0] < r[1] <= r[2] + 0.02


# --------------------------------------------------------------------------- refine
def test_refine_matches_faiss_index_refine_flat(dataset, ours):
    X, Q = dataset
    f = faiss_ivfpq_from(ours)
    fr = faiss.IndexRefineFlat(f)
    fr.add(X)
    ref = IVFPQRefineIndex.from_base(IVFPQIndex.from_parts(ours.centroids, ours.pq)).add(X)
    for k_factor in (1, 4):
        params = faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=faiss.SearchParametersIVF(nprobe=4))
        Df, If = fr.search(Q, K, params=params)
        Do, Io = ref.search(Q, K, nprobe=4, k_factor=k_factor)
        np.testing.assert_allclose(Do, Df, rtol=1e-4, atol=1e-4)
        assert vec.same_neighbours(Do, Io, Df, If, tol=1e-4).mean() >= 0.95


def test_refine_with_all_lists_and_many_candidates_is_exact(dataset, ours):
    X, Q = dataset
    ref = IVFPQRefineIndex.from_base(IVFPQIndex.from_parts(ours.centroids, ours.pq)).add(X)
    gt = vec.ground_truth(Q, X, K)
    Do, Io = ref.search(Q, K, nprobe=NLIST, k_factor=50)
    assert recall(Q, X, Io, gt) >= 0.99
    np.testing.assert_allclose(Do, vec.exact_distances(Q, X, Io), rtol=1e-5, atol=1e-5)  # exact distances returned


def test_refine_function_handles_missing_candidates():
    Q = np.zeros((1, 2), np.float32)
    xb = np.array([[3, 0], [1, 0], [2, 0]], np.float32)
    Dk, Ik = refine(Q, xb, np.array([[0, -1, 2, 1]]), 4)
    assert Ik.tolist() == [[1, 2, 0, -1]] and Dk[0, :3].tolist() == [1, 4, 9] and np.isinf(Dk[0, 3])


# --------------------------------------------------------------------------- bookkeeping
def test_distance_count_is_coarse_plus_codes_scanned(dataset, ours):
    _, Q = dataset
    nprobe = 3
    ours.search(Q, K, nprobe=nprobe)
    lists = probe_lists(Q, ours.centroids, nprobe)
    scanned = ours.list_sizes()[lists].sum()
    assert ours.stats.ndis == len(Q) * NLIST + scanned


def test_refine_counts_exact_distances_too(dataset, ours):
    X, Q = dataset
    ref = IVFPQRefineIndex.from_base(IVFPQIndex.from_parts(ours.centroids, ours.pq)).add(X)
    ref.search(Q, K, nprobe=2, k_factor=3)
    ours.search(Q, 3 * K, nprobe=2)
    assert ref.stats.ndis == ours.stats.ndis + len(Q) * 3 * K


def test_bytes_per_vector(ours):
    assert ours.bytes_per_vector == M * 8 / 8 + 8
    ref = IVFPQRefineIndex(D, NLIST, M)
    assert ref.bytes_per_vector == M + 8 + 4 * D
    assert ours.fixed_bytes == 4 * NLIST * D + 4 * 256 * D + 4 * NLIST * M * 256


def test_save_load_round_trip(tmp_path, dataset, ours):
    X, Q = dataset
    for index in (ours, IVFPQRefineIndex.from_base(IVFPQIndex.from_parts(ours.centroids, ours.pq)).add(X)):
        path = index.save(tmp_path / "idx.npz")
        loaded = Index.load(path)
        assert type(loaded) is type(index) and loaded.ntotal == index.ntotal
        params = {"nprobe": 5, "k_factor": 2} if isinstance(index, IVFPQRefineIndex) else {"nprobe": 5}
        D1, I1 = index.search(Q, K, **params)
        D2, I2 = loaded.search(Q, K, **params)
        assert np.array_equal(I1, I2) and np.array_equal(D1, D2)


def test_add_in_two_batches_equals_one(dataset, ours):
    X, Q = dataset
    two = IVFPQIndex.from_parts(ours.centroids, ours.pq).add(X[:1500]).add(X[1500:])
    assert np.array_equal(two.ids, ours.ids) and np.array_equal(two.codes, ours.codes)


def test_encode_residuals_reference(dataset, ours):
    X, _ = dataset
    Xc = X[:200].copy()
    assign = probe_lists(Xc, ours.centroids, 1)[:, 0]
    codes = encode_residuals(Xc, assign, ours.centroids, ours.pq)
    assert codes.dtype == np.uint8 and codes.shape == (200, M)
    assert np.array_equal(Xc, X[:200])  # input untouched
    assert np.array_equal(codes, ours.pq.compute_codes(Xc - ours.centroids[assign]))


# --------------------------------------------------------------------------- bad input
def test_bad_input(dataset, ours):
    X, Q = dataset
    with pytest.raises(ValueError, match="nprobe"):
        ours.search(Q, K, nprobe=0)
    with pytest.raises(ValueError, match="unknown search parameter"):
        ours.search(Q, K, efSearch=3)
    with pytest.raises(ValueError, match="divisible"):
        IVFPQIndex(D, NLIST, 5)
    with pytest.raises(ValueError, match="nlist"):
        IVFPQIndex(D, 0, M)
    with pytest.raises(NotTrainedError):
        IVFPQIndex(D, NLIST, M).add(X)
    with pytest.raises(ValueError, match="trained ProductQuantizer"):
        IVFPQIndex.from_parts(ours.centroids, ProductQuantizer(D, M))
    with pytest.raises(ValueError, match="at least nlist"):
        IVFPQIndex(D, NLIST, M).train(X[:10])
    ref = IVFPQRefineIndex.from_base(IVFPQIndex.from_parts(ours.centroids, ours.pq)).add(X)
    with pytest.raises(ValueError, match="k_factor"):
        ref.search(Q, K, k_factor=0.5)
    with pytest.raises(ValueError, match="dimension mismatch"):
        ours.search(Q[:, :8], K)
