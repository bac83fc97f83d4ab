"""IVF-Flat: an inverted file over k-means cells, exact distances inside the cells.

The idea (Sivic & Zisserman 2003 for images; Jégou, Douze & Schmid 2011 for
ANN search; faiss ``IndexIVFFlat``):

1. **train**: k-means on representative vectors gives ``nlist`` *coarse
   centroids*; they cut the space into Voronoi cells;
2. **add**: each vector goes into the *inverted list* of its nearest centroid;
3. **search**: a query computes its distance to the ``nlist`` centroids, picks
   the ``nprobe`` nearest cells, and scans only the vectors in those lists,
   exactly.  Work per query is ``nlist + (about) nprobe * ntotal / nlist``
   distances instead of ``ntotal``.

A neighbour is missed only when it lives in a cell that was not probed, so
recall grows with ``nprobe`` and reaches 1.0 at ``nprobe = nlist`` (brute
force plus overhead).

Layout, numpy-friendly: all vectors sorted by list, so list ``l`` is the
contiguous slice ``offsets[l]:offsets[l+1]`` of ``xb`` (vectors) and ``ids``
(their original ids).  Within a list, vectors keep insertion order, as in
faiss's ``ArrayInvertedLists``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..validate import as_matrix
from ..vec import exact_knn
from .base import Index, search_params
from .kmeans import kmeans

#: faiss trains the coarse quantizer of an IVF index with 10 k-means iterations
#: (``IndexIVF.cp.niter``), not the 25 of ``faiss.Kmeans``.
IVF_KMEANS_NITER = 10


def imbalance_factor(list_sizes: np.ndarray) -> float:
    """faiss's ``invlists.imbalance_factor()``: ``nlist * sum(size^2) / ntotal^2``.

    It is the expected work of a query whose nearest cell is drawn like the
    data, relative to perfectly equal lists: 1.0 means all lists are the same
    size; 2.0 means a query scans on average twice as many vectors as it
    would with balanced lists (big lists are both bigger *and* probed more often).
    """
    sizes = np.asarray(list_sizes, dtype=np.float64)
    total = sizes.sum()
    if total == 0:
        return 0.0
    return float(len(sizes) * (sizes**2).sum() / total**2)


def probe_lists(Q: np.ndarray, centroids: np.ndarray, nprobe: int, metric: str = "l2") -> np.ndarray:
    """The ``nprobe`` nearest centroids of each query: int64 (n_queries, nprobe), nearest first.

    This is the *coarse quantizer*: an exact search over the nlist centroids.
    """
    _, lists = exact_knn(Q, centroids, nprobe, metric)
    return lists


def scan_lists(
    q: np.ndarray, xb: np.ndarray, ids: np.ndarray, offsets: np.ndarray, lists: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact top-k of one query over the vectors of the given inverted lists.

    Parameters
    ----------
    q : (d,) the query.
    xb, ids, offsets : the inverted lists (vectors sorted by list, their ids, list boundaries).
    lists : (nprobe,) the lists to scan.
    k : results wanted.

    Returns
    -------
    D : (m,) float32 distances, best first, m = min(k, vectors scanned).
    I : (m,) int64 ids.
    n_scanned : how many distances were computed.
    """
    slices = [slice(offsets[l], offsets[l + 1]) for l in lists.tolist()]
    cand_x = np.concatenate([xb[s] for s in slices])
    cand_ids = np.concatenate([ids[s] for s in slices])
    if metric == "l2":
        diff = cand_x - q
        scores = np.einsum("ij,ij->i", diff, diff)  # direct ||x - q||^2, as faiss's fvec_L2sqr
    else:
        scores = -(cand_x @ q)  # negated inner product: smallest is best
    m = min(k, len(scores))
    if m == 0:
        return np.empty(0, np.float32), np.empty(0, np.int64), 0
    top = np.argpartition(scores, m - 1)[:m] if m < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((cand_ids[top], scores[top]))]  # by distance, ties by smaller id
    best = scores[top] if metric == "l2" else -scores[top]
    return best.astype(np.float32), cand_ids[top], len(scores)


