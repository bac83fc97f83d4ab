"""Vamana, the graph behind DiskANN, and DiskANN's SSD-resident beam search.

Subramanya, Devvrit, Kadekodi, Krishnaswamy, Simhadri, *DiskANN: fast accurate
billion-point nearest neighbor search on a single node*, NeurIPS 2019.  The
functions map onto the paper's algorithms:

* :func:`greedy_search` is Algorithm 1, ``GreedySearch(s, x_q, k, L)``, with a
  beam of ``W`` nodes expanded per round (Section 3.3, "beam search");
* :func:`robust_prune` is Algorithm 2, ``RobustPrune(p, V, alpha, R)``;
* :func:`vamana_pass` is Algorithm 3, the Vamana indexing loop; :class:`VamanaIndex`
  runs it twice, with ``alpha = 1`` and then ``alpha > 1``, from a random
  R-regular graph, as the paper does;
* :class:`DiskANNIndex` lays the graph out on "disk": one fixed-size record per
  node (full-precision vector + neighbour list) in 4 KB sectors of an
  ``np.memmap`` file, PQ codes of every vector in RAM to steer the search, and
  exact re-ranking with the vectors that arrived in the same sector reads.

Distances are **squared** L2 throughout, as in DiskANN's C++ code, so the
prune rule ``alpha * d(p*, p') <= d(p, p')`` compares *squared* distances:
``alpha = 1.2`` on squared distances is ``sqrt(1.2) = 1.095`` on plain ones.

Where the paper and DiskANN's code (``src/index.cpp``) differ, this module
follows the paper; the lesson lists the differences (the code starts from an
empty graph, runs one pass, steps alpha 1, 1.2, 1.44, ... inside the prune,
caps the candidate pool at 750 and lets reverse lists grow to 1.3 R before
pruning them).
"""

from __future__ import annotations

import bisect
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import Index, search_params
from .pq import ProductQuantizer, adc_distances
from ..validate import check_int, check_number

#: Size of one disk sector (bytes): the unit an SSD reads, and DiskANN's alignment.
SECTOR_BYTES = 4096


# =============================================================================== the graph algorithms
def squared_distances(X: np.ndarray, x2: np.ndarray, ids: np.ndarray, q: np.ndarray, q2: float) -> np.ndarray:
    """Squared L2 distances from ``q`` to the rows ``X[ids]``: one gather and one matvec.

    Uses ``||x||^2 - 2 x.q + ||q||^2`` with the norms ``x2`` precomputed (float32, (len(ids),)).
    Rounding can make a near-zero distance slightly negative; the ranking is unaffected.
    """
    return x2[ids] - 2.0 * (X[ids] @ q) + q2


def medoid(X: np.ndarray) -> int:
    """The entry point: the point closest to the centroid of ``X``.

    The paper starts every search at the medoid; DiskANN's code
    (``calculate_entry_point``) uses the point nearest the mean, which is
    O(n d) instead of O(n^2 d).  We do the same.
    """
    centre = X.mean(axis=0)
    return int(np.argmin(((X - centre) ** 2).sum(axis=1)))


def random_regular_graph(n: int, R: int, rng: np.random.Generator) -> np.ndarray:
    """Random directed graph: every node gets ``min(R, n - 1)`` distinct out-neighbours, never itself.

    Returns int32 (n, R), padded with -1 when n - 1 < R.
    """
    r = min(R, n - 1)
    out = np.full((n, R), -1, dtype=np.int32)
    if r <= 0:
        return out
    nbrs = rng.integers(0, n - 1, size=(n, r))
    nbrs += nbrs >= np.arange(n)[:, None]  # skip the node itself: values >= i shift up by one
    # redraw the (few) rows that drew a neighbour twice
    dup = np.flatnonzero((np.diff(np.sort(nbrs, axis=1), axis=1) == 0).any(axis=1))
    for i in dup.tolist():
        others = np.delete(np.arange(n), i)
        nbrs[i] = rng.choice(others, size=r, replace=False)
    out[:, :r] = nbrs
    return out


