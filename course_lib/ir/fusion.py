"""Fusing the results of several retrievers: reciprocal rank fusion and convex combination.

A hybrid search engine runs a lexical retriever (BM25) and a dense one
(embeddings) side by side, takes each one's top candidates, and merges them
into one list.  Two families of merging:

* **Rank-based: reciprocal rank fusion** (RRF, Cormack, Clarke and Büttcher,
  SIGIR 2009).  Only positions count, never scores:

      RRF(d) = sum over lists L of 1 / (k + rank_L(d)),   ranks from 1,

  and a list that does not contain d adds nothing.  k = 60 (the paper's value)
  flattens the curve: a document ranked 1st by one retriever and missed by the
  other scores 1/61 = 0.0164, exactly as much as one ranked 61st by both
  (2/122), and less than one ranked 5th by both (2/65 = 0.0308).  Agreement
  between retrievers wins.  No tuning, no score calibration: BM25 scores
  (0 to ~40) and cosines (-1 to 1) never meet.
* **Score-based: convex combination** ``alpha * norm(dense) + (1 - alpha) * norm(sparse)``.
  Scores must be put on one scale first (min-max or z-score, per query, over
  each list's candidates), and alpha must be tuned on held-out queries.  It can
  beat RRF because it keeps the *margins* (a dense hit far ahead of the rest
  stays far ahead), and lose to it when the tuned alpha does not transfer.

Conventions follow the reference, ranx (``ranx.fuse``), so the lesson can
compare to 1e-9:

* a run is a dict ``qid -> {doc_id: score}``; a ranking is a list of doc ids, best first;
* min-max: ``(s - min) / max(max - min, 1e-9)``; z-score: ``(s - mean) / max(std, 1e-9)``
  with the population std (ddof = 0), both per query over that list's documents;
* in a convex combination, a document missing from one list gets 0 from it
  *after* normalisation (with min-max: the score of that list's worst
  candidate; with z-score: the list's mean);
* fused lists are ordered by score descending, ties by the smaller doc id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

Run = dict[str, dict[int, float]]
Norm = Literal["min-max", "z-score"]
NORMS: tuple[str, ...] = ("min-max", "z-score")
#: The floor of the denominators, as in ranx (a list whose scores are all equal maps to 0).
DENOMINATOR_FLOOR = 1e-9


def _check_rankings(rankings: Sequence[Sequence[int]]) -> None:
    if isinstance(rankings, (str, Mapping)) or not isinstance(rankings, Sequence):
        raise ValueError(f"rankings must be a list of rankings (lists of doc ids, best first), got {type(rankings).__name__}")
    for i, ranking in enumerate(rankings):
        if isinstance(ranking, (str, Mapping)) or not hasattr(ranking, "__len__"):
            raise ValueError(f"ranking {i} must be a list of doc ids, best first; got {type(ranking).__name__}")
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"ranking {i} lists a doc id more than once: a ranking holds each document once")


def sort_scores(scores: Mapping[int, float]) -> dict[int, float]:
    """``scores`` as a dict ordered by score descending, ties by the smaller doc id."""
    return dict(sorted(scores.items(), key=lambda item: (-item[1], item[0])))


def rrf(rankings: Sequence[Sequence[int]], k: float = 60) -> dict[int, float]:
    """Reciprocal rank fusion of several rankings of one query.

    Parameters
    ----------
    rankings : list of rankings, each a list of doc ids, best first (rank 1 = position 0).
        A ranking may be empty; lists may have different lengths.
    k : the smoothing constant (60 in Cormack et al. 2009 and in ranx), k >= 0.

    Returns
    -------
    dict doc_id -> fused score ``sum_L 1 / (k + rank_L(doc))``, every document of
    any list, ordered best first (ties: smaller doc id first).
    """
    _check_rankings(rankings)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, doc in enumerate(ranking):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + position + 1)
    return sort_scores(fused)


def ranking(scores: Mapping[int, float], depth: int | None = None) -> list[int]:
    """The doc ids of ``scores`` best first (ties: smaller id), cut at ``depth`` if given."""
    ids = list(sort_scores(scores))
    return ids if depth is None else ids[:depth]


def rrf_runs(runs: Sequence[Run], k: float = 60, depth: int | None = None) -> Run:
    """:func:`rrf` for every query of several runs (same query ids), each run's top ``depth``."""
    qids = _check_runs(runs)
    return {qid: rrf([ranking(run[qid], depth) for run in runs], k) for qid in qids}


