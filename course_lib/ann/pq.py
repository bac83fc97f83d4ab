"""Product quantization (Jégou, Douze & Schmid, TPAMI 2011): vectors as a few bytes, searched by table lookups.

The paper's idea, in its own terms:

1. **Product quantizer.**  Cut every d-dimensional vector into ``m`` sub-vectors
   of ``dsub = d / m`` dimensions.  Sub-space j has its own codebook of
   ``ksub = 2**nbits`` centroids, learned by k-means on the j-th sub-vectors
   of the training set (:meth:`ProductQuantizer.train`).
2. **Encoding.**  A vector's code is the id of the nearest centroid in each
   sub-space: ``m`` small integers, ``m * nbits / 8`` bytes
   (:meth:`ProductQuantizer.compute_codes`).  The quantizer can represent
   ``ksub**m`` distinct points (2**64 for m=8, nbits=8) while storing only
   ``m * ksub`` centroids.
3. **Asymmetric distance computation (ADC).**  The query stays exact.  One
   table ``T[j, c] = ||q_j - C_j[c]||^2`` (m x ksub squared sub-distances,
   :func:`adc_table`) turns the distance to any code into ``m`` lookups and
   additions: ``sum_j T[j, code_j]`` (:func:`adc_distances`).  This sum *is*
   the exact squared distance from q to the code's reconstruction, because
   the squared L2 distance splits over the sub-spaces.  No square root: the
   square root of a sum is not the sum of square roots.
4. **Symmetric distance computation (SDC).**  The query is encoded too, and
   distances come from precomputed centroid-to-centroid tables
   (:meth:`ProductQuantizer.sdc_tables`, m x ksub x ksub).  Cheaper per query
   (no table to build) but less accurate: both sides carry quantization error.

Names and layouts follow ``faiss.ProductQuantizer`` (faiss/impl/ProductQuantizer.cpp):
``M`` is our ``m``, ``centroids`` is stored as (m, ksub, dsub), codes are one
uint8 per sub-quantizer, and training runs k-means per sub-space with faiss's
defaults (25 iterations, seed 1234, at most 256 * ksub training points).
Lessons 05 (IVFPQ) and 07 (DiskANN) reuse :class:`ProductQuantizer` directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validate import as_matrix
from ..vec import topk_smallest
from .base import Index, search_params
from .kmeans import kmeans

#: Rows encoded per block in :meth:`ProductQuantizer.compute_codes`: bounds the
#: (block, ksub) float64 distance block to a few MB.
ENCODE_BLOCK = 4096
#: Score-matrix entries per query block in :meth:`PQIndex._search` (float32: 64 MiB).
SCORE_BLOCK_ENTRIES = 16 * 2**20


# --------------------------------------------------------------------------- the two ADC primitives
def adc_table(q: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """ADC look-up table of one query: squared L2 distance from each sub-vector to each centroid.

    Parameters
    ----------
    q : (d,) query, d = m * dsub.
    codebooks : (m, ksub, dsub) centroids; ``codebooks[j]`` quantizes dims ``j*dsub:(j+1)*dsub``.

    Returns
    -------
    (m, ksub) float32, ``T[j, c] = ||q[j*dsub:(j+1)*dsub] - codebooks[j, c]||^2`` (squared, no sqrt).
    """
    codebooks = np.asarray(codebooks, dtype=np.float32)
    if codebooks.ndim != 3:
        raise ValueError(f"codebooks must be 3-D (m, ksub, dsub), got shape {codebooks.shape}")
    m, _, dsub = codebooks.shape
    q = np.asarray(q, dtype=np.float32)
    if q.shape != (m * dsub,):
        raise ValueError(f"q must have shape ({m * dsub},) to match codebooks {codebooks.shape}, got {q.shape}")
    sub = q.reshape(m, 1, dsub)  # row j is the contiguous slice q[j*dsub:(j+1)*dsub]
    # differences, not the ||a||^2 + ||b||^2 - 2ab expansion: exact, and what faiss does for small dsub
    return ((sub - codebooks) ** 2).sum(axis=2, dtype=np.float32)


def adc_distances(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Distances from one query to every code: ``sum_j table[j, codes[:, j]]``.

    Parameters
    ----------
    codes : (n, m) integer codes (uint8 for nbits <= 8).
    table : (m, ksub) look-up table from :func:`adc_table` (or an SDC row table).

    Returns
    -------
    (n,) float32: for an ADC table, the squared L2 distance from the query to each
    code's reconstruction, exactly (up to float32 rounding).
    """
    table = np.asarray(table, dtype=np.float32)
    codes = np.asarray(codes)
    if table.ndim != 2 or codes.ndim != 2 or codes.shape[1] != table.shape[0]:
        raise ValueError(f"codes (n, m) and table (m, ksub) must agree on m, got {codes.shape} and {table.shape}")
    # table[j, codes[:, j]] for every j at once: row index j broadcasts against the (n, m) codes
    lookups = table[np.arange(table.shape[0]), codes.astype(np.intp)]  # (n, m)
    return lookups.sum(axis=1, dtype=np.float32)


