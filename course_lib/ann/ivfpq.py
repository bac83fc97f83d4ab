"""IVFPQ (IVFADC): an inverted file whose lists hold PQ codes of *residuals*, plus exact re-ranking.

Jégou, Douze & Schmid, *Product quantization for nearest neighbor search*
(TPAMI 2011), Section IV, "IVFADC"; faiss ``IndexIVFPQ`` and ``IndexRefineFlat``.

The paper's steps, in its own terms:

1. **Coarse quantizer** ``q_c``: k-means with ``nlist`` centroids (lesson 03,
   :class:`~course_lib.ann.ivf.IVFFlatIndex`; faiss trains it with 10 iterations).
2. **Residual** ``r(x) = x - q_c(x)``: what is left of ``x`` once its cell is
   known.  Residuals of all cells are centred near zero and are much smaller
   than ``x``, so one product quantizer ``q_p`` (lesson 04) trained on
   *residuals* spends its 2**nbits centroids per sub-space on the detail that
   matters.  Training ``q_p`` on raw vectors and then encoding residuals is the
   classic bug: the codebooks sit where the data is, not where the residuals are.
3. **Add**: assign ``x`` to its cell, store ``(id, q_p(r(x)))`` in that cell's
   inverted list: ``m * nbits / 8`` bytes of code plus an 8-byte id.
4. **Search**: probe the ``nprobe`` nearest cells; in cell ``c`` the distance is
   ``||q - c - decode(code)||^2``, an ADC look-up over a table of the *residual
   query* ``q - c`` (one table per probed cell); keep the k smallest.

faiss's precomputed tables (``use_precomputed_table``).  Building a table per
probed cell costs ``nprobe * ksub * d`` flops per query.  Expanding the square,
with ``r`` the code's reconstruction::

    ||q - c - r||^2 =  ||q - c||^2         (term 1: the coarse distance, already known)
                     + ||r||^2 + 2 <c, r>  (term 2: depends on (cell, code) only: precomputed per cell)
                     - 2 <q, r>            (term 3: one inner-product table per query, shared by all cells)

All three split over the PQ sub-spaces, so terms 2 and 3 are (m, ksub) tables:
term 2 is an (nlist, m, ksub) array built once after training, and per query
only one (m, ksub) table is computed whatever ``nprobe`` is.

Refine (:class:`IVFPQRefineIndex`, faiss ``IndexRefineFlat``): ask the IVFPQ
index for ``k * k_factor`` candidates, recompute their exact distances from
the raw vectors, return the best k.  Memory then includes the raw vectors
(``4 d`` bytes each): refinement buys recall with memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validate import as_matrix
from .base import Index, search_params
from .ivf import IVF_KMEANS_NITER, imbalance_factor, probe_lists
from .kmeans import kmeans
from .pq import ProductQuantizer


# --------------------------------------------------------------------------- the two steps of encoding
def residuals(X: np.ndarray, assign: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``X - centroids[assign]``: each vector minus the centroid of the cell it is stored in. (n, d) float32."""
    return (X - centroids[assign]).astype(np.float32)


def encode_residuals(X: np.ndarray, assign: np.ndarray, centroids: np.ndarray, pq: ProductQuantizer) -> np.ndarray:
    """PQ codes of the residuals of ``X`` to their assigned coarse centroids.

    Parameters
    ----------
    X : (n, d) float vectors (left unchanged).
    assign : (n,) int, the cell of each vector (its nearest centroid at add time).
    centroids : (nlist, d) coarse centroids.
    pq : a :class:`ProductQuantizer` trained on residuals.

    Returns
    -------
    (n, m) uint8 codes of ``X[i] - centroids[assign[i]]``.
    """
    return pq.compute_codes(residuals(X, assign, centroids))


def precompute_term2(centroids: np.ndarray, pq: ProductQuantizer) -> np.ndarray:
    """faiss's precomputed table: ``||r||^2 + 2 <c, r>`` per (cell, sub-space, sub-centroid).

    Entry ``[l, j, c]`` is ``||C_j[c]||^2 + 2 <centroids[l]_j, C_j[c]>`` with
    ``_j`` the j-th sub-vector.  Summed over j along a code it gives
    ``||r||^2 + 2 <c_l, r>`` for the code's reconstruction r.
    Shape (nlist, m, ksub) float32: ``nlist * m * ksub * 4`` bytes.
    """
    C = pq.centroids  # (m, ksub, dsub)
    norms = (C.astype(np.float64) ** 2).sum(axis=2)  # (m, ksub)
    cross = pq.ip_tables(centroids).astype(np.float64)  # (nlist, m, ksub): <c_l_j, C_j[c]>
    return (norms[None] + 2.0 * cross).astype(np.float32)


