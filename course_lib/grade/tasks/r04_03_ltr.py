"""Tests for the exercise of lesson 04.03 (search relevance and learning to rank): ``ndcg_at_k`` and ``edit_distance``.

The tasks, as the exercise states them:

* ``ndcg_at_k(ranked_doc_ids, qrels, k)``: NDCG@k of one query.  ``ranked_doc_ids``
  lists distinct doc ids, best first; ``qrels`` maps doc id -> integer grade >= 0
  (unjudged documents have grade 0); gain = the grade (linear), the document at rank
  i (from 1) is discounted by log2(i + 1); the ideal DCG sorts *every* judged grade
  descending and keeps the top k; return DCG@k / IDCG@k as a float, 0.0 when no
  judged grade is positive.
* ``edit_distance(a, b)``: the Levenshtein distance (insertions, deletions,
  substitutions, each costing 1) between two strings, by dynamic programming.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "04_retrieval/03_learning_to_rank"


# --------------------------------------------------------------------------
# ndcg_at_k
# --------------------------------------------------------------------------


def _ndcg_reference(ranked: list, qrels: dict, k: int) -> float:
    """numpy, array by array: a different route from course_lib.ir.metrics' generator sums."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.array([qrels.get(d, 0) for d in ranked[:k]], dtype=np.float64)
    ideal = np.sort(np.array(list(qrels.values()), dtype=np.float64))[::-1][:k]
    idcg = float(ideal @ discounts[: len(ideal)])
    return float(gains @ discounts[: len(gains)]) / idcg if idcg > 0 else 0.0


def _ndcg_call(fn: Callable[..., Any], ranked: list, qrels: dict, k: int) -> float:
    ranked_copy, qrels_copy = list(ranked), dict(qrels)
    out = fn(ranked_copy, qrels_copy, k)
    if ranked_copy != ranked or qrels_copy != qrels:
        raise TestFailure("ndcg_at_k modified its inputs (ranked_doc_ids or qrels)")
    try:
        value = float(out)
    except (TypeError, ValueError):
        raise TestFailure(f"ndcg_at_k must return a number, got {type(out).__name__}") from None
    if math.isnan(value):
        raise TestFailure("ndcg_at_k returned NaN")
    return value


def _ndcg_expect(fn: Callable[..., Any], ranked: list, qrels: dict, k: int, what: str = "") -> None:
    got, want = _ndcg_call(fn, ranked, qrels, k), _ndcg_reference(ranked, qrels, k)
    if abs(got - want) > 1e-9:
        raise TestFailure(f"{what}ranked={ranked}, qrels={qrels}, k={k}: expected {want:.6f}, got {got:.6f}")


ndcg = register(
    "retrieval.ndcg_at_k",
    function="ndcg_at_k",
    title="NDCG@k of one ranked list with graded judgments",
    lesson=LESSON,
    points=2,
    timeout_s=30,
)


@ndcg.test("a hand-worked example: grades 0, 2, 1 at ranks 1-3", hint="DCG = sum of grade / log2(rank + 1) with ranks from 1; IDCG is the same sum over the grades sorted descending")
def _hand(fn: Callable[..., Any]) -> None:
    ranked, qrels = ["a", "b", "c"], {"b": 2, "c": 1}
    want = (2 / math.log2(3) + 1 / math.log2(4)) / (2 + 1 / math.log2(3))
    got = _ndcg_call(fn, ranked, qrels, 10)
    if abs(got - want) > 1e-9:
        raise TestFailure(f"expected {want:.6f} for ranked={ranked}, qrels={qrels}, k=10; got {got:.6f}")


