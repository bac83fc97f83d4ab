"""The benchmark harness of chapter 02: one way to measure every ANN index, ours and the references.

::

    datasets = make_datasets("small")                      # Gaussian mixture + MiniLM corpus embeddings
    records = evaluate("IVF-Flat", build_fn, datasets[0], [{"nprobe": p} for p in (1, 4, 16)], "course",
                       build_params={"nlist": 128})
    save_records(records, "runs/ledger/ann_small.json", append=True)
    plot_pareto(records)                                   # recall@10 against queries per second

What one :class:`RunRecord` holds, for one index at one search setting:

* ``recall_at_10``: tie-aware recall@10 against exact search (ann-benchmarks' rule: a
  returned id is a hit when its exact distance is within 1e-3 of the 10th true one);
* ``qps_batch``: queries per second with all queries in one ``search`` call;
* ``qps_single``: queries per second with one query per call, measured on the first
  ``n_single`` queries (100 by default): what a web service doing one request at a time
  sees, Python call overhead included;
* ``build_s``: seconds to train and add the whole database;
* ``bytes_per_vector``: index memory per stored vector (codes, ids, graph links);
* ``dist_per_query``: distance computations per query, or None when the library does not
  say (hnswlib).

Every search and every build runs single-threaded (:func:`course_lib.config.single_thread`),
so a ratio between two implementations measures the algorithm, not the core count.
Timings are the best of ``repeats`` runs, or of as many as fit in :data:`MIN_TIME_S` for fast
searches (the best is the run least disturbed by other processes).

References plug in through small adapters with the course's ``search(Q, k, **params)``:
:class:`FaissAdapter` (faiss indexes; ``nprobe`` and ``ef`` are set on the index) and
:class:`HnswlibAdapter`.  Search parameters use the course's names everywhere (``nprobe``,
``ef``), so records of ours and of a reference at the same setting have equal ``params``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import config, data, vec
from .base import Index

#: recall@k of the records: recall@10 against the top-100 ground truth.
K = 10
#: Size of the ground truth kept per query (enough for any k up to 100).
GT_K = 100
#: Queries timed one per call (the first ``N_SINGLE`` of the query set), to keep time bounded.
N_SINGLE = 100
#: Implementations and their colours in :data:`course_lib.viz.COLORS`.
IMPLEMENTATIONS: dict[str, str] = {"course": "ours", "faiss": "reference", "hnswlib": "second_reference"}
#: Metrics on the x axis where smaller is better (the Pareto front flips their sign).
LOWER_IS_BETTER = ("bytes_per_vector", "build_s", "dist_per_query")
#: One marker per index family; unknown families get "v".
MARKERS: dict[str, str] = {
    "Flat": "s", "IVF-Flat": "o", "PQ": "D", "IVF-PQ": "P", "LSH-code": "^", "LSH-table": "<",
    "HNSW": "*", "Vamana": "X",
}
#: Axis labels, with units.
LABELS: dict[str, str] = {
    "qps_batch": "queries per second, batched (log scale)",
    "qps_single": "queries per second, one query per call (log scale)",
    "bytes_per_vector": "bytes per vector (log scale, smaller is better)",
    "build_s": "build time, s (log scale)",
    "dist_per_query": "distance computations per query (log scale)",
    "recall_at_10": "recall@10 (tie-aware)",
}


# --------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class BenchDataset:
    """A database, held-out queries, and their exact top-100 neighbours.

    Attributes
    ----------
    name : short name used in records and plots.
    xb : (n, d) float32 database.
    xq : (n_queries, d) float32 queries, not in the database.
    gt : exact :class:`course_lib.vec.GroundTruth` of ``xq`` in ``xb`` (k = 100).
    metric : the metric every index searches with ("l2": squared Euclidean).
    intrinsic_dim : Levina-Bickel estimate of the database's intrinsic dimension.
    description : one line for tables.
    """

    name: str
    xb: np.ndarray
    xq: np.ndarray
    gt: vec.GroundTruth
    metric: str = "l2"
    intrinsic_dim: float = float("nan")
    description: str = ""

    @property
    def n(self) -> int:
        return int(self.xb.shape[0])

    @property
    def d(self) -> int:
        return int(self.xb.shape[1])

    def head(self, n: int) -> BenchDataset:
        """The first ``n`` database vectors with the same queries (ground truth recomputed).

        For indexes too slow to build on the whole database (pure-Python graphs at ``full``):
        the records get a different dataset name, so they are never compared with
        records on the whole database.
        """
        if not 1 <= n <= self.n:
            raise ValueError(f"n must be in [1, {self.n}], got {n}")
        if n == self.n:
            return self
        xb = self.xb[:n]
        gt = vec.ground_truth(self.xq, xb, k=GT_K, metric=self.metric)
        return BenchDataset(f"{self.name}[:{n}]", xb, self.xq, gt, self.metric, self.intrinsic_dim, self.description)

    def summary(self) -> dict[str, Any]:
        """One table row: name, sizes, metric and intrinsic dimension."""
        return {"dataset": self.name, "n": self.n, "d": self.d, "queries": len(self.xq), "metric": self.metric,
                "intrinsic_dim": round(self.intrinsic_dim, 1), "description": self.description}


def make_dataset(name: str, X: np.ndarray, n_queries: int, *, metric: str = "l2", seed: int = 0,
                 description: str = "") -> BenchDataset:
    """Hold ``n_queries`` rows of ``X`` out as queries and compute the exact top-100."""
    xb, xq = data.split_queries(X, n_queries, seed=seed)
    gt = vec.ground_truth(xq, xb, k=GT_K, metric=metric)
    return BenchDataset(name, xb, xq, gt, metric, data.intrinsic_dimension(xb, seed=seed), description)


def make_datasets(size: str = "small", seed: int = 0) -> list[BenchDataset]:
    """The chapter's two benchmark datasets at one size profile.

    * ``gaussian-mixture``: ``P.get("ann_n")`` vectors of dimension ``P.get("ann_d")``,
      32 clusters around a 16-dimensional subspace (not i.i.d. Gaussian: its distances
      would concentrate), ``P.n_queries`` held-out queries.
    * ``minilm``: the all-MiniLM-L6-v2 embeddings (384-d) of the first ``P.n_corpus``
      documents of the frozen CPython corpus, a tenth held out as queries (at most
      ``P.n_queries``).  The rows are unit vectors, and the metric is squared L2, which
      on unit vectors is 2 - 2 cos: the same ranking as cosine similarity, and a metric
      every index supports.
    """
    P = config.profile(size)
    X = data.make_gaussian_mixture(P.get("ann_n") + P.n_queries, P.get("ann_d"), intrinsic_dim=16, seed=seed)
    mixture = make_dataset("gaussian-mixture", X, P.n_queries, seed=seed,
                           description="32 Gaussian clusters near a 16-d subspace, unequal sizes")
    E = data.load_corpus_embeddings(P.n_corpus)
    minilm = make_dataset("minilm", E, min(P.n_queries, len(E) // 10), seed=seed,
                          description="MiniLM embeddings of CPython docs, unit rows (L2 ranks as cosine)")
    return [mixture, minilm]


# --------------------------------------------------------------------------- records
@dataclass
class RunRecord:
    """One index at one search setting on one dataset: the numbers every lesson compares."""

    dataset: str
    implementation: str  # "course" | "faiss" | "hnswlib"
    index: str  # the index family: "Flat", "IVF-Flat", "PQ", "HNSW", ...
    params: dict[str, Any]  # build and search parameters, with the course's names
    recall_at_10: float
    qps_single: float
    qps_batch: float
    build_s: float
    bytes_per_vector: float
    dist_per_query: float | None

    def key(self) -> tuple[str, str, str, str]:
        """What identifies a measurement (a later one with the same key replaces it)."""
        return (self.dataset, self.implementation, self.index, json.dumps(self.params, sort_keys=True))

    @property
    def label(self) -> str:
        """``implementation index``, e.g. "faiss HNSW"."""
        return f"{self.implementation} {self.index}"


# --------------------------------------------------------------------------- adapters
class Searcher:
    """What :func:`evaluate` needs from an index: search, memory, and (optionally) work done."""

    def search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def bytes_per_vector(self) -> float:
        raise NotImplementedError

    @property
    def dist_per_query(self) -> float | None:
        """Distance computations per query of the last search (None: not exposed)."""
        return None


class CourseAdapter(Searcher):
    """A course :class:`~course_lib.ann.base.Index`: it already speaks the API, and counts distances."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(Q, k, **params)

    @property
    def bytes_per_vector(self) -> float:
        return float(self.index.bytes_per_vector)

    @property
    def dist_per_query(self) -> float | None:
        return float(self.index.stats.dist_per_query)


