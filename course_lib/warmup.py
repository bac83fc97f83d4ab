"""Compile the references' numba code once, at install time, so no lesson pays for it.

ranx (chapter 04's reference for fusion and ranking metrics) compiles its numba
functions on first use and caches the machine code next to its sources
(``@njit(cache=True)``).  Cold, the first ``fuse`` or ``evaluate`` takes about a
minute on 2 cores; warm, a few seconds.  ``make venv`` runs this module after
installing the pins:

    python -m course_lib.warmup
"""

from __future__ import annotations

import time
import warnings


def warm_ranx() -> float:
    """Run ranx's fusion and metrics once on a tiny run; return the seconds it took."""
    start = time.perf_counter()
    try:
        from ranx import Qrels, Run, evaluate, fuse
    except ImportError:  # an optional reference: nothing to warm
        return 0.0
    qrels = Qrels({"q1": {"d1": 2, "d2": 1}, "q2": {"d3": 1}})
    runs = [
        Run({"q1": {"d1": 3.0, "d2": 2.0, "d4": 1.0}, "q2": {"d3": 1.5, "d1": 0.5}}),
        Run({"q1": {"d2": 5.0, "d4": 1.0}, "q2": {"d2": 2.0, "d3": 1.0}}),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety notes about uint64 casts
        fuse(runs, method="rrf")
        for norm in ("min-max", "zmuv"):
            fuse(runs, norm=norm, method="wsum", params={"weights": [0.5, 0.5]})
        evaluate(qrels, runs[0], ["ndcg@10", "recall@100", "mrr", "map", "precision@10"])
    return time.perf_counter() - start


def main() -> None:
    print(f"ranx numba cache warm ({warm_ranx():.0f} s)")


if __name__ == "__main__":
    main()
