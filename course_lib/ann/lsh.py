"""Locality-sensitive hashing with random hyperplanes (SimHash), two ways.

SimHash (Charikar 2002) hashes a vector x to one bit per random direction r:
``bit = [r . x >= 0]``.  For r ~ N(0, I) two vectors at angle theta get the
same bit with probability ``1 - theta / pi`` (Goemans-Williamson), so close
vectors share most bits and the Hamming distance between codes estimates the angle.
The hyperplanes pass through the origin, so **centre the data first**: for
data that sits far from the origin every plane cuts the cloud off-centre and
most bits are the same for every vector.

* :class:`LSHCodeIndex` is what faiss calls ``IndexLSH``: (optionally) a random
  rotation, sign bits, then a **full Hamming scan** of all codes.  It compresses
  (nbits / 8 bytes per vector) but does not avoid looking at every vector.
* :class:`LSHTableIndex` is the LSH of the textbooks (Indyk-Motwani 1998,
  Gionis et al. 1999): L hash tables keyed by K-bit codes; a query looks only
  at the vectors in its own bucket of each table, then re-ranks them exactly.
  A neighbour at angle theta is found with probability ``1 - (1 - p^K)^L``,
  p = 1 - theta / pi.  **Multi-probe** LSH (Lv et al. 2007) also visits the
  buckets one or two bit-flips away, flipping first the bits whose hyperplane
  passes closest to the query, and so needs far fewer tables.

Bit layout used everywhere here (and by faiss, whose byte codes read as
little-endian uint64 words are the same): code word ``w`` holds hyperplanes
``64 w .. 64 w + 63``, hyperplane ``64 w + j`` in bit ``j`` (value ``1 << j``).
"""

from __future__ import annotations

import heapq
from statistics import NormalDist
from typing import Any

import numpy as np

from ..validate import as_matrix
from ..vec import exact_knn
from .base import Index, search_params

#: Query rows per block in the Hamming scan: bounds the (block, n, words) XOR buffer.
HAMMING_BLOCK = 64
#: Candidate (query, id) pairs re-ranked per block: bounds the gathered (pairs, d) vectors.
RERANK_BLOCK = 1 << 17
#: Bits per hash table key: keys are int64, and the sign bit is left alone.
MAX_TABLE_BITS = 62


# --------------------------------------------------------------------------- hashing
def gaussian_planes(nbits: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``nbits`` random hyperplane normals r ~ N(0, I_d): float32 (nbits, d), one per row."""
    if nbits < 1 or d < 1:
        raise ValueError(f"need nbits >= 1 and d >= 1, got nbits={nbits}, d={d}")
    return rng.standard_normal((nbits, d)).astype(np.float32)


def random_rotation(d: int, nbits: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthonormal projection R^d -> R^nbits, as faiss's ``RandomRotationMatrix``.

    Returns float32 (nbits, d).  With nbits <= d its rows are orthonormal (a
    random rotation, truncated); with nbits > d its columns are (a "tight
    frame": the first d columns of a random nbits x nbits rotation).  Either
    way each row is a random direction, as in SimHash; orthogonal rows make the
    bits slightly less redundant than independent Gaussian ones.
    """
    if nbits <= d:
        q, _ = np.linalg.qr(rng.standard_normal((d, nbits)))  # (d, nbits), orthonormal columns
        return q.T.astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((nbits, nbits)))
    return q[:, :d].astype(np.float32)


