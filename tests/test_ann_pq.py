"""Product quantization (course_lib.ann.pq) against faiss ProductQuantizer / IndexPQ."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from course_lib import config, data, vec  # noqa: E402
from course_lib.ann import Index, NotTrainedError  # noqa: E402
from course_lib.ann.pq import PQIndex, ProductQuantizer, adc_distances, adc_table, ip_table, lookup_sum  # noqa: E402

D, N, NQ = 16, 3000, 20


@pytest.fixture(scope="module")
def dataset():
    X = data.make_gaussian_mixture(N + NQ, D, intrinsic_dim=8, seed=3)
    return data.split_queries(X, NQ, seed=3)


@pytest.fixture(scope="module")
def trained(dataset):
    X, _ = dataset
    with config.single_thread():
        return ProductQuantizer(D, 4, 8, niter=8).train(X)


def faiss_pq_from(pq: ProductQuantizer):
    fpq = faiss.ProductQuantizer(pq.d, pq.m, pq.nbits)
    faiss.copy_array_to_vector(pq.centroids.ravel(), fpq.centroids)
    return fpq


def faiss_index_from(pq: ProductQuantizer, X: np.ndarray, metric=None):
    index = faiss.IndexPQ(pq.d, pq.m, pq.nbits) if metric is None else faiss.IndexPQ(pq.d, pq.m, pq.nbits, metric)
    faiss.copy_array_to_vector(pq.centroids.ravel(), index.pq.centroids)
    index.is_trained = True
    index.add(X)
    return index


# --------------------------------------------------------------------------- quantizer vs faiss
def test_codes_bit_identical_to_faiss_with_shared_codebooks(dataset, trained):
    X, Q = dataset
    codes = trained.compute_codes(X)
    assert codes.dtype == np.uint8 and codes.shape == (N, 4)
    fpq = faiss_pq_from(trained)
    assert np.array_equal(codes, fpq.compute_codes(X))
    assert np.array_equal(trained.decode(codes), fpq.decode(codes))


def test_codes_identical_with_large_subvectors():
    """dsub >= 16 takes faiss's BLAS path; we must still agree."""
    X = data.make_gaussian_mixture(1500, 64, seed=5)
    with config.single_thread():
        pq = ProductQuantizer(64, 2, 6, niter=4).train(X)  # dsub = 32, ksub = 64: 12 bits, packed into 2 bytes
    fpq = faiss_pq_from(pq)
    packed = fpq.compute_codes(X)  # 2 x 6 bits in 2 bytes, little-endian bit order
    bits = np.unpackbits(packed, axis=1, bitorder="little")
    unpacked = np.stack([bits[:, j * 6 : (j + 1) * 6] @ (1 << np.arange(6)) for j in range(2)], axis=1)
    assert np.array_equal(pq.compute_codes(X), unpacked)
    assert pq.code_size == fpq.code_size == 2


def test_adc_table_and_distances_match_faiss(dataset, trained):
    X, Q = dataset
    fpq = faiss_pq_from(trained)
    q = np.ascontiguousarray(Q[0])
    T_faiss = np.empty((trained.m, trained.ksub), dtype=np.float32)
    fpq.compute_distance_table(faiss.swig_ptr(q), faiss.swig_ptr(T_faiss))
    T = adc_table(q, trained.centroids)
    assert T.dtype == np.float32 and T.shape == (4, 256)
    np.testing.assert_allclose(T, T_faiss, rtol=1e-4, atol=1e-6)
    assert np.array_equal(trained.adc_tables(Q)[0], T)
    codes = trained.compute_codes(X)
    d = adc_distances(codes, T)
    exact_to_reconstruction = ((trained.decode(codes) - q) ** 2).sum(axis=1)
    np.testing.assert_allclose(d, exact_to_reconstruction, rtol=1e-4, atol=1e-5)


