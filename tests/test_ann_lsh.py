"""course_lib.ann.lsh: SimHash codes, faiss IndexLSH equivalence, bucketed LSH with multi-probe."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.ann import Index, NotTrainedError
from course_lib.ann import lsh
from course_lib.ann.lsh import LSHCodeIndex, LSHTableIndex
from course_lib.data import make_gaussian_mixture, split_queries
from course_lib.grade.core import get_task, run_task
from course_lib.vec import exact_knn, recall_at_k


@pytest.fixture(scope="module")
def mixture():
    X = make_gaussian_mixture(3200, 16, seed=0)
    X_db, X_q = split_queries(X, 100, seed=0)
    return X_db, X_q


# --------------------------------------------------------------------------- codes
def test_pack_bits_layout():
    bits = np.zeros((2, 130), dtype=bool)
    bits[0, [0, 3, 63]] = True
    bits[1, [64, 129]] = True
    codes = lsh.pack_bits(bits)
    assert codes.shape == (2, 3) and codes.dtype == np.uint64
    assert int(codes[0, 0]) == (1 << 0) | (1 << 3) | (1 << 63) and codes[0, 1:].tolist() == [0, 0]
    assert codes[1].tolist() == [0, 1, 1 << 1]


def test_simhash_zero_projection_is_one_and_hamming():
    X = np.zeros((1, 4), np.float32)
    planes = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    assert int(lsh.simhash_codes(X, planes)[0, 0]) == 2**64 - 1
    A = lsh.pack_bits(np.array([[1, 0, 1, 1], [0, 0, 0, 0]], bool))
    np.testing.assert_array_equal(lsh.hamming_distances(A, A), [[0, 3], [3, 0]])
    with pytest.raises(ValueError, match="uint64"):
        lsh.hamming_distances(A.astype(np.int64), A)


def test_ties_broken_by_smaller_id():
    dist = np.array([[3, 1, 1, 0, 1, 2]])
    d, i = lsh.smallest_with_id_ties(dist, 3)
    assert d.tolist() == [[0, 1, 1]] and i.tolist() == [[3, 1, 2]]


def test_collision_law_matches_theory(rng):
    """P[same bit] = 1 - theta/pi for Gaussian planes, within binomial noise."""
    a = np.array([[1.0, 0.0]])
    planes = rng.standard_normal((200_000, 2)).astype(np.float32)
    for theta in (0.3, 1.0, 2.5):
        b = np.array([[np.cos(theta), np.sin(theta)]])
        agree = (lsh.simhash_bits(a, planes) == lsh.simhash_bits(b, planes)).mean()
        assert abs(agree - lsh.collision_probability(theta)) < 0.005
    assert lsh.table_hit_probability(0.0, 10, 3) == 1.0
    np.testing.assert_allclose(lsh.table_hit_probability(np.pi / 2, 2, 3), 1 - (1 - 0.25) ** 3)


# --------------------------------------------------------------------------- faiss IndexLSH
@pytest.mark.parametrize("nbits", [16, 64, 96])
def test_code_index_bit_exact_with_faiss(mixture, nbits):
    faiss = pytest.importorskip("faiss")
    X_db, X_q = mixture
    ref = faiss.IndexLSH(16, nbits)
    ref.add(X_db)
    rotation = faiss.vector_to_array(ref.rrot.A).reshape(nbits, 16)
    ours = LSHCodeIndex(16, nbits, rotation=rotation).add(X_db)
    ref_codes = faiss.vector_to_array(ref.codes).reshape(len(X_db), -1)
    np.testing.assert_array_equal(ours.codes.view(np.uint8)[:, : ref_codes.shape[1]], ref_codes)
    D, I = ours.search(X_q, 10)
    Dr, Ir = ref.search(X_q, 10)
    np.testing.assert_array_equal(I, Ir)
    np.testing.assert_array_equal(D, Dr)
    assert ours.stats.dist_per_query == len(X_db)


def test_code_index_no_rotation_and_thresholds_match_faiss(mixture):
    faiss = pytest.importorskip("faiss")
    X_db, X_q = mixture
    X_db = X_db + 2.0  # off-centre: median thresholds matter
    ref = faiss.IndexLSH(16, 16, False, True)
    ref.train(X_db)
    ref.add(X_db)
    ours = LSHCodeIndex(16, 16, rotate_data=False, train_thresholds=True)
    with pytest.raises(NotTrainedError):
        ours.add(X_db)
    ours.train(X_db).add(X_db)
    np.testing.assert_allclose(ours.thresholds, faiss.vector_to_array(ref.thresholds), rtol=1e-6)
    np.testing.assert_array_equal(ours.search(X_q, 5)[1], ref.search(X_q, 5)[1])


def test_code_index_recall_close_to_faiss(mixture):
    faiss = pytest.importorskip("faiss")
    X_db, X_q = mixture
    _, gt = exact_knn(X_q, X_db, 10)
    for nbits in (64, 128):
        ours, ref = [], []
        for s in range(4):
            ours.append(recall_at_k(LSHCodeIndex(16, nbits, seed=s).add(X_db).search(X_q, 10)[1], gt, 10))
            idx = faiss.IndexLSH(16, nbits)
            idx.rrot.init(100 + s)
            idx.add(X_db)
            ref.append(recall_at_k(idx.search(X_q, 10)[1], gt, 10))
        assert abs(np.mean(ours) - np.mean(ref)) < 0.04  # 100 queries: looser than the lesson's 0.02


# --------------------------------------------------------------------------- bucketed LSH
def _brute_candidates(index: LSHTableIndex, q: np.ndarray, n_probes: int) -> set[int]:
    keys = lsh.probe_keys(index.margins(q[None]), n_probes)[0]  # (L, T)
    out: set[int] = set()
    for t in range(index.L):
        for key in keys[t]:
            out |= set(np.flatnonzero(index.keys[t] == key).tolist())
    return out


@pytest.mark.parametrize("n_probes", [1, 5])
def test_table_index_candidates_and_exact_rerank(mixture, n_probes):
    X_db, X_q = mixture
    index = LSHTableIndex(16, 8, 3, seed=1).train(X_db).add(X_db)
    D, I = index.search(X_q[:8], 5, n_probes=n_probes)
    query, ids = index.candidates(X_q[:8], n_probes)
    assert index.stats.ndis == len(ids)
    for row in range(8):
        cand = ids[query == row]
        assert set(cand.tolist()) == _brute_candidates(index, X_q[row], n_probes)
        kk = min(5, len(cand))
        Dc, Ic = exact_knn(X_q[row : row + 1], X_db[cand], kk)
        np.testing.assert_array_equal(cand[Ic[0]], I[row, :kk])
        np.testing.assert_allclose(D[row, :kk], Dc[0], rtol=1e-4, atol=1e-4)
        assert (I[row, kk:] == -1).all()


def test_probe_template_is_the_heap_order():
    t = lsh.probe_template(6, 2**6)
    assert t[0] == () and len(set(t)) == 64  # every subset exactly once
    z2 = lsh.expected_sorted_margins(6) ** 2
    scores = [sum(z2[list(s)]) for s in t]
    assert all(a <= b + 1e-12 for a, b in zip(scores, scores[1:]))
    with pytest.raises(ValueError, match="n_probes"):
        lsh.probe_template(4, 17)


def test_more_tables_and_probes_never_lose_recall(mixture):
    X_db, X_q = mixture
    _, gt = exact_knn(X_q, X_db, 10)
    last = -1.0
    for L in (1, 2, 4, 8):  # same seed: the first tables are shared, candidate sets are nested
        r = recall_at_k(LSHTableIndex(16, 10, L, seed=3).train(X_db).add(X_db).search(X_q, 10)[1], gt, 10)
        assert r >= last
        last = r
    index = LSHTableIndex(16, 10, 2, seed=3).train(X_db).add(X_db)
    last = -1.0
    for T in (1, 2, 4, 8):
        r = recall_at_k(index.search(X_q, 10, n_probes=T)[1], gt, 10)
        assert r >= last
        last = r
    assert last > 0.8


def test_nearest_neighbour_found_matches_theory(mixture):
    X_db, _ = mixture
    sample = np.arange(0, 3000, 3)
    _, two = exact_knn(X_db[sample], X_db, 2)
    nn = np.where(two[:, 0] == sample, two[:, 1], two[:, 0])
    hits, probs = [], []
    for s in range(10):
        index = LSHTableIndex(16, 10, 2, seed=s).train(X_db).add(X_db)
        hits.append((index.keys[:, sample] == index.keys[:, nn]).any(axis=0))
        probs.append(lsh.table_hit_probability(lsh.angles(X_db[sample] - index.mean, X_db[nn] - index.mean), 10, 2))
    # 10,000 Bernoulli trials: the overall rate is within ~3 standard errors (0.015) of the closed form
    assert abs(np.mean(hits) - np.mean(probs)) < 0.02


def test_exact_neighbour_found_equals_recall_at_1(mixture):
    X_db, X_q = mixture
    index = LSHTableIndex(16, 12, 4, seed=0).train(X_db).add(X_db)
    _, gt = exact_knn(X_q, X_db, 1)
    _, I = index.search(X_q, 1)
    np.testing.assert_array_equal(lsh.exact_neighbour_found(index, X_q, X_db), I[:, 0] == gt[:, 0])


def test_ip_metric_on_unit_vectors(mixture):
    X_db, X_q = mixture
    Xn = X_db / np.linalg.norm(X_db, axis=1, keepdims=True)
    Qn = X_q / np.linalg.norm(X_q, axis=1, keepdims=True)
    index = LSHTableIndex(16, 6, 4, metric="ip", seed=0).train(Xn).add(Xn)
    D, I = index.search(Qn, 5)
    np.testing.assert_allclose(D, np.einsum("qd,qkd->qk", Qn, Xn[I]), rtol=1e-5, atol=1e-5)
    assert (np.diff(D, axis=1) <= 1e-6).all()


# --------------------------------------------------------------------------- API, persistence, errors
@pytest.mark.parametrize(
    "make",
    [
        lambda: LSHCodeIndex(16, 64, seed=2),
        lambda: LSHCodeIndex(16, 8, rotate_data=False, train_thresholds=True),
        lambda: LSHTableIndex(16, 8, 3, seed=2),
    ],
)
def test_save_load_round_trip(mixture, tmp_path, make):
    X_db, X_q = mixture
    index = make().train(X_db).add(X_db[:1000]).add(X_db[1000:])
    again = Index.load(index.save(tmp_path / "lsh.npz"))
    assert type(again) is type(index) and again.ntotal == index.ntotal
    params = {"n_probes": 3} if isinstance(index, LSHTableIndex) else {}
    for a, b in zip(index.search(X_q, 7, **params), again.search(X_q, 7, **params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.bytes_per_vector == index.bytes_per_vector


def test_bytes_per_vector():
    assert LSHCodeIndex(16, 128).bytes_per_vector == 16
    assert LSHTableIndex(16, 8, 4).bytes_per_vector == 4 * 16 + 16 * 4


def test_bad_input(mixture):
    X_db, X_q = mixture
    with pytest.raises(ValueError, match="nbits <= d"):
        LSHCodeIndex(16, 32, rotate_data=False)
    with pytest.raises(ValueError, match="nbits"):
        LSHCodeIndex(16, 0)
    with pytest.raises(ValueError, match="K must be"):
        LSHTableIndex(16, 63, 2)
    with pytest.raises(ValueError, match="L must be"):
        LSHTableIndex(16, 8, 0)
    with pytest.raises(ValueError, match="rotation"):
        LSHCodeIndex(16, 8, rotation=np.eye(8, 15))
    table = LSHTableIndex(16, 8, 2)
    with pytest.raises(NotTrainedError):
        table.add(X_db)
    table.train(X_db).add(X_db)
    with pytest.raises(ValueError, match="n_probes"):
        table.search(X_q, 3, n_probes=0)
    with pytest.raises(ValueError, match="unknown search parameter"):
        table.search(X_q, 3, nprobe=2)
    with pytest.raises(ValueError, match="dimension mismatch"):
        table.search(X_q[:, :8], 3)
    with pytest.raises(ValueError, match="unknown search parameter"):
        LSHCodeIndex(16, 64).add(X_db).search(X_q, 3, n_probes=2)


# --------------------------------------------------------------------------- the graded function
def test_graded_simhash_reference_and_stub():
    task = get_task("vector_search.simhash_codes")
    result = run_task(task, lsh.simhash_codes)
    assert result.passed == len(task.tests), [t.message for t in result.tests if t.status != "pass"]

    def stub(X, planes):
        raise NotImplementedError

    assert run_task(task, stub).passed == 0


@pytest.mark.parametrize(
    "mistake, failing",
    [
        (lambda X, P: lsh.pack_bits(X @ P.T > 0), "exactly 0"),
        (lambda X, P: np.packbits(X @ P.T >= 0, axis=1).view(">u8").astype(np.uint64), "bit j"),
        (lambda X, P: lsh.simhash_codes(X - X.mean(axis=0), P), "centre"),
        (lambda X, P: lsh.pack_bits(X @ P >= 0), "rows"),
    ],
)
def test_graded_hints_catch_mistakes(mistake, failing):
    task = get_task("vector_search.simhash_codes")
    result = run_task(task, mistake)
    failed = [t.name for t in result.tests if t.status != "pass"]
    assert any(failing in name for name in failed), failed


def test_table_search_with_no_candidate_at_all():
    # One query whose buckets are all empty: every id is -1, and nothing crashes.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 16)).astype(np.float32)
    index = LSHTableIndex(16, K=24, L=2, seed=0)
    index.train(X)
    index.add(X)
    Q = rng.standard_normal((20, 16)).astype(np.float32)
    lonely = [q for q in Q if len(index.candidates(q[None])[1]) == 0]
    assert lonely, "with 2^24 buckets per table some random query must find none occupied"
    D, I = index.search(lonely[0][None], 5)
    assert (I == -1).all() and np.isinf(D).all()