class CandidateList:
    """The search list of Algorithm 1 (DiskANN's ``NeighborPriorityQueue``).

    At most ``L`` (id, distance) pairs sorted by distance, each flagged
    expanded or not, and a cursor at the nearest unexpanded one.  Inserting
    a node nearer than the cursor moves the cursor back, so the next
    expansion always takes the nearest unexpanded candidate.
    """

    def __init__(self, L: int) -> None:
        self.L = L
        self.ids: list[int] = []
        self.dists: list[float] = []
        self.expanded: list[bool] = []
        self.cursor = 0

    def insert(self, ids: list[int], dists: list[float]) -> None:
        """Insert candidates; those no better than the worst of a full list are dropped."""
        L, all_ids, all_d, expanded = self.L, self.ids, self.dists, self.expanded
        worst = all_d[-1] if len(all_ids) >= L else math.inf
        for v, dv in zip(ids, dists):
            if dv >= worst:
                continue
            at = bisect.bisect_right(all_d, dv)  # keep the list sorted by distance
            all_ids.insert(at, v)
            all_d.insert(at, dv)
            expanded.insert(at, False)
            if at < self.cursor:
                self.cursor = at
            if len(all_ids) > L:
                all_ids.pop(), all_d.pop(), expanded.pop()
            if len(all_ids) == L:
                worst = all_d[-1]

    def closest_unexpanded(self, W: int) -> list[tuple[int, float]]:
        """Mark the (up to) ``W`` nearest unexpanded candidates expanded and return them; [] at a fixed point."""
        ids, expanded = self.ids, self.expanded
        while self.cursor < len(ids) and expanded[self.cursor]:
            self.cursor += 1
        out, pos = [], self.cursor
        while pos < len(ids) and len(out) < W:
            if not expanded[pos]:
                expanded[pos] = True
                out.append((ids[pos], self.dists[pos]))
            pos += 1
        return out


@dataclass
class SearchResult:
    """What one :func:`greedy_search` found and what it cost.

    ids, dists : the candidate list at the end, sorted by distance (at most L entries).
    visited, visited_dists : the expanded nodes V (the paper's "visited set") and their distances.
    hops : rounds of expansion (W nodes per round; with W = 1 the number of expanded nodes).
    ndis : distances computed.
    """

    ids: list[int]
    dists: list[float]
    visited: list[int]
    visited_dists: list[float]
    hops: int
    ndis: int


def unseen(lists: Any, seen: set[int]) -> list[int]:
    """The ids in ``lists`` (an iterable of id lists) not in ``seen``, each once; adds them to ``seen``."""
    out = []
    for ids in lists:
        for v in ids:
            if v not in seen:
                seen.add(v)
                out.append(v)
    return out


def greedy_search(
    X: np.ndarray,
    x2: np.ndarray,
    adjacency: Sequence[list[int]],
    start: int,
    q: np.ndarray,
    L: int,
    beam_width: int = 1,
) -> SearchResult:
    """GreedySearch(s, x_q, k, L) (Algorithm 1), expanding ``beam_width`` nodes per round.

    Keep a list of the ``L`` nearest nodes seen so far, sorted by distance to
    ``q``.  Repeatedly take the nearest node not expanded yet (the W nearest,
    for a beam), mark it visited and insert its out-neighbours into the list;
    stop when every node in the list has been expanded.

    Parameters
    ----------
    X : (n, d) float32 vectors; x2 : (n,) their squared norms.
    adjacency : the out-neighbour list of every node (Python lists: walking a graph
        node by node is faster on lists than on rows of the (n, R) matrix).
    start : the entry point (the medoid).
    q : (d,) the query (during the build: the point being inserted).
    L : the list size (search complexity); larger finds more and costs more.
    beam_width : W, nodes expanded per round (DiskANN reads them from disk in one round trip).
    """
    q2 = float(q @ q)
    cands = CandidateList(L)
    cands.insert([start], squared_distances(X, x2, np.array([start]), q, q2).tolist())
    seen = {start}  # every node whose distance is known
    visited, visited_dists = [], []
    hops, ndis = 0, 1
    while frontier := cands.closest_unexpanded(beam_width):
        hops += 1
        for p, dp in frontier:
            visited.append(p)
            visited_dists.append(dp)
        # the frontier's out-neighbours not seen yet: one gather + matvec for all of them
        nbrs = unseen((adjacency[p] for p, _ in frontier), seen)
        if nbrs:
            cands.insert(nbrs, squared_distances(X, x2, np.array(nbrs), q, q2).tolist())
            ndis += len(nbrs)
    return SearchResult(cands.ids, cands.dists, visited, visited_dists, hops, ndis)


