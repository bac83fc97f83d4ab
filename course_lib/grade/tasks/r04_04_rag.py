"""Tests for the exercise of lesson 04.04 (RAG): ``recursive_split``, ``context_recall``, ``mmr``.

The tasks, as the exercise states them:

* ``recursive_split(text, chunk_size, chunk_overlap, separators=("\\n\\n", "\\n", " ", ""))``
  returns the list of chunks that LangChain's ``RecursiveCharacterTextSplitter(chunk_size=...,
  chunk_overlap=..., separators=...)`` returns with its defaults (``keep_separator=True``,
  ``strip_whitespace=True``, ``length_function=len``).
* ``context_recall(retrieved, gold)``: spans are ``(doc_id, start, end)`` tuples; the share of
  the gold characters (union of the gold spans) covered by the union of the retrieved spans.
* ``mmr(query_vec, cand_vecs, k, lambda_)``: indices of k candidates in the order maximal
  marginal relevance picks them, with cosine similarities (first pick: the most similar to the
  query; ties to the lowest index).

Reference routes: LangChain itself for the splitter (course_lib's span-based splitter if
LangChain is missing), brute-force character sets for recall, langchain_core's
``maximal_marginal_relevance`` for MMR (course_lib's if missing).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON_04 = "04_retrieval/04_rag"
DEFAULT_SEPARATORS = ("\n\n", "\n", " ", "")


# --------------------------------------------------------------------------
# recursive_split
# --------------------------------------------------------------------------


def _reference_split(text: str, size: int, overlap: int, separators=DEFAULT_SEPARATORS) -> list[str]:
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    except ImportError:  # the course's own splitter, tested equal to LangChain in tests/test_ir_chunking.py
        from ...ir.chunking import recursive_split

        return recursive_split(text, size, overlap, list(separators))
    logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)
    return RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap, separators=list(separators)).split_text(text)


def _split_call(fn: Callable[..., Any], text: str, size: int, overlap: int, separators=None) -> list[str]:
    out = fn(text, size, overlap) if separators is None else fn(text, size, overlap, list(separators))
    if not isinstance(out, list) or not all(isinstance(c, str) for c in out):
        raise TestFailure(f"expected a list of str (the chunks), got {type(out).__name__}")
    return out


def _expect_split(fn: Callable[..., Any], text: str, size: int, overlap: int, separators=None) -> None:
    got = _split_call(fn, text, size, overlap, separators)
    want = _reference_split(text, size, overlap, DEFAULT_SEPARATORS if separators is None else separators)
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise TestFailure(
            f"text {text[:60]!r}{'...' if len(text) > 60 else ''}, chunk_size={size}, chunk_overlap={overlap}"
            f"{'' if separators is None else f', separators={list(separators)!r}'}: {len(got)} chunks, expected {len(want)}; "
            f"first difference at chunk {first}: got {got[first] if first < len(got) else None!r}, "
            f"expected {want[first] if first < len(want) else None!r}"
        )


split_task = register(
    "retrieval.recursive_split",
    function="recursive_split",
    title="Recursive character splitting, chunk for chunk equal to LangChain",
    lesson=LESSON_04,
    points=3,
    timeout_s=60,
)


@split_task.test("a short text is one chunk, stripped", hint="when everything fits, return [text.strip()] (and [] for an empty or blank text)")
def _short(fn: Callable[..., Any]) -> None:
    _expect_split(fn, "  A short docstring.\n", 100, 10)
    _expect_split(fn, "", 100, 10)
    _expect_split(fn, " \n\n ", 100, 10)


@split_task.test("paragraphs are merged greedily up to chunk_size", hint="cut at the first separator that occurs in the text ('\\n\\n' here), then add pieces to the current chunk while its length stays <= chunk_size; count the separator's characters too (it stays at the start of the piece after it)")
def _paragraphs(fn: Callable[..., Any]) -> None:
    text = "\n\n".join(f"Paragraph {i} says {'something ' * (i % 4 + 1)}." for i in range(12))
    for size in (60, 100, 180):
        _expect_split(fn, text, size, 0)


@split_task.test("overlap: the next chunk repeats whole pieces of the previous one", hint="after emitting a chunk, drop pieces from its front while the rest is longer than chunk_overlap, or while the next piece still would not fit; the remaining pieces start the next chunk")
def _overlap(fn: Callable[..., Any]) -> None:
    text = " ".join(f"word{i}" for i in range(60))
    for size, overlap in ((20, 8), (30, 15), (25, 25), (40, 0)):
        _expect_split(fn, text, size, overlap)


@split_task.test("a piece that is too long is cut with the finer separators", hint="a piece whose length is not below chunk_size is split again with the separators *after* the one used (paragraph -> line -> space -> characters); with none left it is kept whole, unstripped")
def _recursion(fn: Callable[..., Any]) -> None:
    text = "Short intro.\n\n" + "a long paragraph line " * 6 + "\nsecond line\n\nsupercalifragilisticexpialidocious end"
    for size, overlap in ((30, 5), (12, 0), (8, 3)):
        _expect_split(fn, text, size, overlap)
    _expect_split(fn, "aaaa bbbbbbbbbb cc", 5, 0, separators=[" "])  # no finer separator: kept as is


@split_task.test("separators stay with the piece after them; empty pieces are dropped", hint="keep_separator=True (LangChain's default) means 'text'.split(sep) pieces become [p0, sep + p1, sep + p2, ...], then drop the empty ones; the merged chunk is ''.join(pieces).strip(), not sep.join(...)")
def _separators(fn: Callable[..., Any]) -> None:
    for text, size, overlap in (("\nab", 2, 1), ("a\n\n\n\nb\n\n\n\n\n\nc", 3, 1), ("x  y  z", 3, 2), ("one\ntwo\n\nthree  four", 6, 3)):
        _expect_split(fn, text, size, overlap)


@split_task.test("custom separator lists", hint="use the separators you are given, in order; '' means 'between characters' and leaves no finer separator")
def _custom(fn: Callable[..., Any]) -> None:
    text = "First sentence. Second one here. Third, with a comma. Fourth and last."
    for seps in ((". ", " "), (". ", ", ", " ", ""), (" ",), ("|", " ")):
        _expect_split(fn, text, 24, 6, separators=seps)


@split_task.test("random texts: equal to LangChain", hint="compare your chunks with RecursiveCharacterTextSplitter(chunk_size=..., chunk_overlap=...).split_text(text) on the failing case printed above")
def _random(fn: Callable[..., Any]) -> None:
    rng = random.Random(4)
    alphabet = ["a", "bb", " ", "  ", "\n", "\n\n", "\n\n\n", ".", "é", "\t", "word"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        size = rng.randint(1, 16)
        _expect_split(fn, text, size, rng.randint(0, size))


@split_task.test("real documentation: a help page", hint="your splitter must agree on a long real text at several sizes; if small cases pass, look at how the overlap window is carried across a recursion")
def _real(fn: Callable[..., Any]) -> None:
    from pydoc_data.topics import topics

    text = topics["assignment"]
    for size, overlap in ((256, 32), (512, 64), (1000, 0)):
        _expect_split(fn, text, size, overlap)


# --------------------------------------------------------------------------
# context_recall
# --------------------------------------------------------------------------


def _chars(spans) -> set[tuple[int, int]]:
    return {(d, x) for d, s, e in spans for x in range(s, e)}


def _recall_call(fn: Callable[..., Any], retrieved, gold) -> float:
    out = fn([tuple(s) for s in retrieved], [tuple(s) for s in gold])
    if isinstance(out, (bool, np.bool_)) or not isinstance(out, (int, float, np.floating, np.integer)):
        raise TestFailure(f"expected a float, got {type(out).__name__}")
    return float(out)


def _expect_recall(fn: Callable[..., Any], retrieved, gold) -> None:
    got = _recall_call(fn, retrieved, gold)
    want = len(_chars(retrieved) & _chars(gold)) / len(_chars(gold))
    if abs(got - want) > 1e-12:
        raise TestFailure(f"retrieved {retrieved}, gold {gold}: got {got!r}, expected {want!r}")


recall_task = register(
    "retrieval.context_recall",
    function="context_recall",
    title="Context recall against gold spans",
    lesson=LESSON_04,
    points=1,
    timeout_s=30,
)


@recall_task.test("all or nothing", hint="recall = gold characters covered by the retrieved spans / gold characters: 1.0 when a chunk contains the gold span, 0.0 when none touches it")
def _all_or_nothing(fn: Callable[..., Any]) -> None:
    _expect_recall(fn, [(0, 0, 500)], [(0, 100, 200)])
    _expect_recall(fn, [(0, 300, 500), (0, 0, 100)], [(0, 100, 200)])  # touching at 100 is not covering


@recall_task.test("partial coverage is a fraction of the gold", hint="divide by the gold's length, not the chunk's: a 300-character chunk covering 50 of 100 gold characters gives 0.5")
def _partial(fn: Callable[..., Any]) -> None:
    _expect_recall(fn, [(0, 150, 450)], [(0, 100, 200)])
    _expect_recall(fn, [(0, 0, 130), (0, 190, 260)], [(0, 100, 200)])


@recall_task.test("overlapping chunks count a gold character once", hint="take the union of the retrieved spans before counting: two overlapping chunks that both cover the gold must not give more than 1.0")
def _overlapping(fn: Callable[..., Any]) -> None:
    _expect_recall(fn, [(0, 100, 160), (0, 140, 200)], [(0, 100, 200)])
    _expect_recall(fn, [(0, 100, 150), (0, 100, 150), (0, 120, 150)], [(0, 100, 200)])


@recall_task.test("offsets in another document do not count", hint="a span is (doc_id, start, end): compare offsets only within the same doc_id")
def _other_doc(fn: Callable[..., Any]) -> None:
    _expect_recall(fn, [(1, 100, 200)], [(0, 100, 200)])
    _expect_recall(fn, [(1, 100, 200), (0, 150, 200)], [(0, 100, 200), (1, 150, 160)])


@recall_task.test("random spans: brute force over characters", hint="build the union of the gold spans and of the retrieved spans (per document) and count the characters in both; several gold spans may overlap too")
def _random_spans(fn: Callable[..., Any]) -> None:
    rng = random.Random(5)
    for _ in range(300):
        retrieved = [(rng.randint(0, 2), a, a + rng.randint(0, 15)) for a in (rng.randint(0, 40) for _ in range(rng.randint(0, 6)))]
        gold = [(rng.randint(0, 2), a, a + rng.randint(1, 15)) for a in (rng.randint(0, 40) for _ in range(rng.randint(1, 3)))]
        _expect_recall(fn, retrieved, gold)


# --------------------------------------------------------------------------
# mmr
# --------------------------------------------------------------------------


def _reference_mmr(q: np.ndarray, C: np.ndarray, k: int, lam: float) -> list[int]:
    try:
        from langchain_core.vectorstores.utils import maximal_marginal_relevance
    except ImportError:
        from ...ir.rag import mmr

        return mmr(q, C, k, lam).tolist()
    return [int(i) for i in maximal_marginal_relevance(q, C.tolist(), lambda_mult=lam, k=k)]


def _mmr_call(fn: Callable[..., Any], q: np.ndarray, C: np.ndarray, k: int, lam: float) -> list[int]:
    out = fn(q.copy(), C.copy(), k, lam)
    arr = np.asarray(out)
    if arr.shape != (k,) or not np.issubdtype(arr.dtype, np.integer):
        raise TestFailure(f"expected k = {k} integer indices, got {type(out).__name__} of shape {arr.shape} and dtype {arr.dtype}")
    return [int(i) for i in arr]


def _expect_mmr(fn: Callable[..., Any], q: np.ndarray, C: np.ndarray, k: int, lam: float) -> None:
    got, want = _mmr_call(fn, q, C, k, lam), _reference_mmr(q, C, k, lam)
    if got != want:
        raise TestFailure(f"k={k}, lambda_={lam}: picked {got}, expected {want}")


mmr_task = register(
    "retrieval.mmr",
    function="mmr",
    title="Maximal marginal relevance re-ranking",
    lesson=LESSON_04,
    points=2,
    timeout_s=30,
)


@mmr_task.test("lambda = 1 is plain ranking by cosine similarity", hint="with lambda_ = 1 the redundancy term vanishes: the picks are the candidates sorted by cosine to the query, best first")
def _lambda_one(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(0)
    C, q = rng.standard_normal((15, 8)), rng.standard_normal(8)
    _expect_mmr(fn, q, C, 6, 1.0)


@mmr_task.test("cosine, not the raw dot product", hint="normalise the query and every candidate to unit length first: a long vector must not win because of its norm")
def _cosine(fn: Callable[..., Any]) -> None:
    q = np.array([1.0, 0.0])
    C = np.array([[0.6, 0.8], [10.0, 10.0], [0.99, 0.1]])   # the long vector has the largest dot product
    _expect_mmr(fn, q, C, 3, 1.0)
    _expect_mmr(fn, q, C, 2, 0.7)


@mmr_task.test("a near-duplicate of a pick is passed over", hint="score = lambda_ * cos(q, c) - (1 - lambda_) * max over picked p of cos(c, p); subtract the redundancy, weighted by (1 - lambda_)")
def _duplicate(fn: Callable[..., Any]) -> None:
    q = np.array([1.0, 0.0])
    C = np.array([[1.0, 0.05], [1.0, 0.06], [0.7, 0.7]])   # 0 and 1 are near-duplicates
    _expect_mmr(fn, q, C, 2, 0.3)
    _expect_mmr(fn, q, C, 3, 0.3)


@mmr_task.test("redundancy is the maximum over the picks, not the mean", hint="take the largest cosine between the candidate and any already-picked item")
def _max_not_mean(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        C, q = rng.standard_normal((12, 5)), rng.standard_normal(5)
        _expect_mmr(fn, q, C, 6, 0.5)


@mmr_task.test("k distinct picks, first = most relevant, every lambda", hint="never pick the same candidate twice (exclude picked ones before taking the argmax); the first pick is the argmax of the cosine to the query whatever lambda_ is")
def _distinct(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(7)
    for lam in (0.0, 0.25, 0.5, 0.75, 0.9):
        C, q = rng.standard_normal((10, 6)), rng.standard_normal(6)
        got = _mmr_call(fn, q, C, 10, lam)
        if sorted(got) != list(range(10)):
            raise TestFailure(f"k = n = 10 must return every candidate once, got {got}")
        _expect_mmr(fn, q, C, 10, lam)


@mmr_task.test("equal to langchain_core on real-looking data", hint="compare with langchain_core.vectorstores.utils.maximal_marginal_relevance(q, C, lambda_mult, k) on the failing case; ties go to the lowest index (np.argmax)")
def _random_mmr(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(11)
    for _ in range(30):
        base = rng.standard_normal(16)
        C = base + 0.8 * rng.standard_normal((20, 16))    # correlated candidates, as retrieved chunks are
        q = base + 0.5 * rng.standard_normal(16)
        _expect_mmr(fn, q, C, 5, float(rng.choice([0.3, 0.5, 0.7])))