@ndcg.test("the best document first scores 1.0, and the first rank is not discounted", hint="rank i counts from 1 and its discount is 1/log2(i + 1): the first document's gain is divided by log2(2) = 1 (enumerate(..., start=1), or i + 2 with i from 0)")
def _perfect(fn: Callable[..., Any]) -> None:
    got = _ndcg_call(fn, ["x", "y", "z"], {"x": 2, "y": 1}, 5)
    if abs(got - 1.0) > 1e-9:
        raise TestFailure(f"a perfectly ordered list must score 1.0, got {got:.6f}")
    _ndcg_expect(fn, ["y", "x"], {"x": 2, "y": 1}, 5, "swapped: ")


@ndcg.test("the gain is the grade itself (linear), not 2**grade - 1", hint="use the grade as the gain, as trec_eval does: with gain 2**g - 1 a grade-2 document weighs 3 times a grade-1 one instead of 2 times")
def _linear_gain(fn: Callable[..., Any]) -> None:
    _ndcg_expect(fn, ["b", "a"], {"a": 2, "b": 1}, 2)
    _ndcg_expect(fn, ["c", "a", "b"], {"a": 3, "b": 1, "c": 1}, 3)


@ndcg.test("the ideal DCG counts judged documents that were never retrieved", hint="build the ideal ranking from ALL the grades in qrels, not only from the retrieved documents: a relevant document the run missed still belongs in the ideal list")
def _ideal_from_all(fn: Callable[..., Any]) -> None:
    _ndcg_expect(fn, ["a", "b"], {"a": 1, "missing": 2}, 10)


@ndcg.test("only the top k count, in the DCG and in the ideal", hint="cut both lists at k: the ranked list (ranked_doc_ids[:k]) and the sorted ideal grades ([:k])")
def _cutoff(fn: Callable[..., Any]) -> None:
    qrels = {"d1": 1, "d2": 2, "d3": 1, "d4": 2}
    _ndcg_expect(fn, ["d1", "x", "d2", "d3", "d4"], qrels, 2)
    _ndcg_expect(fn, ["x", "y", "d4"], qrels, 2)  # nothing relevant in the top 2: 0.0
    _ndcg_expect(fn, ["d4", "x"], qrels, 1)


@ndcg.test("no relevant document: 0.0, without dividing by zero", hint="when every judged grade is 0 (or qrels is empty) the ideal DCG is 0: return 0.0 instead of dividing")
def _no_relevant(fn: Callable[..., Any]) -> None:
    for qrels in ({"a": 0, "b": 0}, {}):
        got = _ndcg_call(fn, ["a", "b"], qrels, 10)
        if got != 0.0:
            raise TestFailure(f"qrels={qrels}: expected 0.0, got {got}")


