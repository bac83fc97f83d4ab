"""Choosing an index: explicit rules of thumb, from the workload to a faiss factory string.

::

    rec = recommend_index(n=1_000_000, d=128, mem_budget_bytes=2e9, recall_target=0.95)
    rec.family, rec.factory, rec.params          # "HNSW", "HNSW32", {"M": 32, "ef": 32}
    index = build_faiss(rec, xb)                 # faiss.index_factory + the search knob

The rules follow the faiss wiki page *Guidelines to choose an index*
(https://github.com/facebookresearch/faiss/wiki/Guidelines-to-choose-an-index) and the
measurements of this chapter.  They are applied in this order; the first that fits wins:

1. **Exact search (Flat)** when the raw vectors fit (``4 d`` bytes per vector, ids are
   implicit) and either the recall target is 1.0 (only exact search guarantees it) or the
   database is small (``n <= FLAT_MAX_N``: one scan is then cheap, needs no training and
   handles updates and filters trivially).
2. **Filters or frequent updates -> IVF** (``needs_filtering`` or ``updates_per_s >
   FREQUENT_UPDATES_PER_S``): an inverted list is a plain array, so adding is one
   nearest-centroid search, removing (``remove_ids``) is cheap, and a pre-filter
   (faiss ``IDSelector``) simply skips excluded ids while scanning.  A graph index cannot
   delete without leaving holes, and a restrictive filter cuts the graph into islands a
   greedy search cannot cross.  IVF-Flat when ``4 d + 8`` bytes fit, else IVF-PQ.
3. **HNSW** when ``4 d + 8 M + 16`` bytes per vector fit (the vector plus ``2 M`` int32
   links on layer 0, upper layers and bookkeeping), with ``M = HNSW_M``: the fastest
   high-recall index in RAM, at the price of memory and slow builds.
4. **IVF-Flat** when ``4 d + 8`` bytes fit (the vector and its 8-byte id).
5. **IVF-PQ** when memory is tight: ``m + 8`` bytes per vector (one byte per
   sub-quantizer, ``nbits = 8``, plus the id), with the largest ``m`` dividing ``d`` that
   fits (more bytes, more recall).
6. **PQ** (a flat scan of codes, no ids: ``m`` bytes) when even IVF-PQ's id does not fit.

Fixed costs are spread over the ``n`` vectors: IVF centroids (``nlist * 4 d`` bytes,
plus list bookkeeping) and PQ codebooks (``256 * 4 d`` bytes).  They matter at small ``n``
(384-d codebooks are 393 kB: 218 bytes per vector over 1,800 vectors).

IVF size: ``nlist = 4 sqrt(n)`` (the wiki's lower end, 4 to 16 sqrt(n)), capped at
``n / 39`` so that k-means has the 39 training points per centroid faiss asks for.
The search knob comes from the recall target through :data:`HNSW_EF` and
:data:`IVF_NPROBE`, measured on this chapter's data: a starting point to confirm with the
harness on *your* data (a uniform, high-intrinsic-dimension set needs more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Exact search is the answer up to this many vectors (a batched scan of 10k x 384 floats
#: costs ~4 MFLOP per query: well under a millisecond on one core).
FLAT_MAX_N = 10_000
#: Above this many inserts/deletes per second, prefer an index with cheap add/remove (IVF).
FREQUENT_UPDATES_PER_S = 100.0
#: HNSW links per node (faiss "HNSW32"; the wiki suggests 4 <= M <= 64).
HNSW_M = 32
#: PQ bits per sub-quantizer (256 centroids each: one byte per sub-vector).
PQ_NBITS = 8
#: Bytes of an id stored next to each code in an inverted list (int64).
ID_BYTES = 8
#: faiss asks for at least 39 training points per k-means centroid.
MIN_POINTS_PER_CENTROID = 39
#: (largest recall target, efSearch): the first row whose target is >= the request.
HNSW_EF: tuple[tuple[float, int], ...] = ((0.90, 16), (0.95, 32), (0.99, 64), (1.0, 128))
#: (largest recall target, nprobe), capped at nlist.
IVF_NPROBE: tuple[tuple[float, int], ...] = ((0.90, 16), (0.95, 32), (0.99, 64), (1.0, 128))
#: Serialized header of a faiss index (a few hundred bytes; spread over n).
HEADER_BYTES = 1024

GUIDELINES_URL = "https://github.com/facebookresearch/faiss/wiki/Guidelines-to-choose-an-index"


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend_index` returns.

    Attributes
    ----------
    family : index family, with the harness's names: "Flat", "HNSW", "IVF-Flat", "IVF-PQ", "PQ".
    factory : the faiss ``index_factory`` string, e.g. "IVF512,PQ16".
    params : build parameters (``nlist``, ``m``, ``M``) and the search knob (``nprobe``, ``ef``).
    bytes_per_vector : expected memory per vector, fixed costs spread over ``n`` (faiss's serialized size).
    fits_budget : False when no rule fits the budget (the cheapest option is returned anyway).
    reasons : one sentence per rule that decided (or was rejected), in order.
    """

    family: str
    factory: str
    params: dict[str, Any]
    bytes_per_vector: float
    fits_budget: bool = True
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def search_params(self) -> dict[str, Any]:
        """The search knob alone (``{"nprobe": ...}``, ``{"ef": ...}`` or ``{}``), course names."""
        return {k: v for k, v in self.params.items() if k in ("nprobe", "ef")}


