"""Tests for the exercise of lesson 04.02 (hybrid search): ``bm25_scores`` and ``rrf``.

The tasks, as the exercise states them:

* ``bm25_scores(query_tokens, index)``: the BM25 score of every document for a
  tokenised query, from a :class:`course_lib.ir.bm25.BM25Index` (``vocab``,
  ``postings`` csc_matrix of term frequencies, ``idf`` already floored,
  ``doc_len``, ``avgdl``, ``k1``, ``b``); a float array of shape (n_docs,), equal
  to rank-bm25's ``BM25Okapi.get_scores`` within 1e-9.
* ``rrf(rankings, k=60)``: reciprocal rank fusion of lists of doc ids (best
  first), a dict doc_id -> sum over lists of 1 / (k + rank), ranks from 1.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON = "04_retrieval/02_hybrid_search"

# --------------------------------------------------------------------------------------- bm25_scores

TOY_DOCS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "cats and dogs and birds",
    "the the the end",
    "a mat for the dog and the cat and the bird",
    "birds sing",
    "logs burn in the fire",
    "the end of the story",
]


def _index(texts: list[str] = TOY_DOCS, **params: float) -> Any:
    from ...ir.bm25 import BM25Index

    return BM25Index.from_texts(texts, **params)


def _reference(query: list[str], index: Any) -> np.ndarray:
    """Document at a time, from the postings matrix turned dense: a different route from course_lib's."""
    tf = index.postings.toarray().astype(np.float64)  # (n_docs, n_terms)
    out = np.zeros(index.n_docs)
    for d in range(index.n_docs):
        norm = index.k1 * (1 - index.b + index.b * index.doc_len[d] / index.avgdl)
        for term in query:
            col = index.vocab.get(term)
            if col is not None and tf[d, col] > 0:
                out[d] += index.idf[col] * tf[d, col] * (index.k1 + 1) / (tf[d, col] + norm)
    return out


def _scores(fn: Callable[..., Any], query: list[str], index: Any) -> np.ndarray:
    out = np.asarray(fn(list(query), index), dtype=np.float64)
    if out.shape != (index.n_docs,):
        raise TestFailure(f"expected an array of shape (n_docs,) = ({index.n_docs},), got {out.shape}")
    return out


def _expect(fn: Callable[..., Any], query: list[str], index: Any, what: str) -> None:
    got, want = _scores(fn, query, index), _reference(query, index)
    if not np.allclose(got, want, rtol=0, atol=1e-9):
        d = int(np.argmax(np.abs(got - want)))
        raise TestFailure(f"{what}: query {query}: doc {d} scored {got[d]:.6f}, expected {want[d]:.6f}")


