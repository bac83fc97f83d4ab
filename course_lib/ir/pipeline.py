"""An embedding pipeline: content-hash dedup, incremental upsert, model upgrades, PCA and drift.

What sits between "we have a model" and "the index answers queries":

* :func:`normalize_text` and :func:`content_hash`: a document's identity is
  the SHA-256 of its normalised text (and of the model that embeds it), so an
  unchanged document is never embedded twice;
* :class:`EmbeddingStore`: doc id -> (content hash, vector), with
  ``upsert``/``delete`` that send only new or changed texts to the model, and
  exact inner-product search over the live documents;
* :class:`DualIndex`: a zero-downtime model upgrade: dual writes, a backfill
  with measurable coverage, reads served by the old model until the new one
  covers every document, then an atomic cut-over (and a rollback);
* :func:`pca_svd`: PCA from the SVD of the centred data, to cut dimensions;
* :func:`centroid_shift`, :func:`mmd2_rbf`, :func:`psi`: embedding-drift statistics.

An *encoder* is any object with ``model_id`` (str), ``dim`` (int) and
``embed(texts) -> (n, dim) float32`` (unit rows): MiniLM
(:func:`course_lib.nn.embed.encode` wrapped in :class:`FunctionEncoder`), the
TF-IDF + SVD baseline :class:`TfidfSvdEncoder`, or a :class:`LookupEncoder`
over vectors computed earlier.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..validate import as_matrix, check_k
from ..vec import exact_knn

# --------------------------------------------------------------------------
# 1. Content identity
# --------------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unicode NFC, every whitespace run (spaces, tabs, newlines) collapsed to one space, ends stripped.

    Only changes the model cannot see belong here: MiniLM's tokenizer splits
    on whitespace and normalises Unicode, so two texts that differ only in
    these ways get the same token ids, hence the same embedding.  Lower-casing
    would be safe for this (uncased) model but not for a cased one, so it is
    not done.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def content_hash(text: str, model_id: str = "") -> str:
    """Hex SHA-256 of ``model_id``, a NUL byte and the normalised text.

    Hashing the model id too means a vector cached for one model is never
    served for another: after an upgrade every key changes.
    """
    return hashlib.sha256(f"{model_id}\x00{normalize_text(text)}".encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# 2. Encoders
# --------------------------------------------------------------------------


class Encoder(Protocol):
    """What a store needs from a model: an id, a dimension and ``embed``."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class FunctionEncoder:
    """Wrap ``fn(texts) -> (n, dim)`` as an encoder and count the texts it embeds."""

    model_id: str
    dim: int
    fn: Callable[[Sequence[str]], np.ndarray]
    calls: int = 0  # texts embedded so far

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = as_matrix(self.fn(list(texts)), f"{self.model_id} embeddings", allow_empty=True)
        if out.shape != (len(texts), self.dim):
            raise ValueError(f"{self.model_id} returned shape {out.shape}, expected ({len(texts)}, {self.dim})")
        self.calls += len(texts)
        return out


class LookupEncoder:
    """An encoder that returns vectors computed earlier for known texts (a frozen model's outputs).

    Used as a stand-in for a model too slow to run live: the frozen MiniLM
    embeddings of the benchmark are exactly what the model returns for those
    texts.  An unknown text raises ``ValueError`` rather than inventing a vector.
    """

    def __init__(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        vectors = as_matrix(vectors, "vectors")
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        self.model_id, self.dim, self.calls = model_id, vectors.shape[1], 0
        self._row = {normalize_text(t): i for i, t in enumerate(texts)}
        self._vectors = vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            row = self._row.get(normalize_text(t))
            if row is None:
                raise ValueError(f"{self.model_id} has no vector for the text {t[:60]!r}")
            rows.append(row)
        self.calls += len(rows)
        return self._vectors[np.asarray(rows, dtype=np.int64)].reshape(len(rows), self.dim)


class TfidfSvdEncoder:
    """Latent semantic analysis: TF-IDF weights, then a truncated SVD, then unit rows (scikit-learn).

    The "v1" model of an upgrade story: cheap, lexical, and with vectors that
    live in a space of their own (nothing like MiniLM's).  ``fit`` learns the
    vocabulary, IDF weights and the SVD basis on a corpus.
    """

    def __init__(self, n_components: int = 256, seed: int = 0) -> None:
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive int, got {n_components!r}")
        self.dim, self.seed, self.calls = n_components, seed, 0
        self.model_id = f"tfidf-svd-{n_components}"
        self._tfidf: Any = None
        self._svd: Any = None

    def fit(self, texts: Sequence[str]) -> TfidfSvdEncoder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, token_pattern=r"(?u)\b\w+\b")
        tf = self._tfidf.fit_transform(texts)
        self._svd = TruncatedSVD(n_components=self.dim, algorithm="randomized", random_state=self.seed).fit(tf)
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._svd is None:
            raise ValueError("TfidfSvdEncoder is not fitted: call fit(texts) first")
        Z = self._svd.transform(self._tfidf.transform(list(texts))).astype(np.float32)
        self.calls += len(texts)
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------
# 3. The store: incremental upsert by content hash
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class UpsertReport:
    """What one ``upsert`` did.

    Attributes
    ----------
    added, updated, unchanged : documents new to the store, with changed text, with the same text.
    embedded : texts sent to the model (distinct new contents).
    reused : new or changed documents whose content already had a vector (duplicates).
    """

    added: int
    updated: int
    unchanged: int
    embedded: int
    reused: int


