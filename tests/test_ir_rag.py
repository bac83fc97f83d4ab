"""Tests for course_lib.ir.rag: the evaluation set (long documents, gold spans), span metrics
against brute-force character sets, SQuAD token F1 against an independent transcription of the
official script, faithfulness proxies on extractive and invented answers, MMR equal to
langchain_core's maximal_marginal_relevance, and the budgeted extractive answerer."""

from __future__ import annotations

import collections
import random
import re
import string

import numpy as np
import pytest

from course_lib.ir.rag import (
    context_precision,
    context_recall,
    extract_answer,
    faithfulness,
    gold_span,
    long_documents,
    merge_spans,
    mmr,
    normalize_answer,
    overlap_chars,
    rag_collection,
    rag_queries,
    token_f1,
    token_support,
    whole_sentences,
)
from course_lib.ir.chunking import Chunk


# --- the evaluation set -------------------------------------------------------------------


DOCS = [
    {"id": 0, "source": "topic", "title": "t", "text": "First passage."},
    {"id": 1, "source": "module", "title": "m", "text": "Module text here."},
    {"id": 2, "source": "topic", "title": "t", "text": "Second passage."},
    {"id": 3, "source": "function", "title": "m.f", "text": "A function."},
]


def test_long_documents_join_passages_and_record_offsets():
    docs = long_documents(DOCS)
    assert [(d["id"], d["source"], d["title"]) for d in docs] == [(0, "topic", "t"), (1, "module", "m")]
    assert docs[0]["text"] == "First passage.\n\nSecond passage."
    for d in docs:
        for pid, start, end in d["passages"]:
            assert d["text"][start:end] == DOCS[pid]["text"]
    assert [d["title"] for d in long_documents(DOCS, sources=("function",))] == ["m.f"]
    with pytest.raises(ValueError, match="no document has a source"):
        long_documents(DOCS, sources=("chapter",))


def test_gold_span_is_the_neighbourhood_of_the_cut():
    original = "Alpha comes first. Held out sentence is here. Gamma follows it. Delta ends."
    cut = "Alpha comes first. Gamma follows it. Delta ends."
    start, end = gold_span(original, cut, "Held out sentence is here.")
    assert cut[start:end] == "Alpha comes first. Gamma follows it."
    # a first sentence: the gold is the sentence after it
    first = "Return the thing. It is computed lazily. More text."
    s, e = gold_span(first, "It is computed lazily. More text.", "Return the thing.")
    assert "It is computed lazily. More text."[s:e] == "It is computed lazily."
    with pytest.raises(ValueError, match="occurs 0 times"):
        gold_span(original, cut, "Not in there at all.")
    with pytest.raises(ValueError, match="not the original passage"):
        gold_span(original, cut + " Extra.", "Held out sentence is here.")


@pytest.fixture(scope="module")
def evaluation_set():
    from course_lib.data import load_corpus, load_retrieval_benchmark

    bench = load_retrieval_benchmark()
    docs = long_documents(bench.docs)
    return bench, docs, rag_queries(bench, load_corpus(), docs)


def test_rag_queries_on_the_benchmark(evaluation_set):
    bench, docs, queries = evaluation_set
    kinds = collections.Counter(q["kind"] for q in queries)
    assert kinds["held_out"] > 200 and kinds["first_sentence"] > 100
    for q in queries:
        doc = docs[q["doc_id"]]
        assert q["gold"][0] == doc["id"] and doc["text"][q["gold"][1]:q["gold"][2]] == q["gold_text"]
        assert q["gold_text"].strip() == q["gold_text"] and q["gold_text"]
        home = [(s, e) for pid, s, e in doc["passages"] if pid == bench.queries[q["row"]]["doc_id"]]
        assert home and home[0][0] <= q["gold"][1] < q["gold"][2] <= home[0][1]  # inside the source passage
        assert q["text"] == bench.queries[q["row"]]["text"]
        assert " ".join(q["text"].split()) not in " ".join(doc["text"].split())   # the query sentence is gone
    with pytest.raises(ValueError, match="identifier"):
        rag_queries(bench, [], docs, kinds=("identifier",))


# --- span metrics -------------------------------------------------------------------------


def _chars(spans):
    return {(d, x) for d, s, e in spans for x in range(s, e)}


