"""A design doc as code: requirements -> estimates -> high-level design -> deep dive.

A design review asks four questions, in this order (the "4-step framework"):

1. **Requirements**: what must the system do, in numbers? (:class:`Requirements`)
2. **Estimates**: what do those numbers imply (QPS, bytes, shards, replicas, dollars)?
   Measure what can be measured, extrapolate with a stated model, assume the rest,
   and label each number with how it was obtained (:class:`Estimate`).
3. **High-level design**: which components, in which order?  A DAG of
   :class:`Component` s: :func:`critical_path`, :func:`schedule`, and a latency budget
   per stage (:func:`allocate_latency_budget`).
4. **Deep dive**: does every number fit?  Each verdict is a :class:`Check` with its
   value and its limit, shown as a :func:`scorecard`.

The first half of the module is generic (stages, components, checks).  The second half
is the course's worked example, semantic search over 100M documents
(:class:`SearchDesign`), which reuses the chapter 02 memory model
(:mod:`course_lib.ann.choose`, equal to faiss's serialized sizes) and the capacity
helpers of lesson 01.04 (:mod:`course_lib.capacity`).

Units: milliseconds (ms) for latency, bytes for memory, queries/s for load, US
dollars per month (730 hours) for cost.
"""

from __future__ import annotations

import graphlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, NamedTuple

import numpy as np

from . import capacity, reliability
from .validate import check_int, check_number
from .ann import choose

#: Hours in a billing month (365 * 24 / 12).
HOURS_PER_MONTH = 730.0
#: Seconds in a day.
SECONDS_PER_DAY = 86_400.0


def _number(value: Any, name: str, *, positive: bool = False) -> float:
    """``value`` as a finite float >= 0 (> 0 with ``positive``), else a ValueError saying what arrived."""
    return check_number(value, name, low=0, low_open=positive)


def _count(value: Any, name: str, *, minimum: int = 1) -> int:
    return check_int(value, name, low=minimum)


# =========================================================================== #
# Latency budgets
# =========================================================================== #
class Stage(NamedTuple):
    """One stage of a request path: its measured p99 and its fixed overhead (network hop, serialization), in ms."""

    name: str
    p99_ms: float
    overhead_ms: float = 0.0


def allocate_latency_budget(stages: Sequence[Sequence[Any]], slo_ms: float) -> dict[str, float]:
    """Split an end-to-end latency SLO among the stages of a request path.

    Each stage first gets its fixed overhead; what is left of the SLO is shared in
    proportion to the stages' measured p99 (every stage gets the same *relative*
    headroom).  If every p99 is 0, the remainder is shared equally.

    .. math::  b_i = o_i + \\frac{p_i}{\\sum_j p_j}\\Big(\\mathrm{SLO} - \\sum_j o_j\\Big)

    Parameters
    ----------
    stages : non-empty sequence of ``(name, p99_ms, overhead_ms)`` triples (a
        :class:`Stage` qualifies): unique non-empty names, finite numbers >= 0.
    slo_ms : end-to-end latency objective, ms, finite and > 0.

    Returns
    -------
    dict name -> budget in ms, in the order of ``stages``; the budgets sum to ``slo_ms``
    (up to float rounding).  A stage whose ``p99 + overhead`` exceeds its budget does
    not fit: that happens exactly when ``sum(p99 + overhead) > slo_ms``.

    Raises
    ------
    ValueError : malformed stages, a bad SLO, or overheads alone above the SLO.
    """
    slo = _number(slo_ms, "slo_ms", positive=True)
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or len(stages) == 0:
        raise ValueError(f"stages must be a non-empty list of (name, p99_ms, overhead_ms), got {stages!r}")
    names: list[str] = []
    p99s: list[float] = []
    overheads: list[float] = []
    for i, stage in enumerate(stages):
        if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence) or len(stage) != 3:
            raise ValueError(f"stage {i} must be a (name, p99_ms, overhead_ms) triple, got {stage!r}")
        name, p99, overhead = stage
        if not isinstance(name, str) or not name:
            raise ValueError(f"stage {i}: the name must be a non-empty str, got {name!r}")
        if name in names:
            raise ValueError(f"stage {i}: duplicate stage name {name!r}")
        names.append(name)
        p99s.append(_number(p99, f"stage {name!r} p99_ms"))
        overheads.append(_number(overhead, f"stage {name!r} overhead_ms"))
    fixed = math.fsum(overheads)
    if fixed > slo:
        raise ValueError(f"the fixed overheads alone ({fixed:g} ms) exceed the SLO ({slo:g} ms): no budget is left")
    remainder, total_p99 = slo - fixed, math.fsum(p99s)
    shares = [p / total_p99 for p in p99s] if total_p99 > 0 else [1.0 / len(names)] * len(names)
    return {name: o + s * remainder for name, o, s in zip(names, overheads, shares)}


