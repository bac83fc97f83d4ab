"""Benchmarks (``make bench``): course code against the references, measured side by side, single-threaded.

``python -m course_lib.bench exact [--out DIR] [--sizes 20000,100000] [--d 64,128]``: exact top-k
(``course_lib.vec.exact_knn``) against faiss ``IndexFlatL2``/``IndexFlatIP`` and scikit-learn brute
force; writes ``DIR/exact_knn.json`` with the machine description.

``python -m course_lib.bench retrieval [--out DIR] [--depth 100] [--splade-steps 60]``: the chapter 04
retrievers (BM25, dense MiniLM, RRF, convex fusion, SPLADE-lite) on the frozen relevance benchmark's test
split; writes ``DIR/retrieval.json`` (with the machine description) and ``DIR/retrieval.md``
(retriever, query set, NDCG@10, recall@100, latency per query).

``python -m course_lib.bench ann --size small|full --out DIR [--only Flat,HNSW] [--repeats 3]``: every
course ANN index against its faiss / hnswlib reference, on the chapter's datasets.

For each index family in :data:`SWEEP` whose course class exists in ``course_lib.ann``,
and for each dataset of :func:`course_lib.ann.harness.make_datasets`, it builds ours and
its references once per build setting, sweeps the search knob, and writes

* ``DIR/ann.json``: the list of :class:`~course_lib.ann.harness.RunRecord`;
* ``DIR/pareto_qps.png``: recall@10 against batched QPS, one panel per dataset;
* ``DIR/pareto_bytes.png``: recall@10 against bytes per vector;
* ``DIR/ratios.md``: course / reference ratios (at equal parameters and at matched recall).

Everything runs single-threaded (see the harness).  A course class that is not there yet,
or that rejects the build parameters below, is skipped with a printed note; its
references still run, so the plots show where ours should land.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- the sweep
# One entry per index family.  "course": the class name in course_lib.ann (module in
# "module"); "build": a list of build settings (each is built once; a value may be a
# function of the BenchDataset, e.g. nlist from n); "search": the search-parameter grid
# (course names: the adapters translate them); "references": which libraries to compare
# with; "max_n": optional profile key: the family runs on the first P.get(max_n) vectors
# only (for indexes too slow to build on the whole database in pure Python).
SWEEP: dict[str, dict[str, Any]] = {
    "Flat": {
        "course": "FlatIndex", "module": "flat",
        "build": [{}],
        "search": [{}],
        "references": ["faiss"],
    },
    "IVF-Flat": {
        "course": "IVFFlatIndex", "module": "ivf",
        "build": [{"nlist": lambda ds: max(1, int(round(math.sqrt(ds.n))))}],  # ~ sqrt(n) lists of ~ sqrt(n)
        "search": [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32)],
        "references": ["faiss"],
    },
    "PQ": {
        "course": "PQIndex", "module": "pq",
        "build": [{"m": m, "nbits": 8} for m in (4, 8, 16)],  # m must divide d (32, 64 and 384 all work)
        "search": [{}],
        "references": ["faiss"],
    },
    "LSH-code": {
        "course": "LSHCodeIndex", "module": "lsh",
        "build": [{"nbits": b} for b in (32, 64, 128)],
        "search": [{}],
        "references": ["faiss"],
    },
    "LSH-table": {
        "course": "LSHTableIndex", "module": "lsh",
        "build": [{"K": 12, "L": 8}],
        "search": [{"n_probes": p} for p in (1, 4, 16)],
        "references": [],  # faiss has no bucketed LSH: compared with brute force only
    },
    "IVF-PQ": {
        "course": "IVFPQIndex", "module": "ivfpq",
        # nlist ~ sqrt(n), capped so each list has >= 39 training points for k-means (faiss's minimum)
        "build": [{"nlist": lambda ds: max(1, min(int(round(math.sqrt(ds.n))), ds.n // 39)), "m": 8, "nbits": 8}],
        "search": [{"nprobe": p} for p in (1, 4, 16, 64)],
        "references": ["faiss"],
    },
    "Vamana": {
        "course": "VamanaIndex", "module": "vamana",
        "build": [{"R": 32, "L": 64, "alpha": 1.2}],
        "search": [{"L": L} for L in (16, 32, 64)],
        "references": [],  # lesson 07 compares it with faiss HNSW; here it is measured against brute force
        "max_n": "vamana_n",
    },
    "HNSW": {
        "course": "HNSWIndex", "module": "hnsw",
        "build": [{"M": 16, "ef_construction": 40}],
        "search": [{"ef": e} for e in (16, 32, 64, 128)],
        "references": ["faiss", "hnswlib"],
        "max_n": "hnsw_n",
    },
}


# --------------------------------------------------------------------------- references
def _faiss_metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def faiss_flat(xb: np.ndarray, build: dict[str, Any], metric: str) -> Any:
    import faiss

    index = faiss.IndexFlatL2(xb.shape[1]) if metric == "l2" else faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    return index


def faiss_ivf_flat(xb: np.ndarray, build: dict[str, Any], metric: str) -> Any:
    import faiss

    d = xb.shape[1]
    quantizer = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, int(build["nlist"]), _faiss_metric(metric))
    index.train(xb)
    index.add(xb)
    return index


def faiss_ivfpq(xb: np.ndarray, build: dict[str, Any], metric: str) -> Any:
    import faiss

    d = xb.shape[1]
    quantizer = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    index = faiss.IndexIVFPQ(quantizer, d, int(build["nlist"]), int(build["m"]), int(build.get("nbits", 8)), _faiss_metric(metric))
    index.train(xb)
    index.add(xb)
    return index


def faiss_pq(xb: np.ndarray, build: dict[str, Any], metric: str) -> Any:
    import faiss

    index = faiss.IndexPQ(xb.shape[1], int(build["m"]), int(build.get("nbits", 8)), _faiss_metric(metric))
    index.train(xb)
    index.add(xb)
    return index


def faiss_lsh(xb: np.ndarray, build: dict[str, Any], metric: str) -> Any:
    import faiss

    index = faiss.IndexLSH(xb.shape[1], int(build["nbits"]), bool(build.get("rotate_data", True)),
                           bool(build.get("train_thresholds", False)))
    index.train(xb)
    index.add(xb)
    return index


def faiss_hnsw(xb: np.ndarray, build: dict[str, Any], metric: str) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(xb.shape[1], int(build.get("M", 32)), _faiss_metric(metric))
    index.hnsw.efConstruction = int(build.get("ef_construction", 40))
    if hasattr(index.hnsw, "prune_headroom"):
        index.hnsw.prune_headroom = 0.0  # faiss >= 1.15 prunes to 80 %; 0 is the paper's rule
    index.add(xb)
    return index


def hnswlib_hnsw(xb: np.ndarray, build: dict[str, Any], metric: str) -> Any:
    import hnswlib

    index = hnswlib.Index(space="l2" if metric == "l2" else "ip", dim=xb.shape[1])
    index.init_index(max_elements=len(xb), M=int(build.get("M", 16)),
                     ef_construction=int(build.get("ef_construction", 200)), random_seed=0)
    index.add_items(xb, num_threads=1)
    return index


#: (index family, library) -> builder(xb, build params, metric) of the filled reference index.
REFERENCES: dict[tuple[str, str], Callable[[np.ndarray, dict[str, Any], str], Any]] = {
    ("Flat", "faiss"): faiss_flat,
    ("IVF-Flat", "faiss"): faiss_ivf_flat,
    ("PQ", "faiss"): faiss_pq,
    ("IVF-PQ", "faiss"): faiss_ivfpq,
    ("LSH-code", "faiss"): faiss_lsh,
    ("HNSW", "faiss"): faiss_hnsw,
    ("HNSW", "hnswlib"): hnswlib_hnsw,
}


# --------------------------------------------------------------------------- discovery
def find_course_class(name: str, module: str) -> type | None:
    """The class ``name`` from ``course_lib.ann`` or ``course_lib.ann.<module>``, or None if absent."""
    ann = importlib.import_module("course_lib.ann")
    if hasattr(ann, name):
        return getattr(ann, name)
    try:
        mod = importlib.import_module(f"course_lib.ann.{module}")
    except ImportError:
        return None
    return getattr(mod, name, None)


def resolve(build: dict[str, Any], dataset: Any) -> dict[str, Any]:
    """Build parameters with dataset-dependent values (functions of the dataset) evaluated."""
    return {k: (v(dataset) if callable(v) else v) for k, v in build.items()}


def course_builder(cls: type, build: dict[str, Any], metric: str) -> Callable[[np.ndarray], Any]:
    """``build_fn(xb)`` for a course class: construct, train when needed, add."""

    def build_fn(xb: np.ndarray) -> Any:
        kwargs = dict(build)
        if "metric" in inspect.signature(cls).parameters:
            kwargs["metric"] = metric
        elif metric != "l2":
            raise ValueError(f"{cls.__name__} supports only l2")
        index = cls(xb.shape[1], **kwargs)
        if not index.is_trained:
            index.train(xb)
        return index.add(xb)

    return build_fn


def reference_builder(
    make: Callable[..., Any], build: dict[str, Any], metric: str, lib: str
) -> Callable[[np.ndarray], Any]:
    """``build_fn(xb)`` for a reference: build the library index and wrap it in its adapter."""
    from .ann import harness as H

    adapter = H.HnswlibAdapter if lib == "hnswlib" else H.FaissAdapter
    return lambda xb: adapter(make(xb, build, metric))


# --------------------------------------------------------------------------- exact search
EXACT_TARGET_RATIO = 1.5


def run_exact(sizes: list[int], dims: list[int], n_queries: int, k: int, repeats: int) -> tuple[list[dict], list[str]]:
    """Exact top-k: course_lib.vec.exact_knn against faiss IndexFlatL2/IP and sklearn brute force.

    Single thread on every side, the same batch of queries, median of repeats.
    The course's target: ours within EXACT_TARGET_RATIO of faiss flat search.
    """
    import faiss
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_info

    from . import config, data, perf, vec

    rows = []
    with config.single_thread():
        blas = [f"{p['internal_api']} {p.get('version')} ({p.get('architecture')})" for p in threadpool_info() if p["user_api"] == "blas"]
        for n in sizes:
            for d in dims:
                X = data.make_gaussian_mixture(n + n_queries, d, intrinsic_dim=min(d, 16), seed=0)
                X_db, X_q = data.split_queries(X, n_queries, seed=0)
                for metric, index in (("l2", faiss.IndexFlatL2(d)), ("ip", faiss.IndexFlatIP(d))):
                    index.add(X_db)
                    t = [
                        perf.time_fn(vec.exact_knn, X_q, X_db, k, metric, name="ours", repeats=repeats),
                        perf.time_fn(index.search, X_q, k, name="faiss", repeats=repeats),
                    ]
                    if metric == "l2":
                        sk = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X_db)
                        t.append(perf.time_fn(sk.kneighbors, X_q, name="sklearn", repeats=repeats))
                    by = {x.name: x.median for x in t}
                    mem = perf.traced_peak_memory(vec.exact_knn, X_q, X_db, k, metric)
                    rows.append({
                        "n": n, "d": d, "metric": metric, "n_queries": n_queries, "k": k,
                        "ours_ms": round(by["ours"] * 1e3, 2), "faiss_ms": round(by["faiss"] * 1e3, 2),
                        "sklearn_ms": round(by["sklearn"] * 1e3, 2) if "sklearn" in by else None,
                        "ratio_ours_vs_faiss": round(by["ours"] / by["faiss"], 3),
                        "ours_peak_temp_mb": round(mem.peak_mb, 1),
                        "meets_target": by["ours"] / by["faiss"] <= EXACT_TARGET_RATIO,
                    })
                    print(json.dumps(rows[-1]), flush=True)
    return rows, blas


def write_exact(rows: list[dict], blas: list[str], out: Path) -> None:
    """exact_knn.json (with the machine description) and a printed table."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "blas": blas, "threads": 1, "target_ratio": EXACT_TARGET_RATIO,
    }
    (out / "exact_knn.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\n{'n':>8} {'d':>4} {'metric':>6} {'ours ms':>9} {'faiss ms':>9} {'sklearn ms':>10} {'ours/faiss':>10}")
    for r in rows:
        print(f"{r['n']:>8} {r['d']:>4} {r['metric']:>6} {r['ours_ms']:>9} {r['faiss_ms']:>9} {str(r['sklearn_ms']):>10} {r['ratio_ours_vs_faiss']:>10}")
    print(f"wrote {out / 'exact_knn.json'}")


