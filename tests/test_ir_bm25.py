"""course_lib.ir.text and course_lib.ir.bm25: the tokeniser, the inverted index, BM25 against rank-bm25, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.ir import bm25, text


# ----------------------------------------------------------------------------- tokeniser
def test_tokenize_splits_identifiers_and_lowercases():
    assert text.tokenize("os.path.join(a, b)") == ["os", "path", "join", "a", "b"]
    assert text.tokenize("max_seq_length __init__ Return X2") == ["max", "seq", "length", "init", "return", "x2"]
    assert text.tokenize("naïve café, résumé!") == ["naïve", "café", "résumé"]
    assert text.tokenize("") == [] and text.tokenize(" ._- ") == []


def test_tokenize_bad_input():
    with pytest.raises(ValueError, match="expects a str"):
        text.tokenize(["not", "a", "string"])
    with pytest.raises(ValueError, match="single str"):
        text.tokenize_all("one string")
    with pytest.raises(ValueError, match="title"):
        text.document_text({"text": "no title"})


def test_document_text_is_the_embedded_string():
    from course_lib.data.corpus import embedding_text

    doc = {"id": 0, "source": "function", "title": "json.dumps", "text": "Serialize obj."}
    assert text.document_text(doc) == embedding_text(doc)


# ----------------------------------------------------------------------------- the index
DOCS = [
    "the cat sat on the mat",
    "the dog sat",
    "cats and dogs",
    "the the the",
    "a mat for the dog and the cat",
]


def test_postings_hold_doc_ids_and_term_frequencies():
    index = bm25.BM25Index.from_texts(DOCS)
    ids, tf = index.term_postings("the")
    assert ids.tolist() == [0, 1, 3, 4] and tf.tolist() == [2, 1, 3, 2]
    ids, tf = index.term_postings("unknown")
    assert ids.size == 0 and tf.size == 0
    assert index.doc_len.tolist() == [6, 3, 3, 3, 8]
    assert index.avgdl == pytest.approx(23 / 5)
    assert index.n_docs == 5 and index.n_terms == len(set(" ".join(DOCS).split()))


def test_idf_formula_and_epsilon_floor_by_hand():
    index = bm25.BM25Index.from_texts(DOCS)
    N = 5
    raw = {t: math.log(N - n + 0.5) - math.log(n + 0.5) for t, n in
           {t: sum(t in d.split() for d in DOCS) for t in index.vocab}.items()}
    mean = sum(raw.values()) / len(raw)
    assert index.average_idf == pytest.approx(mean, abs=1e-15)
    for term, col in index.vocab.items():
        want = raw[term] if raw[term] >= 0 else 0.25 * mean
        assert index.idf[col] == pytest.approx(want, abs=1e-15)
    assert raw["the"] < 0 and index.idf[index.vocab["the"]] == pytest.approx(0.25 * mean)  # in 4 of 5 docs: floored


def test_scores_by_hand_with_repeated_and_unknown_terms():
    index = bm25.BM25Index.from_texts(DOCS)
    q = ["cat", "cat", "zebra"]
    s = bm25.bm25_scores(q, index)
    col = index.vocab["cat"]
    want = np.zeros(5)
    for d, tf in zip(*index.term_postings("cat")):
        want[d] = 2 * index.idf[col] * tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * index.doc_len[d] / index.avgdl))
    np.testing.assert_allclose(s, want, rtol=0, atol=1e-12)
    assert bm25.bm25_scores([], index).tolist() == [0.0] * 5


def test_matches_rank_bm25_on_the_corpus():
    rank_bm25 = pytest.importorskip("rank_bm25")
    from course_lib.data import load_corpus

    docs = load_corpus(1500)
    tokenized = [text.tokenize(text.document_text(d)) for d in docs]
    ours = bm25.BM25Index.build(tokenized)
    ref = rank_bm25.BM25Okapi(tokenized)
    assert ours.average_idf == ref.average_idf
    assert all(ours.idf[col] == ref.idf[term] for term, col in ours.vocab.items())
    rng = np.random.default_rng(0)
    queries = [text.tokenize(docs[i]["title"]) + tokenized[i][:4] for i in rng.choice(len(docs), 25, replace=False)]
    queries += [["the", "the", "of", "a"], ["zzz_not_a_term"], ["json", "dumps", "json"]]
    for q in queries:
        got, want = bm25.bm25_scores(q, ours), ref.get_scores(q)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        top_ref = np.lexsort((np.arange(len(want)), -want))[:10]  # score desc, id asc
        if want[top_ref[-1]] > 0:  # ten documents match: the top-10 is defined
            scores, ids = ours.search(q, 10)
            assert ids.tolist() == top_ref.tolist()
            np.testing.assert_allclose(scores, want[top_ref], rtol=0, atol=1e-9)


def test_search_pads_with_minus_one_and_breaks_ties_by_id():
    index = bm25.BM25Index.from_texts(["alpha beta", "beta alpha", "gamma", "alpha", "delta", "eta", "theta", "iota"])
    scores, ids = index.search("alpha", 4)
    assert ids.tolist() == [3, 0, 1, -1]  # doc 3 is shortest; docs 0 and 1 tie, smaller id first
    assert scores[1] == scores[2] and scores[3] == -np.inf
    assert index.search(["gamma"], 1)[1].tolist() == [2]


def test_custom_parameters_are_used():
    a = bm25.BM25Index.from_texts(DOCS, k1=1.2, b=0.0)
    s = bm25.bm25_scores(["dog"], a)
    # b = 0: no length normalisation, so equal tf gives equal scores
    assert s[1] == s[4] > 0


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "non-empty"),
        ("a string", "non-empty"),
        ([["ok"], "not a list of tokens"], "list of str tokens"),
        ([["ok", 3]], "str tokens only"),
        ([[], []], "no tokens"),
    ],
)
def test_build_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        bm25.BM25Index.build(bad)


def test_bad_parameters_and_queries():
    with pytest.raises(ValueError, match="k1"):
        bm25.BM25Index.from_texts(DOCS, k1=-1)
    with pytest.raises(ValueError, match="b"):
        bm25.BM25Index.from_texts(DOCS, b=2)
    with pytest.raises(ValueError, match="finite"):
        bm25.BM25Index.from_texts(DOCS, epsilon=float("nan"))
    index = bm25.BM25Index.from_texts(DOCS)
    with pytest.raises(ValueError, match="list of str"):
        bm25.bm25_scores("cat", index)
    with pytest.raises(ValueError):
        index.search("cat", 0)
    with pytest.raises(ValueError):
        index.search("cat", 6)
    with pytest.raises(ValueError, match="doc_freq"):
        bm25.bm25_idf(np.array([0, 1]), 5)