def simhash_bits(X: np.ndarray, planes: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Sign bits ``X @ planes.T >= thresholds``: bool (n, nbits).

    The convention for a projection of exactly 0 is bit 1 (``>=``), as in faiss.
    """
    X = as_matrix(X, "X")
    planes = as_matrix(planes, "planes")
    if planes.shape[1] != X.shape[1]:
        raise ValueError(f"planes have d={planes.shape[1]} but X has d={X.shape[1]}")
    proj = X @ planes.T
    return proj >= (0.0 if thresholds is None else thresholds)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack bool (n, nbits) into uint64 (n, ceil(nbits / 64)); bit j of word w = bits[:, 64 w + j].

    ``np.packbits(..., bitorder="little")`` puts bit j of each byte at value
    ``1 << j``; viewing 8 consecutive bytes as a little-endian uint64 makes byte
    b hold bits 8 b .. 8 b + 7 of the word.  Missing bits (nbits not a multiple
    of 64) are zero in every code, so they never add to a Hamming distance.
    """
    bits = np.asarray(bits, dtype=bool)
    if bits.ndim != 2:
        raise ValueError(f"bits must be 2-D (n, nbits), got shape {bits.shape}")
    n, nbits = bits.shape
    n_words = -(-nbits // 64)
    padded = np.zeros((n, 64 * n_words), dtype=bool)
    padded[:, :nbits] = bits
    packed = np.packbits(padded, axis=1, bitorder="little")  # (n, 8 * n_words) uint8
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def simhash_codes(X: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """SimHash codes of the rows of X, packed: uint64 (n, ceil(nbits / 64)).

    Bit j of word w is 1 iff ``X[i] . planes[64 w + j] >= 0``.  Centring X is
    the caller's job (subtract the database mean from database and queries).
    """
    return pack_bits(simhash_bits(X, planes))


def hamming_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Hamming distances between packed codes: int32 (n_a, n_b) from uint64 (n_a, w), (n_b, w).

    XOR leaves a 1 wherever two codes differ; popcount counts them
    (``np.bitwise_count``, one CPU instruction per word on modern machines).
    Going one word at a time keeps every temporary (n_a, n_b) instead of
    (n_a, n_b, w), which is several times faster than one 3-D XOR.
    """
    A, B = np.asarray(A), np.asarray(B)
    if A.dtype != np.uint64 or B.dtype != np.uint64 or A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValueError(
            f"expected uint64 codes (n_a, w) and (n_b, w), got {A.dtype} {A.shape} and {B.dtype} {B.shape}"
        )
    dist = np.zeros((A.shape[0], B.shape[0]), dtype=np.int32)
    for w in range(A.shape[1]):
        dist += np.bitwise_count(A[:, w, None] ^ B[None, :, w])
    return dist


def smallest_with_id_ties(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the k smallest integer distances, ties broken by the smaller id (faiss's rule).

    Hamming distances tie massively (only nbits + 1 values), so *which* tied
    ids come back matters.  Folding the id into one integer key,
    ``dist * n + id``, makes every key distinct and orders by (distance, id);
    int32 keys when they fit, because partitioning them is twice as fast.
    Returns (distances, ids), both int64 (n_rows, min(k, n)).
    """
    n = dist.shape[1]
    k = min(k, n)
    dtype = np.int32 if (int(dist.max(initial=0)) + 1) * n < 2**31 else np.int64
    key = dist.astype(dtype) * dtype(n) + np.arange(n, dtype=dtype)
    part = np.partition(key, k - 1, axis=1)[:, :k] if k < n else key
    best = np.sort(part, axis=1).astype(np.int64)
    return best // n, best % n


# --------------------------------------------------------------------------- theory
def collision_probability(theta: np.ndarray) -> np.ndarray:
    """P[one SimHash bit agrees] for two vectors at angle ``theta`` (radians): 1 - theta / pi."""
    return 1.0 - np.asarray(theta, dtype=np.float64) / np.pi


def table_hit_probability(theta: np.ndarray, K: int, L: int) -> np.ndarray:
    """P[a vector at angle theta shares the query's bucket in at least one of L tables of K bits].

    One table: all K bits agree, p^K.  Independent tables: 1 - (1 - p^K)^L.
    """
    p = collision_probability(theta)
    return 1.0 - (1.0 - p**K) ** L


def angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Angle in radians between matching rows of A and B (n, d) -> (n,)."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    cos = np.einsum("ij,ij->i", A, B) / np.maximum(np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1), 1e-30)
    return np.arccos(np.clip(cos, -1.0, 1.0))


# --------------------------------------------------------------------------- multi-probe
def expected_sorted_margins(K: int) -> np.ndarray:
    """E[j-th smallest |r . q|] of K hyperplanes, up to the scale ||q||: (K,) ascending.

    |r . q| / ||q|| is half-normal; its j-th order statistic of K sits near the
    (j / (K + 1)) quantile of the half-normal, Phi^-1(1/2 + j / (2 (K + 1))).
    """
    z = NormalDist()
    return np.array([z.inv_cdf(0.5 + 0.5 * j / (K + 1)) for j in range(1, K + 1)])


def _check_n_probes(K: int, n_probes: Any) -> None:
    if isinstance(n_probes, bool) or not isinstance(n_probes, (int, np.integer)) or not 1 <= n_probes <= 2**K:
        raise ValueError(f"n_probes must be an int in [1, 2**K = {2**K}], got {n_probes!r}")


def probe_template(K: int, n_probes: int) -> list[tuple[int, ...]]:
    """The first ``n_probes`` perturbation sets of Lv et al. (2007), in increasing expected score.

    A perturbation set lists *ranks* of bits to flip, rank 0 being the bit whose
    hyperplane passes closest to the query.  Its score is the sum of the squared
    expected margins of those bits (how far the query would have to move to
    land in that bucket).  The generation is the paper's min-heap with two
    operations on a set A whose largest rank is m:

    * **shift**: replace m by m + 1;
    * **expand**: add m + 1.

    Starting from {0}, every subset is generated exactly once, in score order.
    The template is query-independent ("optimized probing sequence", Section
    4.5): each query maps ranks to its own bits by sorting its margins.
    The first set is the empty one: the query's own bucket.
    """
    _check_n_probes(K, n_probes)
    z2 = expected_sorted_margins(K) ** 2
    sequence: list[tuple[int, ...]] = [()]
    heap: list[tuple[float, tuple[int, ...]]] = [(z2[0], (0,))]
    while len(sequence) < n_probes:
        score, A = heapq.heappop(heap)
        sequence.append(A)
        m = A[-1]
        if m + 1 < K:
            shifted, expanded = A[:-1] + (m + 1,), A + (m + 1,)
            heapq.heappush(heap, (score - z2[m] + z2[m + 1], shifted))
            heapq.heappush(heap, (score + z2[m + 1], expanded))
    return sequence


def bucket_keys(margins: np.ndarray) -> np.ndarray:
    """Pack the sign bits of margins (n, L, K) into one int64 key per table: (n, L), bit j = plane j."""
    weights = np.left_shift(np.int64(1), np.arange(margins.shape[2], dtype=np.int64))
    return (margins >= 0).astype(np.int64) @ weights


def probe_keys(margins: np.ndarray, n_probes: int) -> np.ndarray:
    """Bucket keys to visit: int64 (nq, L, n_probes) from margins r . q of shape (nq, L, K).

    Probe 0 is the query's own key; probe t flips the bits named by the t-th
    perturbation set, mapped from ranks to bits by sorting |margins|.
    """
    nq, L, K = margins.shape
    _check_n_probes(K, n_probes)
    keys = bucket_keys(margins)
    if n_probes == 1:  # plain LSH: no sorting of margins needed
        return keys[:, :, None]
    weights = np.left_shift(np.int64(1), np.arange(K, dtype=np.int64))
    rank_to_bit = np.argsort(np.abs(margins), axis=2)  # (nq, L, K): rank -> bit index
    out = np.empty((nq, L, n_probes), dtype=np.int64)
    for t, flip in enumerate(probe_template(K, n_probes)):
        mask = weights[rank_to_bit[:, :, list(flip)]].sum(axis=2) if flip else 0
        out[:, :, t] = keys ^ mask
    return out


# --------------------------------------------------------------------------- faiss IndexLSH
class LSHCodeIndex(Index):
    """faiss ``IndexLSH``: random rotation, one sign bit per output dimension, Hamming scan.

    Parameters
    ----------
    d : vector dimension.
    nbits : bits per code.
    rotate_data : project with a random orthonormal matrix (faiss's default);
        otherwise the bits are the signs of the first ``nbits`` coordinates (needs nbits <= d).
    train_thresholds : compare each projection with its median over the
        training set instead of 0 (then ``train`` is needed).  This is how
        faiss "centres" the data; without it, nothing is centred.
    seed : seed of the rotation.
    rotation : use this (nbits, d) matrix instead of drawing one (e.g. faiss's own,
        ``faiss.vector_to_array(index.rrot.A).reshape(nbits, d)``, to compare codes bit for bit).

    ``search`` returns Hamming distances (as float32) and counts one code
    distance per stored vector per query: it is a full scan.
    """

    def __init__(
        self,
        d: int,
        nbits: int,
        rotate_data: bool = True,
        train_thresholds: bool = False,
        seed: int = 0,
        rotation: np.ndarray | None = None,
    ) -> None:
        super().__init__(d, "l2")
        if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)) or nbits < 1:
            raise ValueError(f"nbits must be a positive int, got {nbits!r}")
        if not rotate_data and rotation is None and nbits > d:
            raise ValueError(
                f"without rotation the bits are the first nbits coordinates: need nbits <= d={d}, got {nbits}"
            )
        self.nbits, self.rotate_data, self.seed = int(nbits), bool(rotate_data), int(seed)
        self.train_thresholds = bool(train_thresholds)
        self.needs_training = self.train_thresholds  # type: ignore[misc]  (per instance, as faiss's is_trained)
        self.is_trained = not self.train_thresholds
        if rotation is not None:
            rotation = as_matrix(rotation, "rotation")
            if rotation.shape != (nbits, d):
                raise ValueError(f"rotation must have shape (nbits, d) = {(nbits, d)}, got {rotation.shape}")
            self.planes = rotation
        elif rotate_data:
            self.planes = random_rotation(d, self.nbits, np.random.default_rng(seed))
        else:
            self.planes = np.eye(self.nbits, d, dtype=np.float32)
        self.thresholds = np.zeros(self.nbits, dtype=np.float32)
        self.codes = np.zeros((0, -(-self.nbits // 64)), dtype=np.uint64)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Packed codes uint64 (n, ceil(nbits / 64)) of float vectors (n, d)."""
        return pack_bits(simhash_bits(X, self.planes, self.thresholds))

    def _train(self, X: np.ndarray) -> None:
        self.thresholds = np.median(X @ self.planes.T, axis=0).astype(np.float32)

    def _ntotal(self) -> int:
        return len(self.codes)

    def _add(self, X: np.ndarray) -> None:
        self.codes = np.vstack([self.codes, self.encode(X)])

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        search_params(params, {})
        q_codes = self.encode(Q)
        D = np.empty((len(Q), min(k, self.ntotal)), dtype=np.float32)
        I = np.empty(D.shape, dtype=np.int64)
        for start in range(0, len(Q), HAMMING_BLOCK):
            block = q_codes[start : start + HAMMING_BLOCK]
            dist = hamming_distances(block, self.codes)
            D[start : start + len(block)], I[start : start + len(block)] = smallest_with_id_ties(dist, k)
        self.count(len(Q) * self.ntotal)
        return D, I

    @property
    def bytes_per_vector(self) -> float:
        return 8.0 * self.codes.shape[1]  # stored as uint64 words (faiss: ceil(nbits / 8) bytes)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {
            "nbits": self.nbits,
            "rotate_data": self.rotate_data,
            "train_thresholds": self.train_thresholds,
            "seed": self.seed,
        }
        return params, {"planes": self.planes, "thresholds": self.thresholds, "codes": self.codes}

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> LSHCodeIndex:
        index = cls(
            d,
            params["nbits"],
            params["rotate_data"],
            params["train_thresholds"],
            params["seed"],
            rotation=arrays["planes"],
        )
        index.thresholds = arrays["thresholds"].astype(np.float32)
        index.codes = arrays["codes"].astype(np.uint64)
        return index


# --------------------------------------------------------------------------- bucketed LSH
class LSHTableIndex(Index):
    """L hash tables of K SimHash bits each; candidates from the query's buckets, exact re-rank.

    Parameters
    ----------
    d : vector dimension.
    K : bits per table key (1 .. 62).  More bits: smaller buckets, fewer false
        candidates, but a neighbour must agree on all K bits to share a bucket.
    L : number of tables (independent hyperplanes each).  More tables: more
        chances to find a neighbour, L times the memory for keys and ids.
    metric : "l2" or "ip" for the exact re-rank (use "ip" on unit vectors for cosine).
    center : subtract the training mean before hashing (``train`` learns it).
    seed : seed of the hyperplanes.

    Search parameter ``n_probes`` (default 1): buckets visited per table
    (multi-probe LSH).  Each distinct candidate is re-ranked with one exact
    distance, and that is what ``stats`` counts.

    Each table is stored as the ids sorted by key plus the sorted keys; a
    bucket is the run of equal keys, found by binary search (``np.searchsorted``).
    """

    needs_training = True

    def __init__(self, d: int, K: int, L: int, metric: str = "l2", center: bool = True, seed: int = 0) -> None:
        super().__init__(d, metric)
        for name, value, hi in (("K", K, MAX_TABLE_BITS), ("L", L, None)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 or (hi and value > hi):
                raise ValueError(f"{name} must be an int in [1, {hi or 'inf'}], got {value!r}")
        self.K, self.L, self.center, self.seed = int(K), int(L), bool(center), int(seed)
        self.planes = gaussian_planes(self.L * self.K, d, np.random.default_rng(seed)).reshape(self.L, self.K, d)
        self.mean = np.zeros(d, dtype=np.float32)
        self.xb = np.zeros((0, d), dtype=np.float32)
        self.keys = np.zeros((self.L, 0), dtype=np.int64)
        self._build_tables()

    # -- hashing
    def margins(self, X: np.ndarray) -> np.ndarray:
        """Signed projections r . (x - mean) for every plane of every table: (n, L, K)."""
        flat = (X - self.mean) @ self.planes.reshape(self.L * self.K, self.d).T  # one BLAS product
        return flat.reshape(len(X), self.L, self.K)

    def hash_keys(self, X: np.ndarray) -> np.ndarray:
        """Bucket key of each vector in each table: int64 (n, L), bit j = plane j of the table."""
        return bucket_keys(self.margins(X))

    def _build_tables(self) -> None:
        self.order = np.argsort(self.keys, axis=1, kind="stable")  # (L, n): ids grouped by bucket
        self.sorted_keys = np.take_along_axis(self.keys, self.order, axis=1)

    # -- API
    def _train(self, X: np.ndarray) -> None:
        if self.center:
            self.mean = X.mean(axis=0).astype(np.float32)

    def _ntotal(self) -> int:
        return len(self.xb)

    def _add(self, X: np.ndarray) -> None:
        self.xb = np.vstack([self.xb, X])
        self.keys = np.hstack([self.keys, self.hash_keys(X).T])
        self._build_tables()

    def candidates(self, Q: np.ndarray, n_probes: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (query, id) candidate pairs from the probed buckets, sorted by query then id."""
        keys = probe_keys(self.margins(Q), n_probes)  # (nq, L, T)
        nq, n = len(Q), self.ntotal
        lo = np.empty(keys.shape, dtype=np.int64)
        hi = np.empty(keys.shape, dtype=np.int64)
        for t in range(self.L):  # binary search for each bucket's run of ids in table t
            lo[:, t] = np.searchsorted(self.sorted_keys[t], keys[:, t], side="left")
            hi[:, t] = np.searchsorted(self.sorted_keys[t], keys[:, t], side="right")
        # Concatenate every run [lo, hi) without a Python loop: positions in the flattened (L * n) order.
        lengths = (hi - lo).ravel()
        starts = (lo + (np.arange(self.L) * n)[None, :, None]).ravel()
        total = int(lengths.sum())
        run_offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        positions = run_offsets + np.arange(total)
        ids = self.order.ravel()[positions]
        query = np.repeat(np.arange(nq), lengths.reshape(nq, -1).sum(axis=1))
        pair = np.sort(query * n + ids)  # sorted by query, then id
        first = np.ones(len(pair), dtype=bool)  # the same id from several tables counts once
        first[1:] = pair[1:] != pair[:-1]  # (written so that no candidate at all is fine too)
        pair = pair[first]
        return pair // n, pair % n

    def _search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        p = search_params(params, {"n_probes": 1})
        query, ids = self.candidates(Q, p["n_probes"])
        self.count(len(ids))
        # exact re-rank of every candidate, in blocks of pairs to bound memory
        score = np.empty(len(ids), dtype=np.float32)
        for s in range(0, len(ids), RERANK_BLOCK):
            q, x = Q[query[s : s + RERANK_BLOCK]], self.xb[ids[s : s + RERANK_BLOCK]]
            score[s : s + RERANK_BLOCK] = ((q - x) ** 2).sum(1) if self.metric == "l2" else -(q * x).sum(1)
        # Sort by query, then score; the pairs arrive sorted by (query, id), and both
        # sorts are stable, so equal scores keep the smaller id first.
        order = np.argsort(score, kind="stable")
        order = order[np.argsort(query[order], kind="stable")]
        query, ids, score = query[order], ids[order], score[order]
        first = np.searchsorted(query, np.arange(len(Q)))
        rank = np.arange(len(ids)) - first[query]
        keep = rank < k
        kk = min(k, self.ntotal)
        D = np.full((len(Q), kk), np.inf, dtype=np.float32)
        I = np.full((len(Q), kk), -1, dtype=np.int64)
        D[query[keep], rank[keep]] = score[keep]
        I[query[keep], rank[keep]] = ids[keep]
        if self.metric == "ip":
            D = -D
        return D, I

    @property
    def bytes_per_vector(self) -> float:
        """Raw float32 vector (for the re-rank) + per table one int64 key and one int64 id."""
        return 4.0 * self.d + 16.0 * self.L

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {"K": self.K, "L": self.L, "center": self.center, "seed": self.seed}
        return params, {"planes": self.planes, "mean": self.mean, "xb": self.xb, "keys": self.keys}

    @classmethod
    def _from_state(cls, d: int, metric: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> LSHTableIndex:
        index = cls(d, params["K"], params["L"], metric, params["center"], params["seed"])
        index.planes = arrays["planes"].astype(np.float32)
        index.mean = arrays["mean"].astype(np.float32)
        index.xb = arrays["xb"].astype(np.float32)
        index.keys = arrays["keys"].astype(np.int64)
        index._build_tables()
        return index


def exact_neighbour_found(index: LSHTableIndex, Q: np.ndarray, X: np.ndarray, n_probes: int = 1) -> np.ndarray:
    """Per query, is its exact nearest neighbour in X among the index's candidates? bool (nq,)."""
    _, nn = exact_knn(Q, X, 1, index.metric)
    query, ids = index.candidates(as_matrix(Q, "Q"), n_probes)
    found = np.zeros(len(Q), dtype=bool)
    found[query[ids == nn[query, 0]]] = True
    return found