# --------------------------------------------------------------------------- retrieval (chapter 04)
def _retrieval_latency_ms(fn: Callable[[int], Any], indices: list[int], repeats: int) -> float:
    """Median milliseconds per query of ``fn(i)`` called once per query index, one query at a time."""
    from . import perf

    t = perf.time_fn(lambda: [fn(i) for i in indices], repeats=repeats)
    return 1e3 * t.median / len(indices)


def run_retrieval(*, depth: int = 100, k_rrf: int = 60, splade_steps: int = 60, seed: int = 0,
                  repeats: int = 3, latency_queries: int = 200, log: Callable[[str], None] = print) -> list[dict]:
    """Every chapter-04 first-stage retriever on the frozen benchmark (lesson 04.02), test split.

    BM25 (``course_lib.ir.bm25``), dense MiniLM (exact inner product on the frozen embeddings),
    RRF of the two, convex fusion (min-max and z-score; alpha chosen on the train split), and
    SPLADE-lite (trained on the train split).  Rows: retriever, query set, queries, NDCG@10,
    recall@100 and milliseconds per query (single thread, one query at a time; the dense
    query embedding is precomputed and not counted; a fusion is the sum of its two retrievers
    plus the fusion).
    """
    from . import config, vec
    from .data import load_retrieval_benchmark
    from .ir import bm25, fusion, metrics, splade, text

    config.seed_everything(seed)
    bench = load_retrieval_benchmark()
    qids = [q["qid"] for q in bench.queries]
    sets = ("keyword", "paraphrase")
    test = {s: bench.select(set=s, split="test") for s in sets}
    train = {s: bench.select(set=s, split="train") for s in sets}
    every = list(range(len(bench.queries)))
    test_all = test["keyword"] + test["paraphrase"]
    timed = test_all[:: max(1, len(test_all) // latency_queries)]

    def mean_metrics(run: dict, indices: list[int], names: tuple[str, ...] = ("ndcg@10", "recall@100")) -> dict:
        qrels = bench.qrels_of(indices)
        return metrics.evaluate({q: run.get(q, {}) for q in qrels}, qrels, names, complete=True)

    start = time.perf_counter()
    docs = [text.document_text(d) for d in bench.docs]
    index = bm25.BM25Index.from_texts(docs)
    runs: dict[str, dict] = {
        "BM25": {qids[i]: {int(d): float(s) for s, d in zip(*index.search(bench.queries[i]["text"], depth)) if d >= 0}
                 for i in every}
    }
    D_emb, Q_emb = bench.doc_embeddings(), bench.query_embeddings()
    S, I = vec.exact_knn(Q_emb, D_emb, depth, metric="ip")
    runs["dense (MiniLM)"] = fusion.top_k_run(S, I, qids)

    def rrf_one(i: int) -> dict:
        return fusion.rrf([fusion.ranking(runs["BM25"][qids[i]]), fusion.ranking(runs["dense (MiniLM)"][qids[i]])], k_rrf)

    runs["RRF (BM25 + dense)"] = {qids[i]: rrf_one(i) for i in every}
    alphas = [round(a, 2) for a in np.linspace(0, 1, 11)]
    best_alpha = {}
    for norm in fusion.NORMS:
        train_ndcg = []
        for a in alphas:
            values = []
            for s in sets:
                sub = [qids[i] for i in train[s]]
                fused = fusion.convex_runs({q: runs["dense (MiniLM)"][q] for q in sub}, {q: runs["BM25"][q] for q in sub}, a, norm)
                values.append(mean_metrics(fused, train[s], ("ndcg@10",))["ndcg@10"])
            train_ndcg.append(float(np.mean(values)))
        best_alpha[norm] = alphas[int(np.argmax(train_ndcg))]
        runs[f"convex {norm} (alpha={best_alpha[norm]})"] = fusion.convex_runs(runs["dense (MiniLM)"], runs["BM25"], best_alpha[norm], norm)
    log(f"BM25, dense, RRF, convex (alpha on train: {best_alpha}) in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    tokenizer, E = splade.load_wordpiece_embeddings()
    doc_wp = splade.wordpiece_sets(tokenizer, docs)
    query_wp = splade.wordpiece_sets(tokenizer, [q["text"] for q in bench.queries])
    train_all = train["keyword"] + train["paraphrase"]
    with config.single_thread():
        model = splade.SpladeLite(E, np.concatenate(doc_wp + query_wp), np.concatenate(doc_wp), seed=seed)
        splade.train(model, [query_wp[i] for i in train_all], [doc_wp[bench.queries[i]["doc_id"]] for i in train_all],
                     steps=splade_steps, seed=seed)
        D_sp = model.encode_sparse(doc_wp)
        S_sp, I_sp = splade.sparse_search(model.encode_sparse(query_wp), D_sp, depth)
    runs["SPLADE-lite"] = fusion.top_k_run(S_sp, I_sp, qids)
    log(f"SPLADE-lite ({splade_steps} steps) trained and indexed in {time.perf_counter() - start:.1f} s")

    with config.single_thread():
        latency = {
            "BM25": _retrieval_latency_ms(lambda i: index.search(bench.queries[i]["text"], depth), timed, repeats),
            "dense (MiniLM)": _retrieval_latency_ms(lambda i: vec.exact_knn(Q_emb[i : i + 1], D_emb, depth, metric="ip"), timed, repeats),
            "SPLADE-lite": _retrieval_latency_ms(
                lambda i: splade.sparse_search(model.encode_sparse([query_wp[i]]), D_sp, depth), timed, repeats),
        }
        pair = latency["BM25"] + latency["dense (MiniLM)"]
        latency["RRF (BM25 + dense)"] = pair + _retrieval_latency_ms(rrf_one, timed, repeats)
        for norm in fusion.NORMS:
            a = best_alpha[norm]
            latency[f"convex {norm} (alpha={a})"] = pair + _retrieval_latency_ms(
                lambda i, a=a, norm=norm: fusion.convex(runs["dense (MiniLM)"][qids[i]], runs["BM25"][qids[i]], a, norm),
                timed, repeats)

    rows = []
    for s in sets:
        for name, run in runs.items():
            m = mean_metrics(run, test[s])
            rows.append({"retriever": name, "query_set": s, "split": "test", "queries": len(test[s]),
                         "ndcg@10": round(m["ndcg@10"], 4), "recall@100": round(m["recall@100"], 4),
                         "latency_ms_per_query": round(latency[name], 3)})
            log(json.dumps(rows[-1]))
    return rows


def write_retrieval(rows: list[dict], out: Path, params: dict[str, Any]) -> None:
    """retrieval.json (with the machine description) and retrieval.md (a markdown table)."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "threads": 1, "benchmark": "datasets/cpython_retrieval (test split)", **params,
    }
    (out / "retrieval.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Retrieval benchmark (chapter 04), test split\n",
        f"{meta['when']}, {meta['machine']}, {meta['cpu_count']} CPUs, 1 thread. Latency: one query at a time; the dense "
        "query embedding is precomputed (not counted); a fusion is the sum of its two retrievers plus the fusion. "
        f"Parameters: {json.dumps(params)}.\n",
        "| retriever | query set | queries | NDCG@10 | recall@100 | ms / query |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['retriever']} | {r['query_set']} | {r['queries']} | {r['ndcg@10']:.3f} | {r['recall@100']:.3f} | "
              f"{r['latency_ms_per_query']:.2f} |" for r in rows]
    (out / "retrieval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'retrieval.json'} and {out / 'retrieval.md'}")


# --------------------------------------------------------------------------- the run
def run_ann(size: str = "small", *, seed: int = 0, only: list[str] | None = None, repeats: int = 3,
            sweep: dict[str, dict[str, Any]] | None = None, datasets: list[Any] | None = None,
            log: Callable[[str], None] = print) -> list[Any]:
    """Run the sweep and return every RunRecord (see the module docstring)."""
    from . import config
    from .ann import harness as H

    sweep = SWEEP if sweep is None else sweep
    unknown = set(only or []) - set(sweep)
    if unknown:
        raise ValueError(f"unknown index families {sorted(unknown)}; the sweep has {sorted(sweep)}")
    P = config.profile(size)
    datasets = H.make_datasets(size, seed) if datasets is None else datasets
    records: list[Any] = []
    for family, spec in sweep.items():
        if only and family not in only:
            continue
        cls = find_course_class(spec["course"], spec.get("module", ""))
        if cls is None:
            log(f"note: course_lib.ann has no {spec['course']} yet: {family} runs its references only")
        for full_ds in datasets:
            ds = full_ds.head(min(full_ds.n, P.get(spec["max_n"]))) if spec.get("max_n") else full_ds
            for build in spec["build"]:
                build = resolve(build, ds)
                runs: list[tuple[str, Callable[[np.ndarray], Any]]] = []
                if cls is not None:
                    runs.append(("course", course_builder(cls, build, ds.metric)))
                for lib in spec.get("references", []):
                    make = REFERENCES.get((family, lib))
                    if make is None:
                        log(f"note: no {lib} reference builder for {family}")
                        continue
                    runs.append((lib, reference_builder(make, build, ds.metric, lib)))
                for impl, build_fn in runs:
                    start = time.perf_counter()
                    try:
                        new = H.evaluate(family, build_fn, ds, spec["search"], impl,
                                         build_params=build, repeats=repeats)
                    except Exception as err:  # noqa: BLE001 - one broken index must not lose the whole benchmark
                        log(f"note: skipped {impl} {family} {build} on {ds.name}: {type(err).__name__}: {err}")
                        continue
                    records += new
                    best = max(new, key=lambda r: r.recall_at_10)
                    seconds = time.perf_counter() - start
                    log(f"{ds.name:>24} {impl:>8} {family:<9} {build} {len(new)} settings in {seconds:5.1f} s,"
                        f" best recall@10 {best.recall_at_10:.3f} at {best.qps_batch:,.0f} QPS")
    return records


def write_outputs(records: list[Any], out: Path, size: str) -> None:
    """ann.json, pareto_qps.png, pareto_bytes.png and ratios.md in ``out``."""
    import matplotlib.pyplot as plt

    from . import viz
    from .ann import harness as H

    out.mkdir(parents=True, exist_ok=True)
    H.save_records(records, out / "ann.json")
    names = list(dict.fromkeys(r.dataset for r in records))
    plots = (("qps_batch", "pareto_qps.png", H.plot_pareto),
             ("bytes_per_vector", "pareto_bytes.png", H.plot_recall_vs_bytes))
    for x, filename, plot in plots:
        panels = max(1, len(names))
        fig, axes = viz.figure(f"ANN benchmark ({size}): recall@10 vs {x}, 1 thread", H.LABELS[x],
                               H.LABELS["recall_at_10"], ncols=panels, figsize=(7.5 * panels, 4.8))
        for ax, name in zip(axes if isinstance(axes, list) else [axes], names):
            plot(records, dataset=name, ax=ax, title=name)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=110)
        plt.close(fig)
    head = (f"# ANN benchmark, size {size}\n\n{datetime.now(UTC).isoformat(timespec='seconds')}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, 1 thread per side. Ratios are course / reference: above 1 means ours is "
            "faster (QPS) or bigger/slower (build, bytes).\n\n")
    (out / "ratios.md").write_text(head + H.ratio_table(records))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_lib.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ann = sub.add_parser("ann", help="every course ANN index against faiss / hnswlib")
    ann.add_argument("--size", default="small", choices=["small", "full"])
    ann.add_argument("--out", default="runs/bench")
    ann.add_argument("--seed", type=int, default=0)
    ann.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (best kept)")
    ann.add_argument("--only", default="", help=f"comma-separated index families among {', '.join(SWEEP)}")
    exact = sub.add_parser("exact", help="exact top-k (course_lib.vec.exact_knn) against faiss flat and sklearn brute force")
    exact.add_argument("--out", default="runs/bench")
    exact.add_argument("--sizes", default="20000,100000", help="database sizes, comma-separated")
    exact.add_argument("--d", default="64,128", help="dimensions, comma-separated")
    exact.add_argument("--queries", type=int, default=1000)
    exact.add_argument("--k", type=int, default=10)
    exact.add_argument("--repeats", type=int, default=5)
    retrieval = sub.add_parser("retrieval", help="chapter 04 retrievers (BM25, dense, RRF, convex, SPLADE-lite) on the frozen benchmark")
    retrieval.add_argument("--out", default="runs/bench")
    retrieval.add_argument("--depth", type=int, default=100, help="candidates per retriever")
    retrieval.add_argument("--splade-steps", type=int, default=60)
    retrieval.add_argument("--repeats", type=int, default=3)
    retrieval.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "retrieval":
        params = {"depth": args.depth, "k_rrf": 60, "splade_steps": args.splade_steps, "seed": args.seed}
        rows = run_retrieval(depth=args.depth, splade_steps=args.splade_steps, seed=args.seed, repeats=args.repeats)
        write_retrieval(rows, Path(args.out), params)
        return
    if args.command == "exact":
        rows, blas = run_exact([int(s) for s in args.sizes.split(",")], [int(s) for s in args.d.split(",")],
                               args.queries, args.k, args.repeats)
        write_exact(rows, blas, Path(args.out))
        return
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, whatever the environment
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    start = time.perf_counter()
    records = run_ann(args.size, seed=args.seed, only=only, repeats=args.repeats)
    write_outputs(records, Path(args.out), args.size)
    print(f"{len(records)} records in {time.perf_counter() - start:.0f} s: wrote {args.out}/ann.json, "
          "pareto_qps.png, pareto_bytes.png, ratios.md")


if __name__ == "__main__":
    main()