def set_faiss_params(index: Any, params: dict[str, Any]) -> None:
    """Set course-named search parameters on a faiss index.

    ``nprobe`` goes to the IVF part (found through ``faiss.extract_index_ivf``, so it
    also works inside wrappers), ``ef`` to ``index.hnsw.efSearch``.  Anything else is
    a ValueError: a knob silently ignored makes a sweep of identical points.
    """
    import faiss

    for name, value in params.items():
        if name == "nprobe":
            try:
                ivf = faiss.extract_index_ivf(index)
            except RuntimeError:  # faiss's own error for "not an IVF index"
                raise ValueError(f"search parameter 'nprobe' does not apply to faiss {type(index).__name__}") from None
            ivf.nprobe = int(value)
        elif name in ("ef", "efSearch") and hasattr(index, "hnsw"):
            index.hnsw.efSearch = int(value)
        else:
            raise ValueError(f"search parameter {name!r} does not apply to faiss {type(index).__name__}")


class FaissAdapter(Searcher):
    """A faiss index behind the course's ``search(Q, k, **params)``.

    Parameters
    ----------
    index : a trained, filled faiss index.
    param_setter : ``f(index, params)`` that applies the search parameters
        (default :func:`set_faiss_params`).

    ``bytes_per_vector`` is faiss's own serialized size divided by ``ntotal`` (codes,
    ids, graph and quantizer: what ``write_index`` would store).  ``dist_per_query``
    comes from faiss's global statistics for IVF (``indexIVF_stats.ndis``) and HNSW
    (``hnsw_stats.ndis``) indexes, is ``ntotal`` for the exhaustive scans (``IndexFlat``,
    and the code scans ``IndexPQ`` and ``IndexLSH``: one code distance per vector, by
    definition), and None for the rest.  Those statistics are exact only single-threaded, which is
    how :func:`evaluate` runs.
    """

    def __init__(self, index: Any, param_setter: Callable[[Any, dict[str, Any]], None] | None = None) -> None:
        self.index = index
        self.param_setter = param_setter or set_faiss_params
        self._ndis: float | None = None

    def search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        self.param_setter(self.index, params)
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        kind = self._kind()
        if kind == "ivf":
            faiss.cvar.indexIVF_stats.reset()
        elif kind == "hnsw":
            faiss.cvar.hnsw_stats.reset()
        D, I = self.index.search(Q, k)
        if kind == "ivf":
            self._ndis = faiss.cvar.indexIVF_stats.ndis / len(Q)
        elif kind == "hnsw":
            self._ndis = faiss.cvar.hnsw_stats.ndis / len(Q)
        elif kind == "flat":
            self._ndis = float(self.index.ntotal)
        return D, I.astype(np.int64)

    def _kind(self) -> str:
        import faiss

        if isinstance(self.index, (faiss.IndexFlat, faiss.IndexPQ, faiss.IndexLSH)):
            return "flat"  # exhaustive scans: one (code) distance per stored vector
        if hasattr(self.index, "hnsw"):
            return "hnsw"
        try:
            faiss.extract_index_ivf(self.index)
        except RuntimeError:
            return "other"
        return "ivf"

    @property
    def bytes_per_vector(self) -> float:
        import faiss

        return faiss.serialize_index(self.index).nbytes / self.index.ntotal

    @property
    def dist_per_query(self) -> float | None:
        return self._ndis


