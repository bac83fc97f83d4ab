"""Ranking metrics with trec_eval's conventions: NDCG@k, recall@k, precision@k, MRR, MAP.

A **run** is a dict ``qid -> {doc_id: score}`` (higher score = ranked higher),
**qrels** a dict ``qid -> {doc_id: grade}`` (integer grades >= 0).  Document
ids may be ints or strings; they are compared as strings, as trec_eval does.

Conventions (those of trec_eval 9, hence of pytrec_eval and ir_measures):

* **Ranking.** Documents are sorted by score descending, ties broken by doc id
  descending compared as strings (``"9"`` ranks above ``"10"`` on a tie).  The
  whole run is ranked: nothing is cut at 1000 unless the run itself is.
* **Relevance.** Binary measures count a document as relevant when its grade
  is >= 1; NDCG uses the grade itself as the gain (linear gain, not 2^rel - 1).
* **Discount.** Rank i (from 1) is discounted by log2(i + 1).
* **Which queries.** A query is evaluated when it is in both the run and the
  qrels (trec_eval's default).  A judged query with no relevant document scores
  0 and counts in the mean, as in trec_eval.  ``complete=True`` averages over
  every judged query instead, a missing one scoring 0 (trec_eval ``-c``; what
  ir_measures' ``calc_aggregate`` does).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from numbers import Real
from pathlib import Path
from typing import Any

Run = Mapping[Any, Mapping[Any, float]]
Qrels = Mapping[Any, Mapping[Any, int]]

#: Metric names :func:`evaluate` understands (``k`` a positive integer).
METRIC_PATTERNS = ("ndcg@k", "recall@k", "precision@k", "mrr", "mrr@k", "map")
_METRIC = re.compile(r"^(ndcg|recall|precision|mrr|map)(?:@(\d+))?$")


# --------------------------------------------------------------------------
# 1. Validation and conversion
# --------------------------------------------------------------------------


def _check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be a positive int (a rank cutoff), got {k!r}")
    return k


def _check_run(run: Any) -> dict[str, dict[str, float]]:
    """The run with string ids and float scores; ValueError on anything else."""
    if not isinstance(run, Mapping):
        raise ValueError(f"run must be a dict qid -> {{doc_id: score}}, got {type(run).__name__}")
    if not run:
        raise ValueError("run is empty: expected at least one query qid -> {doc_id: score}")
    out = {}
    for qid, ranking in run.items():
        if not isinstance(ranking, Mapping):
            raise ValueError(f"run[{qid!r}] must be a dict doc_id -> score, got {type(ranking).__name__}")
        scores = {}
        for doc, score in ranking.items():
            if isinstance(score, bool) or not isinstance(score, Real) or math.isnan(score):
                raise ValueError(f"run[{qid!r}][{doc!r}] must be a real number (not NaN), got {score!r}")
            scores[str(doc)] = float(score)
        out[str(qid)] = scores
    return out


def _check_qrels(qrels: Any) -> dict[str, dict[str, int]]:
    """The qrels with string ids and int grades; ValueError on anything else."""
    if not isinstance(qrels, Mapping) or not qrels:
        raise ValueError("qrels must be a non-empty dict qid -> {doc_id: grade}")
    out = {}
    for qid, judged in qrels.items():
        if not isinstance(judged, Mapping):
            raise ValueError(f"qrels[{qid!r}] must be a dict doc_id -> grade, got {type(judged).__name__}")
        grades = {}
        for doc, grade in judged.items():
            ok = not isinstance(grade, bool) and isinstance(grade, Real) and math.isfinite(grade)
            if not ok or grade != int(grade) or grade < 0:
                raise ValueError(f"qrels[{qid!r}][{doc!r}] must be an integer grade >= 0, got {grade!r}")
            grades[str(doc)] = int(grade)
        out[str(qid)] = grades
    return out


def to_trec_run(run: Run) -> dict[str, dict[str, float]]:
    """A run with string qids and doc ids and float scores, as pytrec_eval and ir_measures want."""
    return _check_run(run)


def to_trec_qrels(qrels: Qrels) -> dict[str, dict[str, int]]:
    """Qrels with string qids and doc ids and int grades, as pytrec_eval and ir_measures want."""
    return _check_qrels(qrels)


def rank(scores: Mapping[Any, float]) -> list[str]:
    """Doc ids of one query, best first: score descending, ties by doc id descending as strings.

    >>> rank({"a": 0.5, "b": 0.5, "d": 0.9})
    ['d', 'b', 'a']
    """
    return [doc for doc, _ in sorted(((str(d), float(s)) for d, s in scores.items()),
                                     key=lambda item: (item[1], item[0]), reverse=True)]


# --------------------------------------------------------------------------
# 2. One query: a ranked list of doc ids and its judgments
# --------------------------------------------------------------------------


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain: sum of gain_i / log2(i + 1), ranks i from 1."""
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1))


