"""Compiled kernels for :class:`course_lib.ann.hnsw.HNSWIndex` (``backend="numba"``).

The same algorithms as the readable numpy backend in :mod:`.hnsw`, on the same
arrays, taking the same decisions, so that for the same seed the graph
(neighbour lists, levels, entry point) and the search results are identical.
Only the bookkeeping changes:

* the heaps of Algorithm 2 are binary heaps on preallocated arrays
  (``heapq`` on Python tuples in the numpy backend).  Items are compared as
  (key, id) pairs, exactly as ``heapq`` compares ``(distance, id)`` tuples;
* a node's upper-layer lists are rows of one flat int32 matrix ``up_links``:
  node v's list on level l >= 1 is row ``up_off[v] + l - 1`` (the numpy
  backend's per-node ``links_upper[v]`` blocks are views of these rows);
* distances are the same float64 dot products of augmented vectors
  (``[x, ||x||^2, 1] . [-2q, 1, ||q||^2]``), and ``np.dot`` here calls a BLAS
  ``gemv`` as numpy's ``@`` does, so they agree to the last bit (numba uses
  scipy's OpenBLAS, numpy its own; on the machines tested the two agree).
  The heuristic's candidate-to-candidate distances are a plain loop where
  numpy uses ``einsum``: they may differ in the last bit, which could only
  flip a comparison between two distances equal to ~1e-15 relative;
* levels are not drawn here: the caller draws them with the index's numpy
  generator, in insertion order, before calling :func:`build`.

``graph`` below is the tuple ``(links0, deg0, up_links, up_deg, up_off)``.

=================================  ===========================================
this module                        paper (Malkov & Yashunin)
=================================  ===========================================
:func:`search_layer`               Algorithm 2, SEARCH-LAYER
:func:`greedy_closest`             SEARCH-LAYER with ef = 1 (upper layers)
:func:`select_heuristic`           Algorithm 4, SELECT-NEIGHBORS-HEURISTIC
:func:`connect`                    Algorithm 1, lines 9-17
:func:`build`                      Algorithm 1, INSERT, for a batch of nodes
:func:`search_batch`               Algorithm 5, K-NN-SEARCH, for a batch of queries
=================================  ===========================================
"""

from __future__ import annotations

import numpy as np
from numba import njit

EPOCH_MAX = int(np.iinfo(np.uint32).max)


# --------------------------------------------------------------------------- graph access
@njit(cache=False)
def _row(node, level, graph):
    """(list, degree) of ``node`` on ``level``: the -1-padded row and how many slots are used."""
    links0, deg0, up_links, up_deg, up_off = graph
    if level == 0:
        return links0[node], deg0[node]
    r = up_off[node] + level - 1
    return up_links[r], up_deg[r]


@njit(cache=False)
def _set_list(node, level, ids, count, graph):
    """Replace ``node``'s list on ``level`` by ``ids[:count]`` (the numpy backend's ``set_neighbours``)."""
    links0, deg0, up_links, up_deg, up_off = graph
    if level == 0:
        row = links0[node]
        deg0[node] = count
    else:
        r = up_off[node] + level - 1
        row = up_links[r]
        up_deg[r] = count
    for j in range(row.shape[0]):
        row[j] = ids[j] if j < count else -1


# --------------------------------------------------------------------------- distances
@njit(cache=False)
def _distances(aug, ids, count, q, rows, out):
    """Distances from the augmented query ``q`` to ``ids[:count]``, written to ``out[:count]``.

    Gather the rows, then one BLAS gemv: the very call numpy makes for
    ``aug[ids] @ q``, hence the same rounding (a hand-written loop would sum
    in another order and could flip a near tie).
    """
    width = aug.shape[1]
    for j in range(count):
        e = ids[j]
        for t in range(width):
            rows[j, t] = aug[e, t]
    np.dot(rows[:count], q, out[:count])
    return out


@njit(cache=False)
def _distance(aug, node, q):
    """Distance from ``q`` to one node (a 1-row gemv, as ``aug[[node]] @ q`` in numpy)."""
    return np.dot(aug[node : node + 1], q)[0]


# --------------------------------------------------------------------------- binary min-heap on (key, id)
@njit(cache=False)
def _less(k1, i1, k2, i2):
    """(k1, i1) < (k2, i2), as Python compares tuples."""
    return k1 < k2 or (k1 == k2 and i1 < i2)