# =========================================================================== #
# Components: a DAG of request stages
# =========================================================================== #
@dataclass(frozen=True)
class Component:
    """A box of the high-level design: what it costs a request and what it waits for.

    Attributes
    ----------
    name : unique name.
    p99_ms : p99 latency of the component's own work, ms.
    overhead_ms : fixed cost of reaching it (network round trip, serialization), ms.
    after : names of the components that must finish before it starts.
    how : where ``p99_ms`` comes from: "measured", "extrapolated" or "assumed".
    """

    name: str
    p99_ms: float
    overhead_ms: float = 0.0
    after: tuple[str, ...] = ()
    how: str = "assumed"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a component needs a non-empty name, got {self.name!r}")
        _number(self.p99_ms, f"{self.name}.p99_ms")
        _number(self.overhead_ms, f"{self.name}.overhead_ms")
        if isinstance(self.after, str) or not all(isinstance(a, str) for a in self.after):
            raise ValueError(f"{self.name}.after must be a tuple of component names, got {self.after!r}")

    @property
    def total_ms(self) -> float:
        """Overhead plus own p99: the component's contribution to a path, ms."""
        return float(self.overhead_ms + self.p99_ms)

    def stage(self) -> Stage:
        return Stage(self.name, float(self.p99_ms), float(self.overhead_ms))


def _by_name(components: Iterable[Component]) -> dict[str, Component]:
    out: dict[str, Component] = {}
    for c in components:
        if not isinstance(c, Component):
            raise ValueError(f"expected Component objects, got {c!r}")
        if c.name in out:
            raise ValueError(f"duplicate component name {c.name!r}")
        out[c.name] = c
    if not out:
        raise ValueError("need at least one component")
    for c in out.values():
        missing = [a for a in c.after if a not in out]
        if missing:
            raise ValueError(f"{c.name!r} comes after unknown component(s) {missing}; known: {sorted(out)}")
    return out


def topological_order(components: Iterable[Component]) -> list[str]:
    """Component names, each after everything it waits for (``graphlib.TopologicalSorter``).

    Raises ValueError on a duplicate name, an unknown dependency or a cycle.
    """
    comps = _by_name(components)
    sorter = graphlib.TopologicalSorter({name: set(c.after) for name, c in comps.items()})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as err:
        raise ValueError(f"the components form a cycle: {' -> '.join(err.args[1])}") from None


def schedule(components: Iterable[Component]) -> dict[str, tuple[float, float]]:
    """Earliest (start, finish) of each component, ms after the request arrives.

    A component starts when the last of its ``after`` finishes (0 if it waits for
    nothing) and finishes ``overhead_ms + p99_ms`` later.  With p99s as durations this
    is a pessimistic picture: it assumes every stage is at its p99 at once.
    """
    comps = list(components)
    by = _by_name(comps)
    times: dict[str, tuple[float, float]] = {}
    for name in topological_order(comps):
        start = max((times[a][1] for a in by[name].after), default=0.0)
        times[name] = (start, start + by[name].total_ms)
    return times


def critical_path(components: Iterable[Component]) -> tuple[list[str], float]:
    """The longest chain through the DAG: the stages that set the end-to-end latency.

    Dynamic programming in topological order: ``finish[c] = max(finish[a] for a in
    c.after) + c.total_ms``, remembering which ``a`` achieved the max; the path ends at
    the component that finishes last and is read back through those choices.

    Returns
    -------
    (names from first to last, total ms): the sum of ``total_ms`` along the path.
    """
    comps = list(components)
    by = _by_name(comps)
    finish: dict[str, float] = {}
    came_from: dict[str, str | None] = {}
    for name in topological_order(comps):
        before = max(by[name].after, key=lambda a: finish[a], default=None)
        finish[name] = (finish[before] if before is not None else 0.0) + by[name].total_ms
        came_from[name] = before
    node: str | None = max(finish, key=finish.__getitem__)
    total = finish[node]
    path: list[str] = []
    while node is not None:
        path.append(node)
        node = came_from[node]
    return path[::-1], float(total)


