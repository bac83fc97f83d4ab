"""Tests for course_lib.ir.spelling: edit distances equal to rapidfuzz's, the
symmetric-delete candidate index, the corrector, typo injection and RM3 expansion."""

from __future__ import annotations

import numpy as np
import pytest
from rapidfuzz.distance import OSA, Levenshtein

from course_lib.ir import spelling
from course_lib.ir.bm25 import BM25Index, bm25_scores
from course_lib.ir.spelling import SpellingCorrector, deletes, edit_distance, osa_distance


def _random_pairs(seed: int, n: int, alphabet: str = "abcé_", max_len: int = 9):
    rng = np.random.default_rng(seed)
    letters = list(alphabet)
    return [("".join(rng.choice(letters, int(rng.integers(0, max_len)))),
             "".join(rng.choice(letters, int(rng.integers(0, max_len))))) for _ in range(n)]


@pytest.mark.parametrize(("a", "b", "want"), [
    ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "", 0), ("", "abc", 3), ("abc", "", 3),
    ("abc", "abc", 0), ("ab", "ba", 2), ("intention", "execution", 5), ("naïve", "naive", 1),
])
def test_edit_distance_examples(a, b, want):
    assert edit_distance(a, b) == want == Levenshtein.distance(a, b)


def test_edit_distance_equals_rapidfuzz_on_random_pairs():
    for a, b in _random_pairs(0, 400):
        assert edit_distance(a, b) == Levenshtein.distance(a, b), (a, b)
        assert edit_distance(a, b) == edit_distance(b, a)


@pytest.mark.parametrize(("a", "b", "want"), [("ab", "ba", 1), ("jsno", "json", 1), ("ca", "abc", 3), ("", "ab", 2)])
def test_osa_distance_examples(a, b, want):
    assert osa_distance(a, b) == want == OSA.distance(a, b)


def test_osa_distance_equals_rapidfuzz_on_random_pairs():
    for a, b in _random_pairs(1, 400, alphabet="abc"):  # a small alphabet: many transpositions
        assert osa_distance(a, b) == OSA.distance(a, b), (a, b)
        assert osa_distance(a, b) <= edit_distance(a, b)


def test_distances_reject_non_strings():
    with pytest.raises(ValueError, match="two str"):
        edit_distance("a", 1)
    with pytest.raises(ValueError, match="two str"):
        osa_distance(None, "a")


def test_deletes():
    assert deletes("abc", 1) == {"abc", "bc", "ac", "ab"}
    assert deletes("abc", 2) == {"abc", "bc", "ac", "ab", "a", "b", "c"}
    assert deletes("ab", 5) == {"ab", "a", "b", ""}
    with pytest.raises(ValueError):
        deletes("abc", -1)


def test_deletes_find_every_pair_within_distance_two():
    for a, b in _random_pairs(2, 300, alphabet="abcd", max_len=7):
        if edit_distance(a, b) <= 2:
            assert deletes(a, 2) & deletes(b, 2), (a, b)


COUNTS = {"json": 50, "dumps": 20, "dump": 30, "loads": 20, "load": 25, "decoder": 5, "encoder": 6,
          "os": 100, "path": 40, "join": 30, "coder": 1}


def test_corrector_fixes_each_kind_of_typo():
    sc = SpellingCorrector(COUNTS)
    assert sc.correct("jsno") == "json"      # transposition
    assert sc.correct("jon") == "json"       # "join" and "json" are both 1 insertion away: the frequent one wins
    assert sc.correct("lods") == "loads"     # 1 insertion; "load" (more frequent) is 2 edits away
    assert sc.correct("decodr") == "decoder"  # deletion
    assert sc.correct("pxth") == "path"      # substitution
    assert sc.correct("dumps") == "dumps"    # a known word is kept
    assert sc.correct("qqqqqqq") == "qqqqqqq"  # nothing within distance 2: kept