def test_index_adc_and_sdc_distances_match_faiss(dataset, trained):
    X, Q = dataset
    ours = PQIndex.from_quantizer(trained).add(X)
    ref = faiss_index_from(trained, X)
    D_o, I_o = ours.search(Q, 10)
    D_f, I_f = ref.search(Q, 10)
    np.testing.assert_allclose(D_o, D_f, rtol=1e-4)
    ref.pq.compute_sdc_table()
    ref.search_type = faiss.IndexPQ.ST_SDC
    D_os, _ = ours.search(Q, 10, mode="sdc")
    D_fs, _ = ref.search(Q, 10)
    np.testing.assert_allclose(D_os, D_fs, rtol=1e-4, atol=1e-4 * float(D_fs.max()))  # SDC 0 vs faiss -3e-6
    # ids may differ only where quantized distances tie: the returned ids must have the returned distances
    T = trained.adc_tables(Q)
    codes = ours.codes
    for i in range(NQ):
        np.testing.assert_allclose(adc_distances(codes[I_o[i]], T[i]), D_o[i], rtol=1e-5)


def test_inner_product_metric_matches_faiss(dataset, trained):
    X, Q = dataset
    ours = PQIndex.from_quantizer(trained, metric="ip").add(X)
    ref = faiss_index_from(trained, X, faiss.METRIC_INNER_PRODUCT)
    D_o, _ = ours.search(Q, 5)
    D_f, _ = ref.search(Q, 5)
    np.testing.assert_allclose(D_o, D_f, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(D_o, axis=1) <= 1e-6), "ip: best (largest) first"
    np.testing.assert_allclose(ip_table(Q[0], trained.centroids), trained.ip_tables(Q)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="SDC"):
        ours.search(Q, 5, mode="sdc")


def test_reconstruction_mse_within_5_percent_of_faiss_trained(dataset):
    X, _ = dataset
    with config.single_thread():
        ours = ProductQuantizer(D, 4, 6, niter=25).train(X)
        ref = faiss.ProductQuantizer(D, 4, 6)
        ref.train(X)
    mse_ours = ((ours.decode(ours.compute_codes(X)) - X) ** 2).sum(1).mean()
    mse_ref = ((ref.decode(ref.compute_codes(X)) - X) ** 2).sum(1).mean()
    assert abs(mse_ours / mse_ref - 1) < 0.05, (mse_ours, mse_ref)


def test_recall_close_to_faiss_trained_index_and_adc_beats_sdc(dataset, trained):
    X, Q = dataset
    gt = vec.ground_truth(Q, X, 10)
    ours = PQIndex.from_quantizer(trained).add(X)
    with config.single_thread():
        ref = faiss.IndexPQ(D, 4, 8)
        ref.pq.cp.niter = 8
        ref.train(X)
        ref.add(X)
    r_ours = vec.recall_at_k(ours.search(Q, 10)[1], gt.I, 10)
    r_sdc = vec.recall_at_k(ours.search(Q, 10, mode="sdc")[1], gt.I, 10)
    r_ref = vec.recall_at_k(ref.search(Q, 10)[1], gt.I, 10)
    assert abs(r_ours - r_ref) <= 0.1, (r_ours, r_ref)
    assert r_ours >= r_sdc


def test_more_subspaces_reduce_error(dataset):
    X, _ = dataset
    errs = []
    for m in (2, 4, 8):
        with config.single_thread():
            pq = ProductQuantizer(D, m, 4, niter=10).train(X)
        errs.append(((pq.decode(pq.compute_codes(X)) - X) ** 2).sum(1).mean())
    assert errs[0] > errs[1] > errs[2]


# --------------------------------------------------------------------------- index API
def test_counting_memory_and_sdc_table(dataset, trained):
    X, Q = dataset
    index = PQIndex.from_quantizer(trained).add(X)
    index.search(Q, 3)
    assert index.stats.ndis == NQ * N and index.stats.dist_per_query == N
    assert index.bytes_per_vector == 4.0  # m * nbits / 8; ids implicit, as in faiss IndexPQ
    assert ProductQuantizer(D, 4, 4).code_size == 2
    assert trained.codebook_bytes == 4 * 256 * D
    S = trained.sdc_tables()
    assert S.shape == (4, 256, 256) and np.allclose(S, S.transpose(0, 2, 1)) and np.all(np.diagonal(S, axis1=1, axis2=2) == 0)
    serialized = faiss.serialize_index(faiss_index_from(trained, X)).size
    ours_bytes = index.ntotal * index.bytes_per_vector + trained.codebook_bytes
    assert abs(ours_bytes / serialized - 1) < 0.02


