"""course_lib.ann.ivf (IVF-Flat) against faiss IndexIVFFlat with shared centroids, and the kmeanspp_init task."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.ann import Index, NotTrainedError
from course_lib.ann.ivf import IVF_KMEANS_NITER, IVFFlatIndex, imbalance_factor
from course_lib.ann.kmeans import kmeans, kmeanspp_init
from course_lib.data import make_gaussian_mixture, split_queries
from course_lib.vec import exact_knn, same_neighbours

D_DIM, NLIST = 16, 32


@pytest.fixture(scope="module")
def dataset():
    X = make_gaussian_mixture(4000, D_DIM, seed=0)
    return split_queries(X, 50, seed=0)


@pytest.fixture(scope="module")
def trained(dataset):
    xb, _ = dataset
    return IVFFlatIndex(D_DIM, NLIST).train(xb).add(xb)


def _faiss_ivf(faiss, centroids, xb, metric="l2"):
    """faiss IndexIVFFlat whose coarse quantizer holds *our* centroids (so it needs no training)."""
    d, nlist = centroids.shape[1], centroids.shape[0]
    quantizer = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    quantizer.add(centroids)
    kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexIVFFlat(quantizer, d, nlist, kind)
    assert index.is_trained  # a quantizer with nlist centroids makes the IVF index trained
    index.add(xb)
    return index, quantizer


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_same_results_and_work_as_faiss_at_every_nprobe(dataset, trained, metric):
    faiss = pytest.importorskip("faiss")
    xb, xq = dataset
    ours = IVFFlatIndex(D_DIM, NLIST, metric).set_centroids(trained.centroids).add(xb)
    ref, _quantizer = _faiss_ivf(faiss, trained.centroids, xb, metric)
    sizes = np.array([ref.invlists.list_size(i) for i in range(NLIST)])
    np.testing.assert_array_equal(ours.list_sizes(), sizes)
    assert ours.imbalance_factor() == pytest.approx(ref.invlists.imbalance_factor(), rel=1e-12)
    for nprobe in (1, 3, 8, NLIST):
        D, I = ours.search(xq, 10, nprobe=nprobe)
        ref.nprobe = nprobe
        faiss.cvar.indexIVF_stats.reset()
        Dr, Ir = ref.search(xq, 10)
        sign = 1 if metric == "l2" else -1  # same_neighbours compares distances: smaller is better
        assert same_neighbours(sign * D, I, sign * Dr, Ir).all(), f"nprobe={nprobe}"
        # work: nlist centroid distances per query, plus every vector in the probed lists
        assert ours.stats.ndis == faiss.cvar.indexIVF_stats.ndis + len(xq) * NLIST


def test_train_is_faiss_style_kmeans(dataset):
    xb, _ = dataset
    index = IVFFlatIndex(D_DIM, NLIST).train(xb)
    ref = kmeans(xb, NLIST, niter=IVF_KMEANS_NITER, seed=1234)
    np.testing.assert_array_equal(index.centroids, ref.centroids)
    assert index.train_objective == ref.objective and IVF_KMEANS_NITER == 10


def test_full_probe_is_exact_and_recall_grows(dataset, trained):
    xb, xq = dataset
    D, I = trained.search(xq, 10, nprobe=NLIST)
    De, Ie = exact_knn(xq, xb, 10)
    assert same_neighbours(D, I, De, Ie).all()
    assert trained.stats.dist_per_query == NLIST + len(xb)
    hits = [np.mean([len(set(a) & set(b)) for a, b in zip(trained.search(xq, 10, nprobe=p)[1].tolist(), Ie.tolist())]) for p in (1, 2, 4, 16)]
    assert hits[0] < hits[-1] == 10 and all(a <= b for a, b in zip(hits, hits[1:]))


def test_lists_hold_every_vector_once_in_insertion_order(dataset, trained):
    xb, _ = dataset
    assert trained.ntotal == len(xb) and trained.list_sizes().sum() == len(xb)
    np.testing.assert_array_equal(np.sort(trained.ids), np.arange(len(xb)))
    np.testing.assert_array_equal(trained.xb, xb[trained.ids])
    lists = trained.list_assignment()
    for l in range(NLIST):
        assert (np.diff(trained.ids[lists == l]) > 0).all()
    # adding in two batches gives the same index as adding at once
    two = IVFFlatIndex(D_DIM, NLIST).set_centroids(trained.centroids).add(xb[:1000]).add(xb[1000:])
    np.testing.assert_array_equal(two.ids, trained.ids)
    np.testing.assert_array_equal(two.offsets, trained.offsets)


def test_save_load_round_trip(dataset, trained, tmp_path):
    _, xq = dataset
    again = Index.load(trained.save(tmp_path / "ivf.npz"))
    assert isinstance(again, IVFFlatIndex) and again.nlist == NLIST and again.ntotal == trained.ntotal
    for nprobe in (1, 5):
        for a, b in zip(trained.search(xq, 7, nprobe=nprobe), again.search(xq, 7, nprobe=nprobe), strict=True):
            np.testing.assert_array_equal(a, b)
    assert again.train_objective == trained.train_objective
    untrained = Index.load(IVFFlatIndex(D_DIM, 4, "ip").save(tmp_path / "empty.npz"))
    assert not untrained.is_trained and untrained.metric == "ip"


def test_pads_when_the_probed_lists_hold_fewer_than_k(dataset):
    xb, xq = dataset
    index = IVFFlatIndex(D_DIM, 4).set_centroids(xb[:4]).add(xb[:6])
    D, I = index.search(xq[:3], 10, nprobe=1)
    assert D.dtype == np.float32 and I.dtype == np.int64 and I.shape == (3, 10)
    assert ((I == -1) == np.isinf(D)).all() and (I[:, 0] >= 0).all() and (I == -1).any()


def test_memory_and_imbalance():
    index = IVFFlatIndex(8, 4)
    assert index.bytes_per_vector == 4 * 8 + 8
    index.set_centroids(np.eye(4, 8, dtype=np.float32)).add(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    assert index.bytes_per_vector == pytest.approx(4 * 8 + 8 + 4 * 8 * 4 / 100)  # centroids amortised
    assert imbalance_factor([5, 5, 5, 5]) == 1.0 and imbalance_factor([20, 0, 0, 0]) == 4.0 and imbalance_factor([0, 0]) == 0.0


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda idx, X: IVFFlatIndex(4, 0), ValueError, "nlist"),
        (lambda idx, X: IVFFlatIndex(4, 2, niter=0), ValueError, "niter"),
        (lambda idx, X: IVFFlatIndex(4, 8).train(X[:5]), ValueError, "at least nlist"),
        (lambda idx, X: IVFFlatIndex(4, 2).add(X), NotTrainedError, "trained"),
        (lambda idx, X: IVFFlatIndex(4, 2).search(X, 1), NotTrainedError, "trained"),
        (lambda idx, X: idx.search(X, 1, nprobe=0), ValueError, "nprobe"),
        (lambda idx, X: idx.search(X, 1, nprobe=1.5), ValueError, "nprobe"),
        (lambda idx, X: idx.search(X, 1, efSearch=3), ValueError, "unknown search parameter"),
        (lambda idx, X: idx.set_centroids(X[:3]), ValueError, "shape"),
        (lambda idx, X: idx.set_centroids(X[:2]), ValueError, "already holds"),
        (lambda idx, X: idx.search(X[:, :3], 1), ValueError, "dimension mismatch"),
    ],
)
def test_bad_input(call, error, message):
    X = np.random.default_rng(1).standard_normal((20, 4)).astype(np.float32)
    idx = IVFFlatIndex(4, 2).set_centroids(X[:2]).add(X)
    with pytest.raises(error, match=message):
        call(idx, X)


def test_nprobe_above_nlist_is_clamped(dataset, trained):
    _, xq = dataset
    a = trained.search(xq, 5, nprobe=NLIST)
    b = trained.search(xq, 5, nprobe=10 * NLIST)
    np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- the graded task
def _variant(weight: str = "d2", update: str = "min", first: str = "uniform"):
    """A k-means++ seeding with one deliberate mistake (or none)."""

    def kmeanspp(X, k, rng):
        X = np.asarray(X, np.float64)
        idx = [0 if first == "zero" else int(rng.integers(len(X)))]
        d2 = ((X - X[idx[0]]) ** 2).sum(1)
        for _ in range(1, k):
            w = {"d2": d2, "d": np.sqrt(d2), "uniform": np.ones(len(X))}[weight]
            i = int(rng.integers(len(X))) if w.sum() <= 0 else int(rng.choice(len(X), p=w / w.sum()))
            idx.append(i)
            new = ((X - X[i]) ** 2).sum(1)
            d2 = np.minimum(d2, new) if update == "min" else (new if update == "last" else d2)
        return X[idx].astype(np.float32)

    return kmeanspp


def test_reference_kmeanspp_passes_every_task_test():
    from course_lib.grade import get_task
    from course_lib.grade.core import run_task

    task = get_task("vector_search.kmeanspp_init")
    for fn in (kmeanspp_init, _variant()):
        result = run_task(task, fn)
        assert result.passed == len(task.tests), [(t.name, t.message) for t in result.tests if t.status != "pass"]


@pytest.mark.parametrize(
    "mistake, failing_test",
    [
        (dict(weight="d"), "proportional to D(x)^2"),
        (dict(weight="uniform"), "proportional to D(x)^2"),
        (dict(update="last"), "NEAREST centre"),
        (dict(update="first"), "NEAREST centre"),
        (dict(first="zero"), "first centre is a uniformly random row"),
    ],
)
def test_each_likely_mistake_fails_its_own_test(mistake, failing_test):
    from course_lib.grade import get_task
    from course_lib.grade.core import run_task

    result = run_task(get_task("vector_search.kmeanspp_init"), _variant(**mistake))
    failed = [t.name for t in result.tests if t.status != "pass"]
    assert any(failing_test in name for name in failed), failed