def normalize(scores: np.ndarray, method: Norm = "min-max") -> np.ndarray:
    """Per-list score normalisation, as ranx does it.

    Parameters
    ----------
    scores : (n,) scores of one query's candidates.
    method : "min-max" -> [0, 1]; "z-score" -> mean 0, std 1 (population std).

    Returns
    -------
    (n,) float64.  Denominators are floored at 1e-9, so equal scores give 0.
    """
    if method not in NORMS:
        raise ValueError(f"unknown normalisation {method!r}: expected one of {NORMS}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (one query's candidates), got shape {s.shape}")
    if s.size == 0:
        return s
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (drop padded -inf / -1 results before fusing)")
    if method == "min-max":
        lo, hi = s.min(), s.max()
        return (s - lo) / max(hi - lo, DENOMINATOR_FLOOR)
    return (s - s.mean()) / max(float(s.std()), DENOMINATOR_FLOOR)


def convex(
    dense: Mapping[int, float], sparse: Mapping[int, float], alpha: float, norm: Norm = "min-max"
) -> dict[int, float]:
    """``alpha * norm(dense) + (1 - alpha) * norm(sparse)`` for one query.

    Parameters
    ----------
    dense, sparse : doc_id -> score, each retriever's candidates for the query.
    alpha : weight of the dense list, 0 <= alpha <= 1 (0: sparse only, 1: dense only).
    norm : "min-max" or "z-score", applied to each list separately.

    Returns
    -------
    dict doc_id -> fused score over the union of both lists (a document missing
    from a list gets 0 from it after normalisation), ordered best first.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    fused: dict[int, float] = {}
    for weight, scores in ((alpha, dense), (1 - alpha, sparse)):
        if not isinstance(scores, Mapping):
            raise ValueError(f"dense and sparse must be dicts doc_id -> score, got {type(scores).__name__}")
        ids = list(scores)
        for doc, value in zip(ids, normalize(np.array([scores[d] for d in ids], dtype=np.float64), norm)):
            fused[doc] = fused.get(doc, 0.0) + weight * float(value)
    return sort_scores(fused)


def convex_runs(dense: Run, sparse: Run, alpha: float, norm: Norm = "min-max") -> Run:
    """:func:`convex` for every query of two runs with the same query ids."""
    qids = _check_runs([dense, sparse])
    return {qid: convex(dense[qid], sparse[qid], alpha, norm) for qid in qids}


def _check_runs(runs: Sequence[Run]) -> list[str]:
    if isinstance(runs, Mapping) or not isinstance(runs, Sequence) or len(runs) == 0:
        raise ValueError("runs must be a non-empty list of runs (dicts qid -> {doc_id: score})")
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise ValueError(f"run {i} must be a dict qid -> {{doc_id: score}}, got {type(run).__name__}")
    qids = list(runs[0])
    for i, run in enumerate(runs[1:], start=1):
        if set(run) != set(qids):
            raise ValueError(f"run {i} has other query ids than run 0: fusion needs the same queries in every run")
    return qids


def top_k_run(scores: np.ndarray, ids: np.ndarray, qids: Sequence[str]) -> Run:
    """A run from a search result: (n_queries, k) ``scores`` and ``ids`` (id -1 = no result, skipped)."""
    scores, ids = np.asarray(scores), np.asarray(ids)
    if scores.shape != ids.shape or scores.ndim != 2 or scores.shape[0] != len(qids):
        raise ValueError(f"need scores and ids of shape (len(qids)={len(qids)}, k), got {scores.shape} and {ids.shape}")
    return {
        qid: {int(d): float(s) for s, d in zip(row_s, row_i) if d >= 0}
        for qid, row_s, row_i in zip(qids, scores, ids)
    }