def test_span_metrics_match_brute_force_character_sets():
    rng = random.Random(0)
    for _ in range(500):
        retrieved = [(rng.randint(0, 2), a := rng.randint(0, 40), a + rng.randint(0, 15)) for _ in range(rng.randint(0, 6))]
        gold = [(rng.randint(0, 2), a := rng.randint(0, 40), a + rng.randint(1, 15)) for _ in range(rng.randint(1, 3))]
        assert overlap_chars(retrieved, gold) == len(_chars(retrieved) & _chars(gold))
        assert merge_spans(retrieved) == merge_spans(merge_spans(retrieved))
        assert _chars(merge_spans(retrieved)) == _chars(retrieved)
        recall = context_recall(retrieved, gold)
        assert recall == pytest.approx(len(_chars(retrieved) & _chars(gold)) / len(_chars(gold)))
        total = sum(e - s for _, s, e in retrieved)
        want = sum(len(_chars([r]) & _chars(gold)) for r in retrieved) / total if total else 0.0
        precision = context_precision(retrieved, gold)
        assert precision == pytest.approx(want)
        assert 0.0 <= recall <= 1.0 and 0.0 <= precision <= 1.0


def test_span_metrics_hand_cases():
    gold = [(0, 100, 200)]
    assert context_recall([(0, 100, 200)], gold) == 1.0 and context_precision([(0, 100, 200)], gold) == 1.0
    assert context_recall([(0, 0, 100)], gold) == 0.0 and context_precision([(0, 0, 100)], gold) == 0.0
    assert context_recall([(1, 100, 200)], gold) == 0.0              # same offsets, other document
    assert context_recall([(0, 150, 300)], gold) == 0.5 and context_precision([(0, 150, 300)], gold) == pytest.approx(1 / 3)
    # two overlapping chunks: recall counts a gold character once, precision pays for the repeat
    assert context_recall([(0, 100, 160), (0, 140, 200)], gold) == 1.0
    assert context_precision([(0, 100, 160), (0, 100, 160)], gold) == 1.0
    assert context_precision([(0, 50, 150), (0, 50, 150)], gold) == 0.5
    assert context_precision([], gold) == 0.0
    assert context_recall([Chunk(0, 100, 150, "x" * 50)], gold) == 0.5  # chunks are spans
    with pytest.raises(ValueError, match="empty"):
        context_recall([(0, 1, 2)], [(0, 5, 5)])
    with pytest.raises(ValueError, match="start <= end"):
        context_recall([(0, 5, 2)], gold)
    with pytest.raises(ValueError, match="span"):
        context_recall(["abc"], gold)


# --- answer metrics -----------------------------------------------------------------------


def _squad_f1(prediction, ground_truth):
    """The official SQuAD v2.0 evaluation script's normalize_answer / compute_f1, transcribed."""

    def normalize(s):
        s = s.lower()
        s = "".join(ch for ch in s if ch not in set(string.punctuation))
        s = re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", s)
        return " ".join(s.split())

    gold_toks, pred_toks = normalize(ground_truth).split(), normalize(prediction).split()
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def test_token_f1_hand_cases_and_official_script():
    assert normalize_answer("The  Cat, sat on a MAT!") == "cat sat on mat"
    assert token_f1("The cat sat.", "cat sat") == 1.0
    assert token_f1("cat sat on the mat", "the cat") == pytest.approx(2 * (1 / 4) * 1 / (1 / 4 + 1))  # P 1/4, R 1
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("the", "") == 1.0 and token_f1("a cat", "") == 0.0   # empty after normalisation
    assert token_f1("cat cat", "cat") == pytest.approx(2 / 3)           # multiset: one match of two
    rng = random.Random(1)
    words = ["the", "a", "cat", "Cat.", "sat", "on", "mat", "os.path", "don't", "an", "x"]
    for _ in range(300):
        p = " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        g = " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        assert token_f1(p, g) == pytest.approx(_squad_f1(p, g), abs=1e-12)


def test_faithfulness_catches_what_is_not_in_the_context():
    contexts = ["The timeout is not applied to DNS lookups. It defaults to 30 seconds.", "Other chunk text."]
    extractive = ["The timeout is not applied to DNS lookups.", "It defaults to 30 seconds."]
    assert faithfulness(extractive, contexts) == 1.0
    assert faithfulness(" ".join(extractive), contexts) == 1.0
    invented = extractive[:1] + ["It can be changed with the --timeout flag."]
    assert faithfulness(invented, contexts) == 0.5
    flipped = ["The timeout is applied to DNS lookups."]           # "not" dropped: the meaning flips
    assert faithfulness(flipped, contexts) == 0.0
    assert token_support(flipped[0], contexts) == 1.0              # a bag of words cannot see it
    across = ["It defaults to 30 seconds. Other chunk text."]       # spans two chunks: not one passage
    assert faithfulness(across, contexts) == 0.0
    assert faithfulness([], contexts) == 1.0 and token_support("", contexts) == 1.0
    with pytest.raises(ValueError, match="list of str"):
        faithfulness(extractive, contexts[0])