def query_ndcg(ranked: list[str], grades: Mapping[str, int], k: int) -> float:
    """NDCG@k of one ranking: DCG of the top k over the DCG of the ideal top k.

    The ideal ranking sorts the judged grades descending (documents the run
    never retrieved included), so NDCG is 1 only if the best k judged
    documents come first.  0 when nothing is relevant.
    """
    ideal = dcg(sorted((g for g in grades.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(grades.get(doc, 0) for doc in ranked[:k]) / ideal


def _num_rel(grades: Mapping[str, int]) -> int:
    return sum(g >= 1 for g in grades.values())


def query_recall(ranked: list[str], grades: Mapping[str, int], k: int) -> float:
    """Relevant documents (grade >= 1) in the top k over all relevant documents (0 if none)."""
    num_rel = _num_rel(grades)
    return sum(grades.get(doc, 0) >= 1 for doc in ranked[:k]) / num_rel if num_rel else 0.0


def query_precision(ranked: list[str], grades: Mapping[str, int], k: int) -> float:
    """Relevant documents in the top k over k (a run shorter than k is not excused)."""
    return sum(grades.get(doc, 0) >= 1 for doc in ranked[:k]) / k


def query_rr(ranked: list[str], grades: Mapping[str, int], k: int | None = None) -> float:
    """1 / rank of the first relevant document within the top k (all ranks if None); 0 if none."""
    for i, doc in enumerate(ranked if k is None else ranked[:k], start=1):
        if grades.get(doc, 0) >= 1:
            return 1.0 / i
    return 0.0


def query_ap(ranked: list[str], grades: Mapping[str, int]) -> float:
    """Average precision: the mean, over all relevant documents, of the precision at each one's rank.

    Relevant documents the run never retrieved contribute precision 0.
    """
    num_rel = _num_rel(grades)
    if num_rel == 0:
        return 0.0
    hits, total = 0, 0.0
    for i, doc in enumerate(ranked, start=1):
        if grades.get(doc, 0) >= 1:
            hits += 1
            total += hits / i
    return total / num_rel


# --------------------------------------------------------------------------
# 3. Many queries: per-query values and means
# --------------------------------------------------------------------------


def _per_query(run: Run, qrels: Qrels, fn, complete: bool) -> dict[str, float]:
    run_s, qrels_s = _check_run(run), _check_qrels(qrels)
    qids = list(qrels_s) if complete else [q for q in run_s if q in qrels_s]
    if not qids:
        raise ValueError(
            "no query of the run has judgments: run and qrels share no qid "
            f"(run has e.g. {next(iter(run_s))!r}, qrels has e.g. {next(iter(qrels_s))!r})"
        )
    return {q: fn(rank(run_s.get(q, {})), qrels_s[q]) for q in qids}


def _mean_or_all(values: dict[str, float], per_query: bool) -> float | dict[str, float]:
    return values if per_query else sum(values.values()) / len(values)


def ndcg_at_k(run: Run, qrels: Qrels, k: int = 10, per_query: bool = False, complete: bool = False):
    """Mean NDCG@k (or a dict qid -> NDCG@k with ``per_query=True``).

    Equals trec_eval's ``ndcg_cut.k`` (pytrec_eval ``"ndcg_cut.10"``,
    ir_measures ``nDCG@10``): gain = grade, discount log2(rank + 1), ideal DCG
    from the query's judged grades.  See the module docstring for which
    queries count (``complete``).
    """
    k = _check_k(k)
    return _mean_or_all(_per_query(run, qrels, lambda r, g: query_ndcg(r, g, k), complete), per_query)


def recall_at_k(run: Run, qrels: Qrels, k: int = 100, per_query: bool = False, complete: bool = False):
    """Mean recall@k: relevant (grade >= 1) documents in the top k / all relevant documents.

    Equals trec_eval's ``recall.k`` (pytrec_eval ``"recall.100"``, ir_measures ``R@100``).
    """
    k = _check_k(k)
    return _mean_or_all(_per_query(run, qrels, lambda r, g: query_recall(r, g, k), complete), per_query)


def precision_at_k(run: Run, qrels: Qrels, k: int = 10, per_query: bool = False, complete: bool = False):
    """Mean precision@k: relevant documents in the top k / k.

    Equals trec_eval's ``P.k`` (pytrec_eval ``"P.10"``, ir_measures ``P@10``).
    """
    k = _check_k(k)
    return _mean_or_all(_per_query(run, qrels, lambda r, g: query_precision(r, g, k), complete), per_query)


def mrr(run: Run, qrels: Qrels, k: int | None = None, per_query: bool = False, complete: bool = False):
    """Mean reciprocal rank of the first relevant document, within the top k if given.

    With ``k=None`` it equals trec_eval's ``recip_rank``, which has no cutoff
    (pytrec_eval ``"recip_rank"``, ir_measures ``RR``); with ``k`` (a first
    hit below rank k scores 0: MS MARCO's MRR@10) it equals ir_measures'
    ``RR@k`` on runs without score ties; ir_measures 0.4 computes ``RR@k``
    with its msmarco provider, which does not break ties by doc id (its
    pytrec_eval provider ignores the cutoff).
    """
    if k is not None:
        k = _check_k(k)
    return _mean_or_all(_per_query(run, qrels, lambda r, g: query_rr(r, g, k), complete), per_query)


def average_precision(run: Run, qrels: Qrels, per_query: bool = False, complete: bool = False):
    """MAP: the mean over queries of average precision, over the whole run (no cutoff).

    Equals trec_eval's ``map`` (pytrec_eval ``"map"``, ir_measures ``AP``).
    Only as deep as the run goes: a run cut at 100 documents gets no credit
    for relevant documents below.
    """
    return _mean_or_all(_per_query(run, qrels, query_ap, complete), per_query)


def _metric_fn(name: str):
    match = _METRIC.match(name.strip().lower()) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unknown metric {name!r}: expected one of {METRIC_PATTERNS} (e.g. 'ndcg@10')")
    measure, cutoff = match.group(1), match.group(2)
    k = None if cutoff is None else _check_k(int(cutoff), f"the cutoff of {name!r}")
    if measure in ("ndcg", "recall", "precision") and k is None:
        raise ValueError(f"metric {name!r} needs a cutoff, e.g. '{measure}@10'")
    if measure == "map" and k is not None:
        raise ValueError(f"metric {name!r}: MAP here is over the whole run (trec_eval 'map'); write 'map'")
    if measure == "ndcg":
        return lambda r, g: query_ndcg(r, g, k)
    if measure == "recall":
        return lambda r, g: query_recall(r, g, k)
    if measure == "precision":
        return lambda r, g: query_precision(r, g, k)
    if measure == "mrr":
        return lambda r, g: query_rr(r, g, k)
    return query_ap


def evaluate(
    run: Run,
    qrels: Qrels,
    metrics: Iterable[str] = ("ndcg@10", "recall@100", "mrr", "map"),
    per_query: bool = False,
    complete: bool = False,
) -> dict[str, Any]:
    """Several metrics at once: ``{"ndcg@10": mean, ...}`` (or ``{name: {qid: value}}``).

    Names: ``ndcg@k``, ``recall@k``, ``precision@k``, ``mrr`` (no cutoff, trec_eval
    ``recip_rank``), ``mrr@k``, ``map`` (whole run).  The run is validated and
    ranked once.
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ValueError("metrics is empty: expected names such as ('ndcg@10', 'recall@100')")
    fns = {name: _metric_fn(name) for name in names}
    run_s, qrels_s = _check_run(run), _check_qrels(qrels)
    qids = list(qrels_s) if complete else [q for q in run_s if q in qrels_s]
    if not qids:
        raise ValueError("no query of the run has judgments: run and qrels share no qid")
    ranked = {q: rank(run_s.get(q, {})) for q in qids}
    out = {}
    for name, fn in fns.items():
        values = {q: fn(ranked[q], qrels_s[q]) for q in qids}
        out[name] = _mean_or_all(values, per_query)
    return out


# --------------------------------------------------------------------------
# 4. TREC files
# --------------------------------------------------------------------------


def write_trec_run(run: Run, path: Path | str, tag: str = "course_lib") -> Path:
    """Write a run as a TREC run file: ``qid Q0 doc_id rank score tag``, ranked as trec_eval ranks."""
    run_s = _check_run(run)
    lines = [
        f"{qid} Q0 {doc} {i} {run_s[qid][doc]!r} {tag}\n"
        for qid in run_s for i, doc in enumerate(rank(run_s[qid]), start=1)
    ]
    Path(path).write_text("".join(lines), encoding="utf-8")
    return Path(path)


def read_trec_run(path: Path | str) -> dict[str, dict[str, float]]:
    """Read a TREC run file (``qid Q0 doc_id rank score tag``) into qid -> {doc_id: score}."""
    run: dict[str, dict[str, float]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            parts = line.split()
            if len(parts) != 6:
                raise ValueError(f"{path}:{n}: expected 'qid Q0 doc_id rank score tag', got {line!r}")
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run


def read_trec_qrels(path: Path | str) -> dict[str, dict[str, int]]:
    """Read TREC qrels (``qid 0 doc_id grade``, any whitespace) into qid -> {doc_id: grade}."""
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            parts = line.split()
            if len(parts) != 4:
                raise ValueError(f"{path}:{n}: expected 'qid 0 doc_id grade', got {line!r}")
            qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return qrels