class IVFFlatIndex(Index):
    """Inverted file with flat (uncompressed) lists: faiss ``IndexIVFFlat``.

    Parameters
    ----------
    d : dimension.
    nlist : number of k-means cells (inverted lists).  faiss's advice is
        nlist ~ 4-16 sqrt(N), and at least 39 training points per centroid.
    metric : "l2" (squared distances) or "ip" (inner products).  Training is
        plain (L2) k-means for both metrics; faiss assigns by inner product
        while training an "ip" index, so compare "ip" indexes with shared
        centroids (:meth:`set_centroids`).
    niter : k-means iterations for the coarse centroids (faiss IVF: 10).
    seed : k-means seed (faiss: 1234).

    Search parameter: ``nprobe`` (default 1, as in faiss), the number of
    nearest lists scanned per query; values above ``nlist`` are clamped to
    ``nlist`` (as faiss does).
    """

    needs_training = True

    def __init__(self, d: int, nlist: int, metric: str = "l2", niter: int = IVF_KMEANS_NITER, seed: int = 1234) -> None:
        super().__init__(d, metric)
        for name, value in (("nlist", nlist), ("niter", niter)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.nlist, self.niter, self.seed = int(nlist), int(niter), int(seed)
        self.centroids = np.zeros((0, d), dtype=np.float32)
        self.xb = np.zeros((0, d), dtype=np.float32)  # vectors, sorted by list
        self.ids = np.zeros(0, dtype=np.int64)  # their ids, same order
        self.offsets = np.zeros(self.nlist + 1, dtype=np.int64)  # list l = [offsets[l], offsets[l+1])
        self.train_objective: tuple[float, ...] = ()

    # ------------------------------------------------------------------ training
    def _train(self, X: np.ndarray) -> None:
        if len(X) < self.nlist:
            raise ValueError(f"training needs at least nlist={self.nlist} vectors, got {len(X)}")
        result = kmeans(X, self.nlist, niter=self.niter, seed=self.seed)
        self.train_objective = result.objective
        self._install_centroids(result.centroids)

    def set_centroids(self, centroids: np.ndarray) -> IVFFlatIndex:
        """Use given coarse centroids (nlist, d) instead of training: e.g. faiss's, or ours in faiss.

        This is how two implementations are compared fairly: with the same
        centroids, the same vectors land in the same lists, and any difference
        in the results is a difference in search.
        """
        C = as_matrix(centroids, "centroids")
        if C.shape != (self.nlist, self.d):
            raise ValueError(f"centroids must have shape (nlist, d) = {(self.nlist, self.d)}, got {C.shape}")
        self._install_centroids(C)
        self.is_trained = True
        return self

    def _install_centroids(self, C: np.ndarray) -> None:
        if self.ntotal > 0:
            raise ValueError(
                "the index already holds vectors; new centroids would need them re-assigned: build a new index"
            )
        self.centroids = np.ascontiguousarray(C, dtype=np.float32).copy()

    # ------------------------------------------------------------------ adding
    def _add(self, X: np.ndarray) -> None:
        new_ids = np.arange(self.ntotal, self.ntotal + len(X), dtype=np.int64)
        new_lists = probe_lists(X, self.centroids, 1, self.metric)[:, 0]
        # Merge old and new by list.  A stable sort keeps insertion order inside each list.
        all_lists = np.concatenate([self.list_assignment(), new_lists])
        order = np.argsort(all_lists, kind="stable")
        self.xb = np.concatenate([self.xb, X])[order]
        self.ids = np.concatenate([self.ids, new_ids])[order]
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(all_lists, minlength=self.nlist))]).astype(np.int64)

    def list_assignment(self) -> np.ndarray:
        """The list of each stored vector, in storage order: int64 (ntotal,)."""
        return np.repeat(np.arange(self.nlist, dtype=np.int64), self.list_sizes())

    def list_sizes(self) -> np.ndarray:
        """Number of vectors in each inverted list: int64 (nlist,)."""
        return np.diff(self.offsets)

    def imbalance_factor(self) -> float:
        """See :func:`imbalance_factor` (1.0 = perfectly balanced lists)."""
        return imbalance_factor(self.list_sizes())

    def _ntotal(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------------ search
    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        nprobe = search_params(params, {"nprobe": 1})["nprobe"]
        if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
            raise ValueError(f"nprobe must be a positive int, got {nprobe!r}")
        nprobe = min(int(nprobe), self.nlist)
        lists = probe_lists(Q, self.centroids, nprobe, self.metric)
        self.count(len(Q) * self.nlist)  # the coarse quantizer: one distance per centroid
        fill = np.inf if self.metric == "l2" else -np.inf
        D = np.full((len(Q), k), fill, dtype=np.float32)
        I = np.full((len(Q), k), -1, dtype=np.int64)
        for row, q in enumerate(Q):
            d, i, n_scanned = scan_lists(q, self.xb, self.ids, self.offsets, lists[row], k, self.metric)
            D[row, : len(i)], I[row, : len(i)] = d, i
            self.count(n_scanned)
        return D, I

    # ------------------------------------------------------------------ memory and persistence
    @property
    def bytes_per_vector(self) -> float:
        """4 d (float32 vector) + 8 (int64 id), plus the centroids (4 d nlist bytes) amortised over ntotal."""
        per_vector = 4.0 * self.d + 8.0
        if self.ntotal == 0:
            return per_vector
        return per_vector + 4.0 * self.d * len(self.centroids) / self.ntotal

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {
            "nlist": self.nlist,
            "niter": self.niter,
            "seed": self.seed,
            "train_objective": list(self.train_objective),
        }
        return params, {"centroids": self.centroids, "xb": self.xb, "ids": self.ids, "offsets": self.offsets}

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> IVFFlatIndex:
        index = cls(d, params["nlist"], metric, niter=params["niter"], seed=params["seed"])
        index.train_objective = tuple(params["train_objective"])
        index.centroids = arrays["centroids"].astype(np.float32)
        index.xb = arrays["xb"].astype(np.float32)
        index.ids = arrays["ids"].astype(np.int64)
        index.offsets = arrays["offsets"].astype(np.int64)
        return index