@njit(cache=False)
def _sift_down(keys, ids, size, pos, key, idx):
    """Put (key, idx) at ``pos`` and move it down until both children are larger."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _less(keys[child + 1], ids[child + 1], keys[child], ids[child]):
            child += 1
        if not _less(keys[child], ids[child], key, idx):
            break
        keys[pos] = keys[child]
        ids[pos] = ids[child]
        pos = child
    keys[pos] = key
    ids[pos] = idx


@njit(cache=False)
def heap_push(keys, ids, size, key, idx):
    """heapq.heappush: add (key, idx) to the heap ``keys[:size], ids[:size]``; returns the new size."""
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if not _less(key, idx, keys[parent], ids[parent]):
            break
        keys[pos] = keys[parent]
        ids[pos] = ids[parent]
        pos = parent
    keys[pos] = key
    ids[pos] = idx
    return size + 1


@njit(cache=False)
def heap_pop(keys, ids, size):
    """heapq.heappop: remove the smallest item (read it at [0] first); returns the new size."""
    size -= 1
    if size > 0:
        _sift_down(keys, ids, size, 0, keys[size], ids[size])
    return size


@njit(cache=False)
def heap_replace(keys, ids, size, key, idx):
    """heapq.heapreplace: the smallest item leaves, (key, idx) enters."""
    _sift_down(keys, ids, size, 0, key, idx)


@njit(cache=False)
def _sort_pairs(keys, ids, count):
    """Insertion sort of ``(keys, ids)[:count]`` by (key, id): Python's ``sorted`` on tuples."""
    for i in range(1, count):
        k, e = keys[i], ids[i]
        j = i - 1
        while j >= 0 and _less(k, e, keys[j], ids[j]):
            keys[j + 1] = keys[j]
            ids[j + 1] = ids[j]
            j -= 1
        keys[j + 1] = k
        ids[j + 1] = e


# --------------------------------------------------------------------------- workspace
@njit(cache=False)
def _new_epoch(visited, epoch_box):
    """A fresh visited tag (the numpy backend's ``_new_epoch``): no clearing between searches."""
    epoch_box[0] += 1
    if epoch_box[0] == EPOCH_MAX:
        visited[:] = 0
        epoch_box[0] = 1
    return epoch_box[0]


@njit(cache=False)
def make_workspace(n, ef, m0, width):
    """Scratch arrays reused by every search: heaps, results, gathered rows."""
    cand_d = np.empty(n + 1, np.float64)  # every node enters the candidate heap at most once
    cand_i = np.empty(n + 1, np.int64)
    w_d = np.empty(ef + 1, np.float64)  # W: at most ef elements
    w_i = np.empty(ef + 1, np.int64)
    rows = np.empty((m0 + 1, width), np.float64)  # gathered augmented rows of one neighbour list
    nbr = np.empty(m0 + 1, np.int64)  # unvisited neighbours of the node being expanded
    dist = np.empty(m0 + 1, np.float64)  # their distances
    return cand_d, cand_i, w_d, w_i, rows, nbr, dist


# --------------------------------------------------------------------------- searching one layer
@njit(cache=False)
def greedy_closest(aug, q, ep, ep_dist, level, graph, rows, buf):
    """SEARCH-LAYER with ef = 1: move to the closest neighbour while it improves.

    Returns (node, distance, distances computed).
    """
    node, dist, ndis = ep, ep_dist, 0
    while True:
        row, deg = _row(node, level, graph)
        if deg == 0:
            break
        dists = _distances(aug, row, deg, q, rows, buf)
        ndis += deg
        best = 0  # np.argmin: the first index of the minimum
        for j in range(1, deg):
            if dists[j] < dists[best]:
                best = j
        if dists[best] >= dist:
            break
        node, dist = row[best], dists[best]
    return node, dist, ndis


