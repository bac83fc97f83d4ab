"""Datasets: seeded synthetic vectors, the frozen CPython corpus and its embeddings, the chapter 04
relevance benchmark built from it, ANN file formats.

One dataset API for the whole course; nothing here downloads anything.
"""

from .corpus import CORPUS_DIR, load_corpus, load_corpus_embeddings, verify_checksums
from .formats import (
    AnnBenchmarksDataset,
    load_ann_benchmarks_hdf5,
    read_bvecs,
    read_fvecs,
    read_ivecs,
    write_ann_benchmarks_hdf5,
    write_bvecs,
    write_fvecs,
    write_ivecs,
)
from .retrieval_bench import BENCH_DIR, RetrievalBenchmark, build_retrieval_benchmark, load_retrieval_benchmark
from .synthetic import LLMRequest, intrinsic_dimension, make_anisotropic, make_gaussian_mixture, make_llm_requests, make_uniform, split_queries, zipf_probs  # noqa: E501

__all__ = [
    "BENCH_DIR",
    "CORPUS_DIR",
    "RetrievalBenchmark",
    "build_retrieval_benchmark",
    "load_retrieval_benchmark",
    "AnnBenchmarksDataset",
    "intrinsic_dimension",
    "load_ann_benchmarks_hdf5",
    "load_corpus",
    "load_corpus_embeddings",
    "make_anisotropic",
    "make_gaussian_mixture",
    "make_uniform",
    "read_bvecs",
    "read_fvecs",
    "read_ivecs",
    "split_queries",
    "verify_checksums",
    "write_ann_benchmarks_hdf5",
    "write_bvecs",
    "write_fvecs",
    "write_ivecs",
    "zipf_probs",
]