# --------------------------------------------------------------------------- the index
class IVFPQIndex(Index):
    """Inverted file over PQ codes of residuals: faiss ``IndexIVFPQ(quantizer, d, nlist, m, nbits)``.

    Parameters
    ----------
    d : dimension (divisible by ``m``).
    nlist : number of coarse cells.  faiss advises ~4-16 sqrt(N) and at least
        39 training points per cell; the PQ needs at least 39 * 2**nbits.
    m, nbits : product quantizer of the residuals: m sub-spaces, 2**nbits centroids each.
    metric : "l2" (squared distances) or "ip" (inner products: ``<q, c> + <q, r>``).
    by_residual : encode ``x - c(x)`` (IVFADC, faiss's default) or ``x`` itself.
    niter : coarse k-means iterations (faiss IVF: 10).
    pq_niter : k-means iterations per PQ sub-space (faiss: 25).
    seed : k-means seed (faiss: 1234).

    Search parameters: ``nprobe`` (default 1, clamped to nlist) and
    ``use_precomputed`` (default True; l2 with residuals only): the term-2
    tables instead of one ADC table per probed cell.  Both give the same
    distances up to float32 rounding.

    Distance counting: ``nlist`` coarse distances per query, plus one per code
    scanned (a code's m look-ups are the price of one distance).

    Layout as in :class:`~course_lib.ann.ivf.IVFFlatIndex`: codes sorted by
    list, list ``l`` is ``codes[offsets[l]:offsets[l+1]]`` with ids ``ids[...]``.
    """

    needs_training = True

    def __init__(
        self,
        d: int,
        nlist: int,
        m: int,
        nbits: int = 8,
        metric: str = "l2",
        by_residual: bool = True,
        *,
        niter: int = IVF_KMEANS_NITER,
        pq_niter: int = 25,
        seed: int = 1234,
    ) -> None:
        super().__init__(d, metric)
        for name, value in (("nlist", nlist), ("niter", niter)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.nlist, self.niter, self.seed = int(nlist), int(niter), int(seed)
        self.by_residual = bool(by_residual)
        self.pq = ProductQuantizer(d, m, nbits, niter=pq_niter, seed=seed)  # validates m, nbits, d % m
        self.centroids = np.zeros((0, d), dtype=np.float32)
        self.codes = np.zeros((0, self.pq.m), dtype=np.uint8)  # sorted by list
        self.ids = np.zeros(0, dtype=np.int64)
        self.offsets = np.zeros(self.nlist + 1, dtype=np.int64)
        self.term2: np.ndarray | None = None  # (nlist, m, ksub) precomputed table, l2 + residual only

    @classmethod
    def from_parts(cls, centroids: np.ndarray, pq: ProductQuantizer, metric: str = "l2", by_residual: bool = True) -> IVFPQIndex:
        """An empty, trained index from given coarse centroids (nlist, d) and a trained quantizer.

        Used to share parts with faiss (same lists, same codes), and to build
        deliberately wrong indexes for ablations (a PQ trained on raw vectors).
        """
        C = as_matrix(centroids, "centroids")
        if not isinstance(pq, ProductQuantizer) or not pq.is_trained:
            raise ValueError("from_parts needs a trained ProductQuantizer")
        if pq.d != C.shape[1]:
            raise ValueError(f"centroids have d={C.shape[1]} but the quantizer has d={pq.d}")
        index = cls(pq.d, len(C), pq.m, pq.nbits, metric, by_residual, pq_niter=pq.niter, seed=pq.seed)
        index.pq = pq
        index._install(C)
        index.is_trained = True
        return index

    # ------------------------------------------------------------------ properties
    @property
    def m(self) -> int:
        return self.pq.m

    @property
    def nbits(self) -> int:
        return self.pq.nbits

    def _ntotal(self) -> int:
        return len(self.ids)

    def list_sizes(self) -> np.ndarray:
        """Number of codes in each inverted list: int64 (nlist,)."""
        return np.diff(self.offsets)

    def imbalance_factor(self) -> float:
        """See :func:`course_lib.ann.ivf.imbalance_factor` (1.0 = balanced lists)."""
        return imbalance_factor(self.list_sizes())

    # ------------------------------------------------------------------ training
    def _train(self, X: np.ndarray) -> None:
        """Coarse k-means, then the PQ on the residuals of the *same* training vectors."""
        if len(X) < self.nlist:
            raise ValueError(f"training needs at least nlist={self.nlist} vectors, got {len(X)}")
        C = kmeans(X, self.nlist, niter=self.niter, seed=self.seed).centroids
        if self.by_residual:
            assign = probe_lists(X, C, 1, self.metric)[:, 0]
            self.pq.train(residuals(X, assign, C))  # residuals, not X: the point of IVFADC
        else:
            self.pq.train(X)
        self._install(C)

    def _install(self, C: np.ndarray) -> None:
        if self.ntotal > 0:
            raise ValueError("the index already holds vectors: build a new index to change its centroids")
        self.centroids = np.ascontiguousarray(C, dtype=np.float32).copy()
        self.nlist = len(self.centroids)
        self.offsets = np.zeros(self.nlist + 1, dtype=np.int64)
        use_term2 = self.metric == "l2" and self.by_residual
        self.term2 = precompute_term2(self.centroids, self.pq) if use_term2 else None

    # ------------------------------------------------------------------ adding
    def _add(self, X: np.ndarray) -> None:
        new_ids = np.arange(self.ntotal, self.ntotal + len(X), dtype=np.int64)
        assign = probe_lists(X, self.centroids, 1, self.metric)[:, 0]  # the nearest cell (largest <x, c> for ip)
        if self.by_residual:
            new_codes = encode_residuals(X, assign, self.centroids, self.pq)
        else:
            new_codes = self.pq.compute_codes(X)
        # Merge by list; a stable sort keeps insertion order inside each list (as faiss).
        all_lists = np.concatenate([np.repeat(np.arange(self.nlist), self.list_sizes()), assign])
        order = np.argsort(all_lists, kind="stable")
        self.codes = np.concatenate([self.codes, new_codes])[order]
        self.ids = np.concatenate([self.ids, new_ids])[order]
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(all_lists, minlength=self.nlist))]).astype(np.int64)

    # ------------------------------------------------------------------ search
    def _gather(self, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes, ids and probe rank (0..nprobe-1) of every entry of the given lists."""
        starts, ends = self.offsets[lists], self.offsets[lists + 1]
        sizes = ends - starts
        rank = np.repeat(np.arange(len(lists)), sizes)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # where each list starts in the output
        idx = np.arange(sizes.sum()) + np.repeat(starts - first, sizes)  # storage positions, list after list
        return self.codes[idx], self.ids[idx], rank

    def list_distances(
        self, q: np.ndarray, lists: np.ndarray, coarse: np.ndarray, use_precomputed: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of one query against every code of the probed ``lists``, and the codes' ids.

        ``coarse`` (nprobe,) holds ``||q - c_l||^2`` (l2) or ``<q, c_l>`` (ip) for the probed lists.
        Scores, float32 (n_codes,): l2, the squared distance to ``c_l + decode(code)``;
        ip, ``<q, c_l + decode(code)>``.  Ids, int64 (n_codes,), in the same order.
        """
        codes, ids, rank = self._gather(lists)
        return self._scores(q, lists, coarse, codes, rank, use_precomputed), ids

    def _scores(self, q: np.ndarray, lists: np.ndarray, coarse: np.ndarray, codes: np.ndarray, rank: np.ndarray,
                use_precomputed: bool) -> np.ndarray:
        """The scores of :meth:`list_distances` for gathered ``codes`` (n, m) and their probe ``rank`` (n,)."""
        codes = codes.astype(np.intp)
        sub = np.arange(self.m)
        if not self.by_residual:  # one table for all lists: codes are of raw vectors
            table = self.pq.adc_table(q) if self.metric == "l2" else self.pq.ip_tables(q[None])[0]
            return table[sub, codes].sum(axis=1, dtype=np.float32)
        if self.metric == "ip":  # <q, c + r> = <q, c> + <q, r>: one table, plus the coarse term
            table = self.pq.ip_tables(q[None])[0]
            return coarse[rank] + table[sub, codes].sum(axis=1, dtype=np.float32)
        if use_precomputed:  # term1 + term2[cell] + term3
            term3 = -2.0 * self.pq.ip_tables(q[None])[0]  # (m, ksub)
            tables = self.term2[lists] + term3[None]  # (nprobe, m, ksub)
            return coarse[rank] + tables[rank[:, None], sub, codes].sum(axis=1, dtype=np.float32)
        tables = self.pq.adc_tables(q[None] - self.centroids[lists])  # one ADC table per probed cell
        return tables[rank[:, None], sub, codes].sum(axis=1, dtype=np.float32)

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        p = search_params(params, {"nprobe": 1, "use_precomputed": True})
        nprobe = p["nprobe"]
        if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
            raise ValueError(f"nprobe must be a positive int, got {nprobe!r}")
        nprobe = min(int(nprobe), self.nlist)
        use_pre = bool(p["use_precomputed"]) and self.term2 is not None
        # coarse quantizer: L2 cells for l2, inner-product cells for ip (as faiss's IndexFlatIP quantizer)
        lists = probe_lists(Q, self.centroids, nprobe, self.metric)
        self.count(len(Q) * self.nlist)
        fill = np.inf if self.metric == "l2" else -np.inf
        D = np.full((len(Q), k), fill, dtype=np.float32)
        I = np.full((len(Q), k), -1, dtype=np.int64)
        for row, q in enumerate(Q):
            C = self.centroids[lists[row]]
            coarse = ((q - C) ** 2).sum(axis=1) if self.metric == "l2" else C @ q  # term 1, per probed cell
            scores, cand_ids = self.list_distances(q, lists[row], coarse.astype(np.float32), use_pre)
            self.count(len(scores))
            if len(scores) == 0:
                continue
            if self.metric == "l2":
                np.maximum(scores, 0.0, out=scores)  # the expansion can dip below 0 by rounding
            key = scores if self.metric == "l2" else -scores
            kk = min(k, len(scores))
            top = np.argpartition(key, kk - 1)[:kk] if kk < len(key) else np.arange(len(key))
            top = top[np.lexsort((cand_ids[top], key[top]))]  # by score, ties by smaller id
            D[row, :kk], I[row, :kk] = scores[top], cand_ids[top]
        return D, I

    # ------------------------------------------------------------------ memory and persistence
    @property
    def bytes_per_vector(self) -> float:
        """Per stored vector: the packed PQ code (``m * nbits / 8`` bytes) + an int64 id (8 bytes).

        Fixed costs are not included (see :attr:`fixed_bytes`).
        """
        return float(self.pq.code_size + 8)

    @property
    def fixed_bytes(self) -> int:
        """Memory that does not grow with ntotal: coarse centroids, PQ codebooks, precomputed table."""
        term2 = 0 if self.term2 is None else self.term2.nbytes
        return 4 * self.centroids.size + self.pq.codebook_bytes + term2

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {"nlist": self.nlist, "m": self.m, "nbits": self.nbits, "by_residual": self.by_residual,
                  "niter": self.niter, "pq_niter": self.pq.niter, "seed": self.seed}
        arrays = {"centroids": self.centroids, "codes": self.codes, "ids": self.ids, "offsets": self.offsets}
        if self.pq.centroids is not None:
            arrays["pq_centroids"] = self.pq.centroids
        return params, arrays

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> IVFPQIndex:
        index = cls(d, params["nlist"], params["m"], params["nbits"], metric, params["by_residual"],
                    niter=params["niter"], pq_niter=params["pq_niter"], seed=params["seed"])
        if "pq_centroids" in arrays:
            index.pq.centroids = arrays["pq_centroids"].astype(np.float32)
            index._install(arrays["centroids"])
        index.codes = arrays["codes"].astype(np.uint8)
        index.ids = arrays["ids"].astype(np.int64)
        index.offsets = arrays["offsets"].astype(np.int64)
        return index


# --------------------------------------------------------------------------- re-ranking
def refine(Q: np.ndarray, xb: np.ndarray, I_cand: np.ndarray, k: int, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """Re-rank candidate ids with exact distances: faiss ``IndexRefineFlat``'s second stage.

    Parameters
    ----------
    Q : (nq, d) queries.  xb : (n, d) raw vectors, row i = id i.
    I_cand : (nq, r) candidate ids (-1 = none).  k : results kept (k <= r).

    Returns
    -------
    (D, I) of shape (nq, k): exact distances (squared l2, or ip), best first,
    ties by smaller id; missing candidates stay -1.
    """
    V = xb[np.maximum(I_cand, 0)]  # (nq, r, d)
    if metric == "l2":
        diff = V - Q[:, None, :]
        key = np.einsum("qrd,qrd->qr", diff, diff)
    else:
        key = -np.einsum("qrd,qd->qr", V, Q)
    key = np.where(I_cand < 0, np.inf, key).astype(np.float32)
    order = np.lexsort((np.where(I_cand < 0, np.iinfo(np.int64).max, I_cand), key), axis=1)[:, :k]
    rows = np.arange(len(Q))[:, None]
    Dk, Ik = key[rows, order], I_cand[rows, order]
    if metric == "ip":
        Dk = np.where(Ik < 0, -np.inf, -Dk)
    return Dk.astype(np.float32), Ik.astype(np.int64)


class IVFPQRefineIndex(Index):
    """IVFPQ + exact re-rank of the top ``k * k_factor``: faiss ``IndexRefineFlat(IndexIVFPQ(...))``.

    Same constructor as :class:`IVFPQIndex`; the raw vectors are kept too.
    Search parameters: ``nprobe`` (passed to the IVFPQ stage) and ``k_factor``
    (default 1, as faiss: no re-ranking benefit).  Distances returned are exact.

    Memory: ``bytes_per_vector`` = IVFPQ's (code + id) + ``4 d`` for the raw
    float32 vector.  That is usually more than IVF-Flat's ``4 d + 8``: refine is
    for when the raw vectors live somewhere cheaper (disk, another tier) or
    when recall near 1 matters more than memory.
    """

    needs_training = True

    def __init__(self, d: int, nlist: int, m: int, nbits: int = 8, metric: str = "l2", by_residual: bool = True, **kwargs: Any) -> None:
        super().__init__(d, metric)
        self.base = IVFPQIndex(d, nlist, m, nbits, metric, by_residual, **kwargs)
        self.xb = np.zeros((0, d), dtype=np.float32)

    @classmethod
    def from_base(cls, base: IVFPQIndex) -> IVFPQRefineIndex:
        """Wrap an *empty*, trained IVFPQ index (shared, not copied)."""
        if not isinstance(base, IVFPQIndex) or not base.is_trained or base.ntotal > 0:
            raise ValueError("from_base needs a trained, empty IVFPQIndex")
        index = cls(base.d, base.nlist, base.m, base.nbits, base.metric, base.by_residual)
        index.base = base
        index.is_trained = True
        return index

    def _ntotal(self) -> int:
        return len(self.xb)

    def _train(self, X: np.ndarray) -> None:
        self.base.train(X)

    def _add(self, X: np.ndarray) -> None:
        self.base.add(X)
        self.xb = np.vstack([self.xb, X])

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        p = search_params(params, {"nprobe": 1, "k_factor": 1})
        k_factor = p["k_factor"]
        if isinstance(k_factor, bool) or not isinstance(k_factor, (int, np.integer, float)) or k_factor < 1:
            raise ValueError(f"k_factor must be a number >= 1, got {k_factor!r}")
        n_cand = int(k * k_factor)
        _, I_cand = self.base.search(Q, n_cand, nprobe=p["nprobe"])
        self.count(self.base.stats.ndis)  # codes scanned and coarse distances
        self.count(int((I_cand >= 0).sum()))  # exact distances of the re-ranked candidates
        return refine(Q, self.xb, I_cand, min(k, n_cand), self.metric)

    @property
    def bytes_per_vector(self) -> float:
        """IVFPQ's code + id, plus the raw float32 vector kept for re-ranking (4 d bytes)."""
        return self.base.bytes_per_vector + 4.0 * self.d

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params, arrays = self.base._state()
        return params, {**arrays, "xb": self.xb}

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> IVFPQRefineIndex:
        base_arrays = {k: v for k, v in arrays.items() if k != "xb"}
        index = cls(d, params["nlist"], params["m"], params["nbits"], metric, params["by_residual"],
                    niter=params["niter"], pq_niter=params["pq_niter"], seed=params["seed"])
        index.base = IVFPQIndex._from_state(d, metric, params, base_arrays)
        index.base.is_trained = "pq_centroids" in arrays
        index.xb = arrays["xb"].astype(np.float32)
        return index