@njit(cache=False)
def search_layer(aug, q, ep, ep_dist, ef, level, graph, visited, epoch_box, ws, out_d, out_i):
    """Algorithm 2, SEARCH-LAYER from one entry point; writes W into ``out_d, out_i``, closest first.

    ``C`` (candidates) is a min-heap on (distance, id); ``W`` (the ef nearest
    found so far) is a max-heap, stored as a min-heap on (-distance, id) as in
    the numpy backend, so that ties leave W in the same order.
    Returns (|W|, distances computed).
    """
    cand_d, cand_i, w_d, w_i, rows, nbr, buf = ws
    links0, deg0, up_links, up_deg, up_off = graph
    epoch = _new_epoch(visited, epoch_box)
    visited[ep] = epoch  # v <- ep
    nc = heap_push(cand_d, cand_i, 0, ep_dist, ep)  # C <- ep
    nw = heap_push(w_d, w_i, 0, -ep_dist, ep)  # W <- ep
    ndis = 0
    while nc > 0:  # while |C| > 0
        d_c, c = cand_d[0], cand_i[0]  # c <- extract nearest element from C
        nc = heap_pop(cand_d, cand_i, nc)
        if d_c > -w_d[0]:  # if distance(c, q) > distance(f, q), f the furthest of W
            break  # all elements in W are evaluated
        if level == 0:  # neighbourhood(c) on layer lc: a row of links0 or of up_links
            links, r = links0, c
            deg = deg0[c]
        else:
            links, r = up_links, up_off[c] + level - 1
            deg = up_deg[r]
        n_new = 0
        for j in range(deg):  # for each e in neighbourhood(c): if e not in v
            e = links[r, j]
            if visited[e] != epoch:
                visited[e] = epoch  # v <- v + e
                nbr[n_new] = e
                n_new += 1
        if n_new == 0:
            continue
        dists = _distances(aug, nbr, n_new, q, rows, buf)
        ndis += n_new
        for j in range(n_new):
            d, e = dists[j], nbr[j]
            # if distance(e, q) < distance(f, q) or |W| < ef
            if d < -w_d[0] or nw < ef:
                nc = heap_push(cand_d, cand_i, nc, d, e)  # C <- C + e
                if nw < ef:
                    nw = heap_push(w_d, w_i, nw, -d, e)  # W <- W + e
                else:
                    heap_replace(w_d, w_i, nw, -d, e)  # W <- W + e, then drop the furthest of W
    # sorted((-nd, e) for nd, e in W): pop W furthest first into the back of out; the
    # insertion sort then only reorders equal distances (W pops them by increasing id)
    count = nw
    while nw > 0:
        out_d[nw - 1] = -w_d[0]
        out_i[nw - 1] = w_i[0]
        nw = heap_pop(w_d, w_i, nw)
    _sort_pairs(out_d, out_i, count)
    return count, ndis


# --------------------------------------------------------------------------- neighbour selection
@njit(cache=False)
def select_heuristic(found_d, found_i, count, M, aug, d, closest, out):
    """Algorithm 4 (hnswlib's getNeighborsByHeuristic2) on candidates already sorted by distance to q.

    A candidate e is kept only if no kept neighbour r is closer to it than q
    is (d(e, r) < d(e, q) rejects it); at most M are kept.  ``closest[j]`` is
    the squared L2 distance from candidate j to its nearest kept neighbour.
    Writes the kept ids into ``out``; returns how many.
    """
    for j in range(count):
        closest[j] = np.inf
    kept = 0
    for i in range(count):  # while |R| < M: e <- extract nearest element from W
        if kept == M:
            break
        if closest[i] < found_d[i]:
            continue  # a kept neighbour is closer to e than q is: e is redundant
        out[kept] = found_i[i]  # R <- R + e
        kept += 1
        vi = found_i[i]
        for j in range(i + 1, count):  # only later candidates are still to be judged
            vj = found_i[j]
            s = 0.0
            for t in range(d):
                diff = aug[vj, t] - aug[vi, t]
                s += diff * diff
            if s < closest[j]:
                closest[j] = s
    return kept


@njit(cache=False)
def _select(found_d, found_i, count, M, heuristic, aug, d, closest, out):
    """SELECT-NEIGHBORS (the numpy backend's ``select_neighbors``): returns (kept, extra build ndis)."""
    if count < M:  # a list already shorter than M is kept whole
        for j in range(count):
            out[j] = found_i[j]
        return count, 0
    if not heuristic:  # Algorithm 3: the M closest (found is sorted)
        for j in range(M):
            out[j] = found_i[j]
        return M, 0
    return select_heuristic(found_d, found_i, count, M, aug, d, closest, out), count * min(M, count)


@njit(cache=False)
def connect(node, found_d, found_i, count, level, M, m_max, heuristic, aug, qaug, d, graph, bufs):
    """Algorithm 1, lines 9-17: link ``node`` to M of ``found``, link them back, shrink full lists.

    Returns (closest chosen neighbour, distances computed, extra build ndis).
    """
    closest, chosen, p_ids, p_d, p_kept, rows, buf = bufs
    # neighbours <- SELECT-NEIGHBORS(q, W, M, lc); add bidirectional connections
    n_chosen, extra = _select(found_d, found_i, count, M, heuristic, aug, d, closest, chosen)
    _set_list(node, level, chosen, n_chosen, graph)
    ndis = 0
    for j in range(n_chosen):
        other = chosen[j]
        row, deg = _row(other, level, graph)
        if deg < m_max:
            row[deg] = node
            _set_list(other, level, row, deg + 1, graph)
            continue
        # |eConn| > Mmax: shrink eConn, judged from ``other``'s point of view
        for t in range(deg):
            p_ids[t] = row[t]
        p_ids[deg] = node
        dists = _distances(aug, p_ids, deg + 1, qaug[other], rows, buf)
        ndis += deg + 1
        for t in range(deg + 1):
            p_d[t] = dists[t]
        _sort_pairs(p_d, p_ids, deg + 1)
        kept, more = _select(p_d, p_ids, deg + 1, m_max, heuristic, aug, d, closest, p_kept)
        extra += more
        _set_list(other, level, p_kept, kept, graph)
    return chosen[0], ndis, extra


