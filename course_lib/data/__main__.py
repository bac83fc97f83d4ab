"""``python -m course_lib.data build|embed|verify|all|retrieval``: rebuild or verify the frozen data (``make data``).

* ``build``, ``embed``, ``verify``, ``all``: the CPython corpus and its embeddings
  (:mod:`course_lib.data.corpus`); ``all`` then rebuilds the chapter 04 relevance
  benchmark from the new corpus, and ``verify`` checks the benchmark too.
* ``retrieval``: the relevance benchmark alone (:mod:`course_lib.data.retrieval_bench`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .corpus import main as corpus_main


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["retrieval"]:
        from .retrieval_bench import main as retrieval_main

        retrieval_main(argv[1:])
        return
    if argv[:1] in (["-h"], ["--help"]):
        print("commands: build | embed | verify | all (the CPython corpus, then `all` also builds the benchmark)\n"
              "          retrieval [--out DIR] (the chapter 04 relevance benchmark; see `retrieval --help`)\n")
    corpus_main(argv)
    if "--out" in argv or any(a.startswith("--out=") for a in argv):
        return  # a corpus written elsewhere: the benchmark is built from the frozen corpus only
    if argv[:1] == ["all"]:  # after the corpus and its embeddings
        from .retrieval_bench import build_retrieval_benchmark

        build_retrieval_benchmark()
    elif argv[:1] == ["verify"]:
        from .retrieval_bench import BENCH_DIR, verify_benchmark

        try:
            verify_benchmark(BENCH_DIR)
        except ValueError as err:
            sys.exit(f"error: {err}")
        print(f"{BENCH_DIR}: all checksums match")


if __name__ == "__main__":
    main()
