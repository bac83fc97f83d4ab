"""Exact top-k: course_lib.vec.exact_knn against faiss IndexFlatL2/IP and scikit-learn brute force.

``python -m bench.exact_knn [--out runs/bench] [--sizes 20000,100000] [--d 64,128]``

Single thread on every side, the same batch of queries, median of repeats.
Prints a table and writes ``exact_knn.json`` with the machine description.
The course's target: ours within 1.5x of faiss flat search on the same batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, UTC
from pathlib import Path


TARGET_RATIO = 1.5


def run(sizes: list[int], dims: list[int], n_queries: int, k: int, repeats: int) -> list[dict]:
    import faiss
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_info

    from course_lib import config, data, perf, vec

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
                        "meets_target": by["ours"] / by["faiss"] <= TARGET_RATIO,
                    })
                    print(json.dumps(rows[-1]), flush=True)
    return rows, blas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--d", default="64,128")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows, blas = run([int(s) for s in args.sizes.split(",")], [int(s) for s in args.d.split(",")], args.queries, args.k, args.repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "blas": blas, "threads": 1, "target_ratio": TARGET_RATIO,
    }
    (out / "exact_knn.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\n{'n':>8} {'d':>4} {'metric':>6} {'ours ms':>9} {'faiss ms':>9} {'sklearn ms':>10} {'ours/faiss':>10}")
    for r in rows:
        print(f"{r['n']:>8} {r['d']:>4} {r['metric']:>6} {r['ours_ms']:>9} {r['faiss_ms']:>9} {str(r['sklearn_ms']):>10} {r['ratio_ours_vs_faiss']:>10}")
    print(f"wrote {out / 'exact_knn.json'}")


if __name__ == "__main__":
    main()