# --------------------------------------------------------------------------- Algorithm 1, INSERT
@njit(cache=False)
def build(aug, qaug, levels, start, stop, entry_point, max_level, M, M0, ef_construction, heuristic,
          graph, visited, epoch_box):
    """Insert nodes ``start .. stop-1`` (levels already drawn) in order.

    Returns (entry point, max level, distances computed), the numpy backend's
    ``entry_point``, ``max_level`` and the increase of ``build_ndis``.
    """
    n, width = aug.shape
    d = width - 2
    ws = make_workspace(n, ef_construction, M0, width)
    found_d = np.empty(ef_construction + 1, np.float64)
    found_i = np.empty(ef_construction + 1, np.int64)
    cap = max(ef_construction, M0) + 2
    bufs = (np.empty(cap, np.float64), np.empty(M0 + 2, np.int64), np.empty(M0 + 2, np.int64),
            np.empty(M0 + 2, np.float64), np.empty(M0 + 2, np.int64), ws[4], ws[6])
    build_ndis = 0
    for node in range(start, stop):
        level = levels[node]  # l <- floor(-ln(unif(0..1)) * mL), drawn by the caller
        if entry_point < 0:  # the first node is the whole graph
            entry_point, max_level = node, level
            continue
        q = qaug[node]
        ep = entry_point
        ep_dist = _distance(aug, ep, q)
        ndis = 1
        # lines 5-7: greedy descent (ef = 1) from the top layer down to level l + 1
        for lc in range(max_level, level, -1):
            ep, ep_dist, nd = greedy_closest(aug, q, ep, ep_dist, lc, graph, ws[4], ws[6])
            ndis += nd
        # lines 8-17: on each of the node's layers, beam search with ef_construction, then link
        for lc in range(min(level, max_level), -1, -1):
            count, nd = search_layer(aug, q, ep, ep_dist, ef_construction, lc, graph, visited, epoch_box,
                                     ws, found_d, found_i)
            ndis += nd
            m_max = M0 if lc == 0 else M
            ep, nd, extra = connect(node, found_d, found_i, count, lc, M, m_max, heuristic, aug, qaug, d,
                                    graph, bufs)
            ndis += nd
            build_ndis += extra
            ep_dist = found_d[0]  # the closest chosen neighbour is always found[0]
        build_ndis += ndis
        # lines 18-19: a node that tops the hierarchy becomes the entry point
        if level > max_level:
            entry_point, max_level = node, level
    return entry_point, max_level, build_ndis


# --------------------------------------------------------------------------- Algorithm 5, K-NN-SEARCH
@njit(cache=False)
def augment(Q, l2):
    """The numpy backend's ``augment`` for every row of Q: [-2q, 1, ||q||^2] (l2) or [-q, 0, 0] (ip).

    ||q||^2 is ``np.dot(q, q)``, the same BLAS ddot as numpy's ``q @ q``.
    """
    nq, d = Q.shape
    out = np.zeros((nq, d + 2))
    q = np.empty(d)
    for r in range(nq):
        for t in range(d):
            q[t] = Q[r, t]
        for t in range(d):
            out[r, t] = -2.0 * q[t] if l2 else -q[t]
        if l2:
            out[r, d] = 1.0
            out[r, d + 1] = np.dot(q, q)
    return out


@njit(cache=False)
def search_batch(aug, Q, l2, k, ef, entry_point, max_level, graph, visited, epoch_box):
    """K-NN-SEARCH for every row of ``Q``, one after the other.

    Returns (D float64 (nq, k), I int64 (nq, k), distances computed); rows
    with fewer than k results are padded with +inf and -1.
    """
    Qaug = augment(Q, l2)
    nq = Qaug.shape[0]
    n, width = aug.shape
    ef = max(ef, k)
    ws = make_workspace(n, ef, graph[0].shape[1], width)
    out_d = np.empty(ef + 1, np.float64)
    out_i = np.empty(ef + 1, np.int64)
    D = np.full((nq, k), np.inf)
    I = np.full((nq, k), -1, np.int64)
    total = 0
    for r in range(nq):
        q = Qaug[r]
        ep = entry_point
        ep_dist = _distance(aug, ep, q)
        total += 1
        for lc in range(max_level, 0, -1):  # greedy descent to layer 1
            ep, ep_dist, nd = greedy_closest(aug, q, ep, ep_dist, lc, graph, ws[4], ws[6])
            total += nd
        count, nd = search_layer(aug, q, ep, ep_dist, ef, 0, graph, visited, epoch_box, ws, out_d, out_i)
        total += nd
        for j in range(min(count, k)):
            D[r, j] = out_d[j]
            I[r, j] = out_i[j]
    return D, I, total