# =========================================================================== #
# Estimates and checks
# =========================================================================== #
How = Literal["required", "measured", "extrapolated", "assumed", "derived"]


@dataclass(frozen=True)
class Estimate:
    """One number of the design doc, with its unit and how we know it."""

    name: str
    value: float
    unit: str
    how: How
    formula: str = ""

    def row(self) -> dict[str, Any]:
        return {"estimate": self.name, "value": self.value, "unit": self.unit, "how": self.how, "from": self.formula}


@dataclass(frozen=True)
class Check:
    """A deep-dive verdict: ``value`` must be at most (or at least) ``limit``."""

    name: str
    value: float
    limit: float
    unit: str = ""
    kind: Literal["at_most", "at_least"] = "at_most"
    note: str = ""

    @property
    def passed(self) -> bool:
        v = float(self.value)
        if math.isnan(v):
            return False
        return v <= self.limit if self.kind == "at_most" else v >= self.limit

    @property
    def margin(self) -> float:
        """How far inside the limit, as a fraction of the limit (negative: by how much it fails)."""
        if self.limit == 0:
            return math.inf if self.passed else -math.inf
        gap = self.limit - self.value if self.kind == "at_most" else self.value - self.limit
        return float(gap / abs(self.limit))


def scorecard(checks: Iterable[Check]) -> list[dict[str, Any]]:
    """Rows of the scorecard table: check, value, limit, unit, margin and PASS/FAIL."""
    return [
        {
            "check": c.name,
            "value": float(c.value),
            "limit": ("<= " if c.kind == "at_most" else ">= ") + f"{c.limit:,.4g}",
            "unit": c.unit,
            "margin": f"{c.margin:+.0%}" if math.isfinite(c.margin) else "-",
            "verdict": "PASS" if c.passed else "FAIL",
            "note": c.note,
        }
        for c in checks
    ]


def compare_scenarios(results: dict[str, Sequence[Check]]) -> list[dict[str, str]]:
    """One row per scenario, one column per check: ``PASS``/``FAIL`` with the value."""
    rows = []
    for scenario, checks in results.items():
        row = {"scenario": scenario}
        for c in checks:
            row[c.name] = f"{'PASS' if c.passed else 'FAIL'} {c.value:,.3g}"
        rows.append(row)
    return rows


# =========================================================================== #
# The worked example: semantic search over 100M documents
# =========================================================================== #
@dataclass(frozen=True)
class Requirements:
    """Step 1: what the search service must do, in numbers.

    Attributes
    ----------
    n_docs : documents to search.
    dim : embedding dimension of the chosen model (all-MiniLM-L6-v2: 384).
    dau : daily active users.
    queries_per_user_day : searches per user per day.
    peak_factor : peak QPS / average QPS (diurnal peak, launches).
    p99_slo_ms : end-to-end p99 latency objective, ms.
    recall_target : recall@k the product needs (1.0: exact search).
    budget_usd_month : what the serving fleet may cost per month, USD.
    k : results per query.
    """

    n_docs: int
    dim: int
    dau: float
    queries_per_user_day: float
    peak_factor: float
    p99_slo_ms: float
    recall_target: float
    budget_usd_month: float
    k: int = 10

    def __post_init__(self) -> None:
        _count(self.n_docs, "n_docs")
        _count(self.dim, "dim")
        _count(self.k, "k")
        for name in ("dau", "queries_per_user_day", "p99_slo_ms", "budget_usd_month"):
            _number(getattr(self, name), name, positive=True)
        if _number(self.peak_factor, "peak_factor") < 1:
            raise ValueError(f"peak_factor is peak / average and must be >= 1, got {self.peak_factor!r}")
        if not 0 < _number(self.recall_target, "recall_target") <= 1:
            raise ValueError(f"recall_target must be in (0, 1], got {self.recall_target!r}")

    @property
    def avg_qps(self) -> float:
        """Average queries/s: DAU x queries per user per day / 86,400 s."""
        return self.dau * self.queries_per_user_day / SECONDS_PER_DAY

    @property
    def peak_qps(self) -> float:
        """Peak queries/s: average x peak factor (what the fleet is sized for)."""
        return self.avg_qps * self.peak_factor