def test_corrector_ranks_by_distance_then_frequency():
    sc = SpellingCorrector(COUNTS)
    assert sc.candidates("dumq") == [("dump", 1, 30), ("dumps", 2, 20)]
    assert sc.candidates("dumsp") == [("dump", 1, 30), ("dumps", 1, 20)]  # a tie in distance: frequency decides
    assert sc.candidates("ecoder") == [("encoder", 1, 6), ("decoder", 1, 5), ("coder", 1, 1)]


def test_transposition_needs_osa_to_win():
    counts = {"form": 100, "from": 10}
    assert SpellingCorrector(counts).correct("frmo") == "from"            # OSA: 1 swap away from "from"
    assert SpellingCorrector(counts, distance="levenshtein").correct("frmo") == "form"  # both 2 away: the frequent one
    sc = SpellingCorrector(counts)
    assert sc.with_distance("levenshtein").correct("frmo") == "form"
    assert sc.index is sc.with_distance("levenshtein").index


def test_short_terms_are_never_corrected():
    sc = SpellingCorrector(COUNTS)
    assert sc.correct("ox") == "ox"
    assert SpellingCorrector(COUNTS, min_length=2).correct("ox") == "os"


def test_correct_query_keeps_the_string_around_the_terms():
    sc = SpellingCorrector(COUNTS)
    assert sc.correct_query("jsno.dumsp(x)") == "json.dump(x)"  # "dump" beats "dumps": more frequent
    assert sc.correct_query("Os.Path.join") == "Os.Path.join"  # known terms keep their case


def test_from_texts_counts_tokens():
    sc = SpellingCorrector.from_texts(["json.dumps json", "JSON loads"])
    assert sc.counts == {"json": 3, "dumps": 1, "loads": 1}


def test_corrector_rejects_bad_input():
    with pytest.raises(ValueError):
        SpellingCorrector({})
    with pytest.raises(ValueError, match="distance"):
        SpellingCorrector(COUNTS, distance="hamming")
    with pytest.raises(ValueError):
        SpellingCorrector(COUNTS).candidates(3)


@pytest.mark.parametrize("kind", spelling.TYPO_KINDS)
def test_inject_typo_makes_one_edit(kind):
    rng = np.random.default_rng(0)
    for _ in range(100):
        word = "".join(rng.choice(list("abcdefgh"), int(rng.integers(2, 10))))
        if kind == "transposition" and len(set(word)) == 1:
            continue
        typo = spelling.inject_typo(word, kind, rng)
        assert typo != word
        assert osa_distance(word, typo) == 1
        assert edit_distance(word, typo) == (2 if kind == "transposition" else 1)
        assert len(typo) == len(word) - (kind == "deletion")


def test_inject_typo_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="kind"):
        spelling.inject_typo("word", "insertion", rng)
    with pytest.raises(ValueError, match="at least 2"):
        spelling.inject_typo("a", "deletion", rng)
    with pytest.raises(ValueError, match="adjacent"):
        spelling.inject_typo("aaa", "transposition", rng)


def test_typo_query_changes_one_long_term_deterministically():
    text = "os.path.join_paths"
    a = spelling.typo_query(text, np.random.default_rng(5))
    b = spelling.typo_query(text, np.random.default_rng(5))
    assert a == b
    typo, kind = a
    assert kind in spelling.TYPO_KINDS
    assert osa_distance(text, typo) == 1   # one edit, inside one term
    assert typo.startswith("os.")          # "os" is too short to be chosen
    kinds = {spelling.typo_query(text, np.random.default_rng(s))[1] for s in range(30)}
    assert kinds == set(spelling.TYPO_KINDS)
    assert spelling.typo_query("os re", np.random.default_rng(0)) == ("os re", "none")


DOCS = ["json dumps serialize object", "json loads deserialize string", "os path join paths",
        "serialize object to json string", "path of the file", "join strings with a separator"]


