"""An inverted index and BM25 (Okapi) scoring, from scratch.

The index is what every search engine (Lucene, Elasticsearch, Tantivy) keeps:
for each term, its **postings**, the ids of the documents that contain it and
how often (the term frequency).  Here the postings of all terms live in one
``scipy.sparse.csc_matrix`` of shape (n_docs, n_terms): column ``t`` *is* the
postings list of term ``t`` (``indices`` = doc ids, ``data`` = term
frequencies), and ``indptr[t]:indptr[t+1]`` says where it starts and ends.

Scoring is **term at a time**: start from zero scores, and for each query term
walk its postings and add that term's contribution to the documents it names.
A query of three rare terms touches a few hundred postings, never the whole
(n_docs x n_terms) matrix: that is why inverted indexes scale.

BM25 (Robertson and Zaragoza 2009) scores document d for query q as

    score(q, d) = sum over query terms t of
                  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

with the exact conventions of rank-bm25's ``BM25Okapi`` (the reference the
course compares with, scores equal within 1e-9):

* ``idf(t) = ln(N - n_t + 0.5) - ln(n_t + 0.5)`` (N documents, n_t of them contain t);
* a term in more than half of the documents gets a negative idf, which is
  replaced by ``epsilon * mean idf``, the mean taken over every term of the
  vocabulary *before* the replacement (negative idfs included);
* a query term that is repeated counts once per occurrence; a term that is not
  in the vocabulary contributes 0;
* |d| is the number of tokens of d and avgdl their mean over the corpus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..validate import check_k
from .text import tokenize

#: rank-bm25's defaults (also Lucene's k1 = 1.2 would be a fine choice; we match the reference).
K1 = 1.5
B = 0.75
EPSILON = 0.25


def _check_tokens(tokens: Sequence[str], what: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise ValueError(f"{what} must be a list of str tokens (see course_lib.ir.text.tokenize), got {type(tokens).__name__}")
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{what} must hold str tokens only, got {type(bad[0]).__name__} {bad[0]!r}")
    return list(tokens)


@dataclass
class BM25Index:
    """An inverted index with the statistics BM25 needs.

    Attributes
    ----------
    vocab : dict term -> column id (0..n_terms-1), in order of first appearance.
    postings : csc_matrix (n_docs, n_terms), int32 term frequencies; column t is
        term t's postings list, doc ids sorted ascending.
    doc_len : (n_docs,) int64, tokens per document.
    avgdl : mean document length (tokens).
    idf : (n_terms,) float64 idf after the epsilon floor (rank-bm25's values).
    average_idf : the mean idf over the vocabulary, before the floor.
    k1, b, epsilon : BM25 parameters.
    """

    vocab: dict[str, int]
    postings: sp.csc_matrix
    doc_len: np.ndarray
    avgdl: float
    idf: np.ndarray
    average_idf: float
    k1: float = K1
    b: float = B
    epsilon: float = EPSILON

    @property
    def n_docs(self) -> int:
        return int(self.postings.shape[0])

    @property
    def n_terms(self) -> int:
        return int(self.postings.shape[1])

    @classmethod
    def build(
        cls, tokenized_docs: Sequence[Sequence[str]], *, k1: float = K1, b: float = B, epsilon: float = EPSILON
    ) -> BM25Index:
        """Index a tokenised corpus (a list of token lists, one per document; doc id = position).

        One pass counts (term, doc) pairs into COO triplets; ``tocsc`` sums
        duplicates into term frequencies and groups them by term, which is the
        inverted index.  Document frequencies are the column counts.
        """
        if isinstance(tokenized_docs, str) or not isinstance(tokenized_docs, Sequence) or len(tokenized_docs) == 0:
            raise ValueError("tokenized_docs must be a non-empty list of token lists (one per document)")
        for name, value in (("k1", k1), ("b", b), ("epsilon", epsilon)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        doc_len = np.empty(len(tokenized_docs), dtype=np.int64)
        for doc_id, tokens in enumerate(tokenized_docs):
            tokens = _check_tokens(tokens, f"document {doc_id}")
            doc_len[doc_id] = len(tokens)
            for term in tokens:
                cols.append(vocab.setdefault(term, len(vocab)))
            rows.extend([doc_id] * len(tokens))
        n_docs, n_terms = len(tokenized_docs), len(vocab)
        if n_terms == 0:
            raise ValueError("the corpus has no tokens at all: nothing to index")
        ones = np.ones(len(rows), dtype=np.int32)
        postings = sp.coo_matrix((ones, (rows, cols)), shape=(n_docs, n_terms)).tocsc()
        postings.sum_duplicates()  # (term, doc) pairs -> term frequency; sorts doc ids in each column
        doc_freq = np.diff(postings.indptr)  # n_t: documents containing term t
        idf, average_idf = bm25_idf(doc_freq, n_docs, epsilon)
        return cls(vocab, postings, doc_len, float(doc_len.sum() / n_docs), idf, average_idf, k1, b, epsilon)

    @classmethod
    def from_texts(cls, texts: Sequence[str], **params: float) -> BM25Index:
        """:meth:`build` on texts tokenised with :func:`course_lib.ir.text.tokenize`."""
        return cls.build([tokenize(t) for t in texts], **params)

    def term_postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids, term frequencies) of ``term``; two empty arrays if it is not indexed."""
        col = self.vocab.get(term)
        if col is None:
            return np.empty(0, np.int32), np.empty(0, np.int32)
        lo, hi = self.postings.indptr[col], self.postings.indptr[col + 1]
        return self.postings.indices[lo:hi], self.postings.data[lo:hi]

    def length_norm(self) -> np.ndarray:
        """(n_docs,) the denominator's document part: ``k1 * (1 - b + b * |d| / avgdl)``."""
        return self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)

    def search(self, query: str | Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents for one query, best first.

        Parameters
        ----------
        query : a string (tokenised with :func:`tokenize`) or a list of tokens.
        k : results wanted, 1 <= k <= n_docs.

        Returns
        -------
        scores : (k,) float64 BM25 scores, descending.
        ids : (k,) int64 doc ids; ties broken by the smaller id.  Only documents
            that share a term with the query are returned: the rest of the row
            is padded with id -1 and score -inf (as faiss pads missing results).
        """
        k = check_k(k, self.n_docs)
        tokens = tokenize(query) if isinstance(query, str) else query
        scores = bm25_scores(tokens, self)
        matched = np.flatnonzero(self.matches(tokens))
        order = np.lexsort((matched, -scores[matched]))[:k]  # by score descending, then id ascending
        ids = np.full(k, -1, dtype=np.int64)
        out = np.full(k, -np.inf)
        ids[: len(order)] = matched[order]
        out[: len(order)] = scores[matched[order]]
        return out, ids

    def matches(self, tokens: Sequence[str]) -> np.ndarray:
        """(n_docs,) bool: which documents contain at least one of ``tokens``."""
        hit = np.zeros(self.n_docs, dtype=bool)
        for term in set(_check_tokens(tokens, "query")):
            hit[self.term_postings(term)[0]] = True
        return hit


def bm25_idf(doc_freq: np.ndarray, n_docs: int, epsilon: float = EPSILON) -> tuple[np.ndarray, float]:
    """rank-bm25's idf with its epsilon floor.

    Parameters
    ----------
    doc_freq : (n_terms,) number of documents containing each term (>= 1).
    n_docs : N, the number of documents.
    epsilon : the floor is ``epsilon * mean idf`` (mean over all terms, before flooring).

    Returns
    -------
    idf : (n_terms,) float64, negative values replaced by the floor.
    average_idf : the mean of the raw idfs.
    """
    doc_freq = np.asarray(doc_freq, dtype=np.float64)
    if doc_freq.ndim != 1 or doc_freq.size == 0 or np.any(doc_freq < 1) or np.any(doc_freq > n_docs):
        raise ValueError(f"doc_freq must be a non-empty 1-D array of counts in [1, n_docs={n_docs}]")
    # math.log term by term, as rank-bm25 does: np.log may differ in the last bit on some platforms
    raw = np.array([math.log(n_docs - n + 0.5) - math.log(n + 0.5) for n in doc_freq.tolist()])
    # rank-bm25 sums the idfs in a Python loop (left to right); math.fsum would differ in the last bits
    total = 0.0
    for value in raw.tolist():
        total += value
    average_idf = total / len(raw)
    return np.where(raw < 0, epsilon * average_idf, raw), float(average_idf)


def bm25_scores(query_tokens: Sequence[str], index: BM25Index) -> np.ndarray:
    """BM25 scores of every document for one tokenised query, term at a time.

    Parameters
    ----------
    query_tokens : list of str; a repeated term counts once per occurrence,
        an unknown term contributes nothing.
    index : a :class:`BM25Index`.

    Returns
    -------
    (n_docs,) float64 scores, 0 for documents sharing no term with the query.
    """
    query_tokens = _check_tokens(query_tokens, "query_tokens")
    scores = np.zeros(index.n_docs)
    norm = index.length_norm()
    for term in query_tokens:
        col = index.vocab.get(term)
        if col is None:
            continue  # not in any document
        lo, hi = index.postings.indptr[col], index.postings.indptr[col + 1]
        docs, tf = index.postings.indices[lo:hi], index.postings.data[lo:hi].astype(np.float64)
        # the same expression, in the same order, as rank-bm25: equal to the last bit
        scores[docs] += index.idf[col] * (tf * (index.k1 + 1) / (tf + norm[docs]))
    return scores
