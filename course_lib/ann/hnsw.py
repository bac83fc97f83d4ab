"""HNSW: Hierarchical Navigable Small World graphs (Malkov & Yashunin, 2016/2018).

The functions are named after the paper's algorithms and hnswlib's
``hnswalg.h`` so a reader can put the three side by side:

=============================  ==============================  ==========================
this module                    paper                           hnswlib
=============================  ==============================  ==========================
:meth:`HNSWIndex.insert`       Algorithm 1, INSERT             ``addPoint``
:meth:`HNSWIndex.search_layer` Algorithm 2, SEARCH-LAYER       ``searchBaseLayer(ST)``
:func:`select_neighbors_simple`    Algorithm 3                 (none)
:func:`select_neighbors_heuristic` Algorithm 4                 ``getNeighborsByHeuristic2``
:meth:`HNSWIndex.connect`      Alg. 1, lines 10-17             ``mutuallyConnectNewElement``
:meth:`HNSWIndex.greedy_closest` SEARCH-LAYER with ef = 1      the upper-level loop of ``searchKnn``
:meth:`HNSWIndex.knn_search`   Algorithm 5, K-NN-SEARCH        ``searchKnn``
=============================  ==============================  ==========================

Storage follows hnswlib: layer 0 is one int32 matrix ``links0`` of shape
(n, 2M) padded with -1 (every node is on layer 0), and a node on level L > 0
also owns an int32 matrix of shape (L, M) for its upper layers.

Speed in pure numpy (no compiled code): distances are one gather and one
matrix-vector product per expanded node, using augmented vectors
``[x, ||x||^2, 1]`` and ``[-2q, 1, ||q||^2]`` whose dot product is
``||x - q||^2``; the visited set is an epoch-tagged array (no clearing between
searches); heaps are Python ``heapq`` lists of plain floats and ints
(``.tolist()`` before every Python loop).  Distances are computed in float64
so that a compiled backend can reproduce every decision exactly.

``backend="numba"`` runs the same algorithms compiled (:mod:`.hnsw_numba`),
on the same arrays, and builds the same graph and returns the same results.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from .base import Index, search_params

BACKENDS = ("numpy", "numba")


# --------------------------------------------------------------------------- neighbour selection
def select_neighbors_simple(q_dists: np.ndarray, cand_ids: np.ndarray, M: int) -> np.ndarray:
    """Algorithm 3: the M candidates closest to the base element.

    Parameters
    ----------
    q_dists : (c,) distances from the base element q to each candidate.
    cand_ids : (c,) candidate ids.
    M : how many to keep.

    Returns
    -------
    (min(M, c),) ids, closest first.
    """
    order = np.argsort(q_dists, kind="stable")[:M]
    return np.asarray(cand_ids)[order]


def select_neighbors_heuristic(
    q_dists: np.ndarray, cand_ids: np.ndarray, cand_vectors: np.ndarray, M: int
) -> np.ndarray:
    """Algorithm 4 (hnswlib's ``getNeighborsByHeuristic2``): diverse neighbours.

    Candidates are visited from the closest to the base element q outwards.
    A candidate e is kept only if it is closer to q than to every neighbour
    already kept (it is rejected as soon as some kept r has d(e, r) < d(e, q)):
    then e lies in a direction that no kept neighbour covers yet.  Selection
    stops after M neighbours.  This is what lets a graph built on clustered
    data keep the few long edges that join the clusters.

    Parameters
    ----------
    q_dists : (c,) squared L2 distances from q to each candidate (any order).
    cand_ids : (c,) candidate ids.
    cand_vectors : (c, d) candidate vectors, row i belongs to ``cand_ids[i]``.
    M : the most neighbours to keep.

    Returns
    -------
    (<= M,) kept ids, closest to q first.
    """
    order = np.argsort(q_dists, kind="stable")
    dq = np.asarray(q_dists, dtype=np.float64)[order].tolist()
    ids = np.asarray(cand_ids)[order]
    V = np.asarray(cand_vectors, dtype=np.float64)[order]
    kept: list[int] = []
    # closest_kept[i] = distance from candidate i to its nearest kept neighbour so far:
    # "d(e, r) < d(e, q) for some kept r" is then one comparison per candidate.
    closest_kept = [math.inf] * len(dq)
    for i, d_eq in enumerate(dq):
        if len(kept) == M:
            break
        if closest_kept[i] < d_eq:
            continue  # a kept neighbour is closer to e than q is: e is redundant
        kept.append(i)
        diff = V - V[i]
        closest_kept = np.minimum(closest_kept, np.einsum("ij,ij->i", diff, diff)).tolist()
    return ids[kept]


def _numba_kernels() -> Any:
    """The compiled kernels of ``backend="numba"`` (imported on first use: numba is optional)."""
    try:
        from . import hnsw_numba
    except ImportError as exc:  # numba missing or broken
        raise ImportError(
            f"HNSWIndex(backend='numba') needs the numba package ({exc}); "
            "install it (pip install numba) or use backend='numpy'"
        ) from exc
    return hnsw_numba


# --------------------------------------------------------------------------- the index
class HNSWIndex(Index):
    """Hierarchical Navigable Small World graph (faiss ``IndexHNSWFlat``, hnswlib ``Index``).

    Parameters
    ----------
    d : dimension.
    M : links per node on the upper layers; layer 0 allows ``2 M`` (Mmax0).
        A new node links to M neighbours on each of its layers.
    ef_construction : beam width of the search that finds a new node's neighbours.
    metric : "l2" (squared distances) or "ip" (inner product, distance = -q.x).
    seed : seed of the level generator (levels are drawn in insertion order).
    heuristic : Algorithm 4 (True, as hnswlib and faiss) or the M closest (False).
    backend : "numpy" (readable Python/numpy) or "numba" (the same algorithms compiled,
        :mod:`.hnsw_numba`; same graph and same results for the same seed).

    Search parameters: ``ef`` (beam width on layer 0, default 10; ef = max(ef, k)).
    Statistics: ``stats.ndis`` counts the distances of the last search,
    ``build_ndis`` those of every insert so far.
    """

    def __init__(
        self,
        d: int,
        M: int = 16,
        ef_construction: int = 200,
        metric: str = "l2",
        seed: int = 100,
        heuristic: bool = True,
        backend: str = "numpy",
    ) -> None:
        super().__init__(d, metric)
        if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 2:
            raise ValueError(f"M must be an int >= 2, got {M!r}")
        if isinstance(ef_construction, bool) or not isinstance(ef_construction, (int, np.integer)) or ef_construction < 1:
            raise ValueError(f"ef_construction must be a positive int, got {ef_construction!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
        self._kernels = _numba_kernels() if backend == "numba" else None
        self._graph: tuple[np.ndarray, ...] | None = None  # the compiled backend's flat graph, see _flat_graph
        self.M = int(M)
        self.M0 = 2 * self.M  # Mmax0: layer 0 is the one every search ends on, so it gets more links
        self.mL = 1.0 / math.log(self.M)  # level multiplier: P(level >= l) = M**-l
        self.ef_construction = int(ef_construction)
        self.seed = int(seed)
        self.heuristic = bool(heuristic)
        self.backend = backend
        self.rng = np.random.default_rng(self.seed)
        self.entry_point = -1
        self.max_level = -1
        self.build_ndis = 0
        self._n = 0
        self.xb = np.zeros((0, d), dtype=np.float32)
        self.levels = np.zeros(0, dtype=np.int32)
        self.links0 = np.zeros((0, self.M0), dtype=np.int32)
        self.deg0 = np.zeros(0, dtype=np.int32)
        self.links_upper: list[np.ndarray] = []  # node -> (level, M) int32, -1 padded
        self.deg_upper: list[list[int]] = []  # node -> [degree on level 1, 2, ...]
        self._aug = np.zeros((0, d + 2), dtype=np.float64)  # [x, ||x||^2, 1]: one dot product = distance
        self._visited = np.zeros(0, dtype=np.uint32)
        self._epoch = 0
        self._ndis = 0  # distances of the current insert or search

    # ------------------------------------------------------------------ sizes
    def _ntotal(self) -> int:
        return self._n

    @property
    def bytes_per_vector(self) -> float:
        """float32 vector + layer-0 links (2M int32) + upper links + level, as hnswlib stores them."""
        n = max(self._n, 1)
        upper = 4.0 * self.M * float(self.levels[: self._n].sum())
        return 4.0 * self.d + 4.0 * self.M0 + 4.0 + upper / n

    def max_links(self, level: int) -> int:
        """Mmax: 2M on layer 0, M above."""
        return self.M0 if level == 0 else self.M

    # ------------------------------------------------------------------ levels
    def random_level(self) -> int:
        """floor(-ln(U) * mL), U ~ Uniform(0, 1]: P(level >= l) = exp(-l / mL) = M**-l."""
        u = 1.0 - self.rng.random()  # in (0, 1]: never log(0)
        return int(-math.log(u) * self.mL)

    # ------------------------------------------------------------------ graph access
    def neighbours(self, node: int, level: int) -> np.ndarray:
        """The int32 ids linked to ``node`` on ``level`` (a view, no -1 padding)."""
        if level == 0:
            return self.links0[node, : self.deg0[node]]
        return self.links_upper[node][level - 1, : self.deg_upper[node][level - 1]]

    def set_neighbours(self, node: int, level: int, ids: np.ndarray) -> None:
        """Replace ``node``'s list on ``level`` by ``ids`` (at most Mmax of them)."""
        row = self.links0[node] if level == 0 else self.links_upper[node][level - 1]
        row[: len(ids)] = ids
        row[len(ids) :] = -1
        if level == 0:
            self.deg0[node] = len(ids)
        else:
            self.deg_upper[node][level - 1] = len(ids)

    def distances(self, q_aug: np.ndarray, ids: Any) -> np.ndarray:
        """Distances from the query (augmented, see :meth:`augment`) to the nodes ``ids``: (len(ids),) float64."""
        self._ndis += len(ids)
        return self._aug[ids] @ q_aug

    def augment(self, q: np.ndarray) -> np.ndarray:
        """[-2q, 1, ||q||^2] (l2) or [-q, 0, 0] (ip): its dot product with [x, ||x||^2, 1] is the distance."""
        q = np.asarray(q, dtype=np.float64)
        if self.metric == "l2":
            return np.concatenate([-2.0 * q, [1.0, q @ q]])
        return np.concatenate([-q, [0.0, 0.0]])

    def _new_epoch(self) -> int:
        """A fresh visited tag: bumping a counter replaces clearing an n-sized array."""
        self._epoch += 1
        if self._epoch == np.iinfo(np.uint32).max:
            self._visited[:] = 0
            self._epoch = 1
        return self._epoch

    # ------------------------------------------------------------------ searching one layer
    def greedy_closest(self, q_aug: np.ndarray, entry: int, entry_dist: float, level: int) -> tuple[int, float]:
        """SEARCH-LAYER with ef = 1: hop to the best neighbour while it is closer.

        As hnswlib and faiss do, every neighbour of the current node is
        scanned and the search moves to the closest one, until none improves.
        Returns (node, distance).
        """
        node, dist = entry, entry_dist
        while True:
            nbrs = self.neighbours(node, level)
            if len(nbrs) == 0:
                return node, dist
            dists = self.distances(q_aug, nbrs)
            best = int(np.argmin(dists))
            if dists[best] >= dist:
                return node, dist
            node, dist = int(nbrs[best]), float(dists[best])

    def search_layer(self, q_aug: np.ndarray, entry_points: list[tuple[float, int]], ef: int, level: int) -> list[tuple[float, int]]:
        """Algorithm 2, SEARCH-LAYER: best-first beam search of width ``ef`` on one layer.

        ``candidates`` is a min-heap of nodes still to expand, ``W`` a max-heap
        (distances negated) of the ``ef`` nearest found so far.  The search
        stops when the nearest unexpanded candidate is farther than the
        *furthest* element of W: nothing it leads to can enter W any more.

        Parameters
        ----------
        q_aug : the augmented query (:meth:`augment`).
        entry_points : [(distance, id), ...] to start from.
        ef : size of the dynamic list W.
        level : the layer to search.

        Returns
        -------
        [(distance, id), ...] of at most ef nearest found, closest first.
        """
        epoch = self._new_epoch()
        visited, aug = self._visited, self._aug
        ndis = 0
        candidates = list(entry_points)
        heapq.heapify(candidates)
        W = [(-d, e) for d, e in entry_points]
        heapq.heapify(W)
        for _, e in entry_points:
            visited[e] = epoch
        while candidates:
            d_c, c = heapq.heappop(candidates)
            if d_c > -W[0][0]:
                break  # the nearest candidate is farther than W's furthest: W is final
            nbrs = self.neighbours(c, level)
            new = nbrs[visited[nbrs] != epoch]
            if len(new) == 0:
                continue
            visited[new] = epoch
            dists = aug[new] @ q_aug  # = self.distances(q_aug, new), inlined: this is the hot loop
            ndis += len(new)
            worst = -W[0][0]
            for d, e in zip(dists.tolist(), new.tolist()):
                if d < worst or len(W) < ef:
                    heapq.heappush(candidates, (d, e))
                    if len(W) < ef:
                        heapq.heappush(W, (-d, e))
                    else:
                        heapq.heappushpop(W, (-d, e))
                    worst = -W[0][0]
        self._ndis += ndis
        return sorted((-nd, e) for nd, e in W)

    # ------------------------------------------------------------------ insertion
    def select_neighbors(self, base: int, found: list[tuple[float, int]], M: int) -> np.ndarray:
        """Pick at most M of ``found`` ([(distance to base, id)], closest first) as links of ``base``.

        As hnswlib does, a list that is already shorter than M is kept whole.
        """
        if len(found) < M:
            return np.array([e for _, e in found], dtype=np.int32)
        dists = np.array([d for d, _ in found])
        ids = np.array([e for _, e in found], dtype=np.int32)
        if not self.heuristic:
            return select_neighbors_simple(dists, ids, M)
        self.build_ndis += len(ids) * min(M, len(ids))  # the heuristic compares candidates with kept ones
        return select_neighbors_heuristic(dists, ids, self.xb[ids], M)

    def connect(self, node: int, found: list[tuple[float, int]], level: int) -> int:
        """Link ``node`` to M of ``found`` on ``level`` and link them back, pruning full lists.

        hnswlib's ``mutuallyConnectNewElement``.  Returns the closest chosen
        neighbour, the entry point for the layer below.
        """
        chosen = self.select_neighbors(node, found, self.M)
        self.set_neighbours(node, level, chosen)
        m_max = self.max_links(level)
        for other in chosen.tolist():
            links = self.neighbours(other, level)
            if len(links) < m_max:
                self.set_neighbours(other, level, np.append(links, node))
                continue
            # the list is full: the old links and the new node compete for the m_max places,
            # judged from ``other``'s point of view (it is now the base element)
            cands = np.append(links, node).astype(np.int32)
            d_other = self.distances(self.augment(self.xb[other]), cands)
            pruned = self.select_neighbors(other, sorted(zip(d_other.tolist(), cands.tolist())), m_max)
            self.set_neighbours(other, level, pruned)
        return int(chosen[0])

    def insert(self, node: int) -> None:
        """Algorithm 1, INSERT: add the stored vector ``node`` to the graph."""
        level = self.random_level()
        self.levels[node] = level
        self.links_upper.append(np.full((level, self.M), -1, dtype=np.int32))
        self.deg_upper.append([0] * level)
        if self.entry_point < 0:  # the first node is the whole graph
            self.entry_point, self.max_level = node, level
            return
        self._ndis = 0
        q_aug = self.augment(self.xb[node])
        ep = self.entry_point
        ep_dist = float(self.distances(q_aug, [ep])[0])
        # 1. greedy descent (ef = 1) through the layers above the new node's top layer
        for lc in range(self.max_level, level, -1):
            ep, ep_dist = self.greedy_closest(q_aug, ep, ep_dist, lc)
        # 2. on each of its layers: beam search with ef_construction, then link
        for lc in range(min(level, self.max_level), -1, -1):
            found = self.search_layer(q_aug, [(ep_dist, ep)], self.ef_construction, lc)
            ep = self.connect(node, found, lc)
            ep_dist = next(d for d, e in found if e == ep)
        self.build_ndis += self._ndis
        # 3. a node that tops the hierarchy becomes the entry point
        if level > self.max_level:
            self.entry_point, self.max_level = node, level

    def _grow(self, n_new: int) -> None:
        """Make room for ``n_new`` more nodes in every per-node array."""
        n = self._n + n_new
        self.levels = np.concatenate([self.levels[: self._n], np.zeros(n_new, np.int32)])
        self.links0 = np.vstack([self.links0[: self._n], np.full((n_new, self.M0), -1, np.int32)])
        self.deg0 = np.concatenate([self.deg0[: self._n], np.zeros(n_new, np.int32)])
        self._visited = np.zeros(n, dtype=np.uint32)
        self._epoch = 0

    def _add(self, X: np.ndarray) -> None:
        start = self._n
        self._grow(len(X))
        self.xb = np.vstack([self.xb, X])
        X64 = X.astype(np.float64)
        extra = np.sum(X64**2, axis=1, keepdims=True) if self.metric == "l2" else np.zeros((len(X), 1))
        self._aug = np.vstack([self._aug, np.hstack([X64, extra, np.ones((len(X), 1))])])
        self._n = start + len(X)
        if self._kernels is not None:
            self._add_compiled(start)
            return
        for node in range(start, self._n):
            self.insert(node)

    # ------------------------------------------------------------------ compiled backend
    def _flat_graph(self) -> tuple[np.ndarray, ...]:
        """(links0, deg0, up_links, up_deg, up_off): the graph as the compiled kernels read it.

        Node v's upper lists become rows ``up_off[v] .. up_off[v+1]-1`` of one
        int32 matrix, and ``links_upper[v]`` is re-pointed to a view of them.
        Built after every ``add`` and on the first search after ``load``; the
        Python methods (``insert``, ``set_neighbours``) do not update it.
        """
        n = self._n
        up_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.levels[:n], out=up_off[1:])
        blocks = self.links_upper[:n]
        up_links = np.ascontiguousarray(np.vstack(blocks) if n else np.zeros((0, self.M)), dtype=np.int32)
        up_deg = np.array([g for degs in self.deg_upper[:n] for g in degs], dtype=np.int32)
        self.links_upper = [up_links[up_off[v] : up_off[v + 1]] for v in range(n)]
        self._graph = (self.links0, self.deg0, up_links, up_deg, up_off)
        return self._graph

    def _add_compiled(self, start: int) -> None:
        """Insert nodes start .. n-1 with the compiled INSERT loop (levels drawn here, in order)."""
        for node in range(start, self._n):  # the same draws, in the same order, as insert()
            level = self.random_level()
            self.levels[node] = level
            self.links_upper.append(np.full((level, self.M), -1, dtype=np.int32))
            self.deg_upper.append([0] * level)
        graph = self._flat_graph()
        epoch = np.array([self._epoch], dtype=np.int64)
        q_aug = self._kernels.augment(self.xb[: self._n], self.metric == "l2")  # every node, as a query
        ep, max_level, ndis = self._kernels.build(
            self._aug, q_aug, self.levels, start, self._n, self.entry_point, self.max_level,
            self.M, self.M0, self.ef_construction, self.heuristic, graph, self._visited, epoch)
        self._epoch = int(epoch[0])
        self.entry_point, self.max_level = int(ep), int(max_level)
        self.build_ndis += int(ndis)
        up_deg, up_off = graph[3], graph[4]
        self.deg_upper = [up_deg[up_off[v] : up_off[v + 1]].tolist() for v in range(self._n)]

    # ------------------------------------------------------------------ search
    def knn_search(self, q: np.ndarray, k: int, ef: int) -> tuple[list[float], list[int]]:
        """Algorithm 5, K-NN-SEARCH for one query: greedy descent, then a beam of max(ef, k) on layer 0."""
        self._ndis = 0
        q_aug = self.augment(q)
        ep = self.entry_point
        ep_dist = float(self.distances(q_aug, [ep])[0])
        for lc in range(self.max_level, 0, -1):
            ep, ep_dist = self.greedy_closest(q_aug, ep, ep_dist, lc)
        found = self.search_layer(q_aug, [(ep_dist, ep)], max(ef, k), 0)[:k]
        self.count(self._ndis)
        return [d for d, _ in found], [e for _, e in found]

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        ef = search_params(params, {"ef": 10})["ef"]
        if isinstance(ef, bool) or not isinstance(ef, (int, np.integer)) or ef < 1:
            raise ValueError(f"ef must be a positive int, got {ef!r}")
        k_eff = min(k, self._n)
        if self._kernels is not None:
            epoch = np.array([self._epoch], dtype=np.int64)
            D64, I, ndis = self._kernels.search_batch(
                self._aug, Q, self.metric == "l2", k_eff, int(ef), self.entry_point, self.max_level,
                self._graph if self._graph is not None else self._flat_graph(), self._visited, epoch)
            self._epoch = int(epoch[0])
            self.count(ndis)
            D = D64.astype(np.float32)
            return (-D, I) if self.metric == "ip" else (np.maximum(D, 0.0), I)
        D = np.full((len(Q), k_eff), np.inf, dtype=np.float32)
        I = np.full((len(Q), k_eff), -1, dtype=np.int64)
        for row, q in enumerate(Q):
            dists, ids = self.knn_search(q, k_eff, int(ef))
            D[row, : len(ids)] = dists
            I[row, : len(ids)] = ids
        if self.metric == "ip":
            D = -D  # stored as distance = -q.x; report the inner product, larger is better
        else:
            np.maximum(D, 0.0, out=D)  # the expansion can round a tiny distance below 0
        return D, I

    # ------------------------------------------------------------------ inspection
    def layer_graph(self, level: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, links) of one layer: the ids on it and their (len(nodes), Mmax) -1-padded lists."""
        nodes = np.flatnonzero(self.levels[: self._n] >= level)
        if level == 0:
            return nodes, self.links0[: self._n].copy()
        links = np.stack([self.links_upper[v][level - 1] for v in nodes]) if len(nodes) else np.zeros((0, self.M), np.int32)
        return nodes, links

    def degrees(self, level: int = 0) -> np.ndarray:
        """Out-degree of every node on ``level``."""
        nodes, links = self.layer_graph(level)
        return (links[nodes] >= 0).sum(1) if level == 0 else (links >= 0).sum(1)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {
            "M": self.M,
            "ef_construction": self.ef_construction,
            "seed": self.seed,
            "heuristic": self.heuristic,
            "backend": self.backend,
            "entry_point": self.entry_point,
            "max_level": self.max_level,
            "build_ndis": self.build_ndis,
        }
        n = self._n
        upper = [self.links_upper[v] for v in range(n) if self.levels[v] > 0]
        arrays = {
            "xb": self.xb[:n],
            "levels": self.levels[:n],
            "links0": self.links0[:n],
            # every node's (level, M) block, stacked in node order: hnswlib's linkLists_
            "links_upper": np.vstack(upper) if upper else np.zeros((0, self.M), np.int32),
            "rng_state": np.frombuffer(repr(self.rng.bit_generator.state).encode(), dtype=np.uint8),
        }
        return params, arrays

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> HNSWIndex:
        index = cls(d, M=params["M"], ef_construction=params["ef_construction"], metric=metric, seed=params["seed"],
                    heuristic=params["heuristic"], backend=params["backend"])
        xb = arrays["xb"].astype(np.float32)
        n = len(xb)
        index._grow(n)
        index.xb = xb
        X64 = xb.astype(np.float64)
        extra = np.sum(X64**2, axis=1, keepdims=True) if metric == "l2" else np.zeros((n, 1))
        index._aug = np.hstack([X64, extra, np.ones((n, 1))])
        index._n = n
        index.levels = arrays["levels"].astype(np.int32)
        index.links0 = arrays["links0"].astype(np.int32)
        index.deg0 = (index.links0 >= 0).sum(1).astype(np.int32)
        blocks = np.split(arrays["links_upper"].astype(np.int32), np.cumsum(index.levels)[:-1]) if n else []
        index.links_upper = [b.copy() for b in blocks]
        index.deg_upper = [(b >= 0).sum(1).tolist() for b in index.links_upper]
        index.entry_point, index.max_level = params["entry_point"], params["max_level"]
        index.build_ndis = params["build_ndis"]
        import ast

        index.rng.bit_generator.state = ast.literal_eval(arrays["rng_state"].tobytes().decode())
        return index