def ip_table(q: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Inner-product table ``T[j, c] = <q_j, codebooks[j, c]>`` (m, ksub), for ``metric="ip"``.

    The inner product also splits over sub-spaces, so :func:`adc_distances`
    with this table gives ``<q, reconstruction>`` (larger is better).
    """
    codebooks = np.asarray(codebooks, dtype=np.float32)
    m, _, dsub = codebooks.shape
    q = np.asarray(q, dtype=np.float32)
    if q.shape != (m * dsub,):
        raise ValueError(f"q must have shape ({m * dsub},) to match codebooks {codebooks.shape}, got {q.shape}")
    return np.einsum("jkd,jd->jk", codebooks, q.reshape(m, dsub)).astype(np.float32)


# --------------------------------------------------------------------------- the quantizer
class ProductQuantizer:
    """m sub-quantizers of 2**nbits centroids each (faiss ``ProductQuantizer(d, M, nbits)``).

    Parameters
    ----------
    d : vector dimension; must be divisible by ``m``.
    m : number of sub-spaces (faiss's ``M``); the code has m entries.
    nbits : bits per sub-code, 1..8 (ksub = 2**nbits centroids per sub-space).
    niter : k-means iterations per sub-space (faiss: 25).
    seed : k-means seed, the same for every sub-space as in faiss (1234).
    max_points_per_centroid : training points kept per centroid (faiss: 256,
        i.e. at most 256 * ksub = 65,536 points for nbits=8).

    Attributes
    ----------
    centroids : (m, ksub, dsub) float32 codebooks, ``None`` until trained.
    dsub, ksub, code_size : sub-vector dimension, centroids per sub-space,
        bytes per code when packed (``ceil(m * nbits / 8)``, faiss's ``code_size``).
    """

    def __init__(
        self,
        d: int,
        m: int,
        nbits: int = 8,
        *,
        niter: int = 25,
        seed: int = 1234,
        max_points_per_centroid: int = 256,
    ) -> None:
        sizes = {"d": d, "m": m, "nbits": nbits, "niter": niter, "max_points_per_centroid": max_points_per_centroid}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if d % m != 0:
            raise ValueError(f"d={d} is not divisible by m={m}: every sub-space must have d/m dimensions")
        if nbits > 8:
            raise ValueError(f"nbits must be in 1..8 (codes are stored as uint8), got {nbits}")
        self.d, self.m, self.nbits = int(d), int(m), int(nbits)
        self.dsub = self.d // self.m
        self.ksub = 2**self.nbits
        self.code_size = (self.m * self.nbits + 7) // 8
        self.niter, self.seed, self.max_points_per_centroid = int(niter), int(seed), int(max_points_per_centroid)
        self.centroids: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_centroids(cls, centroids: np.ndarray, **kwargs: Any) -> ProductQuantizer:
        """A trained quantizer from given (m, ksub, dsub) codebooks (e.g. loaded, or taken from faiss)."""
        C = np.asarray(centroids, dtype=np.float32)
        if C.ndim != 3:
            raise ValueError(f"centroids must be 3-D (m, ksub, dsub), got shape {C.shape}")
        m, ksub, dsub = C.shape
        nbits = int(ksub).bit_length() - 1
        if 2**nbits != ksub:
            raise ValueError(f"ksub must be a power of two, got {ksub}")
        pq = cls(m * dsub, m, nbits, **kwargs)
        pq.centroids = np.ascontiguousarray(C)
        return pq

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    @property
    def codebook_bytes(self) -> int:
        """Memory of the codebooks (float32): a fixed cost, m * ksub * dsub * 4 = ksub * d * 4 bytes."""
        return 4 * self.ksub * self.d

    def __repr__(self) -> str:
        return f"ProductQuantizer(d={self.d}, m={self.m}, nbits={self.nbits}, trained={self.is_trained})"

    # ------------------------------------------------------------------ helpers
    def _check(self, X: Any, name: str = "X") -> np.ndarray:
        X = as_matrix(X, name)
        if X.shape[1] != self.d:
            raise ValueError(f"dimension mismatch: the quantizer has d={self.d} but {name} has d={X.shape[1]}")
        return X

    def _require_trained(self) -> np.ndarray:
        if self.centroids is None:
            raise ValueError("the ProductQuantizer is not trained: call train(X) first")
        return self.centroids

    def subvectors(self, X: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, m, dsub): ``[:, j]`` is the contiguous slice ``X[:, j*dsub:(j+1)*dsub]``."""
        return self._check(X).reshape(-1, self.m, self.dsub)

    def _check_codes(self, codes: Any) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.m:
            raise ValueError(f"codes must have shape (n, m={self.m}), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.ksub):
            raise ValueError(f"codes must lie in [0, ksub={self.ksub})")
        return codes

    # ------------------------------------------------------------------ the paper's steps
    def train(self, X: np.ndarray) -> ProductQuantizer:
        """Learn the m codebooks: one k-means (``ksub`` centroids) per sub-space, independently.

        ``X`` is (n, d) with n >= ksub.  Each sub-space sees the same random
        subset of rows (same seed), as in faiss.
        """
        X = self._check(X)
        if len(X) < self.ksub:
            raise ValueError(f"training needs at least ksub={self.ksub} vectors, got {len(X)}")
        S = X.reshape(-1, self.m, self.dsub)
        books = [
            kmeans(
                np.ascontiguousarray(S[:, j]),
                self.ksub,
                niter=self.niter,
                seed=self.seed,
                max_points_per_centroid=self.max_points_per_centroid,
            ).centroids
            for j in range(self.m)
        ]
        self.centroids = np.stack(books).astype(np.float32)
        return self

    def compute_codes(self, X: np.ndarray) -> np.ndarray:
        """Encode: the nearest centroid of every sub-vector. (n, d) float -> (n, m) uint8.

        Per sub-space, ``argmin_c ||x_j - C_j[c]||^2 = argmin_c (||C_j[c]||^2 - 2 x_j . C_j[c])``
        (``||x_j||^2`` is the same for every c): one matrix product per block.
        It runs in float64 so that the expansion's cancellation error stays far
        below float32 rounding: the argmin is the exact nearest centroid, and
        matches faiss's ``compute_codes`` (float32) bit for bit in every test here.
        Ties go to the smaller centroid id, as in faiss.
        """
        C = self._require_trained().astype(np.float64)
        c2 = (C**2).sum(axis=2)  # (m, ksub)
        S = self.subvectors(X)
        codes = np.empty((len(S), self.m), dtype=np.uint8)
        for start in range(0, len(S), ENCODE_BLOCK):
            block = S[start : start + ENCODE_BLOCK].astype(np.float64)
            for j in range(self.m):
                dist = c2[j] - 2.0 * (block[:, j] @ C[j].T)  # (block, ksub), up to the constant ||x_j||^2
                codes[start : start + len(block), j] = dist.argmin(axis=1)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruct: concatenate each sub-space's chosen centroid. (n, m) -> (n, d) float32."""
        C = self._require_trained()
        codes = self._check_codes(codes).astype(np.intp)
        return C[np.arange(self.m), codes].reshape(len(codes), self.d)  # C[j, codes[:, j]] for every j

    def adc_table(self, q: np.ndarray) -> np.ndarray:
        """(m, ksub) ADC table of one query (d,): see :func:`adc_table`."""
        return adc_table(q, self._require_trained())

    def adc_tables(self, Q: np.ndarray) -> np.ndarray:
        """ADC tables of a batch of queries: (nq, d) -> (nq, m, ksub) float32."""
        C = self._require_trained()
        S = self.subvectors(Q)
        return ((S[:, :, None, :] - C[None]) ** 2).sum(axis=3, dtype=np.float32)

    def ip_tables(self, Q: np.ndarray) -> np.ndarray:
        """Inner-product tables of a batch of queries: (nq, d) -> (nq, m, ksub) float32."""
        C = self._require_trained()
        return np.einsum("qjd,jkd->qjk", self.subvectors(Q), C).astype(np.float32)

    def adc_distances(self, codes: np.ndarray, table: np.ndarray) -> np.ndarray:
        """(n,) distances from one query (via its (m, ksub) table) to (n, m) codes: see :func:`adc_distances`."""
        return adc_distances(self._check_codes(codes), table)

    def sdc_tables(self) -> np.ndarray:
        """Centroid-to-centroid squared distances per sub-space: (m, ksub, ksub) float32.

        Computed once after training (faiss ``compute_sdc_table``); 256 KiB per
        sub-space for nbits=8.
        """
        C = self._require_trained()
        return ((C[:, :, None, :] - C[:, None, :, :]) ** 2).sum(axis=3, dtype=np.float32)

    def sdc_query_tables(self, query_codes: np.ndarray, sdc: np.ndarray | None = None) -> np.ndarray:
        """SDC as a table lookup: row ``sdc[j, qcode_j]`` per sub-space. (nq, m) codes -> (nq, m, ksub).

        With these rows in place of the ADC table, :func:`adc_distances` gives
        the symmetric distance ``sum_j d(C_j[qcode_j], C_j[code_j])^2``.
        """
        query_codes = self._check_codes(query_codes).astype(np.intp)
        sdc = self.sdc_tables() if sdc is None else sdc
        return sdc[np.arange(self.m), query_codes]  # (nq, m, ksub)

    def sdc_distances(self, query_code: np.ndarray, codes: np.ndarray, sdc: np.ndarray | None = None) -> np.ndarray:
        """Symmetric distances from one encoded query (m,) to (n, m) codes: (n,) float32."""
        table = self.sdc_query_tables(np.asarray(query_code).reshape(1, -1), sdc)[0]
        return adc_distances(self._check_codes(codes), table)


def lookup_sum(codes: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """Batched :func:`adc_distances`: (n, m) codes and (nq, m, ksub) tables -> (nq, n) float32.

    One gather per sub-space, accumulated in float32: m passes over an (nq, n)
    array.  ``np.take(..., axis=1)`` is several times faster than the
    equivalent fancy index ``tables[:, j, codes[:, j]]``.
    """
    codes = codes.astype(np.intp)
    out = np.zeros((tables.shape[0], len(codes)), dtype=np.float32)
    for j in range(tables.shape[1]):
        out += np.take(tables[:, j, :], codes[:, j], axis=1)
    return out


# --------------------------------------------------------------------------- the index
class PQIndex(Index):
    """Flat scan over PQ codes (faiss ``IndexPQ(d, m, nbits)``): every code is compared, by table lookups.

    Search parameters: ``mode="adc"`` (default, faiss ``ST_PQ``) or ``"sdc"``
    (faiss ``ST_SDC``, l2 only).  Distances are squared L2 (or inner products
    for ``metric="ip"``) to the codes' reconstructions, not to the original vectors.

    Distance counting: each code scanned counts as **one** distance (its m
    table lookups are the price of one distance), like faiss's
    ``indexPQ_stats.ncode``.  Building the query's table costs about ksub
    full-dimensional distances and is not counted.

    Memory: ``bytes_per_vector`` is the packed code, ``ceil(m * nbits / 8)``
    bytes, as faiss ``IndexPQ`` stores it (ids are implicit: 0..ntotal-1).
    We keep one uint8 per sub-code, which is the same for nbits=8.  The
    codebooks (``pq.codebook_bytes``) are a fixed cost, not per vector.
    Indexes that store ids (IVF, lesson 05) add 8 bytes per vector.
    """

    needs_training = True

    def __init__(
        self,
        d: int,
        m: int,
        nbits: int = 8,
        metric: str = "l2",
        *,
        niter: int = 25,
        seed: int = 1234,
        max_points_per_centroid: int = 256,
    ) -> None:
        super().__init__(d, metric)
        self.pq = ProductQuantizer(d, m, nbits, niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid)
        self.codes = np.zeros((0, m), dtype=np.uint8)
        self._sdc: np.ndarray | None = None  # centroid-centroid tables, built on first SDC search

    @classmethod
    def from_quantizer(cls, pq: ProductQuantizer, metric: str = "l2") -> PQIndex:
        """An empty, trained index around an already trained quantizer (shared, not copied)."""
        if not isinstance(pq, ProductQuantizer) or not pq.is_trained:
            raise ValueError("from_quantizer needs a trained ProductQuantizer")
        index = cls(pq.d, pq.m, pq.nbits, metric, niter=pq.niter, seed=pq.seed,
                    max_points_per_centroid=pq.max_points_per_centroid)
        index.pq = pq
        index.is_trained = True
        return index

    @property
    def m(self) -> int:
        return self.pq.m

    @property
    def nbits(self) -> int:
        return self.pq.nbits

    def _ntotal(self) -> int:
        return len(self.codes)

    def _train(self, X: np.ndarray) -> None:
        self.pq.train(X)
        self._sdc = None

    def _add(self, X: np.ndarray) -> None:
        self.codes = np.vstack([self.codes, self.pq.compute_codes(X)])

    def reconstruct_all(self) -> np.ndarray:
        """(ntotal, d) float32: what the index "sees" instead of the original vectors."""
        return self.pq.decode(self.codes)

    def _query_tables(self, Q: np.ndarray, mode: str) -> np.ndarray:
        if mode == "sdc":
            if self._sdc is None:
                self._sdc = self.pq.sdc_tables()
            return self.pq.sdc_query_tables(self.pq.compute_codes(Q), self._sdc)
        return self.pq.adc_tables(Q) if self.metric == "l2" else self.pq.ip_tables(Q)

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        mode = search_params(params, {"mode": "adc"})["mode"]
        if mode not in ("adc", "sdc"):
            raise ValueError(f"mode must be 'adc' or 'sdc', got {mode!r}")
        if mode == "sdc" and self.metric != "l2":
            raise ValueError("SDC is defined for metric='l2' only (as in faiss); use mode='adc'")
        k = min(k, self.ntotal)
        D_out = np.empty((len(Q), k), dtype=np.float32)
        I_out = np.empty((len(Q), k), dtype=np.int64)
        block = max(1, SCORE_BLOCK_ENTRIES // self.ntotal)
        for start in range(0, len(Q), block):
            Qb = Q[start : start + block]
            scores = lookup_sum(self.codes, self._query_tables(Qb, mode))  # (block, ntotal)
            self.count(scores.size)  # one distance per code scanned
            if self.metric == "l2":
                D, I = topk_smallest(scores, k)
            else:
                D, I = topk_smallest(-scores, k)
                D = -D
            D_out[start : start + len(Qb)], I_out[start : start + len(Qb)] = D, I
        return D_out, I_out

    @property
    def bytes_per_vector(self) -> float:
        return float(self.pq.code_size)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        pq = self.pq
        params = {"m": pq.m, "nbits": pq.nbits, "niter": pq.niter, "seed": pq.seed,
                  "max_points_per_centroid": pq.max_points_per_centroid}
        arrays = {"codes": self.codes}
        if pq.centroids is not None:
            arrays["centroids"] = pq.centroids
        return params, arrays

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> PQIndex:
        index = cls(d, params["m"], params["nbits"], metric, niter=params["niter"], seed=params["seed"],
                    max_points_per_centroid=params["max_points_per_centroid"])
        if "centroids" in arrays:
            index.pq.centroids = arrays["centroids"].astype(np.float32)
        index.codes = arrays["codes"].astype(np.uint8)
        return index
