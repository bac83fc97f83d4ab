"""Information retrieval from scratch: tokenisation, inverted index and BM25, fusion, ranking metrics.

Import the modules you need explicitly, e.g. ``from course_lib.ir import bm25, metrics``.
The relevance benchmark every retrieval lesson reports on is loaded with
``course_lib.data.load_retrieval_benchmark()``.
"""