@ndcg.test("random rankings with int ids and grades 0-3 (also a list shorter than k)", hint="compare with course_lib.ir.metrics.ndcg_at_k on small cases; unjudged documents have gain 0 (qrels.get(doc, 0)), and documents with grade 0 are judged but not relevant")
def _random(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(403)
    for _ in range(200):
        n_docs = int(rng.integers(1, 30))
        ranked = [int(d) for d in rng.permutation(40)[:n_docs]]
        judged = rng.choice(40, int(rng.integers(0, 12)), replace=False)
        qrels = {int(d): int(g) for d, g in zip(judged, rng.integers(0, 4, len(judged)))}
        _ndcg_expect(fn, ranked, qrels, int(rng.integers(1, 25)))


# --------------------------------------------------------------------------
# edit_distance
# --------------------------------------------------------------------------


def _levenshtein_reference(a: str, b: str) -> int:
    """The full (len(a)+1) x (len(b)+1) table in numpy: a different route from the two-row version."""
    D = np.zeros((len(a) + 1, len(b) + 1), dtype=np.int64)
    D[:, 0], D[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            D[i, j] = min(D[i - 1, j] + 1, D[i, j - 1] + 1, D[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
    return int(D[-1, -1])


def _edit_call(fn: Callable[..., Any], a: str, b: str) -> int:
    out = fn(a, b)
    if isinstance(out, bool) or not isinstance(out, (int, float, np.integer, np.floating)) or out != int(out):
        raise TestFailure(f"edit_distance must return a whole number of edits, got {type(out).__name__} {out!r}")
    return int(out)


def _edit_expect(fn: Callable[..., Any], a: str, b: str) -> None:
    got, want = _edit_call(fn, a, b), _levenshtein_reference(a, b)
    if got != want:
        raise TestFailure(f"edit_distance({a!r}, {b!r}): expected {want}, got {got}")


edit = register(
    "retrieval.edit_distance",
    function="edit_distance",
    title="Levenshtein edit distance by dynamic programming",
    lesson=LESSON,
    points=2,
    timeout_s=30,
)


@edit.test("returns an int", hint="return the last cell of the table as a Python int (int(...) if your table is a numpy array of floats)")
def _int(fn: Callable[..., Any]) -> None:
    out = fn("abc", "abd")
    if isinstance(out, bool) or not isinstance(out, (int, np.integer)):
        raise TestFailure(f"expected an int, got {type(out).__name__} {out!r}")


@edit.test("classic examples: kitten/sitting = 3, flaw/lawn = 2", hint="D[i][j] = min(D[i-1][j] + 1, D[i][j-1] + 1, D[i-1][j-1] + (a[i-1] != b[j-1])); the answer is D[len(a)][len(b)]")
def _classic(fn: Callable[..., Any]) -> None:
    for a, b in (("kitten", "sitting"), ("flaw", "lawn"), ("intention", "execution"), ("json", "json")):
        _edit_expect(fn, a, b)


@edit.test("empty strings: the distance is the other string's length", hint="the first row and column of the table are 0, 1, 2, ...: turning '' into 'abc' takes 3 insertions")
def _empty(fn: Callable[..., Any]) -> None:
    for a, b in (("", ""), ("", "abc"), ("abcd", "")):
        _edit_expect(fn, a, b)


@edit.test("a substitution costs 1 (not a deletion plus an insertion)", hint="the diagonal move D[i-1][j-1] + 1 is a substitution; if you only allow insertions and deletions, 'cat' -> 'bat' costs 2")
def _substitution(fn: Callable[..., Any]) -> None:
    for a, b in (("cat", "bat"), ("abc", "xyz"), ("a", "b")):
        _edit_expect(fn, a, b)


@edit.test("a transposition costs 2 (Levenshtein, not Damerau)", hint="swapping two adjacent letters is two substitutions in Levenshtein's distance: do not add a transposition case")
def _transposition(fn: Callable[..., Any]) -> None:
    for a, b in (("ab", "ba"), ("jsno", "json"), ("abcd", "acbd")):
        _edit_expect(fn, a, b)


@edit.test("symmetric, on random strings of different lengths", hint="check your loops cover every i in 1..len(a) and j in 1..len(b) and that the table has len(a)+1 rows and len(b)+1 columns")
def _random(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(4031)
    letters = list("abcd")
    for _ in range(150):
        a = "".join(rng.choice(letters, int(rng.integers(0, 10))))
        b = "".join(rng.choice(letters, int(rng.integers(0, 10))))
        _edit_expect(fn, a, b)
        if _edit_call(fn, a, b) != _edit_call(fn, b, a):
            raise TestFailure(f"edit_distance({a!r}, {b!r}) != edit_distance({b!r}, {a!r})")


@edit.test("unicode characters count as one character each", hint="compare characters of the str (a[i] != b[j]), not bytes: 'café' has 4 characters")
def _unicode(fn: Callable[..., Any]) -> None:
    for a, b in (("café", "cafe"), ("naïve", "naive"), ("日本語", "日本")):
        _edit_expect(fn, a, b)


@edit.test("long strings (300 characters) in well under a second", hint="a recursive version without memoisation takes exponential time; fill the table with two nested loops (O(len(a) * len(b)))")
def _long(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(7)
    a = "".join(rng.choice(list("acgt"), 300))
    b = "".join(rng.choice(list("acgt"), 280))
    _edit_expect(fn, a, b)