@dataclass(frozen=True)
class Assumptions:
    """Everything we did not measure: hardware, prices, headroom, the latency of stages we do not own.

    Prices are **illustrative**: AWS on-demand list prices in us-east-1 as of 2024 for an
    r6i.2xlarge (memory-optimised) and a c6i.2xlarge (compute-optimised).  Check today's
    prices (and your discounts) before you quote a number.
    """

    search_node: str = "r6i.2xlarge: 8 vCPU, 64 GiB"
    search_node_ram_gib: float = 64.0
    search_node_vcpus: int = 8
    search_node_usd_hour: float = 0.504
    embed_node: str = "c6i.2xlarge: 8 vCPU, 16 GiB"
    embed_node_vcpus: int = 8
    embed_node_usd_hour: float = 0.34
    object_storage_usd_gb_month: float = 0.023  # raw float32 vectors kept for rebuilds (S3 standard)
    prices_as_of: str = "AWS on-demand list prices, us-east-1, 2024 (illustrative)"
    ram_fill: float = 0.7  # share of a node's RAM the index may use (OS, buffers, a rebuild's second copy)
    target_utilization: float = 0.7  # replicas run at most this busy at peak (queueing keeps p99 sane)
    spares: int = 1  # N+1: survive one replica failure or a rolling deploy
    hnsw_M: int = choose.HNSW_M
    gateway_ms: float = 2.0  # auth, rate limit, parse: p99 of the API gateway
    acl_lookup_ms: float = 5.0  # p99 of one key-value read (the user's permissions)
    fetch_docs_ms: float = 8.0  # p99 of a multi-get of k documents from the document store
    hop_ms: float = 1.0  # one in-zone network round trip plus serialization
    merge_ms: float = 1.0  # gather and merge k results from every shard

    def __post_init__(self) -> None:
        for name in ("search_node_ram_gib", "search_node_usd_hour", "embed_node_usd_hour",
                     "object_storage_usd_gb_month"):
            _number(getattr(self, name), name, positive=True)
        for name in ("gateway_ms", "acl_lookup_ms", "fetch_docs_ms", "hop_ms", "merge_ms"):
            _number(getattr(self, name), name)
        _count(self.search_node_vcpus, "search_node_vcpus")
        _count(self.embed_node_vcpus, "embed_node_vcpus")
        _count(self.spares, "spares", minimum=0)
        _count(self.hnsw_M, "hnsw_M")
        for name in ("ram_fill", "target_utilization"):
            if not 0 < _number(getattr(self, name), name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Measurements:
    """What was measured on this machine (one thread), and the sample size it was measured at.

    Attributes
    ----------
    sample_n : vectors in the HNSW sample index.
    seq_ns_per_vector : ns to stream one d-dim float32 vector from RAM and dot it (a Flat scan).
    rand_ns_per_vector : ns per vector for random rows of a matrix far larger than the
        caches: the cost of one distance evaluation in a graph walk.
    embed_ms : per-query encoder times, ms (the query embedding stage).
    hnsw_ndis : ef -> distance evaluations of each sample query (faiss ``hnsw_stats.ndis``).
    hnsw_recall : ef -> recall@k on the sample.
    """

    sample_n: int
    seq_ns_per_vector: float
    rand_ns_per_vector: float
    embed_ms: tuple[float, ...]
    hnsw_ndis: dict[int, tuple[float, ...]] = field(default_factory=dict)
    hnsw_recall: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _count(self.sample_n, "sample_n", minimum=2)
        _number(self.seq_ns_per_vector, "seq_ns_per_vector", positive=True)
        _number(self.rand_ns_per_vector, "rand_ns_per_vector", positive=True)
        if len(self.embed_ms) == 0:
            raise ValueError("embed_ms needs at least one measured time")
        for t in self.embed_ms:
            _number(t, "embed_ms", positive=True)
        if set(self.hnsw_ndis) != set(self.hnsw_recall):
            raise ValueError(f"hnsw_ndis and hnsw_recall must cover the same ef values, got "
                             f"{sorted(self.hnsw_ndis)} and {sorted(self.hnsw_recall)}")
        for ef, counts in self.hnsw_ndis.items():
            if len(counts) == 0 or min(counts) <= 0:
                raise ValueError(f"hnsw_ndis[{ef}] must hold positive distance counts, got {counts!r}")

    def scaled(self, search: float = 1.0, embed: float = 1.0) -> Measurements:
        """A copy with search and embedding times multiplied (sensitivity: 'what if we measured wrong?')."""
        return replace(self, seq_ns_per_vector=self.seq_ns_per_vector * search,
                       rand_ns_per_vector=self.rand_ns_per_vector * search,
                       embed_ms=tuple(t * embed for t in self.embed_ms))


class EmpiricalLatency:
    """A latency distribution given by samples (ms), with the ``quantile`` that
    :func:`course_lib.reliability.fanout_quantile` needs."""

    def __init__(self, samples_ms: Sequence[float] | np.ndarray) -> None:
        self.samples = np.asarray(samples_ms, dtype=np.float64)
        if self.samples.ndim != 1 or self.samples.size == 0 or not np.all(np.isfinite(self.samples)):
            raise ValueError(f"need a non-empty 1-D array of finite latencies, got shape {self.samples.shape}")

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.samples, q))