# --- MMR and the answerer -----------------------------------------------------------------


def test_mmr_equals_langchain_core_and_lambda_one_is_plain_ranking():
    utils = pytest.importorskip("langchain_core.vectorstores.utils")
    rng = np.random.default_rng(0)
    for _ in range(60):
        C = rng.standard_normal((25, 12))
        q = rng.standard_normal(12)
        k = int(rng.integers(1, 26))
        for lam in (0.0, 0.3, 0.5, 0.8, 1.0):
            got = mmr(q, C, k, lam)
            assert got.dtype == np.int64 and len(set(got.tolist())) == k
            assert got.tolist() == utils.maximal_marginal_relevance(q, C.tolist(), lambda_mult=lam, k=k)
        relevance = (C / np.linalg.norm(C, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
        assert mmr(q, C, k, 1.0).tolist() == np.argsort(-relevance, kind="stable")[:k].tolist()


def test_mmr_prefers_a_diverse_second_pick():
    q = np.array([1.0, 0.0])
    C = np.array([[1.0, 0.05], [1.0, 0.06], [0.7, 0.7]])   # 0 and 1 are near-duplicates
    assert mmr(q, C, 2, 1.0).tolist() == [0, 1]
    assert mmr(q, C, 2, 0.3).tolist() == [0, 2]


def test_mmr_bad_input():
    C = np.eye(3)
    with pytest.raises(ValueError, match="k must be"):
        mmr(np.ones(3), C, 4)
    with pytest.raises(ValueError, match="lambda_"):
        mmr(np.ones(3), C, 2, 1.5)
    with pytest.raises(ValueError, match="d=2"):
        mmr(np.ones(2), C, 2)
    with pytest.raises(ValueError, match="zero row"):
        mmr(np.ones(3), np.zeros((2, 3)), 1)


def test_extract_answer_greedy_under_budget():
    q = np.array([1.0, 0.0])
    S = np.array([[0.0, 1.0], [1.0, 0.1], [1.0, 0.5], [1.0, 0.0]])   # similarity order: 3, 1, 2, 0
    tokens = [5, 8, 4, 10]
    assert extract_answer(q, S, tokens, 10).tolist() == [3]           # 3 fills the budget
    assert extract_answer(q, S, tokens, 14).tolist() == [2, 3]        # 1 (8) overflows and is skipped, 2 (4) fits
    assert extract_answer(q, S, tokens, 100).tolist() == [0, 1, 2, 3]
    assert extract_answer(q, S, tokens, 3).tolist() == []
    for budget in range(0, 30):
        chosen = extract_answer(q, S, tokens, budget)
        assert sum(tokens[i] for i in chosen) <= budget
    assert extract_answer(q, np.empty((0, 2)), [], 10).tolist() == []
    with pytest.raises(ValueError, match="sentence_tokens"):
        extract_answer(q, S, [1, 2], 10)
    with pytest.raises(ValueError, match="budget"):
        extract_answer(q, S, tokens, -1)


def test_rag_collection_is_reproducible_and_renumbered(evaluation_set):
    _, docs, queries = evaluation_set
    small, small_q = rag_collection(docs, queries, 30_000)
    again, again_q = rag_collection(docs, queries, 30_000)
    assert small == again and small_q == again_q
    assert sum(len(d["text"]) for d in small) <= 30_000 and [d["id"] for d in small] == list(range(len(small)))
    assert {q["doc_id"] for q in small_q} == set(range(len(small)))      # every kept document holds a question
    for q in small_q:
        assert small[q["doc_id"]]["text"][q["gold"][1]:q["gold"][2]] == q["gold_text"]
    big, big_q = rag_collection(docs, queries, 10**9)
    assert len(big_q) == len(queries) and len(big) == len({q["doc_id"] for q in queries})
    with pytest.raises(ValueError, match="max_chars"):
        rag_collection(docs, queries, 0)


def test_whole_sentences_keeps_only_uncut_sentences():
    sentences = [[(0, 10), (11, 20), (21, 30)], [(0, 5), (6, 40)]]
    chunks = [(0, 5, 25), (0, 0, 10), (1, 0, 39), (0, 11, 20)]
    assert whole_sentences(chunks, sentences) == [(0, 0), (0, 1), (1, 0)]
    assert whole_sentences([], sentences) == []
    assert whole_sentences([Chunk(1, 0, 40, "x" * 40)], sentences) == [(1, 0), (1, 1)]