class HnswlibAdapter(Searcher):
    """An ``hnswlib.Index`` behind the course's API: ``ef`` goes to ``set_ef``.

    hnswlib's ``l2`` space returns squared distances, as faiss and the course do.
    ``bytes_per_vector`` is ``index_file_size() / count`` (vectors, links, labels);
    hnswlib does not count distance computations, so ``dist_per_query`` is None.
    """

    def __init__(self, index: Any) -> None:
        self.index = index
        self.index.set_num_threads(1)

    def search(self, Q: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        unknown = set(params) - {"ef"}
        if unknown:
            raise ValueError(f"hnswlib takes only the search parameter 'ef', got {sorted(unknown)}")
        if "ef" in params:
            self.index.set_ef(int(params["ef"]))
        labels, distances = self.index.knn_query(np.ascontiguousarray(Q, dtype=np.float32), k=k, num_threads=1)
        return distances.astype(np.float32), labels.astype(np.int64)

    @property
    def bytes_per_vector(self) -> float:
        return self.index.index_file_size() / self.index.get_current_count()


def as_searcher(index: Any) -> Searcher:
    """A course Index or an adapter, as a :class:`Searcher` (anything else is a ValueError)."""
    if isinstance(index, Searcher):
        return index
    if isinstance(index, Index):
        return CourseAdapter(index)
    raise ValueError(
        "build_fn must return a course_lib.ann Index or an adapter (FaissAdapter, HnswlibAdapter), "
        f"got {type(index).__name__}"
    )


# --------------------------------------------------------------------------- evaluate
#: Keep repeating a timed call until this many seconds were timed (at most 100 calls): a
#: 2 ms search timed 3 times is at the mercy of one scheduler hiccup on a shared machine.
MIN_TIME_S = 0.05


def _best_seconds(fn: Callable[[], Any], repeats: int, min_time: float = MIN_TIME_S) -> float:
    """Best wall-clock time of at least ``repeats`` calls (the first call has already warmed up)."""
    best, total, calls = math.inf, 0.0, 0
    while calls < repeats or (total < min_time and calls < 100):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, total, calls = min(best, elapsed), total + elapsed, calls + 1
    return best


def tie_aware_recall(dataset: BenchDataset, I: np.ndarray, k: int = K) -> float:
    """recall@k of returned ids ``I`` (n_queries, >= k), ties at the k-th distance counted as hits."""
    D_pred = vec.exact_distances(dataset.xq, dataset.xb, I[:, :k], dataset.metric)
    return vec.recall_at_k(I[:, :k], dataset.gt.I, k, D_pred=D_pred, D_true=dataset.gt.D, metric=dataset.metric)


def evaluate(
    name: str,
    build_fn: Callable[[np.ndarray], Any],
    dataset: BenchDataset,
    search_grid: Sequence[dict[str, Any]] = ({},),
    implementation: str = "course",
    *,
    build_params: dict[str, Any] | None = None,
    repeats: int = 3,
    n_single: int = N_SINGLE,
) -> list[RunRecord]:
    """Build an index once and measure it at every search setting of ``search_grid``.

    Parameters
    ----------
    name : the index family ("Flat", "IVF-Flat", "HNSW", ...), the same for ours and the reference.
    build_fn : ``build_fn(xb)`` returns the filled index: a course
        :class:`~course_lib.ann.base.Index` or an adapter (:class:`FaissAdapter`,
        :class:`HnswlibAdapter`).  Its wall time is ``build_s``.
    dataset : the database, queries and ground truth.
    search_grid : one dict of search parameters per setting, e.g. ``[{"nprobe": 1}, {"nprobe": 8}]``.
    implementation : "course", "faiss" or "hnswlib".
    build_params : recorded in every record's ``params`` together with the search parameters.
    repeats : timed repeats per measurement (more for searches faster than
        :data:`MIN_TIME_S`); the best is kept.
    n_single : the first ``n_single`` queries are timed one per call for ``qps_single``.

    Returns
    -------
    One :class:`RunRecord` per setting, in the order of ``search_grid``.

    Everything (build included) runs under :func:`course_lib.config.single_thread`.
    The first batched search of each setting is an untimed warm-up; its ids give the
    recall and its distance count gives ``dist_per_query``.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {sorted(IMPLEMENTATIONS)}, got {implementation!r}")
    if repeats < 1 or n_single < 1:
        raise ValueError(f"need repeats >= 1 and n_single >= 1, got {repeats=}, {n_single=}")
    search_grid = list(search_grid)
    if not search_grid or not all(isinstance(p, dict) for p in search_grid):
        raise ValueError("search_grid must be a non-empty list of dicts of search parameters ([{}] for none)")
    xq, Q_single = dataset.xq, dataset.xq[:n_single]
    records = []
    with config.single_thread():
        start = time.perf_counter()
        searcher = as_searcher(build_fn(dataset.xb))
        build_s = time.perf_counter() - start
        bytes_per_vector = float(searcher.bytes_per_vector)
        for params in search_grid:
            _, I = searcher.search(xq, K, **params)  # warm-up; also the answer we score
            dist_per_query = searcher.dist_per_query
            batch_s = _best_seconds(lambda: searcher.search(xq, K, **params), repeats)

            def one_query_per_call() -> None:
                for q in Q_single:
                    searcher.search(q[None, :], K, **params)

            single_s = _best_seconds(one_query_per_call, repeats)
            records.append(RunRecord(
                dataset=dataset.name,
                implementation=implementation,
                index=name,
                params={**(build_params or {}), **params},
                recall_at_10=round(tie_aware_recall(dataset, np.asarray(I)), 6),
                qps_single=len(Q_single) / single_s,
                qps_batch=len(xq) / batch_s,
                build_s=build_s,
                bytes_per_vector=bytes_per_vector,
                dist_per_query=None if dist_per_query is None else float(dist_per_query),
            ))
    return records


# --------------------------------------------------------------------------- Pareto front
def pareto_front(points: Any) -> np.ndarray:
    """Indices of the points that no other point dominates, both coordinates maximised.

    Point ``j`` dominates point ``i`` when it is at least as good in both coordinates
    and strictly better in at least one: ``p[j] >= p[i]`` everywhere and
    ``p[j] > p[i]`` somewhere.  So exact duplicates do not dominate each other (both
    stay on the front, or both leave it), and a point that only ties another in one
    coordinate while losing in the other is dominated.

    Parameters
    ----------
    points : (n, 2) array-like, e.g. columns (recall, qps).  To minimise a
        coordinate, negate it first.

    Returns
    -------
    int64 array of the front's row indices, sorted ascending.  Empty input
    (shape (0, 2)) gives an empty array; one point is its own front.

    O(n^2) comparisons, fine for the few hundred records of a benchmark.
    """
    P = np.asarray(points, dtype=np.float64)
    if P.size == 0:
        return np.zeros(0, dtype=np.int64)
    if P.ndim != 2 or P.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {P.shape}")
    if np.isnan(P).any():
        raise ValueError("points contain NaN: a NaN is neither better nor worse, so dominance is undefined")
    on_front = []
    for i, p in enumerate(P):
        at_least_as_good = (P >= p).all(axis=1)
        strictly_better = (P > p).any(axis=1)
        if not (at_least_as_good & strictly_better).any():
            on_front.append(i)
    return np.asarray(on_front, dtype=np.int64)


def _values(records: Sequence[RunRecord], field: str) -> np.ndarray:
    return np.array([np.nan if getattr(r, field) is None else getattr(r, field) for r in records], dtype=np.float64)


def record_front(records: Sequence[RunRecord], x: str = "qps_batch", y: str = "recall_at_10") -> list[int]:
    """Positions in ``records`` of the Pareto front of (x, y); metrics in :data:`LOWER_IS_BETTER` are minimised.

    Records whose x or y is missing (None) are left out.
    """
    X, Y = _values(records, x), _values(records, y)
    keep = np.flatnonzero(~(np.isnan(X) | np.isnan(Y)))
    sign_x = -1.0 if x in LOWER_IS_BETTER else 1.0
    sign_y = -1.0 if y in LOWER_IS_BETTER else 1.0
    front = pareto_front(np.column_stack([sign_x * X[keep], sign_y * Y[keep]]))
    return keep[front].tolist()


# --------------------------------------------------------------------------- plots
def _colour(implementation: str) -> str:
    from ..viz import COLORS

    return COLORS[IMPLEMENTATIONS.get(implementation, "theory")]


def _short_number(v: float, _: Any = None) -> str:
    """1200 -> "1.2k", 3e6 -> "3M": tick labels that do not collide."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"


def _log_x(ax: Any) -> None:
    """Log x axis with short plain-number ticks: 1, 2, 5 x 10^k over a narrow range, 10^k over a wide one."""
    from matplotlib import ticker

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(_short_number))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def plot_pareto(
    records: Sequence[RunRecord],
    x: str = "qps_batch",
    y: str = "recall_at_10",
    *,
    dataset: str | None = None,
    ax: Any = None,
    title: str | None = None,
    front: str | None = "implementation",
    legend: str | None = "auto",
) -> Any:
    """Scatter ``y`` against ``x`` with each implementation's Pareto front as a step line.

    Colours: course blue, faiss orange, hnswlib green (:data:`course_lib.viz.COLORS`);
    one marker per index family (:data:`MARKERS`).  The x axis is logarithmic.
    ``front``: "implementation" (one front per implementation), "all" (one front over
    every record, grey) or None.  The step line shows the best ``y`` reachable at
    each ``x``: for a speed (maximised) the best y among points at least that fast,
    for a cost (minimised, :data:`LOWER_IS_BETTER`) the best y within that budget.
    ``dataset`` keeps only that dataset's records (records of several datasets on one
    plot would compare different problems).  ``legend``: "auto" (inside for up to five
    series, else outside on the right), "inside", "outside" or None.  Returns the axes.
    """
    from .. import viz

    if dataset is not None:
        records = [r for r in records if r.dataset == dataset]
    if ax is None:
        _, ax = viz.figure(title or f"{LABELS.get(y, y)} vs {x}", LABELS.get(x, x), LABELS.get(y, y))
    elif title:
        ax.set_title(title)
    records = [r for r in records if getattr(r, x) is not None and getattr(r, y) is not None]
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.implementation, r.index), []).append(r)
    for (impl, family), rs in groups.items():
        # ours filled and on top, references hollow: a point of ours that lands exactly on
        # the reference's (brute force: recall 1.0 at the same speed) stays visible inside it
        ours = impl == "course"
        ax.scatter([getattr(r, x) for r in rs], [getattr(r, y) for r in rs], marker=MARKERS.get(family, "v"),
                   s=(110 if MARKERS.get(family) == "*" else 55) * (1.0 if ours else 1.6),
                   facecolors=_colour(impl) if ours else "none", edgecolors=_colour(impl),
                   linewidths=0.5 if ours else 1.6, label=f"{impl} {family}", zorder=4 if ours else 3)
    implementations = list(dict.fromkeys(r.implementation for r in records))
    if front == "all":
        fronts = {"all": records}
    elif front == "implementation":
        fronts = {impl: [r for r in records if r.implementation == impl] for impl in implementations}
    else:
        fronts = {}
    for impl, rs in fronts.items():
        idx = record_front(rs, x, y)
        pts = sorted((getattr(rs[i], x), getattr(rs[i], y)) for i in idx)
        if len(pts) < 1:
            continue
        xs, ys = zip(*pts)
        colour = viz.COLORS["theory"] if front == "all" else _colour(impl)
        ax.step(xs, ys, where="post" if x in LOWER_IS_BETTER else "pre", color=colour, alpha=0.6, lw=1.5,
                ls="--", zorder=2, label=f"{impl} Pareto front" if front == "all" else None)
    _log_x(ax)
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    if records and legend:
        if legend == "outside" or (legend == "auto" and len(groups) > 5):
            ax.legend(fontsize=8, markerscale=0.7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            # the front falls from top left (slow, exact) to bottom right: the lower left is usually empty;
            # for a cost on x (bytes) the cheap, inexact points sit lower left, so use the lower right
            ax.legend(fontsize=8, markerscale=0.7, loc="lower right" if x in LOWER_IS_BETTER else "lower left")
    return ax


def plot_recall_vs_bytes(records: Sequence[RunRecord], **kwargs: Any) -> Any:
    """recall@10 against bytes per vector (fewer bytes is better): :func:`plot_pareto` with ``x="bytes_per_vector"``."""
    return plot_pareto(records, x="bytes_per_vector", y="recall_at_10", **kwargs)


# --------------------------------------------------------------------------- ratio table
def _qps_at_recall(records: Sequence[RunRecord], recall: float, field: str) -> float | None:
    """The highest ``field`` QPS among records whose recall is at least ``recall`` (None if none reach it)."""
    ok = [getattr(r, field) for r in records if r.recall_at_10 >= recall - 1e-9]
    return max(ok) if ok else None


def ratio_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Course against reference, one row per (course record, reference implementation).

    Two comparisons, both against the reference's records of the same dataset and
    index family:

    * **at equal params**: the reference's record with exactly the same ``params``
      (build and search): ``qps_batch``, ``qps_single``, ``build_s`` and
      ``bytes_per_vector`` as course / reference (above 1: ours is faster / bigger),
      and the recall difference course - reference;
    * **at matched recall**: course ``qps_batch`` / the best reference ``qps_batch``
      among its settings whose recall@10 is at least ours (None when no reference
      setting reaches our recall).  This is the fair one when parameters do not mean
      exactly the same thing in two implementations.
    """
    course = [r for r in records if r.implementation == "course"]
    refs = [r for r in records if r.implementation != "course"]
    rows = []
    for c in course:
        for impl in dict.fromkeys(r.implementation for r in refs):
            same_family = [r for r in refs
                           if r.implementation == impl and r.dataset == c.dataset and r.index == c.index]
            if not same_family:
                continue
            twin = next((r for r in same_family if r.params == c.params), None)
            matched = _qps_at_recall(same_family, c.recall_at_10, "qps_batch")
            rows.append({
                "dataset": c.dataset,
                "index": c.index,
                "params": ", ".join(f"{k}={v}" for k, v in c.params.items()) or "-",
                "reference": impl,
                "recall course": c.recall_at_10,
                "recall ref": None if twin is None else twin.recall_at_10,
                "recall diff": None if twin is None else c.recall_at_10 - twin.recall_at_10,
                "QPS batch ratio": None if twin is None else c.qps_batch / twin.qps_batch,
                "QPS single ratio": None if twin is None else c.qps_single / twin.qps_single,
                "QPS ratio at matched recall": None if matched is None else c.qps_batch / matched,
                "build ratio": None if twin is None else c.build_s / max(twin.build_s, 1e-9),
                "bytes ratio": None if twin is None else c.bytes_per_vector / twin.bytes_per_vector,
            })
    return rows


def ratio_table(records: Sequence[RunRecord]) -> str:
    """:func:`ratio_rows` as a markdown table (course / reference; see there for the definitions)."""
    rows = ratio_rows(records)
    if not rows:
        return "_no course record has a reference record of the same dataset and index family_\n"
    cols = list(rows[0])

    def fmt(col: str, v: Any) -> str:
        if v is None:
            return "-"
        if col == "recall diff":
            return f"{v:+.3f}"
        if col.startswith("recall"):
            return f"{v:.3f}"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(c, row[c]) for c in cols) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- ledger
def default_ledger(size: str = "small") -> Path:
    """Where lessons collect their records at one size: ``runs/ledger/ann_<size>.json`` (git-ignored)."""
    config.profile(size)  # validates the name
    return config.REPO_ROOT / "runs" / "ledger" / f"ann_{size}.json"


def save_records(records: Iterable[RunRecord], path: str | Path, *, append: bool = False) -> Path:
    """Write records as a JSON list of objects.

    ``append=True`` keeps the records already in the file, except those with the
    same :meth:`RunRecord.key` as a new one (a re-run replaces its old numbers).
    """
    path = Path(path)
    new = list(records)
    old = load_records(path) if append and path.exists() else []
    keys = {r.key() for r in new}
    merged = [r for r in old if r.key() not in keys] + new
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in merged], indent=1) + "\n")
    tmp.replace(path)  # atomic: a crash never leaves half a ledger
    return path


def load_records(path: str | Path) -> list[RunRecord]:
    """Read records written by :func:`save_records`."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no records file at {path}")
    rows = json.loads(path.read_text())
    names = {f.name for f in fields(RunRecord)}
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(r) == names for r in rows):
        raise ValueError(f"{path} is not a list of RunRecords (fields {sorted(names)})")
    return [RunRecord(**r) for r in rows]