@dataclass(frozen=True)
class Decisions:
    """The design's choices: which index, how many shards and replicas.

    Attributes
    ----------
    index : "HNSW" (graph, in RAM) or "Flat" (exact scan).
    ef : HNSW efSearch (0 for Flat).
    n_shards : the index is cut into this many parts; every query visits all of them.
    search_replicas : copies of each shard (each serves a share of the queries).
    embed_nodes : nodes running the query encoder.
    """

    index: Literal["HNSW", "Flat"]
    ef: int
    n_shards: int
    search_replicas: int
    embed_nodes: int

    def __post_init__(self) -> None:
        if self.index not in ("HNSW", "Flat"):
            raise ValueError(f"index must be 'HNSW' or 'Flat', got {self.index!r}")
        _count(self.ef, "ef", minimum=0 if self.index == "Flat" else 1)
        for name in ("n_shards", "search_replicas", "embed_nodes"):
            _count(getattr(self, name), name)


@dataclass(frozen=True)
class SearchDesign:
    """Semantic search over ``req.n_docs`` documents: the design doc that evaluates itself.

    Build it with :meth:`planned` (decisions sized to the requirements) or directly with
    ``Decisions`` (then changing a requirement shows which checks flip).
    """

    req: Requirements
    asm: Assumptions
    meas: Measurements
    dec: Decisions

    # ------------------------------------------------------------------ step 2: estimates
    @staticmethod
    def index_bytes_per_vector(index: str, dim: int, M: int = choose.HNSW_M) -> float:
        """The chapter 02 memory model (faiss's serialized size): Flat 4d, HNSW 4d + 8M + 16."""
        if index == "Flat":
            return choose.flat_bytes(dim)
        if index == "HNSW":
            return choose.hnsw_bytes(dim, M)
        raise ValueError(f"index must be 'HNSW' or 'Flat', got {index!r}")

    @property
    def index_bytes(self) -> float:
        """Bytes of the whole index: n vectors at the index's bytes per vector (d values each, links included)."""
        d = self.req.dim
        per_value = self.index_bytes_per_vector(self.dec.index, d, self.asm.hnsw_M) / d
        return capacity.storage_bytes(self.req.n_docs, d, per_value)

    @property
    def usable_bytes_per_node(self) -> float:
        return self.asm.search_node_ram_gib * 2**30 * self.asm.ram_fill

    @property
    def vectors_per_shard(self) -> int:
        return math.ceil(self.req.n_docs / self.dec.n_shards)

    def shard_search_ms(self, n_shards: int | None = None) -> np.ndarray:
        """Per-query time of one shard's search, ms, one thread (an array over the sample queries).

        * Flat: ``n_shard * seq_ns`` (a scan costs the same for every query).
        * HNSW: ``ndis * ln(n_shard) / ln(sample_n) * rand_ns``: the measured distance
          evaluations of each query, scaled by the log n growth of HNSW search
          (Malkov & Yashunin), each at the measured cost of a random-access distance.
        """
        n_shard = math.ceil(self.req.n_docs / (n_shards or self.dec.n_shards))
        if self.dec.index == "Flat":
            return np.array([n_shard * self.meas.seq_ns_per_vector * 1e-6])
        if self.dec.ef not in self.meas.hnsw_ndis:
            raise ValueError(f"ef={self.dec.ef} was not measured; measured: {sorted(self.meas.hnsw_ndis)}")
        ndis = np.asarray(self.meas.hnsw_ndis[self.dec.ef], dtype=np.float64)
        growth = max(1.0, math.log(n_shard) / math.log(self.meas.sample_n))
        return ndis * growth * self.meas.rand_ns_per_vector * 1e-6

    @property
    def recall(self) -> float:
        """recall@k of the index: 1.0 for an exact scan, else measured on the sample (optimistic at scale)."""
        return 1.0 if self.dec.index == "Flat" else float(self.meas.hnsw_recall[self.dec.ef])

    @property
    def embed_service_ms(self) -> float:
        """Encoder CPU time per query, ms: the fastest measured run.

        Every query does the same work, so the spread between runs is the machine's noise
        (other processes on a shared machine); the fastest run is the closest to the work
        itself (``timeit``'s advice), which is what a dedicated node pays.  The p99 of the
        stage (:attr:`embed_p99_ms`) keeps the noise: production has noise too.
        """
        return float(np.min(self.meas.embed_ms))

    @property
    def search_qps_per_replica(self) -> float:
        """Queries/s one shard replica sustains: vCPUs x 1000 / mean ms per query (one query per vCPU)."""
        return self.asm.search_node_vcpus * 1e3 / float(np.mean(self.shard_search_ms()))

    @property
    def embed_qps_per_node(self) -> float:
        return self.asm.embed_node_vcpus * 1e3 / self.embed_service_ms

    def utilization(self, qps_per_node: float, nodes: int) -> float:
        """Peak load over what the non-spare nodes can serve (inf when only spares are left)."""
        serving = nodes - self.asm.spares
        return self.req.peak_qps / (qps_per_node * serving) if serving > 0 else math.inf

    @property
    def cost_usd_month(self) -> dict[str, float]:
        """Monthly cost by tier: search nodes, embedding nodes, object storage of the raw vectors."""
        a = self.asm
        raw_gb = capacity.storage_bytes(self.req.n_docs, self.req.dim, 4) / 1e9
        return {
            "search nodes": self.dec.n_shards * self.dec.search_replicas * a.search_node_usd_hour * HOURS_PER_MONTH,
            "embedding nodes": self.dec.embed_nodes * a.embed_node_usd_hour * HOURS_PER_MONTH,
            "vector storage": raw_gb * a.object_storage_usd_gb_month,
        }

    @classmethod
    def planned(cls, req: Requirements, asm: Assumptions, meas: Measurements) -> SearchDesign:
        """Size the design to the requirements: the rules a designer applies in step 2.

        1. index: exact search (Flat) if recall 1.0 is required (only exact search
           guarantees it), else HNSW with ``ef = choose.choose_ef(recall_target)``;
        2. shards: ``ceil(index bytes / usable RAM per node)``;
        3. replicas per shard and embedding nodes: ``capacity.replicas_for_qps`` at the
           peak QPS, the target utilization and the spares.
        """
        index = "Flat" if req.recall_target >= 1.0 else "HNSW"
        ef = 0 if index == "Flat" else choose.choose_ef(req.recall_target)
        draft = cls(req, asm, meas, Decisions(index, ef, 1, 1, 1))
        n_shards = max(1, math.ceil(draft.index_bytes / draft.usable_bytes_per_node))
        draft = cls(req, asm, meas, Decisions(index, ef, n_shards, 1, 1))
        replicas = capacity.replicas_for_qps(req.peak_qps, draft.search_qps_per_replica,
                                             target_utilization=asm.target_utilization, spares=asm.spares)
        embed_nodes = capacity.replicas_for_qps(req.peak_qps, draft.embed_qps_per_node,
                                                target_utilization=asm.target_utilization, spares=asm.spares)
        return cls(req, asm, meas, Decisions(index, ef, n_shards, replicas, embed_nodes))

    def with_requirements(self, **changes: Any) -> SearchDesign:
        """The same decisions facing changed requirements (to see which checks flip)."""
        return replace(self, req=replace(self.req, **changes))

    def replanned(self, **changes: Any) -> SearchDesign:
        """Changed requirements, and the design re-sized to them."""
        return SearchDesign.planned(replace(self.req, **changes), self.asm, self.meas)

    def estimates(self) -> list[Estimate]:
        """Step 2 as a table: every number the checks use, with its unit and how we know it."""
        r, a, d = self.req, self.asm, self.dec
        shard_ms = self.shard_search_ms()
        cost = self.cost_usd_month
        bpv = self.index_bytes_per_vector(d.index, r.dim, a.hnsw_M)
        rows = [
            Estimate("average QPS", r.avg_qps, "queries/s", "derived", "DAU x queries/user/day / 86,400"),
            Estimate("peak QPS", r.peak_qps, "queries/s", "derived", "average x peak factor"),
            Estimate("raw vector size", choose.flat_bytes(r.dim), "B/vector", "measured",
                     "4 d (float32), d from the corpus embeddings"),
            Estimate(f"index size per vector ({d.index}{a.hnsw_M if d.index == 'HNSW' else ''})", bpv, "B/vector",
                     "derived", "4d + 8M + 16 (HNSW) or 4d (Flat): chapter 02's model = faiss serialized"),
            Estimate("index size", self.index_bytes / 1e9, "GB", "derived",
                     "capacity.storage_bytes(n, d, bytes per vector / d)"),
            Estimate("usable RAM per node", self.usable_bytes_per_node / 1e9, "GB", "assumed",
                     f"{a.search_node_ram_gib:g} GiB x {a.ram_fill:g}"),
            Estimate("shards", d.n_shards, "", "derived", "ceil(index size / usable RAM)"),
            Estimate("vectors per shard", self.vectors_per_shard, "", "derived", "n / shards"),
        ]
        if d.index == "HNSW":
            ndis = float(np.mean(self.meas.hnsw_ndis[d.ef]))
            growth = max(1.0, math.log(self.vectors_per_shard) / math.log(self.meas.sample_n))
            rows += [
                Estimate(f"distance evaluations per query (ef={d.ef}), sample", ndis, "", "measured",
                         f"faiss hnsw_stats on {self.meas.sample_n:,} vectors"),
                Estimate("distance evaluations per query, one shard", ndis * growth, "", "extrapolated",
                         "x ln(n_shard) / ln(n_sample) (HNSW search ~ log n)"),
                Estimate("cost of one random-access distance", self.meas.rand_ns_per_vector, "ns", "measured",
                         "random rows of a matrix larger than the caches"),
            ]
        else:
            rows.append(Estimate("scan cost per vector", self.meas.seq_ns_per_vector, "ns", "measured",
                                 "streaming dot products over a matrix larger than the caches"))
        rows += [
            Estimate("shard search, mean", float(np.mean(shard_ms)), "ms", "extrapolated", "per query, one thread"),
            Estimate(f"search p99 over {d.n_shards} shards", self.search_p99_ms, "ms", "extrapolated",
                     "reliability.fanout_quantile: shard quantile at 0.99^(1/shards)"),
            Estimate("QPS per search replica", self.search_qps_per_replica, "queries/s", "derived",
                     "vCPUs x 1000 / mean ms"),
            Estimate("replicas per shard", d.search_replicas, "", "derived",
                     "capacity.replicas_for_qps(peak, per replica)"),
            Estimate("query encoder, fastest run", self.embed_service_ms, "ms", "measured",
                     "MiniLM-shaped encoder, one thread"),
            Estimate("query encoder, p99", self.embed_p99_ms, "ms", "measured", "same runs"),
            Estimate("QPS per embedding node", self.embed_qps_per_node, "queries/s", "derived",
                     "vCPUs x 1000 / fastest ms"),
            Estimate("embedding nodes", d.embed_nodes, "", "derived", "capacity.replicas_for_qps(peak, per node)"),
        ]
        rows += [Estimate(f"cost: {tier}", usd, "USD/month", "derived", "nodes x $/h x 730 h" if "nodes" in tier
                          else "raw GB x $/GB-month") for tier, usd in cost.items()]
        rows.append(Estimate("cost: total", sum(cost.values()), "USD/month", "derived", f"prices: {a.prices_as_of}"))
        return rows

    @property
    def search_p99_ms(self) -> float:
        """p99 of the search stage: the slowest of ``n_shards`` shards (fan-out, shards independent)."""
        return reliability.fanout_quantile(EmpiricalLatency(self.shard_search_ms()), 0.99, self.dec.n_shards)

    @property
    def embed_p99_ms(self) -> float:
        return float(np.quantile(self.meas.embed_ms, 0.99))

    # ------------------------------------------------------------------ step 3: high-level design
    def components(self) -> list[Component]:
        """The request path as a DAG: the ACL lookup runs in parallel with the query encoder."""
        a = self.asm
        search = f"ANN search ({self.dec.n_shards} shards)"
        return [
            Component("gateway", a.gateway_ms, a.hop_ms, (), "assumed"),
            Component("embed query", self.embed_p99_ms, a.hop_ms, ("gateway",), "measured"),
            Component("ACL lookup", a.acl_lookup_ms, a.hop_ms, ("gateway",), "assumed"),
            Component(search, self.search_p99_ms, a.hop_ms + a.merge_ms, ("embed query", "ACL lookup"), "extrapolated"),
            Component("fetch docs", a.fetch_docs_ms, a.hop_ms, (search,), "assumed"),
        ]

    @cached_property
    def path(self) -> tuple[list[str], float]:
        return critical_path(self.components())

    def latency_budget(self) -> dict[str, float]:
        """The SLO split over the critical path (:func:`allocate_latency_budget`)."""
        by = {c.name: c for c in self.components()}
        return allocate_latency_budget([by[n].stage() for n in self.path[0]], self.req.p99_slo_ms)

    # ------------------------------------------------------------------ step 4: deep dive
    def checks(self) -> list[Check]:
        """The scorecard: memory, latency, recall, capacity and cost, each against its limit."""
        r, a, d = self.req, self.asm, self.dec
        return [
            Check("index fits a node (per shard)", self.index_bytes / d.n_shards / 1e9,
                  self.usable_bytes_per_node / 1e9, "GB",
                  note=f"{d.n_shards} shards of {a.search_node_ram_gib:g} GiB x {a.ram_fill:g}"),
            Check("p99 latency (critical path)", self.path[1], r.p99_slo_ms, "ms",
                  note="sum of stage p99s: pessimistic (lesson 01.03)"),
            Check(f"recall@{r.k}", self.recall, r.recall_target, "", "at_least",
                  note="exact" if d.index == "Flat" else f"ef={d.ef}, measured on {self.meas.sample_n:,} vectors"),
            Check("search utilization at peak", self.utilization(self.search_qps_per_replica, d.search_replicas),
                  a.target_utilization, "", note=f"{d.search_replicas} replicas per shard, {a.spares} spare"),
            Check("encoder utilization at peak", self.utilization(self.embed_qps_per_node, d.embed_nodes),
                  a.target_utilization, "", note=f"{d.embed_nodes} nodes, {a.spares} spare"),
            Check("monthly cost", sum(self.cost_usd_month.values()), r.budget_usd_month, "USD",
                  note=a.prices_as_of),
        ]