def robust_prune(p: int, cand_ids: np.ndarray, X: np.ndarray, alpha: float, R: int) -> np.ndarray:
    """RobustPrune(p, V, alpha, R) (Algorithm 2): choose at most R diverse out-neighbours of p.

    Take the candidates in order of distance to p.  The nearest one, p*, is
    kept; then every candidate p' with ``alpha * d(p*, p') <= d(p, p')`` is
    dropped: p' is (alpha-)closer to p* than to p, so a search reaches it
    through p*.  Repeat with the nearest survivor until R are kept or none is
    left.  alpha = 1 keeps a sparse, "relative neighbourhood" graph; alpha > 1
    drops less, keeping some long edges that cut the number of hops.

    Parameters
    ----------
    p : the node whose out-neighbours are chosen (never its own neighbour).
    cand_ids : (m,) candidate ids (may contain p and repeats; both are ignored).
    X : (n, d) float32 vectors.
    alpha : >= 1, compared with **squared** distances (as in DiskANN's code).
    R : maximum out-degree.

    Returns
    -------
    (<= R,) int64 kept ids, in the order they were chosen (nearest first).
    """
    cand = np.unique(np.asarray(cand_ids, dtype=np.int64))
    cand = cand[cand != p]
    if len(cand) == 0:
        return cand
    Xc = X[cand]
    d_p = ((Xc - X[p]) ** 2).sum(axis=1)  # d(p, p') squared, (m,)
    order = np.argsort(d_p, kind="stable")
    cand, Xc, d_p = cand[order], Xc[order], d_p[order]
    # all candidate-to-candidate distances at once: one (m, m) matrix
    c2 = (Xc**2).sum(axis=1)
    D = np.maximum(c2[:, None] + c2[None, :] - 2.0 * (Xc @ Xc.T), 0.0)
    # occludes[i, j]: keeping candidate i drops candidate j, as alpha * d(i, j) <= d(p, j)
    occludes = alpha * D <= d_p[None, :]
    alive = np.ones(len(cand), dtype=bool)
    kept: list[int] = []
    while len(kept) < R:
        star = int(np.argmax(alive))  # p*: the nearest candidate still alive (the first True)
        if not alive[star]:
            break  # none left
        kept.append(int(cand[star]))
        alive[star] = False
        alive &= ~occludes[star]
    return np.array(kept, dtype=np.int64)


def adjacency_lists(neighbors: np.ndarray, degrees: np.ndarray) -> list[list[int]]:
    """The (n, R) padded neighbour matrix as n Python lists (what the graph walks use)."""
    return [row[:deg].tolist() for row, deg in zip(neighbors, degrees.tolist())]


def adjacency_arrays(adjacency: Sequence[list[int]], R: int) -> tuple[np.ndarray, np.ndarray]:
    """n neighbour lists as an int32 (n, R) matrix padded with -1, and the int32 (n,) degrees."""
    neighbors = np.full((len(adjacency), R), -1, dtype=np.int32)
    degrees = np.array([len(a) for a in adjacency], dtype=np.int32)
    for i, a in enumerate(adjacency):
        neighbors[i, : len(a)] = a
    return neighbors, degrees


