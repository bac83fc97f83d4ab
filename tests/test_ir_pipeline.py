"""Tests for course_lib.ir.pipeline: content hashes, the store, the dual index, PCA and drift statistics."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from course_lib import vec
from course_lib.ir import pipeline as pl


def _hash_encoder(model_id: str = "toy", dim: int = 8) -> pl.FunctionEncoder:
    """A deterministic fake model: the vector of a text is seeded by its normalised content."""

    def fn(texts):
        out = []
        for t in texts:
            seed = int(hashlib.sha256(pl.normalize_text(t).encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).standard_normal(dim)
            out.append(v / np.linalg.norm(v))
        return np.array(out, dtype=np.float32).reshape(len(texts), dim)

    return pl.FunctionEncoder(model_id, dim, fn)


# ---- content identity -------------------------------------------------------


def test_normalize_text_collapses_whitespace_and_unicode_forms():
    assert pl.normalize_text("  a\tb \n\n c  ") == "a b c"
    assert pl.normalize_text("caf\u0065\u0301") == pl.normalize_text("caf\u00e9")  # NFD == NFC
    assert pl.normalize_text("Case") != pl.normalize_text("case")  # case is content for a cased model


def test_content_hash_is_sha256_of_model_nul_text():
    assert pl.content_hash("a  b", "m") == hashlib.sha256(b"m\x00a b").hexdigest()
    assert pl.content_hash("x", "v1") != pl.content_hash("x", "v2")


def test_normalize_text_rejects_non_str():
    with pytest.raises(ValueError, match="str"):
        pl.normalize_text(b"bytes")


# ---- the store ----------------------------------------------------------------


def test_upsert_embeds_only_new_or_changed_contents():
    enc = _hash_encoder()
    store = pl.EmbeddingStore(enc)
    rep = store.upsert([0, 1, 2, 3], ["a", "b", "c", "a"])  # doc 3 duplicates doc 0
    assert rep == pl.UpsertReport(added=4, updated=0, unchanged=0, embedded=3, reused=1)
    assert enc.calls == 3 and len(store) == 4 and store.n_vectors == 3
    rep = store.upsert([0, 1, 2, 4], ["a ", "B", "c", "d"])  # whitespace only, an edit, same, a new doc
    assert rep == pl.UpsertReport(added=1, updated=1, unchanged=2, embedded=2, reused=0)
    assert enc.calls == 5
    np.testing.assert_array_equal(store.vectors([1]), enc.fn(["B"]))


def test_delete_releases_vectors_only_when_unused():
    store = pl.EmbeddingStore(_hash_encoder())
    store.upsert([0, 1], ["same", "same"])
    assert store.delete([0, 99]) == 1 and store.n_vectors == 1
    assert store.delete([1]) == 1 and store.n_vectors == 0 and len(store) == 0


def test_search_equals_exact_knn_and_returns_doc_ids():
    enc = _hash_encoder(dim=16)
    store = pl.EmbeddingStore(enc)
    texts = [f"doc {i}" for i in range(50)]
    ids = [100 + i for i in range(50)]
    store.upsert(ids, texts)
    Q = enc.fn(["doc 3", "doc 40", "query"])
    D, I = store.search(Q, 5, model_id="toy")
    D_ref, I_ref = vec.exact_knn(Q, enc.fn(texts), 5, metric="ip")
    np.testing.assert_allclose(D, D_ref, atol=1e-6)
    assert I.tolist() == (I_ref + 100).tolist()
    assert I[0, 0] == 103 and I[1, 0] == 140
    store.delete([103])
    assert 103 not in store.search(Q, 5, model_id="toy")[1]  # the cached matrix was rebuilt


def test_search_refuses_another_models_queries():
    store = pl.EmbeddingStore(_hash_encoder())
    store.upsert([0], ["text"])
    with pytest.raises(ValueError, match="cannot search"):
        store.search(np.ones((1, 8), np.float32), 1, model_id="other")
    with pytest.raises(ValueError, match="d=4"):
        store.search(np.ones((1, 4), np.float32), 1, model_id="toy")


def test_store_bad_inputs():
    store = pl.EmbeddingStore(_hash_encoder())
    with pytest.raises(ValueError, match="empty"):
        store.search(np.ones((1, 8), np.float32), 1, model_id="toy")
    with pytest.raises(ValueError, match="texts"):
        store.upsert([0, 1], ["one"])
    with pytest.raises(ValueError, match="unique"):
        store.upsert([0, 0], ["a", "b"])
    bad = pl.FunctionEncoder("bad", 8, lambda texts: np.zeros((len(texts), 3)))
    with pytest.raises(ValueError, match="shape"):
        pl.EmbeddingStore(bad).upsert([0], ["a"])


def test_lookup_encoder_serves_known_texts_only():
    vecs = np.eye(3, dtype=np.float32)
    enc = pl.LookupEncoder("frozen", ["a b", "c", "d"], vecs)
    np.testing.assert_array_equal(enc.embed(["c", "a  b"]), vecs[[1, 0]])
    with pytest.raises(ValueError, match="no vector"):
        enc.embed(["unknown"])


def test_tfidf_svd_encoder_gives_unit_rows():
    texts = [f"alpha beta {w} gamma {w}" for w in ("one", "two", "three", "four", "five", "six")] * 2
    enc = pl.TfidfSvdEncoder(n_components=3).fit(texts)
    Z = enc.embed(texts[:4])
    assert Z.shape == (4, 3) and enc.model_id == "tfidf-svd-3"
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="not fitted"):
        pl.TfidfSvdEncoder(3).embed(["x"])


# ---- the dual index -------------------------------------------------------------


def _dual(n: int = 20) -> tuple[pl.DualIndex, dict[int, str]]:
    texts = {i: f"text {i}" for i in range(n)}
    old = pl.EmbeddingStore(_hash_encoder("v1", 8))
    old.upsert(list(texts), list(texts.values()))
    return pl.DualIndex(old, pl.EmbeddingStore(_hash_encoder("v2", 12)), texts), texts


def test_backfill_coverage_and_cut_over():
    dual, _ = _dual()
    assert dual.coverage == 0.0
    with pytest.raises(ValueError, match="coverage"):
        dual.cut_over()
    assert dual.search(["text 1"], 3)[2] == "v1"
    assert dual.backfill(15) == 15 and dual.coverage == pytest.approx(0.75)
    dual.upsert([3, 20], ["text 3 edited", "text 20"])  # dual write: edit + new doc land in both
    assert dual.coverage == pytest.approx(16 / 21)  # docs 15..19 still pending
    assert dual.pending() == [15, 16, 17, 18, 19]
    assert dual.backfill(100) == 5 and dual.coverage == 1.0
    assert dual.search(["text 1"], 3)[2] == "v1"  # full coverage alone does not switch reads
    dual.cut_over()
    scores, ids, model = dual.search(["text 20"], 3)
    assert model == "v2" and ids[0, 0] == 20
    dual.rollback()
    assert dual.search(["text 20"], 3)[2] == "v1"


def test_dual_delete_and_validation():
    dual, texts = _dual(5)
    dual.backfill(5)
    dual.delete([0])
    assert 0 not in dual.old and 0 not in dual.new and dual.coverage == 1.0
    with pytest.raises(ValueError, match="new model"):
        pl.DualIndex(dual.old, dual.old, texts)
    with pytest.raises(ValueError, match="missing"):
        pl.DualIndex(dual.old, pl.EmbeddingStore(_hash_encoder("v3")), {})
    with pytest.raises(ValueError, match="batch_size"):
        dual.backfill(0)


# ---- PCA ---------------------------------------------------------------------------


def test_pca_svd_equals_scikit_learn(rng):
    from sklearn.decomposition import PCA

    X = (rng.standard_normal((300, 20)) @ rng.standard_normal((20, 20)) + 3.0).astype(np.float32)
    ours = pl.pca_svd(X, 8)
    ref = PCA(n_components=8, svd_solver="full").fit(X.astype(np.float64))
    np.testing.assert_allclose(ours.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.sum(ours.components * ref.components_, axis=1)), 1.0, atol=1e-10)
    np.testing.assert_allclose(ours.components, ref.components_, atol=1e-8)  # same sign convention
    np.testing.assert_allclose(ours.transform(X), ref.transform(X.astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(ours.components @ ours.components.T, np.eye(8), atol=1e-10)


def test_pca_svd_bad_inputs():
    with pytest.raises(ValueError):
        pl.pca_svd(np.ones((1, 3)))
    with pytest.raises(ValueError):
        pl.pca_svd(np.ones((5, 3)), k=4)
    with pytest.raises(ValueError, match="fitted on d=3"):
        pl.pca_svd(np.random.default_rng(0).standard_normal((5, 3))).transform(np.ones((2, 4)))


# ---- drift ---------------------------------------------------------------------------


def test_mmd2_equals_an_explicit_double_loop(rng):
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((9, 3)) + 0.5
    g = 0.3
    k = lambda a, b: np.exp(-g * np.sum((a - b) ** 2))  # noqa: E731
    xx = sum(k(X[i], X[j]) for i in range(12) for j in range(12) if i != j) / (12 * 11)
    yy = sum(k(Y[i], Y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x, y) for x in X for y in Y) / (12 * 9)
    assert pl.mmd2_rbf(X, Y, g) == pytest.approx(xx + yy - 2 * xy, abs=1e-12)


def test_mmd2_separates_shifted_samples(rng):
    X, Y, Z = rng.standard_normal((200, 5)), rng.standard_normal((200, 5)), rng.standard_normal((200, 5)) + 1.0
    g = pl.median_gamma(X)
    assert abs(pl.mmd2_rbf(X, Y, g)) < 0.01 < pl.mmd2_rbf(X, Z, g)
    with pytest.raises(ValueError):
        pl.mmd2_rbf(X, Z[:, :3], g)
    with pytest.raises(ValueError):
        pl.mmd2_rbf(X, Z, 0.0)


def test_centroid_shift_and_psi(rng):
    X = rng.standard_normal((1000, 4))
    assert pl.centroid_shift(X, X + np.array([3.0, 4.0, 0, 0])) == pytest.approx(5.0)
    ref = np.arange(100, dtype=float)
    assert pl.psi(ref, ref) == pytest.approx(0.0)
    # half the window in the lowest decile, half in the highest: two bins at 50% against 10%
    win = np.r_[np.zeros(50), np.full(50, 99.0)]
    expected = 2 * (0.5 - 0.1) * np.log(5) + 8 * (1e-4 - 0.1) * np.log(1e-4 / 0.1)
    assert pl.psi(ref, win) == pytest.approx(expected)
    with pytest.raises(ValueError):
        pl.psi(ref[:5], win)