def test_train_add_search_and_save_load_round_trip(dataset, tmp_path):
    X, Q = dataset
    with config.single_thread():
        index = PQIndex(D, 4, 4, niter=5).train(X).add(X[:1000]).add(X[1000:])
    assert index.ntotal == N
    D1, I1 = index.search(Q, 7)
    D2, I2 = index.search(Q, 7, mode="sdc")
    loaded = Index.load(index.save(tmp_path / "pq.npz"))
    assert isinstance(loaded, PQIndex) and loaded.m == 4 and loaded.nbits == 4
    for (Da, Ia), mode in (((D1, I1), "adc"), ((D2, I2), "sdc")):
        Db, Ib = loaded.search(Q, 7, mode=mode)
        assert np.array_equal(Ia, Ib) and np.array_equal(Da, Db)
    untrained = Index.load(PQIndex(D, 4).save(tmp_path / "empty.npz"))
    assert not untrained.is_trained


def test_k_larger_than_ntotal_pads(dataset, trained):
    X, Q = dataset
    index = PQIndex.from_quantizer(trained).add(X[:5])
    Dk, Ik = index.search(Q[:2], 8)
    assert Ik.shape == (2, 8) and np.all(Ik[:, 5:] == -1) and np.all(np.isinf(Dk[:, 5:]))


def test_bad_input(dataset, trained):
    X, Q = dataset
    with pytest.raises(ValueError, match="divisible"):
        ProductQuantizer(10, 3)
    with pytest.raises(ValueError, match="divisible"):
        PQIndex(384, 7)
    with pytest.raises(ValueError, match="nbits"):
        ProductQuantizer(16, 4, 9)
    with pytest.raises(ValueError, match="positive"):
        ProductQuantizer(16, 0)
    with pytest.raises(ValueError, match="not trained"):
        ProductQuantizer(16, 4).compute_codes(X)
    with pytest.raises(ValueError, match="at least ksub"):
        ProductQuantizer(16, 4, 8).train(X[:100])
    with pytest.raises(ValueError, match="dimension mismatch"):
        trained.compute_codes(X[:, :8])
    with pytest.raises(ValueError, match="codes"):
        trained.decode(np.zeros((3, 5), dtype=np.uint8))
    with pytest.raises(NotTrainedError):
        PQIndex(D, 4).add(X)
    index = PQIndex.from_quantizer(trained).add(X)
    with pytest.raises(ValueError, match="mode"):
        index.search(Q, 3, mode="exact")
    with pytest.raises(ValueError, match="unknown search parameter"):
        index.search(Q, 3, nprobe=4)
    with pytest.raises(ValueError, match="shape"):
        adc_table(Q[0, :8], trained.centroids)
    with pytest.raises(ValueError, match="agree on m"):
        adc_distances(np.zeros((3, 5), dtype=np.uint8), np.zeros((4, 256), np.float32))
    with pytest.raises(ValueError, match="trained"):
        PQIndex.from_quantizer(ProductQuantizer(D, 4))


def test_lookup_sum_equals_per_query_adc(dataset, trained):
    X, Q = dataset
    codes = trained.compute_codes(X)
    tables = trained.adc_tables(Q[:3])
    batched = lookup_sum(codes, tables)
    for i in range(3):
        np.testing.assert_allclose(batched[i], adc_distances(codes, tables[i]), rtol=1e-6)


def test_from_centroids_and_sdc_distances(trained, dataset):
    X, Q = dataset
    pq2 = ProductQuantizer.from_centroids(trained.centroids)
    assert (pq2.d, pq2.m, pq2.nbits) == (D, 4, 8)
    codes = trained.compute_codes(X)
    qc = trained.compute_codes(Q[:1])[0]
    sdc = pq2.sdc_distances(qc, codes)
    direct = ((trained.decode(codes) - trained.decode(qc[None])) ** 2).sum(1)
    np.testing.assert_allclose(sdc, direct, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="power of two"):
        ProductQuantizer.from_centroids(np.zeros((2, 5, 3)))