class VamanaGraph:
    """The graph during a build: vectors, out-neighbour lists N_out(p), the entry point s, and R."""

    def __init__(self, X: np.ndarray, adjacency: list[list[int]], start: int, R: int) -> None:
        self.X = X
        self.x2 = (X.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
        self.adj = adjacency
        self.start = start
        self.R = R
        self.build_ndis = 0  # distances computed while building

    def insert(self, p: int, L: int, alpha: float) -> None:
        """One iteration of Algorithm 3 for node p: search, prune, then add reverse edges."""
        R, adj = self.R, self.adj
        found = greedy_search(self.X, self.x2, adj, self.start, self.X[p], L)
        self.build_ndis += found.ndis
        # N_out(p) <- RobustPrune(p, V ∪ N_out(p), alpha, R)
        adj[p] = robust_prune(p, np.array(found.visited + adj[p]), self.X, alpha, R).tolist()
        for j in adj[p]:
            if p in adj[j]:
                continue
            if len(adj[j]) < R:  # room left: just add the reverse edge j -> p
                adj[j].append(p)
            else:  # N_out(j) ∪ {p} would exceed R: prune it back to R
                adj[j] = robust_prune(j, np.array(adj[j] + [p]), self.X, alpha, R).tolist()


def vamana_pass(graph: VamanaGraph, order: np.ndarray, L: int, alpha: float) -> None:
    """Algorithm 3, one pass: insert every node of ``order`` (a random permutation)."""
    for p in order.tolist():
        graph.insert(p, L, alpha)


def reachable_from(neighbors: np.ndarray, degrees: np.ndarray, start: int) -> np.ndarray:
    """Boolean (n,): the nodes a search from ``start`` can reach (breadth-first search)."""
    n = len(degrees)
    seen = np.zeros(n, dtype=bool)
    seen[start] = True
    layer = np.array([start])
    while len(layer):
        nxt = neighbors[layer].ravel()
        nxt = np.unique(nxt[nxt >= 0])
        nxt = nxt[~seen[nxt]]
        seen[nxt] = True
        layer = nxt
    return seen


# =============================================================================== in-memory index
def _check_build_params(R: Any, L: Any, alpha: Any, passes: Any) -> None:
    for name, value in (("R", R), ("L", L), ("passes", passes)):
        check_int(value, name, low=1)
    check_number(alpha, "alpha", low=1)


def _check_positive_int(name: str, value: Any) -> int:
    return check_int(value, name, low=1)


class VamanaIndex(Index):
    """The Vamana graph index, in memory (DiskANN's ``Index`` class, paper's build).

    Build (:meth:`add`): start from a random R-regular graph, take the medoid
    as entry point, and run :func:`vamana_pass` ``passes`` times over a random
    order of the points: first with ``alpha = 1``, the last with ``alpha``.
    Search: :func:`greedy_search` from the medoid with list size ``L`` (and
    beam width W); the k nearest of the final list are returned.

    Parameters
    ----------
    d : dimension.
    R : maximum out-degree (DiskANN's ``-R``, default there 64).
    L : list size during the build (``-L``, default there 100); larger builds a better graph, slower.
    alpha : prune parameter >= 1 on squared distances (default 1.2, as DiskANN).
    metric : only "l2" (squared Euclidean); normalise vectors for cosine.
    seed : random start graph and insertion order.
    passes : number of passes; all but the last use alpha = 1 (the paper uses 2).

    Attributes after a search: ``last_hops`` (per query), ``stats.ndis``.
    """

    def __init__(
        self, d: int, R: int = 32, L: int = 64, alpha: float = 1.2, metric: str = "l2", seed: int = 0, passes: int = 2
    ) -> None:
        super().__init__(d, metric)
        if metric != "l2":
            raise ValueError("VamanaIndex supports metric='l2' only (normalise the vectors to search by cosine)")
        _check_build_params(R, L, alpha, passes)
        self.R, self.L, self.alpha, self.seed, self.passes = int(R), int(L), float(alpha), int(seed), int(passes)
        self.xb = np.zeros((0, d), dtype=np.float32)
        self.neighbors = np.zeros((0, self.R), dtype=np.int32)
        self.degrees = np.zeros(0, dtype=np.int32)
        self.entry = -1
        self.build_ndis = 0
        self.passes_done = 0
        self.last_hops = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ build
    def _ntotal(self) -> int:
        return len(self.xb)

    def _run_pass(self, order: np.ndarray, alpha: float) -> None:
        """One Vamana pass over ``order`` on Python adjacency lists, stored back as the (n, R) matrix."""
        graph = VamanaGraph(self.xb, adjacency_lists(self.neighbors, self.degrees), self.entry, self.R)
        vamana_pass(graph, order, self.L, alpha)
        self.neighbors, self.degrees = adjacency_arrays(graph.adj, self.R)
        self.build_ndis += graph.build_ndis

    def _add(self, X: np.ndarray) -> None:
        if len(self.xb) == 0:
            self._build(X)
            return
        # Later batches are inserted as FreshDiskANN does: one pass with alpha, the entry point kept.
        n0 = len(self.xb)
        self.xb = np.vstack([self.xb, X])
        self.neighbors = np.vstack([self.neighbors, np.full((len(X), self.R), -1, dtype=np.int32)])
        self.degrees = np.concatenate([self.degrees, np.zeros(len(X), dtype=np.int32)])
        self._run_pass(n0 + np.random.default_rng([self.seed, n0]).permutation(len(X)), self.alpha)

    def _build(self, X: np.ndarray) -> None:
        """The paper's build: random R-regular start, medoid entry, passes with alpha = 1, ..., alpha."""
        self.xb = X.copy()
        self.neighbors = random_regular_graph(len(X), self.R, np.random.default_rng(self.seed))
        self.degrees = (self.neighbors >= 0).sum(axis=1).astype(np.int32)
        self.entry = medoid(X)
        self.passes_done = 0
        for alpha in [1.0] * (self.passes - 1) + [self.alpha]:
            self.refine(alpha)

    def refine(self, alpha: float) -> VamanaIndex:
        """Run one more pass of Algorithm 3 over all points with this ``alpha``.

        Pass t inserts the points in the random order ``default_rng([seed, t])``,
        so an index built with ``passes=1`` and refined with alpha equals one
        built with ``passes=2, alpha=alpha``: an alpha ablation can share its
        first (alpha = 1) pass.
        """
        _check_build_params(self.R, self.L, alpha, 1)
        if len(self.xb) == 0:
            raise ValueError("refine() needs a built index: add() vectors first")
        self._run_pass(np.random.default_rng([self.seed, self.passes_done]).permutation(len(self.xb)), float(alpha))
        self.passes_done += 1
        self.alpha = float(alpha)
        return self

    def copy(self) -> VamanaIndex:
        """An independent copy (the graph arrays are copied, so refining it leaves this one alone)."""
        params, arrays = self._state()
        return type(self)._from_state(self.d, self.metric, params, {k: v.copy() for k, v in arrays.items()})

    # ------------------------------------------------------------------ search
    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        p = search_params(params, {"L": self.L, "beam_width": 1})
        L, W = _check_positive_int("L", p["L"]), _check_positive_int("beam_width", p["beam_width"])
        L = max(L, k)  # the list must hold k results
        x2 = (self.xb.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
        adjacency = adjacency_lists(self.neighbors, self.degrees)
        D = np.full((len(Q), k), np.inf, dtype=np.float32)
        I = np.full((len(Q), k), -1, dtype=np.int64)
        self.last_hops = np.zeros(len(Q), dtype=np.int64)
        for qi, q in enumerate(Q):
            res = greedy_search(self.xb, x2, adjacency, self.entry, q, L, W)
            self.count(res.ndis)
            self.last_hops[qi] = res.hops
            m = min(k, len(res.ids))
            I[qi, :m], D[qi, :m] = res.ids[:m], res.dists[:m]
        return D, I

    # ------------------------------------------------------------------ properties, persistence
    @property
    def bytes_per_vector(self) -> float:
        """float32 vector + R int32 neighbour slots + its degree."""
        return 4.0 * self.d + 4.0 * self.R + 4.0

    @property
    def average_degree(self) -> float:
        return float(self.degrees.mean()) if len(self.degrees) else 0.0

    def reachable_fraction(self) -> float:
        """Share of the nodes reachable from the entry point (1.0 for a usable graph)."""
        return float(reachable_from(self.neighbors, self.degrees, self.entry).mean())

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {"R": self.R, "L": self.L, "alpha": self.alpha, "seed": self.seed, "passes": self.passes,
                  "entry": self.entry, "build_ndis": self.build_ndis, "passes_done": self.passes_done}
        return params, {"xb": self.xb, "neighbors": self.neighbors, "degrees": self.degrees}

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> VamanaIndex:
        index = cls(d, R=params["R"], L=params["L"], alpha=params["alpha"], metric=metric,
                    seed=params["seed"], passes=params["passes"])
        index.xb = arrays["xb"].astype(np.float32)
        index.neighbors = arrays["neighbors"].astype(np.int32)
        index.degrees = arrays["degrees"].astype(np.int32)
        index.entry = int(params["entry"])
        index.build_ndis = int(params["build_ndis"])
        index.passes_done = int(params["passes_done"])
        return index


# =============================================================================== DiskANN: the graph on "disk"
@dataclass(frozen=True)
class DiskLayout:
    """Where each node's record lives in the disk file (DiskANN's ``_disk.index`` layout).

    A record is ``[vector: d float32][degree: uint32][neighbours: R uint32]``
    (``record_bytes = 4 d + 4 + 4 R``), zero-padded.  Records never straddle a
    sector: ``nodes_per_sector = 4096 // record_bytes`` records share one
    4 KB sector when they fit, otherwise a record takes ``sectors_per_node``
    whole sectors.  Sector 0 holds a header; node i starts in sector
    ``1 + i // nodes_per_sector`` (or ``1 + i * sectors_per_node``).
    """

    n: int
    d: int
    R: int

    @property
    def record_bytes(self) -> int:
        return 4 * self.d + 4 + 4 * self.R

    @property
    def nodes_per_sector(self) -> int:
        """Records per 4 KB sector (0 when a record needs more than one sector)."""
        return SECTOR_BYTES // self.record_bytes

    @property
    def sectors_per_node(self) -> int:
        """Sectors read to fetch one node: 1 when it fits, else ceil(record / 4096)."""
        return 1 if self.nodes_per_sector else -(-self.record_bytes // SECTOR_BYTES)

    @property
    def n_sectors(self) -> int:
        """Sectors in the file, header included."""
        body = -(-self.n // self.nodes_per_sector) if self.nodes_per_sector else self.n * self.sectors_per_node
        return 1 + body

    def locate(self, i: int) -> tuple[int, int]:
        """(first sector, byte offset inside it) of node i's record."""
        if self.nodes_per_sector:
            return 1 + i // self.nodes_per_sector, (i % self.nodes_per_sector) * self.record_bytes
        return 1 + i * self.sectors_per_node, 0


def write_disk_index(
    path: str | Path, X: np.ndarray, neighbors: np.ndarray, degrees: np.ndarray, entry: int
) -> DiskLayout:
    """Write the graph and full-precision vectors as fixed-size node records (see :class:`DiskLayout`)."""
    n, d = X.shape
    layout = DiskLayout(n=n, d=d, R=neighbors.shape[1])
    mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=(layout.n_sectors, SECTOR_BYTES))
    header = np.array([n, d, layout.R, entry, layout.record_bytes, layout.nodes_per_sector], dtype=np.uint64)
    mm[0, : header.nbytes] = header.view(np.uint8)
    records = np.zeros((n, layout.record_bytes), dtype=np.uint8)
    records[:, : 4 * d] = np.ascontiguousarray(X, dtype=np.float32).view(np.uint8)
    records[:, 4 * d : 4 * d + 4] = degrees.astype(np.uint32)[:, None].view(np.uint8)
    # the -1 padding is written as 0: the degree says how many slots are real
    records[:, 4 * d + 4 :] = np.maximum(neighbors, 0).astype(np.uint32).view(np.uint8)
    if layout.nodes_per_sector:
        per = layout.nodes_per_sector
        body = np.zeros((layout.n_sectors - 1) * per * layout.record_bytes, dtype=np.uint8)
        body[: n * layout.record_bytes] = records.ravel()
        body = body.reshape(layout.n_sectors - 1, per * layout.record_bytes)
        mm[1:, : per * layout.record_bytes] = body
    else:
        flat = mm[1:].reshape(n, layout.sectors_per_node * SECTOR_BYTES)
        flat[:, : layout.record_bytes] = records
    mm.flush()
    del mm
    return layout


def read_header(mm: np.ndarray) -> tuple[DiskLayout, int]:
    """The layout and entry point stored in sector 0 of a disk index."""
    n, d, R, entry, record_bytes, _ = np.asarray(mm[0, :48]).view(np.uint64).tolist()
    layout = DiskLayout(n=int(n), d=int(d), R=int(R))
    if layout.record_bytes != record_bytes:
        raise ValueError(f"corrupt disk index header: record size {record_bytes} != {layout.record_bytes}")
    return layout, int(entry)


def read_node(mm: np.ndarray, layout: DiskLayout, i: int) -> tuple[np.ndarray, list[int]]:
    """One random read: fetch the sector(s) holding node i and parse its vector and neighbours.

    ``np.array(mm[...])`` copies the whole sector out of the memory map, as a
    ``pread`` of 4 KB would; the caller counts it as ``layout.sectors_per_node`` IOs.
    """
    sector, offset = layout.locate(i)
    block = np.array(mm[sector : sector + layout.sectors_per_node]).ravel()  # the IO
    rec = block[offset : offset + layout.record_bytes]
    d = layout.d
    vector = rec[: 4 * d].view(np.float32)
    degree = int(rec[4 * d : 4 * d + 4].view(np.uint32)[0])
    nbrs = rec[4 * d + 4 : 4 * d + 4 + 4 * degree].view(np.uint32).tolist()
    return vector, nbrs


@dataclass
class DiskSearchResult:
    """One query's disk beam search: reranked ids and distances, and its cost."""

    ids: list[int]
    dists: list[float]
    ios: int  # sectors read
    round_trips: int  # rounds of W parallel reads
    pq_dis: int  # ADC (code) distances computed
    exact_dis: int  # full-precision distances computed


def disk_beam_search(
    mm: np.ndarray,
    layout: DiskLayout,
    entry: int,
    codes: np.ndarray,
    table: np.ndarray,
    q: np.ndarray,
    k: int,
    L: int,
    beam_width: int = 4,
    rerank: bool = True,
) -> DiskSearchResult:
    """DiskANN's search (``PQFlashIndex::cached_beam_search``, without the node cache).

    The candidate list is ordered by **PQ distances** (ADC, from the codes in
    RAM).  Each round reads the W nearest unexpanded nodes from disk, W reads in
    flight at once: one round trip.  A node's record brings its neighbour
    list (whose PQ distances feed the list) *and* its full-precision vector,
    whose exact distance to q is kept for the final re-rank at no extra IO.

    Parameters
    ----------
    mm : the (n_sectors, 4096) uint8 memory map of the disk file; layout, entry: from its header.
    codes : (n, m) uint8 PQ codes of every node (in RAM); table : (m, ksub) the query's ADC table.
    q : (d,) float32 query.  k : results.  L : list size.  beam_width : W reads per round trip.
    rerank : return the k nearest read nodes by exact distance (True) or the list's PQ order (False).
    """
    cands = CandidateList(L)
    cands.insert([entry], adc_distances(codes[[entry]], table).tolist())  # PQ distance, from RAM
    seen = {entry}
    exact: list[tuple[float, int]] = []
    ios = round_trips = 0
    pq_dis = 1
    while frontier := cands.closest_unexpanded(beam_width):
        round_trips += 1
        lists = []
        for p, _ in frontier:  # W reads issued together: one round trip
            vector, p_nbrs = read_node(mm, layout, p)
            ios += layout.sectors_per_node
            exact.append((float(((vector - q) ** 2).sum()), p))  # full precision, already in RAM
            lists.append(p_nbrs)
        nbrs = unseen(lists, seen)
        if nbrs:
            ids = np.array(nbrs)
            cands.insert(nbrs, adc_distances(codes[ids], table).tolist())
            pq_dis += len(nbrs)
    if rerank:
        exact.sort()
        top = exact[:k]
        return DiskSearchResult([i for _, i in top], [dv for dv, _ in top], ios, round_trips, pq_dis, len(exact))
    return DiskSearchResult(cands.ids[:k], cands.dists[:k], ios, round_trips, pq_dis, len(exact))


class DiskANNIndex(Index):
    """DiskANN: a Vamana graph whose vectors and neighbour lists live on (simulated) SSD.

    RAM holds only the PQ codes (``pq_m`` bytes per vector), the codebooks and
    the entry point; the disk file holds one record per node (see
    :class:`DiskLayout`).  A search costs ``ios`` 4 KB random reads in
    ``round_trips`` rounds of ``beam_width`` parallel reads; both are
    recorded per query in ``last_ios`` and ``last_round_trips``.

    ::

        index = DiskANNIndex(d, R=32, L=64, alpha=1.2, pq_m=8, path="idx.disk")
        index.train(X)            # PQ codebooks
        index.add(X)              # Vamana build in RAM, then the disk file is written
        D, I = index.search(Q, 10, L=32, beam_width=4)
        index.last_ios.mean()     # sectors read per query

    Or lay out an existing in-memory graph: ``DiskANNIndex.from_vamana(vamana, pq, path)``.

    Parameters
    ----------
    d, R, L, alpha, seed, passes : as :class:`VamanaIndex`.
    pq_m, pq_nbits : the ProductQuantizer steering the search (``pq_m`` bytes per code).
    path : the disk file; default: a file in a temporary folder removed with the index.
    """

    needs_training = True

    def __init__(self, d: int, R: int = 32, L: int = 64, alpha: float = 1.2, pq_m: int = 8, pq_nbits: int = 8,
                 metric: str = "l2", seed: int = 0, passes: int = 2, path: str | Path | None = None) -> None:
        super().__init__(d, metric)
        if metric != "l2":
            raise ValueError("DiskANNIndex supports metric='l2' only")
        _check_build_params(R, L, alpha, passes)
        self.R, self.L, self.alpha, self.seed, self.passes = int(R), int(L), float(alpha), int(seed), int(passes)
        self.pq = ProductQuantizer(d, pq_m, pq_nbits)
        self._tmpdir = None
        if path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="diskann_")
            path = Path(self._tmpdir.name) / "index.disk"
        self.path = Path(path)
        self.codes = np.zeros((0, pq_m), dtype=np.uint8)
        self.layout: DiskLayout | None = None
        self.entry = -1
        self._mm: np.ndarray | None = None
        self.last_ios = np.zeros(0, dtype=np.int64)
        self.last_round_trips = np.zeros(0, dtype=np.int64)

    @classmethod
    def from_vamana(cls, graph: VamanaIndex, pq: ProductQuantizer, path: str | Path | None = None) -> DiskANNIndex:
        """Lay out a built :class:`VamanaIndex` on disk, steered by a trained ProductQuantizer."""
        if graph.ntotal == 0:
            raise ValueError("the VamanaIndex is empty: add() vectors first")
        if pq.centroids is None or pq.d != graph.d:
            raise ValueError(f"need a ProductQuantizer trained on d={graph.d} vectors")
        index = cls(graph.d, R=graph.R, L=graph.L, alpha=graph.alpha, pq_m=pq.m, pq_nbits=pq.nbits,
                    seed=graph.seed, passes=graph.passes, path=path)
        index.pq = pq
        index.is_trained = True
        index._write(graph)
        return index

    # ------------------------------------------------------------------ build
    def _ntotal(self) -> int:
        return len(self.codes)

    def _train(self, X: np.ndarray) -> None:
        self.pq.train(X)

    def _add(self, X: np.ndarray) -> None:
        if self.layout is not None:
            raise ValueError("a DiskANNIndex is written once: build a new index with all the vectors")
        graph = VamanaIndex(self.d, R=self.R, L=self.L, alpha=self.alpha, seed=self.seed, passes=self.passes)
        graph.add(X)
        self._write(graph)

    def _write(self, graph: VamanaIndex) -> None:
        self.codes = self.pq.compute_codes(graph.xb)
        self.entry = graph.entry
        self.layout = write_disk_index(self.path, graph.xb, graph.neighbors, graph.degrees, graph.entry)
        self._open()

    def _open(self) -> None:
        if not self.path.exists():
            raise ValueError(f"no disk index file at {self.path}")
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r").reshape(-1, SECTOR_BYTES)
        self.layout, self.entry = read_header(self._mm)

    # ------------------------------------------------------------------ search
    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        p = search_params(params, {"L": self.L, "beam_width": 4, "rerank": True})
        L, W = _check_positive_int("L", p["L"]), _check_positive_int("beam_width", p["beam_width"])
        L = max(L, k)
        assert self._mm is not None and self.layout is not None
        tables = self.pq.adc_tables(Q)
        D = np.full((len(Q), k), np.inf, dtype=np.float32)
        I = np.full((len(Q), k), -1, dtype=np.int64)
        self.last_ios = np.zeros(len(Q), dtype=np.int64)
        self.last_round_trips = np.zeros(len(Q), dtype=np.int64)
        for qi, q in enumerate(Q):
            res = disk_beam_search(self._mm, self.layout, self.entry, self.codes, tables[qi], q, k, L, W,
                                   bool(p["rerank"]))
            self.count(res.pq_dis + res.exact_dis)
            self.last_ios[qi], self.last_round_trips[qi] = res.ios, res.round_trips
            m = len(res.ids)
            I[qi, :m], D[qi, :m] = res.ids, res.dists
        return D, I

    # ------------------------------------------------------------------ sizes, persistence
    @property
    def bytes_per_vector(self) -> float:
        """RAM per vector: the PQ code (the codebooks are a fixed cost on top)."""
        return float(self.pq.code_size)

    @property
    def disk_bytes_per_vector(self) -> float:
        """Disk per vector: the file size over n (records, padding and header)."""
        return self.path.stat().st_size / max(self.ntotal, 1)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {"R": self.R, "L": self.L, "alpha": self.alpha, "seed": self.seed, "passes": self.passes,
                  "pq_m": self.pq.m, "pq_nbits": self.pq.nbits, "path": str(self.path)}
        arrays = {"codes": self.codes}
        if self.pq.centroids is not None:
            arrays["centroids"] = self.pq.centroids
        return params, arrays

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> DiskANNIndex:
        """The RAM part comes from the .npz; the disk file is reopened where it was written."""
        index = cls(d, R=params["R"], L=params["L"], alpha=params["alpha"], pq_m=params["pq_m"],
                    pq_nbits=params["pq_nbits"], metric=metric, seed=params["seed"], passes=params["passes"],
                    path=params["path"])
        if "centroids" in arrays:
            index.pq.centroids = arrays["centroids"].astype(np.float32)
        index.codes = arrays["codes"].astype(np.uint8)
        if len(index.codes):
            index._open()
        return index
