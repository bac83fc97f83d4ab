"""Tests for course_lib.ir.chunking: the recursive splitter equals LangChain's
RecursiveCharacterTextSplitter chunk for chunk (adversarial strings, random strings, real long
documents, every keep_separator / strip_whitespace / length_function setting), offsets reproduce
the text exactly, and the fixed, sentence and semantic chunkers keep their contracts."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from course_lib.data.retrieval_bench import sentence_spans
from course_lib.ir.chunking import (
    DEFAULT_SEPARATORS,
    Chunk,
    fixed_size_chunks,
    neighbour_distances,
    percentile_for_size,
    recursive_chunks,
    recursive_split,
    semantic_breakpoints,
    semantic_chunks,
    sentence_chunks,
)

splitters = pytest.importorskip("langchain_text_splitters")
logging.getLogger("langchain_text_splitters.base").setLevel(logging.ERROR)  # "created a chunk longer than ..."

ADVERSARIAL = [
    "",
    " ",
    "\n\n\n\n",
    "a",
    "word",
    "supercalifragilisticexpialidocious is long",
    "  leading and trailing  ",
    "\n\nstarts with a separator",
    "ends with a separator\n\n",
    "a\n\n\n\nb\n\n\n\n\n\nc",           # runs of separators: empty pieces dropped
    "one\ntwo\n\nthree four five\nsix",
    "tabs\tand\ttabs and\r\nwindows\r\nlines",
    "naïve café — unicode “quotes” and emoji 🐍 too",
    "x" * 40 + " " + "y" * 3 + "\n" + "z" * 25,
    "to to be",                              # repeated text: where str.find-based offsets go wrong
    "The cat. The cat. The cat. The cat.",
]
SETTINGS = [  # (chunk_size, chunk_overlap)
    (1, 0), (2, 1), (4, 3), (5, 0), (7, 2), (10, 10), (12, 4), (30, 0), (30, 29),
]


def langchain(text, size, overlap, separators=DEFAULT_SEPARATORS, keep=True, strip=True, length=len):
    return splitters.RecursiveCharacterTextSplitter(
        chunk_size=size, chunk_overlap=overlap, separators=list(separators),
        keep_separator=keep, strip_whitespace=strip, length_function=length,
    ).split_text(text)


@pytest.mark.parametrize("keep", [True, False, "start", "end"])
@pytest.mark.parametrize("strip", [True, False])
def test_recursive_split_equals_langchain_on_adversarial_strings(keep, strip):
    for text in ADVERSARIAL:
        for size, overlap in SETTINGS:
            got = recursive_split(text, size, overlap, keep_separator=keep, strip_whitespace=strip)
            assert got == langchain(text, size, overlap, keep=keep, strip=strip), (text, size, overlap)


def test_recursive_split_equals_langchain_on_random_strings_and_separators():
    rng = random.Random(0)
    alphabet = ["a", "b", " ", "  ", "\n", "\n\n", "\n\n\n", ".", "é", "\t", "ab cd", "\r\n"]
    separator_lists = [list(DEFAULT_SEPARATORS), ["\n\n", "\n", " "], [" "], ["\n"], ["", " "],
                       [".", " ", ""], ["ab", "b", ""], ["\n\n", "x"]]
    words_plus_one = lambda s: len(s.split()) + 1  # noqa: E731  a non-character length function
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
        size = rng.randint(1, 20)
        overlap = rng.randint(0, size)
        seps = rng.choice(separator_lists)
        keep = rng.choice([True, False, "start", "end"])
        strip = rng.choice([True, False])
        length = rng.choice([len, words_plus_one])
        got = recursive_split(text, size, overlap, seps, keep, strip, length)
        assert got == langchain(text, size, overlap, seps, keep, strip, length), (text, size, overlap, seps, keep, strip)


def test_recursive_split_equals_langchain_on_long_documents(long_texts):
    for size, overlap in [(256, 32), (512, 64), (1000, 0), (300, 300)]:
        for text in long_texts:
            assert recursive_split(text, size, overlap) == langchain(text, size, overlap)


@pytest.fixture(scope="module")
def long_texts():
    from course_lib.data import load_retrieval_benchmark
    from course_lib.ir.rag import long_documents

    docs = long_documents(load_retrieval_benchmark().docs)
    picked = sorted(docs, key=lambda d: -len(d["text"]))[:6] + docs[::150]
    return [d["text"] for d in picked]


def test_recursive_chunks_offsets_reproduce_the_text():
    for text in ADVERSARIAL:
        for size, overlap in SETTINGS:
            for keep in (True, "start", "end"):
                chunks = recursive_chunks(text, size, overlap, keep_separator=keep, doc_id=7)
                assert [c.text for c in chunks] == recursive_split(text, size, overlap, keep_separator=keep)
                assert all(c.doc_id == 7 and text[c.start:c.end] == c.text for c in chunks)
                assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_recursive_chunks_offsets_are_right_where_str_find_is_not():
    # LangChain's add_start_index finds each chunk with str.find from an estimated position;
    # on repeated text it can report the earlier copy. Our offsets come from the cutting itself.
    chunks = recursive_chunks("to to be", 4, 3)
    assert [(c.start, c.text) for c in chunks] == [(0, "to"), (3, "to"), (6, "be")]
    lc = splitters.RecursiveCharacterTextSplitter(chunk_size=4, chunk_overlap=3, add_start_index=True)
    assert [d.metadata["start_index"] for d in lc.create_documents(["to to be"])] == [0, 0, 6]


def test_recursive_split_keeps_a_piece_that_cannot_be_cut():
    # no finer separator left: the piece stays whole and unstripped, longer than chunk_size
    assert recursive_split("aaaa bbbbbbbb", 5, 0, separators=[" "]) == ["aaaa", " bbbbbbbb"]
    assert recursive_split("aaaa bbbbbbbb", 5, 0, separators=[" "]) == langchain("aaaa bbbbbbbb", 5, 0, [" "])


def test_recursive_split_bad_input():
    with pytest.raises(ValueError, match="chunk_size"):
        recursive_split("abc", 0, 0)
    with pytest.raises(ValueError, match="chunk_overlap"):
        recursive_split("abc", 5, -1)
    with pytest.raises(ValueError, match="larger than chunk_size"):
        recursive_split("abc", 5, 6)
    with pytest.raises(ValueError, match="separators"):
        recursive_split("abc", 5, 0, separators=[])
    with pytest.raises(ValueError, match="separators"):
        recursive_split("abc", 5, 0, separators="\n")
    with pytest.raises(ValueError, match="keep_separator"):
        recursive_split("abc", 5, 0, keep_separator="middle")
    with pytest.raises(ValueError, match="text must be a str"):
        recursive_split(b"abc", 5, 0)
    with pytest.raises(ValueError, match="keep_separator"):
        recursive_chunks("abc", 5, 0, keep_separator=False)


def test_fixed_size_chunks_windows_and_overlap():
    text = "abcdefghijklmnopqrstuvwxyz"
    chunks = fixed_size_chunks(text, 10, 3, doc_id=2)
    assert [(c.start, c.end) for c in chunks] == [(0, 10), (7, 17), (14, 24), (21, 26)]
    assert all(c.text == text[c.start:c.end] and c.doc_id == 2 for c in chunks)
    assert [c.text for c in fixed_size_chunks(text, 13)] == [text[:13], text[13:]]
    assert fixed_size_chunks("", 5) == []
    assert fixed_size_chunks("abc", 10) == [Chunk(0, 0, 3, "abc")]
    assert len(fixed_size_chunks(text, 10, 3)[0]) == 10
    with pytest.raises(ValueError, match="smaller than chunk_size"):
        fixed_size_chunks(text, 5, 5)
    with pytest.raises(ValueError, match="chunk_size"):
        fixed_size_chunks(text, 0)


def test_sentence_chunks_pack_whole_sentences():
    text = "One two three. Four five six seven. Eight.\n\nNine ten eleven twelve thirteen fourteen. End."
    spans = sentence_spans(text)
    for size in (1, 10, 20, 40, 60, 200):
        chunks = sentence_chunks(text, size, doc_id=3)
        assert all(text[c.start:c.end] == c.text and c.doc_id == 3 for c in chunks)
        starts = {s for s, _ in spans}
        ends = {e for _, e in spans}
        assert all(c.start in starts and c.end in ends for c in chunks)  # never cuts a sentence
        covered = [sp for sp in spans if any(c.start <= sp[0] and sp[1] <= c.end for c in chunks)]
        assert covered == spans                                         # every sentence, once, in order
        n_sentences = [sum(c.start <= s and e <= c.end for s, e in spans) for c in chunks]
        assert all(len(c) <= size or n == 1 for c, n in zip(chunks, n_sentences))
    assert len(sentence_chunks(text, 10_000)) == 1
    assert sentence_chunks("", 10) == []
    with pytest.raises(ValueError, match="sentence spans"):
        sentence_chunks(text, 20, spans=[(5, 3)])


def test_neighbour_distances_and_breakpoints():
    V = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    d = neighbour_distances(V)
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    assert np.allclose(d, [1 - U[i] @ U[i + 1] for i in range(4)])
    assert np.isclose(d[2], 0.0)
    cuts = semantic_breakpoints(d, 50)
    assert list(cuts) == [i for i in range(4) if d[i] > np.percentile(d, 50)]
    assert list(semantic_breakpoints(d, 100)) == []
    with pytest.raises(ValueError, match="zero row"):
        neighbour_distances(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="percentile"):
        semantic_breakpoints(d, 101)


def test_percentile_for_size_gives_the_planned_number_of_cuts():
    rng = np.random.default_rng(0)
    for n_sentences, n_chars, size in [(40, 4000, 500), (40, 4000, 100), (12, 900, 300), (5, 100, 1000)]:
        d = rng.random(n_sentences - 1)  # distinct distances
        p = percentile_for_size(n_chars, n_sentences, size)
        planned = min(max(round(n_chars / size) - 1, 0), n_sentences - 1)
        if planned < n_sentences - 1:
            assert len(semantic_breakpoints(d, p)) == planned
    assert percentile_for_size(500, 1, 100) == 100.0


def test_semantic_chunks_cut_at_the_big_jumps():
    text = "Cats purr. Cats sleep a lot. Stocks fell today. Markets were down. Cats again."
    spans = sentence_spans(text)
    V = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0], [1, 0, 0.1]], dtype=float)
    chunks = semantic_chunks(text, V, percentile=50, doc_id=1)
    assert [c.text for c in chunks] == ["Cats purr. Cats sleep a lot.", "Stocks fell today. Markets were down.", "Cats again."]
    assert all(text[c.start:c.end] == c.text for c in chunks)
    assert [c.text for c in semantic_chunks(text, V, percentile=100)] == [text]
    assert len(semantic_chunks("Only one sentence here.", np.ones((1, 3)))) == 1
    with pytest.raises(ValueError, match="one row per sentence"):
        semantic_chunks(text, V[:3])