def test_rm3_expand_weights():
    index = BM25Index.from_texts(DOCS)
    w = spelling.rm3_expand(["serialize"], index, fb_docs=2, fb_terms=3, original_weight=0.5)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["serialize"] >= 0.5       # the original term keeps at least its share
    assert 1 < len(w) <= 1 + 3         # feedback terms were added, at most fb_terms of them
    assert spelling.rm3_expand(["serialize"], index, original_weight=1.0)["serialize"] == pytest.approx(1.0)
    # "json" is in half of the documents: idf 0, BM25 scores 0, no feedback document at all
    assert spelling.rm3_expand(["json"], index) == {"json": 1.0}
    only_original = spelling.rm3_expand(["json", "json", "path"], index, fb_terms=0)
    assert only_original == pytest.approx({"json": 2 / 3, "path": 1 / 3})
    assert spelling.rm3_expand(["unknown"], index) == {"unknown": 1.0}  # no feedback document: nothing added
    fwd, first = spelling.ForwardIndex.of(index), bm25_scores(["object"], index)
    same = spelling.rm3_expand(["object"], index, forward=fwd, first_pass=first)
    assert same == spelling.rm3_expand(["object"], index) and len(same) > 1
    with pytest.raises(ValueError, match="first_pass"):
        spelling.rm3_expand(["json"], index, first_pass=np.ones(2))


def test_rm3_relevance_model_by_hand():
    index = BM25Index.from_texts(DOCS)
    scores = bm25_scores(["serialize"], index)
    top = np.flatnonzero(scores > 0)          # the two documents containing "serialize"
    assert len(top) == 2
    w = spelling.rm3_expand(["serialize"], index, fb_docs=2, fb_terms=100, original_weight=0.0)
    want: dict[str, float] = {}
    for d in top:
        tokens = DOCS[d].split()
        for t in tokens:                       # one addition per occurrence: tf(t, d) / |d| in all
            want[t] = want.get(t, 0.0) + scores[d] / scores[top].sum() / len(tokens)
    total = sum(want.values())
    assert w == pytest.approx({t: v / total for t, v in want.items()}, abs=1e-12)


def test_forward_index():
    index = BM25Index.from_texts(DOCS)
    fwd = spelling.ForwardIndex.of(index)
    assert fwd.rows.shape == (len(DOCS), index.n_terms)
    assert [fwd.terms[j] for j in fwd.rows[0].indices] == sorted(set(DOCS[0].split()), key=index.vocab.get)


def test_rm3_expand_rejects_bad_parameters():
    index = BM25Index.from_texts(DOCS)
    with pytest.raises(ValueError):
        spelling.rm3_expand(["json"], index, original_weight=1.5)
    with pytest.raises(ValueError):
        spelling.rm3_expand(["json"], index, fb_docs=0)


def test_weighted_bm25_with_uniform_weights_is_bm25_over_length():
    index = BM25Index.from_texts(DOCS)
    tokens = ["json", "object", "json"]
    weights = {"json": 2 / 3, "object": 1 / 3}
    assert np.allclose(spelling.weighted_bm25(weights, index), bm25_scores(tokens, index) / 3, atol=1e-12)


@pytest.mark.parametrize("prefix_length", [None, 2, 3, 7])
def test_candidates_are_exactly_the_terms_within_max_distance(prefix_length):
    rng = np.random.default_rng(7)
    vocab = {"".join(rng.choice(list("abcde"), int(rng.integers(1, 9)))): int(rng.integers(1, 50)) for _ in range(150)}
    sc = SpellingCorrector(vocab, prefix_length=prefix_length)
    for _ in range(60):
        word = "".join(rng.choice(list("abcdef"), int(rng.integers(1, 10))))
        want = {t for t in vocab if osa_distance(word, t) <= 2}
        assert {c[0] for c in sc.candidates(word)} == want, word
    with pytest.raises(ValueError, match="prefix_length"):
        SpellingCorrector(vocab, prefix_length=0)