# --------------------------------------------------------------------------- memory model
def flat_bytes(d: int) -> float:
    """Bytes per vector of faiss ``IndexFlat``: the float32 vector (ids are implicit)."""
    return 4.0 * d


def hnsw_bytes(d: int, M: int = HNSW_M) -> float:
    """Bytes per vector of faiss ``IndexHNSWFlat``: vector + 2M layer-0 links (int32) + ~16 of upper links and offsets."""
    return 4.0 * d + 8.0 * M + 16.0


def ivf_fixed_bytes(d: int, nlist: int) -> float:
    """Fixed bytes of an IVF index: the nlist float32 centroids and the lists' bookkeeping."""
    return nlist * (4.0 * d + 16.0) + HEADER_BYTES


def pq_codebook_bytes(d: int, nbits: int = PQ_NBITS) -> float:
    """Fixed bytes of a PQ codebook: 2**nbits centroids per sub-space, d floats in all."""
    return (2**nbits) * 4.0 * d


def ivf_flat_bytes(n: int, d: int, nlist: int) -> float:
    """Bytes per vector of faiss ``IndexIVFFlat``: vector + id + centroids spread over n."""
    return 4.0 * d + ID_BYTES + ivf_fixed_bytes(d, nlist) / n


def ivf_pq_bytes(n: int, d: int, nlist: int, m: int) -> float:
    """Bytes per vector of faiss ``IndexIVFPQ`` (nbits=8): m code bytes + id + centroids and codebooks over n."""
    return m + ID_BYTES + (ivf_fixed_bytes(d, nlist) + pq_codebook_bytes(d)) / n


def pq_bytes(n: int, d: int, m: int) -> float:
    """Bytes per vector of faiss ``IndexPQ``: m code bytes (no ids) + the codebooks over n."""
    return m + (pq_codebook_bytes(d) + HEADER_BYTES) / n