# =========================================================================== #
# Plots
# =========================================================================== #
def plot_waterfall(ax: Any, components: Sequence[Component], budgets: dict[str, float] | None = None,
                   slo_ms: float | None = None) -> None:
    """Latency waterfall: one bar per component from its earliest start to its finish.

    The light part of a bar is the fixed overhead, the solid part the component's p99;
    critical-path components are blue, the others grey.  ``budgets`` (critical path
    only) are drawn as outlined windows laid end to end; ``slo_ms`` as a red line.
    """
    from matplotlib.patches import Patch

    from .viz import COLORS

    times = schedule(components)
    on_path = set(critical_path(components)[0])
    comps = sorted(components, key=lambda c: (times[c.name][0], c.name))
    budget_start = 0.0
    for row, c in enumerate(comps):
        start, _ = times[c.name]
        color = COLORS["ours"] if c.name in on_path else COLORS["theory"]
        ax.barh(row, c.overhead_ms, left=start, color=color, alpha=0.35, height=0.6)
        ax.barh(row, c.p99_ms, left=start + c.overhead_ms, color=color, height=0.6)
        ax.text(start + c.total_ms, row, f" {c.total_ms:.1f} ms ({c.how})", va="center", fontsize=8)
        if budgets and c.name in budgets:
            ax.barh(row, budgets[c.name], left=budget_start, fill=False, edgecolor=COLORS["reference"],
                    linewidth=1.5, height=0.8)
            budget_start += budgets[c.name]
    handles = [Patch(color=COLORS["ours"], label="p99, critical path"),
               Patch(color=COLORS["theory"], label="p99, parallel branch"),
               Patch(color=COLORS["ours"], alpha=0.35, label="fixed overhead")]
    if budgets:
        handles.append(Patch(fill=False, edgecolor=COLORS["reference"], linewidth=1.5, label="budget"))
    if slo_ms is not None:
        ax.axvline(slo_ms, color=COLORS["bad"], linestyle="--")
        handles.append(Patch(color=COLORS["bad"], label=f"p99 SLO {slo_ms:g} ms"))
    ax.set_yticks(range(len(comps)), [c.name for c in comps])
    ax.invert_yaxis()
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