bm25_task = register(
    "retrieval.bm25_scores",
    function="bm25_scores",
    title="BM25 scores term at a time from an inverted index",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


@bm25_task.test("returns one float score per document", hint="allocate np.zeros(index.n_docs) and add each term's contribution to the documents in its postings; return the array")
def _shape(fn: Callable[..., Any]) -> None:
    index = _index()
    got = _scores(fn, ["cat"], index)
    if not np.all(np.isfinite(got)):
        raise TestFailure("scores must be finite numbers")


@bm25_task.test("one query term: idf x saturated, length-normalised tf", hint="contribution = idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / avgdl)); the postings of term t are column vocab[t] of index.postings (rows indices[indptr[t]:indptr[t+1]], tfs in data)")
def _one_term(fn: Callable[..., Any]) -> None:
    index = _index()
    _expect(fn, ["mat"], index, "one term")
    _expect(fn, ["birds"], index, "one term")


@bm25_task.test("documents without the term score exactly 0", hint="only the documents in a term's postings list get its contribution; do not add idf to every document")
def _zeros(fn: Callable[..., Any]) -> None:
    index = _index()
    got = _scores(fn, ["fire"], index)
    ids, _ = index.term_postings("fire")
    others = np.setdiff1d(np.arange(index.n_docs), ids)
    if np.any(got[others] != 0):
        raise TestFailure(f"documents {others[got[others] != 0].tolist()} do not contain 'fire' but scored non-zero")
    _expect(fn, ["fire"], index, "rare term")


@bm25_task.test("uses the index's idf (with rank-bm25's epsilon floor)", hint="read idf from index.idf: it already replaces the negative idf of a term found in more than half the documents by epsilon * mean idf. Recomputing log((N - n + 0.5) / (n + 0.5)) gives a negative score for 'the'")
def _floored(fn: Callable[..., Any]) -> None:
    index = _index()
    col = index.vocab["the"]
    if not index.idf[col] > 0:  # pragma: no cover - guards the test data
        raise TestFailure("test data: 'the' should have a floored positive idf")
    _expect(fn, ["the"], index, "a very common term")


@bm25_task.test("a repeated query term counts once per occurrence; unknown terms add 0", hint="loop over the query tokens as given (do not deduplicate with set()), and skip a token that is not in index.vocab instead of raising KeyError")
def _repeats(fn: Callable[..., Any]) -> None:
    index = _index()
    _expect(fn, ["dog", "dog", "zebra"], index, "repeated + unknown term")
    got = _scores(fn, ["zebra", "unicorn"], index)
    if np.any(got != 0):
        raise TestFailure("a query of unknown terms must score every document 0")
    got = _scores(fn, [], index)
    if np.any(got != 0):
        raise TestFailure("an empty query must score every document 0")


@bm25_task.test("uses the index's k1 and b", hint="take k1 and b from the index (index.k1, index.b), not the constants 1.5 and 0.75")
def _params(fn: Callable[..., Any]) -> None:
    index = _index(k1=0.9, b=0.3)
    _expect(fn, ["the", "dog", "end"], index, "k1=0.9, b=0.3")


@bm25_task.test("equals rank-bm25's BM25Okapi.get_scores on real documents (1e-9)", hint="the whole formula, term at a time; check the length normalisation uses index.doc_len / index.avgdl")
def _real(fn: Callable[..., Any]) -> None:
    from ...data import load_corpus
    from ...ir.bm25 import BM25Index
    from ...ir.text import document_text, tokenize

    docs = load_corpus(400)
    tokenized = [tokenize(document_text(d)) for d in docs]
    index = BM25Index.build(tokenized)
    try:
        from rank_bm25 import BM25Okapi
    except ImportError:  # pragma: no cover - a pinned dependency
        reference = None
    else:
        reference = BM25Okapi(tokenized)
    for query in (tokenize("return the string representation of an object"), tokenize("json dumps")):
        got = _scores(fn, query, index)
        want = reference.get_scores(query) if reference is not None else _reference(query, index)
        if not np.allclose(got, want, rtol=0, atol=1e-9):
            d = int(np.argmax(np.abs(got - want)))
            raise TestFailure(f"query {query}: doc {d} scored {got[d]:.9f}, rank-bm25 gives {want[d]:.9f}")


# --------------------------------------------------------------------------------------- rrf


def _rrf_reference(rankings: list[list[int]], k: float = 60) -> dict[int, float]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return fused


def _fused(fn: Callable[..., Any], rankings: list[list[int]], **kw: Any) -> dict[Any, float]:
    copies = [list(r) for r in rankings]
    out = fn(copies, **kw)
    if not isinstance(out, dict):
        raise TestFailure(f"expected a dict doc_id -> fused score, got {type(out).__name__}")
    if copies != rankings:
        raise TestFailure("the input rankings were modified")
    return out


def _expect_rrf(fn: Callable[..., Any], rankings: list[list[int]], what: str, **kw: Any) -> None:
    got, want = _fused(fn, rankings, **kw), _rrf_reference(rankings, **kw)
    if set(got) != set(want):
        extra, missing = set(got) - set(want), set(want) - set(got)
        raise TestFailure(f"{what}: documents differ (extra {sorted(extra)[:5]}, missing {sorted(missing)[:5]})")
    for doc, value in want.items():
        if abs(float(got[doc]) - value) > 1e-12:
            raise TestFailure(f"{what}: doc {doc} got {float(got[doc]):.6f}, expected {value:.6f}")


rrf_task = register(
    "retrieval.rrf",
    function="rrf",
    title="Reciprocal rank fusion",
    lesson=LESSON,
    points=1,
    timeout_s=30,
)


@rrf_task.test("returns a dict doc_id -> score over every listed document", hint="return a dict; every document that appears in any ranking gets a key")
def _rrf_dict(fn: Callable[..., Any]) -> None:
    got = _fused(fn, [[3, 1], [2]])
    if set(got) != {1, 2, 3}:
        raise TestFailure(f"expected keys {{1, 2, 3}}, got {sorted(got)}")


@rrf_task.test("ranks start at 1: the top document of one list scores 1 / (k + 1)", hint="position 0 in the list is rank 1: use 1 / (k + position + 1), or enumerate(ranking, start=1)")
def _rrf_rank1(fn: Callable[..., Any]) -> None:
    got = _fused(fn, [[7, 8, 9]])
    if abs(float(got[7]) - 1 / 61) > 1e-12:
        raise TestFailure(f"doc 7 is first in the only list: expected 1/61 = {1 / 61:.6f}, got {float(got[7]):.6f}")
    _expect_rrf(fn, [[7, 8, 9]], "one list")


@rrf_task.test("sums over lists; a list without the document adds 0", hint="accumulate: fused[doc] = fused.get(doc, 0) + 1 / (k + rank) for each list that contains doc; do not replace the previous value and do not give absent documents a penalty")
def _rrf_sum(fn: Callable[..., Any]) -> None:
    _expect_rrf(fn, [[1, 2, 3], [3, 4], [5, 1]], "three lists")


@rrf_task.test("uses k", hint="the constant k is a parameter (default 60): 1 / (k + rank), not 1 / (60 + rank) and not 1 / rank")
def _rrf_k(fn: Callable[..., Any]) -> None:
    _expect_rrf(fn, [[1, 2], [2, 3]], "k=10", k=10)
    _expect_rrf(fn, [[1, 2], [2, 3]], "k=0", k=0)


@rrf_task.test("empty lists and lists of different lengths", hint="an empty ranking contributes nothing; no list needs to be as long as another")
def _rrf_edges(fn: Callable[..., Any]) -> None:
    if _fused(fn, []) != {}:
        raise TestFailure("rrf([]) must be an empty dict")
    _expect_rrf(fn, [[], [4, 5, 6, 7, 8], [8]], "uneven lists")


@rrf_task.test("agrees with the definition on 5 random rankings of 100 documents", hint="check every piece: ranks from 1, sum over lists, 1 / (k + rank)")
def _rrf_random(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(4)
    rankings = [rng.choice(300, 100, replace=False).tolist() for _ in range(5)]
    _expect_rrf(fn, rankings, "random rankings")