# --------------------------------------------------------------------------- knobs
def choose_nlist(n: int) -> int:
    """IVF lists: 4 sqrt(n) (faiss wiki: 4 to 16 sqrt(n)), at most n / 39 (k-means needs 39 points per centroid)."""
    return max(1, min(4 * math.isqrt(n), n // MIN_POINTS_PER_CENTROID))


def _lookup(table: tuple[tuple[float, int], ...], recall_target: float) -> int:
    """The knob of the first row of ``table`` whose recall is at least the target."""
    for recall, knob in table:
        if recall_target <= recall + 1e-12:
            return knob
    return table[-1][1]


def choose_ef(recall_target: float) -> int:
    """HNSW efSearch for a recall target (:data:`HNSW_EF`)."""
    return _lookup(HNSW_EF, recall_target)


def choose_nprobe(recall_target: float, nlist: int) -> int:
    """IVF nprobe for a recall target (:data:`IVF_NPROBE`), at most nlist."""
    return min(nlist, _lookup(IVF_NPROBE, recall_target))


def divisors_desc(d: int) -> list[int]:
    """Divisors of d, largest first (PQ needs m | d)."""
    return [m for m in range(d, 0, -1) if d % m == 0]


# --------------------------------------------------------------------------- validation
def _check_inputs(n: Any, d: Any, mem_budget_bytes: Any, recall_target: Any, updates_per_s: Any) -> None:
    for name, value in (("n", n), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(mem_budget_bytes, bool) or not isinstance(mem_budget_bytes, (int, float, np.number)) \
            or not math.isfinite(mem_budget_bytes) or mem_budget_bytes <= 0:
        raise ValueError(f"mem_budget_bytes must be a positive number of bytes (total), got {mem_budget_bytes!r}")
    if isinstance(recall_target, bool) or not isinstance(recall_target, (int, float, np.number)) \
            or not 0 < recall_target <= 1:
        raise ValueError(f"recall_target must be in (0, 1], got {recall_target!r}")
    if isinstance(updates_per_s, bool) or not isinstance(updates_per_s, (int, float, np.number)) \
            or not math.isfinite(updates_per_s) or updates_per_s < 0:
        raise ValueError(f"updates_per_s must be a non-negative number, got {updates_per_s!r}")


# --------------------------------------------------------------------------- the rules
def _ivf(n: int, d: int, per_vector: float, recall_target: float, why: list[str]) -> Recommendation | None:
    """IVF-Flat if its bytes fit, else IVF-PQ with the largest m that fits (None: not even m=1)."""
    nlist = choose_nlist(n)
    nprobe = choose_nprobe(recall_target, nlist)
    need = ivf_flat_bytes(n, d, nlist)
    if need <= per_vector:
        why.append(f"IVF-Flat: {need:.1f} B/vector (4d + 8-byte id + centroids) fits; nlist = {nlist} "
                   f"(4 sqrt(n), <= n/39), nprobe = {nprobe} for recall {recall_target:g}.")
        return Recommendation("IVF-Flat", f"IVF{nlist},Flat", {"nlist": nlist, "nprobe": nprobe}, need, True, tuple(why))
    why.append(f"IVF-Flat needs {need:.1f} B/vector > {per_vector:.1f}: compress with PQ.")
    for m in divisors_desc(d):
        need = ivf_pq_bytes(n, d, nlist, m)
        if need <= per_vector:
            why.append(f"IVF-PQ: m = {m} (largest divisor of d = {d} that fits), {need:.1f} B/vector "
                       f"({m} code bytes + 8-byte id + centroids and codebooks); nprobe = {nprobe}. "
                       "PQ caps recall by the code size: measure it, and add a refine step if raw vectors can live on disk.")
            return Recommendation("IVF-PQ", f"IVF{nlist},PQ{m}", {"nlist": nlist, "m": m, "nprobe": nprobe}, need,
                                  True, tuple(why))
    return None


def recommend_index(
    n: int,
    d: int,
    mem_budget_bytes: float,
    recall_target: float,
    updates_per_s: float = 0.0,
    needs_filtering: bool = False,
) -> Recommendation:
    """Recommend a faiss index for a workload, by the rules of the module docstring.

    Parameters
    ----------
    n : number of vectors to index.
    d : their dimension.
    mem_budget_bytes : RAM for the whole index, in bytes (not per vector).
    recall_target : the recall@10 the application needs, in (0, 1]; 1.0 means exact.
    updates_per_s : inserts + deletes per second the index must absorb.
    needs_filtering : queries carry a metadata filter (search only among allowed ids).

    Returns
    -------
    :class:`Recommendation`; ``fits_budget`` is False when no rule fits (the cheapest
    option, or Flat for recall 1.0, is returned with the reason).

    Raises
    ------
    ValueError : n, d or the budget not positive, recall_target outside (0, 1],
        updates_per_s negative.
    """
    _check_inputs(n, d, mem_budget_bytes, recall_target, updates_per_s)
    n, d = int(n), int(d)
    per_vector = float(mem_budget_bytes) / n  # compare like with like: the budget is for all n vectors
    why = [f"budget {per_vector:.1f} B/vector ({mem_budget_bytes:.3g} B over {n:,} vectors); raw vectors need {flat_bytes(d):.0f} (4d)."]
    flat = flat_bytes(d) + HEADER_BYTES / n
    flat_rec = lambda ok: Recommendation("Flat", "Flat", {}, flat, ok, tuple(why))  # noqa: E731

    # 1. exact search: mandatory for recall 1.0, and the sensible default for small n
    if recall_target >= 1.0:
        if flat <= per_vector:
            why.append("recall 1.0: only exact search guarantees it, and the raw vectors fit: Flat.")
            return flat_rec(True)
        why.append("recall 1.0 needs exact search over the raw vectors, which do not fit: "
                   "raise the budget, or accept recall < 1 (then IVF-PQ).")
        return flat_rec(False)
    if n <= FLAT_MAX_N and flat <= per_vector:
        why.append(f"n = {n:,} <= {FLAT_MAX_N:,}: one exact scan is cheap, needs no training, "
                   "and handles updates and filters trivially: Flat.")
        return flat_rec(True)

    # 2. filters or frequent updates: IVF (cheap add/remove, IDSelector pre-filter)
    if needs_filtering or updates_per_s > FREQUENT_UPDATES_PER_S:
        cause = "filtered search" if needs_filtering else f"{updates_per_s:g} updates/s > {FREQUENT_UPDATES_PER_S:g}"
        why.append(f"{cause}: IVF lists are plain arrays (cheap add and remove_ids; a pre-filter skips "
                   "excluded ids), whereas a graph cannot delete cleanly and breaks apart under a tight filter.")
        rec = _ivf(n, d, per_vector, recall_target, why)
        if rec is not None:
            return rec
    else:
        # 3. HNSW when its links fit
        need = hnsw_bytes(d) + HEADER_BYTES / n
        if need <= per_vector:
            ef = choose_ef(recall_target)
            why.append(f"HNSW{HNSW_M}: {need:.1f} B/vector (4d + 8M + 16) fits: the fastest high-recall index "
                       f"in RAM; ef = {ef} for recall {recall_target:g}. Build is slow and deletes are not supported.")
            return Recommendation("HNSW", f"HNSW{HNSW_M}", {"M": HNSW_M, "ef": ef}, need, True, tuple(why))
        why.append(f"HNSW{HNSW_M} needs {need:.1f} B/vector > {per_vector:.1f}.")
        # 4-5. IVF-Flat, then IVF-PQ
        rec = _ivf(n, d, per_vector, recall_target, why)
        if rec is not None:
            return rec

    # 6. PQ without ids, or nothing fits: the smallest PQ code
    for m in divisors_desc(d):
        need = pq_bytes(n, d, m)
        if need <= per_vector:
            why.append(f"even IVF-PQ's 8-byte id does not fit: PQ{m} flat scan of codes ({need:.1f} B/vector, "
                       "ids implicit); every query scans all n codes.")
            return Recommendation("PQ", f"PQ{m}", {"m": m}, need, True, tuple(why))
    why.append(f"nothing fits {per_vector:.1f} B/vector (PQ1 needs {pq_bytes(n, d, 1):.1f}): raise the budget.")
    return Recommendation("PQ", "PQ1", {"m": 1}, pq_bytes(n, d, 1), False, tuple(why))


# --------------------------------------------------------------------------- build it with faiss
def build_faiss(rec: Recommendation, xb: np.ndarray, metric: str = "l2", *, pq_train_points: int | None = None,
                pq_niter: int | None = None) -> Any:
    """Train and fill ``faiss.index_factory(d, rec.factory)``, and set its search knob.

    Parameters
    ----------
    rec : the recommendation.
    xb : (n, d) float32 database.
    metric : "l2" or "ip".
    pq_train_points : the PQ codebooks' k-means samples at most this many training
        vectors (None: faiss's 256 per centroid). faiss's k-means on tiny PQ sub-vectors is
        slow; ~20 points per centroid is plenty to learn 256 centroids from. The IVF
        centroids always see every training vector.
    pq_niter : k-means iterations of the PQ codebooks (None: faiss's 25).

    Polysemous training (which index_factory switches on for PQ codes: a code reordering
    for Hamming pre-filtering that nobody here uses) is turned off: it changes no
    distance and costs minutes.
    """
    import faiss

    from .harness import set_faiss_params

    xb = np.ascontiguousarray(xb, dtype=np.float32)
    index = faiss.index_factory(xb.shape[1], rec.factory, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
    for part in (index, _ivf_or_none(index)):
        if part is not None and hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
        if part is not None and hasattr(part, "pq"):
            if pq_niter is not None:
                part.pq.cp.niter = int(pq_niter)
            if pq_train_points is not None:
                part.pq.cp.max_points_per_centroid = max(1, int(pq_train_points) // part.pq.ksub)
                # the sample size is chosen on purpose: silence faiss's "provide at least 39 x k points" warning
                part.pq.cp.min_points_per_centroid = 1
    index.train(xb)
    index.add(xb)
    set_faiss_params(index, rec.search_params)
    return index


def _ivf_or_none(index: Any) -> Any:
    import faiss

    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))  # the concrete class (IndexIVFPQ), not IndexIVF
    except RuntimeError:
        return None


# --------------------------------------------------------------------------- the learner's rule table
def recommend_index_simple(n: int, d: int, mem_budget: float, recall_target: float, updates: float) -> tuple[str, float]:
    """The exercise's rule table (no filters, no fixed costs): ``(faiss factory string, bytes per vector)``.

    1. validate: n, d positive ints, mem_budget > 0 (total bytes), recall_target in (0, 1], updates >= 0;
    2. ``b = mem_budget / n`` (bytes per vector);
    3. ``"Flat"`` (4d bytes) if ``4d <= b`` and (``n <= 10_000`` or ``recall_target == 1``);
       recall_target == 1 and ``4d > b``: ValueError (exact search needs the raw vectors);
    4. ``"HNSW32"`` (4d + 256 bytes) if ``updates <= 100`` and ``4d + 256 <= b``;
    5. ``"IVF{nlist},Flat"`` (4d + 8 bytes) if ``4d + 8 <= b``, with ``nlist = 4 * isqrt(n)``;
    6. ``"IVF{nlist},PQ{m}"`` (m + 8 bytes) with the largest divisor m of d such that ``m + 8 <= b``;
    7. otherwise ValueError (the budget is below 9 bytes per vector).
    """
    for name, value in (("n", n), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not mem_budget > 0:
        raise ValueError(f"mem_budget must be positive, got {mem_budget!r}")
    if not 0 < recall_target <= 1:
        raise ValueError(f"recall_target must be in (0, 1], got {recall_target!r}")
    if not updates >= 0:
        raise ValueError(f"updates must be >= 0, got {updates!r}")
    b = mem_budget / n
    if 4 * d <= b and (n <= FLAT_MAX_N or recall_target == 1):
        return "Flat", 4.0 * d
    if recall_target == 1:
        raise ValueError(f"recall 1.0 needs exact search: {4 * d} bytes per vector, budget {b:.1f}")
    if updates <= FREQUENT_UPDATES_PER_S and 4 * d + 8 * HNSW_M <= b:
        return f"HNSW{HNSW_M}", 4.0 * d + 8 * HNSW_M
    nlist = 4 * math.isqrt(n)
    if 4 * d + ID_BYTES <= b:
        return f"IVF{nlist},Flat", 4.0 * d + ID_BYTES
    for m in divisors_desc(d):
        if m + ID_BYTES <= b:
            return f"IVF{nlist},PQ{m}", float(m + ID_BYTES)
    raise ValueError(f"budget {b:.1f} bytes per vector is below the smallest IVF-PQ code (9 bytes)")