class EmbeddingStore:
    """Documents and their vectors from one encoder, keyed by doc id and deduplicated by content.

    Each live document maps to the hash of its (normalised) text; each hash
    maps to one vector and a count of the documents using it.  ``upsert``
    embeds only contents the store has never seen; ``delete`` drops a vector
    when its last document goes.  Search is exact inner product over the live
    documents (unit vectors: cosine).
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.model_id: str = encoder.model_id
        self.dim: int = int(encoder.dim)
        self._doc_hash: dict[Hashable, str] = {}
        self._vector: dict[str, np.ndarray] = {}
        self._refs: dict[str, int] = {}
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None  # (ids, vectors), rebuilt after a change

    def __len__(self) -> int:
        return len(self._doc_hash)

    def __contains__(self, doc_id: Hashable) -> bool:
        return doc_id in self._doc_hash

    @property
    def ids(self) -> list[Hashable]:
        """Live doc ids, in insertion order."""
        return list(self._doc_hash)

    @property
    def n_vectors(self) -> int:
        """Distinct vectors held (fewer than documents when contents repeat)."""
        return len(self._vector)

    def hash_of(self, doc_id: Hashable) -> str | None:
        return self._doc_hash.get(doc_id)

    def key(self, text: str) -> str:
        """The content hash of ``text`` under this store's model."""
        return content_hash(text, self.model_id)

    def upsert(self, doc_ids: Sequence[Hashable], texts: Sequence[str]) -> UpsertReport:
        """Insert new documents and replace changed ones; embed only contents without a vector.

        Parameters
        ----------
        doc_ids : one id per text (unique within the call).
        texts : the documents' texts.
        """
        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(texts)} texts")
        if len(set(doc_ids)) != len(doc_ids):
            raise ValueError("doc ids must be unique within one upsert call")
        keys = [self.key(t) for t in texts]
        todo: dict[str, str] = {}  # hash -> a text to embed, distinct new contents only
        added = updated = unchanged = reused = 0
        for doc_id, key, text in zip(doc_ids, keys, texts):
            old = self._doc_hash.get(doc_id)
            if old == key:
                unchanged += 1
                continue
            added += old is None
            updated += old is not None
            if key in self._vector or key in todo:
                reused += 1
            else:
                todo[key] = text
        if todo:
            vectors = as_matrix(self.encoder.embed(list(todo.values())), "embeddings")
            if vectors.shape != (len(todo), self.dim):
                raise ValueError(f"encoder returned shape {vectors.shape}, expected ({len(todo)}, {self.dim})")
            self._vector.update(zip(todo, vectors))
        for doc_id, key in zip(doc_ids, keys):
            old = self._doc_hash.get(doc_id)
            if old != key:
                if old is not None:
                    self._release(old)
                self._doc_hash[doc_id] = key
                self._refs[key] = self._refs.get(key, 0) + 1
        if added or updated:
            self._matrix = None
        return UpsertReport(added, updated, unchanged, len(todo), reused)

    def delete(self, doc_ids: Iterable[Hashable]) -> int:
        """Remove documents (unknown ids are ignored); returns how many were removed."""
        removed = 0
        for doc_id in doc_ids:
            key = self._doc_hash.pop(doc_id, None)
            if key is not None:
                self._release(key)
                removed += 1
        if removed:
            self._matrix = None
        return removed

    def _release(self, key: str) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:  # the last document with this content is gone
            del self._refs[key], self._vector[key]

    def vectors(self, doc_ids: Sequence[Hashable] | None = None) -> np.ndarray:
        """Stored vectors (n, dim) float32 of ``doc_ids`` (default: every live document, insertion order)."""
        doc_ids = self.ids if doc_ids is None else doc_ids
        if not doc_ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector[self._doc_hash[d]] for d in doc_ids]).astype(np.float32, copy=False)

    def search(self, Q: np.ndarray, k: int, *, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product of query vectors against the live documents.

        ``model_id`` names the model that embedded ``Q``: it must be this
        store's, because scores between two embedding spaces mean nothing.

        Returns
        -------
        scores : (n_queries, k) float32, best first.
        ids : (n_queries, k) object array of doc ids.
        """
        if model_id != self.model_id:
            raise ValueError(f"query vectors from model {model_id!r} cannot search an index of {self.model_id!r}")
        Q = as_matrix(Q, "Q")
        if Q.shape[1] != self.dim:
            raise ValueError(f"queries have d={Q.shape[1]} but {self.model_id} vectors have d={self.dim}")
        if not self._doc_hash:
            raise ValueError("the store is empty")
        k = check_k(k, len(self), what="the number of stored documents")
        if self._matrix is None:
            self._matrix = (np.array(self.ids, dtype=object), self.vectors())
        ids, X = self._matrix
        D, I = exact_knn(Q, X, k, metric="ip")
        return D, ids[I]

    def search_text(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Embed ``queries`` with this store's own encoder, then :meth:`search`."""
        return self.search(self.encoder.embed(list(queries)), k, model_id=self.model_id)


# --------------------------------------------------------------------------
# 4. A zero-downtime model upgrade
# --------------------------------------------------------------------------


class DualIndex:
    """Two stores during a model upgrade: reads from one model at a time, never a mix.

    1. Every write (``upsert``/``delete``) goes to both stores (dual write).
    2. :meth:`backfill` embeds, with the new model, documents the old store
       has and the new one lacks (or has with other text), a batch at a time.
    3. Reads go to the old store until :meth:`cut_over`, which is allowed only
       at full :attr:`coverage`; a query is embedded by the serving store's
       own encoder, so query and documents always share one space.
    4. :meth:`rollback` serves the old store again (it was kept up to date).
    """

    def __init__(self, old: EmbeddingStore, new: EmbeddingStore, texts: dict[Hashable, str] | None = None) -> None:
        if old.model_id == new.model_id:
            raise ValueError(f"both stores use model {old.model_id!r}: an upgrade needs a new model")
        self.old, self.new = old, new
        self.serving: EmbeddingStore = old
        self._text: dict[Hashable, str] = dict(texts or {})  # the source of truth a backfill reads from
        missing = [d for d in old.ids if d not in self._text]
        if missing:
            raise ValueError(f"texts must hold every document of the old store; {len(missing)} missing, e.g. {missing[0]!r}")
        self._new_key = {d: new.key(t) for d, t in self._text.items()}  # each text hashed once, not per progress poll

    def upsert(self, doc_ids: Sequence[Hashable], texts: Sequence[str]) -> tuple[UpsertReport, UpsertReport]:
        """Dual write: both stores; returns both reports (old, new)."""
        self._text.update(zip(doc_ids, texts))
        self._new_key.update((d, self.new.key(t)) for d, t in zip(doc_ids, texts))
        return self.old.upsert(doc_ids, texts), self.new.upsert(doc_ids, texts)

    def delete(self, doc_ids: Sequence[Hashable]) -> int:
        doc_ids = list(doc_ids)
        for d in doc_ids:
            self._text.pop(d, None)
            self._new_key.pop(d, None)
        self.new.delete(doc_ids)
        return self.old.delete(doc_ids)

    def pending(self) -> list[Hashable]:
        """Live documents the new store does not hold with their current text, in the old store's order."""
        return [d for d in self.old.ids if self.new.hash_of(d) != self._new_key[d]]

    @property
    def coverage(self) -> float:
        """Share of the live documents the new store holds with their current text (1.0 when empty)."""
        return 1.0 - len(self.pending()) / len(self.old) if len(self.old) else 1.0

    def backfill(self, batch_size: int) -> int:
        """Embed up to ``batch_size`` pending documents with the new model; returns how many."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        todo = self.pending()[:batch_size]
        if todo:
            self.new.upsert(todo, [self._text[d] for d in todo])
        return len(todo)

    def cut_over(self) -> None:
        """Serve reads from the new store; refused (``ValueError``) below full coverage."""
        if self.coverage < 1.0:
            raise ValueError(f"cannot cut over at coverage {self.coverage:.1%}: backfill the rest first")
        self.serving = self.new

    def rollback(self) -> None:
        """Serve reads from the old store again."""
        self.serving = self.old

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Top-k for query texts from the serving store: ``(scores, doc ids, model_id)``."""
        store = self.serving
        scores, ids = store.search_text(queries, k)
        return scores, ids, store.model_id


# --------------------------------------------------------------------------
# 5. PCA by SVD
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PCA:
    """A fitted PCA: ``mean`` (d,), ``components`` (k, d) orthonormal rows, variances (k,)."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Coordinates (n, k) of the centred rows of ``X`` on the components."""
        X = as_matrix(X, "X", dtype=np.float64)
        if X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X has d={X.shape[1]} but the PCA was fitted on d={self.mean.shape[0]}")
        return (X - self.mean) @ self.components.T


def pca_svd(X: np.ndarray, k: int | None = None) -> PCA:
    """PCA of the rows of ``X`` (n, d) from the SVD of the centred data, in float64.

    With ``Xc = X - mean = U S V^T``, the components are the first ``k`` rows of
    ``V^T`` (the directions of largest variance) and the variance along
    component i is ``S_i^2 / (n - 1)``.  An SVD fixes each direction only up to
    sign; as scikit-learn's PCA does (``svd_flip(u_based_decision=False)``),
    the largest-magnitude entry of each component is made positive.
    """
    X = as_matrix(X, "X", dtype=np.float64)
    n, d = X.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 rows, got {n}")
    k = min(n, d) if k is None else check_k(k, min(n, d), what="min(n, d)")
    mean = X.mean(axis=0)
    _, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
    Vt *= np.sign(Vt[np.arange(len(Vt)), np.abs(Vt).argmax(axis=1)])[:, None]
    var = S**2 / (n - 1)
    return PCA(mean=mean, components=Vt[:k], explained_variance=var[:k], explained_variance_ratio=var[:k] / var.sum())


# --------------------------------------------------------------------------
# 6. Drift statistics
# --------------------------------------------------------------------------


def centroid_shift(reference: np.ndarray, window: np.ndarray) -> float:
    """Euclidean distance between the mean vectors of two windows of embeddings."""
    reference, window = as_matrix(reference, "reference", dtype=np.float64), as_matrix(window, "window", dtype=np.float64)
    if reference.shape[1] != window.shape[1]:
        raise ValueError(f"reference has d={reference.shape[1]} but window has d={window.shape[1]}")
    return float(np.linalg.norm(reference.mean(axis=0) - window.mean(axis=0)))


def median_gamma(X: np.ndarray) -> float:
    """RBF kernel width by the median heuristic: ``1 / median(||x - y||^2)`` over distinct pairs."""
    X = as_matrix(X, "X", dtype=np.float64)
    sq = (X**2).sum(1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0)
    med = float(np.median(D[np.triu_indices(len(X), k=1)]))
    if med <= 0:
        raise ValueError("all rows are identical: the median heuristic is undefined")
    return 1.0 / med


def mmd2_rbf(X: np.ndarray, Y: np.ndarray, gamma: float) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy with ``k(x, y) = exp(-gamma ||x - y||^2)``.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)``, with the diagonal terms
    (a point with itself) left out of the first two means (Gretton et al., 2012).
    About 0 (it can be slightly negative) when X and Y come from one distribution.
    """
    X, Y = as_matrix(X, "X", dtype=np.float64), as_matrix(Y, "Y", dtype=np.float64)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X has d={X.shape[1]} but Y has d={Y.shape[1]}")
    if len(X) < 2 or len(Y) < 2:
        raise ValueError("each sample needs at least 2 rows")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")

    def kernel(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        sq = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
        return np.exp(-gamma * np.maximum(sq, 0.0))

    m, n = len(X), len(Y)
    kxx, kyy, kxy = kernel(X, X), kernel(Y, Y), kernel(X, Y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def psi(reference: np.ndarray, window: np.ndarray, n_bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of one feature: ``sum (w - r) ln(w / r)`` over reference-quantile bins.

    Bins are the reference's deciles (for ``n_bins=10``), so each holds 10% of
    the reference; ``eps`` floors empty bins.  Rule of thumb: < 0.1 stable,
    0.1-0.25 a moderate shift, > 0.25 a large one.
    """
    reference, window = np.asarray(reference, dtype=np.float64), np.asarray(window, dtype=np.float64)
    if reference.ndim != 1 or window.ndim != 1 or len(reference) < n_bins or len(window) == 0:
        raise ValueError(f"need 1-D samples, the reference with at least n_bins={n_bins} values; "
                         f"got shapes {reference.shape} and {window.shape}")
    edges = np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1])
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=n_bins) / len(reference)
    w = np.bincount(np.searchsorted(edges, window, side="right"), minlength=n_bins) / len(window)
    r, w = np.maximum(r, eps), np.maximum(w, eps)
    return float(np.sum((w - r) * np.log(w / r)))
