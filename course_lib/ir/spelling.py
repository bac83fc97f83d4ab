"""Query understanding: edit distance, spelling correction, typo injection, query expansion.

A search box receives what people type, typos included.  A lexical index
matches terms exactly, so ``jsno.dumsp`` finds nothing that ``json.dumps``
finds.  Two classic repairs, from scratch:

* **Spelling correction** (Norvig, *How to Write a Spelling Corrector*, 2007;
  the symmetric-delete index of Garbe's SymSpell, 2012): for a query term
  that is not in the corpus vocabulary, generate the vocabulary terms within
  edit distance 1 or 2, and pick the closest, then the most frequent in the
  corpus (a unigram prior: P(correction) ~ its count).
* **Query expansion** with pseudo-relevance feedback (RM3: Lavrenko and Croft,
  *Relevance-Based Language Models*, SIGIR 2001; Abdul-Jaleel et al., UMass
  at TREC 2004): assume the top documents of a first search are relevant, add
  the terms they share to the query, search again.

Distances here are over Unicode code points, unit costs:

* :func:`edit_distance`: Levenshtein (insert, delete, substitute), equal to
  ``rapidfuzz.distance.Levenshtein.distance``;
* :func:`osa_distance`: optimal string alignment (Levenshtein plus the swap of
  two adjacent characters, each substring edited once), equal to
  ``rapidfuzz.distance.OSA.distance``.  A transposition typo ("teh") costs 2
  in Levenshtein and 1 here.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .bm25 import BM25Index, bm25_scores
from .ltr import top_ids
from .text import TERM_PATTERN, tokenize

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TYPO_KINDS = ("deletion", "transposition", "substitution")


# --------------------------------------------------------------------------
# 1. Edit distances, by dynamic programming
# --------------------------------------------------------------------------


def _check_strings(a: str, b: str) -> None:
    if not isinstance(a, str) or not isinstance(b, str):
        raise ValueError(f"expected two str, got {type(a).__name__} and {type(b).__name__}")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning a into b.

    Dynamic programming over prefixes: D[i][j] is the distance between
    a[:i] and b[:j], and

        D[i][0] = i,  D[0][j] = j,
        D[i][j] = min(D[i-1][j] + 1,                      # delete a[i-1]
                      D[i][j-1] + 1,                      # insert b[j-1]
                      D[i-1][j-1] + (a[i-1] != b[j-1]))   # substitute (or match, free)

    Only the previous row is needed, so memory is O(len(b)); time is O(len(a) len(b)).

    >>> edit_distance("kitten", "sitting")
    3
    """
    _check_strings(a, b)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: Levenshtein plus adjacent transpositions (cost 1).

    One more case in the recurrence, which needs the row before the previous one:

        D[i][j] = min(..., D[i-2][j-2] + 1)   if a[i-1] == b[j-2] and a[i-2] == b[j-1]

    ("restricted" Damerau-Levenshtein: no substring is edited twice, so
    osa("ca", "abc") = 3 where the unrestricted distance is 2).

    >>> osa_distance("jsno", "json"), edit_distance("jsno", "json")
    (1, 2)
    """
    _check_strings(a, b)
    before, previous = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            best = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, before[j - 2] + 1)
            current.append(best)
        before, previous = previous, current
    return previous[-1]


# --------------------------------------------------------------------------
# 2. Candidate generation: a symmetric-delete index
# --------------------------------------------------------------------------


def deletes(word: str, max_distance: int) -> set[str]:
    """Every string obtained from ``word`` by deleting up to ``max_distance`` characters (word included).

    If edit_distance(a, b) <= d, some string is reachable from both a and b
    by at most d deletions each (a substitution is one deletion on each side,
    an insertion a deletion on the other side).  So indexing the deletes of
    every vocabulary term finds every term within distance d of a query term,
    with a few extra candidates that the true distance then filters out.
    """
    if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"max_distance must be an int >= 0, got {max_distance!r}")
    out, level = {word}, {word}
    for _ in range(max_distance):  # level n: the strings n deletions away
        level = {w[:i] + w[i + 1:] for w in level for i in range(len(w))}
        out |= level
    return out


class SpellingCorrector:
    """Correct query terms against a corpus vocabulary (Norvig's ranking, a SymSpell-style index).

    Parameters
    ----------
    counts : term -> corpus frequency (e.g. ``Counter`` of every token of the corpus).
    max_distance : the largest edit distance considered (1 or 2 in practice).
    distance : "osa" (a transposition costs 1, the default) or "levenshtein".
    min_length : terms shorter than this are never corrected (``os``, ``re``
        and ``io`` are one edit from dozens of terms: guessing does more harm).
    prefix_length : index only the deletes of each term's first
        ``prefix_length`` characters (SymSpell's prefix trick; None: the
        whole term).  Two strings within distance d have prefixes within d
        deletions of a common string too, so no candidate is lost; the index
        shrinks from O(len^d) to O(prefix^d) keys per term, and the true
        distance filters the extra candidates.

    A term already in the vocabulary is kept as is: a dictionary corrector
    cannot see a typo that makes another real word ("dump" for "dumps").
    """

    def __init__(
        self,
        counts: Mapping[str, int],
        max_distance: int = 2,
        distance: str = "osa",
        min_length: int = 3,
        prefix_length: int | None = 8,
    ):
        if not isinstance(counts, Mapping) or not counts:
            raise ValueError("counts must be a non-empty mapping term -> corpus frequency")
        if distance not in ("osa", "levenshtein"):
            raise ValueError(f"distance must be 'osa' or 'levenshtein', got {distance!r}")
        self.counts = dict(counts)
        self.max_distance = max_distance
        self.distance = osa_distance if distance == "osa" else edit_distance
        self.min_length = min_length
        bad_prefix = isinstance(prefix_length, bool) or not isinstance(prefix_length, int) or prefix_length < 1
        if prefix_length is not None and bad_prefix:
            raise ValueError(f"prefix_length must be a positive int or None, got {prefix_length!r}")
        self.prefix_length = prefix_length
        self.index: dict[str, list[str]] = {}  # a delete of a term's prefix -> the terms that have it
        for term in self.counts:
            for key in deletes(term[:prefix_length], max_distance):
                self.index.setdefault(key, []).append(term)

    def with_distance(self, distance: str) -> SpellingCorrector:
        """The same corrector (sharing its index) ranking candidates by another distance."""
        if distance not in ("osa", "levenshtein"):
            raise ValueError(f"distance must be 'osa' or 'levenshtein', got {distance!r}")
        twin = copy.copy(self)
        twin.distance = osa_distance if distance == "osa" else edit_distance
        return twin

    @classmethod
    def from_texts(cls, texts: Iterable[str], **params) -> SpellingCorrector:
        """Vocabulary and frequencies from a corpus, tokenised as BM25 tokenises it."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text))
        return cls(counts, **params)

    def candidates(self, word: str) -> list[tuple[str, int, int]]:
        """Vocabulary terms within ``max_distance`` of ``word``: (term, distance, count), best first.

        Best = smallest distance, then largest corpus count, then alphabetical.
        """
        if not isinstance(word, str):
            raise ValueError(f"word must be a str, got {type(word).__name__}")
        keys = deletes(word[: self.prefix_length], self.max_distance)
        found = {term for key in keys for term in self.index.get(key, ())}
        scored = [(t, self.distance(word, t), self.counts[t]) for t in found]
        scored = [c for c in scored if c[1] <= self.max_distance]
        return sorted(scored, key=lambda c: (c[1], -c[2], c[0]))

    def correct(self, word: str) -> str:
        """The best correction of one term (the term itself if known, too short, or nothing is close)."""
        if word in self.counts or len(word) < self.min_length:
            return word
        found = self.candidates(word)
        return found[0][0] if found else word

    def correct_query(self, text: str) -> str:
        """Correct every term of a query, keeping the rest of the string (dots, spaces, brackets).

        A term left as is keeps its case; a corrected term comes back in lower
        case, as the tokeniser (and BM25) sees it.
        """
        return TERM_PATTERN.sub(lambda m: self._correct_cased(m.group(0)), text)

    def _correct_cased(self, term: str) -> str:
        fixed = self.correct(term.lower())
        return term if fixed == term.lower() else fixed


# --------------------------------------------------------------------------
# 3. Typos, injected on purpose
# --------------------------------------------------------------------------


def inject_typo(word: str, kind: str, rng: np.random.Generator) -> str:
    """One typo in ``word``: a deleted letter, two adjacent letters swapped, or a letter replaced.

    The position is uniform; a substitution draws a different lower-case
    ASCII letter; a transposition swaps two *different* adjacent characters
    (swapping "ss" would change nothing).  ``word`` needs at least 2 characters.
    """
    if kind not in TYPO_KINDS:
        raise ValueError(f"kind must be one of {TYPO_KINDS}, got {kind!r}")
    if not isinstance(word, str) or len(word) < 2:
        raise ValueError(f"word must be a str of at least 2 characters, got {word!r}")
    if kind == "deletion":
        i = int(rng.integers(len(word)))
        return word[:i] + word[i + 1:]
    if kind == "substitution":
        i = int(rng.integers(len(word)))
        letter = rng.choice([c for c in LETTERS if c != word[i].lower()])
        return word[:i] + str(letter) + word[i + 1:]
    swappable = [i for i in range(len(word) - 1) if word[i] != word[i + 1]]
    if not swappable:
        raise ValueError(f"no two adjacent characters of {word!r} differ: a transposition would change nothing")
    i = int(rng.choice(swappable))
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def typo_query(text: str, rng: np.random.Generator, min_length: int = 4) -> tuple[str, str]:
    """Inject one typo of a random kind into one random term of ``text`` of at least ``min_length`` characters.

    Returns
    -------
    (typo'd text, kind); the text unchanged and kind "none" if no term is long enough.
    """
    spans = [m.span() for m in TERM_PATTERN.finditer(text) if m.end() - m.start() >= min_length]
    if not spans:
        return text, "none"
    start, end = spans[int(rng.integers(len(spans)))]
    kind = str(rng.choice(TYPO_KINDS))
    word = text[start:end]
    if kind == "transposition" and all(a == b for a, b in zip(word, word[1:])):
        kind = "substitution"
    return text[:start] + inject_typo(word, kind, rng) + text[end:], kind


# --------------------------------------------------------------------------
# 4. Query expansion: pseudo-relevance feedback (RM3, simplified)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardIndex:
    """The other direction of an inverted index: each document's terms, and each term id's name.

    Built once per corpus with :meth:`of`, then shared by every expansion.
    """

    rows: sp.csr_matrix   # (n_docs, n_terms) term frequencies, one row per document
    terms: list[str]      # terms[j] is the term with column id j

    @classmethod
    def of(cls, index: BM25Index) -> ForwardIndex:
        terms = [""] * index.n_terms
        for term, j in index.vocab.items():
            terms[j] = term
        return cls(index.postings.tocsr(), terms)


def rm3_expand(
    query_tokens: Sequence[str],
    index: BM25Index,
    fb_docs: int = 10,
    fb_terms: int = 10,
    original_weight: float = 0.5,
    forward: ForwardIndex | None = None,
    first_pass: np.ndarray | None = None,
) -> dict[str, float]:
    """A weighted query: the original terms plus the terms of the top documents (RM3-lite).

    1. Search with BM25; take the top ``fb_docs`` documents D with scores s_d.
    2. Relevance model: P(t | R) proportional to sum over d in D of
       w_d * tf(t, d) / |d|, with w_d = s_d / sum s (the share of the
       feedback's score; RM3 proper uses the query likelihood P(q | d)).
    3. Keep the ``fb_terms`` most probable terms, renormalised to sum 1.
    4. Interpolate: weight(t) = original_weight * P(t | query) + (1 - original_weight) * P(t | R),
       with P(t | query) = the term's share of the query tokens.

    ``forward`` (:class:`ForwardIndex`) is built here if None; build it once
    when expanding many queries.  ``first_pass`` is the query's BM25 scores,
    (n_docs,), if the caller already has them.

    Returns
    -------
    dict term -> weight (weights sum to 1); score documents with :func:`weighted_bm25`.
    """
    tokens = list(query_tokens)
    if not 0 <= original_weight <= 1:
        raise ValueError(f"original_weight must be in [0, 1], got {original_weight!r}")
    if fb_docs < 1 or fb_terms < 0:
        raise ValueError(f"need fb_docs >= 1 and fb_terms >= 0, got {fb_docs}, {fb_terms}")
    original = {t: c / len(tokens) for t, c in Counter(tokens).items()} if tokens else {}
    scores = bm25_scores(tokens, index) if first_pass is None else np.asarray(first_pass)
    if scores.shape != (index.n_docs,):
        raise ValueError(f"first_pass must hold one BM25 score per document ({index.n_docs},), got {scores.shape}")
    top = top_ids(scores, fb_docs, positive_only=True)
    if len(top) == 0 or fb_terms == 0:
        return original
    forward = ForwardIndex.of(index) if forward is None else forward
    rows = forward.rows[top]  # (fb_docs, n_terms) term frequencies of the feedback documents
    doc_weight = scores[top] / scores[top].sum()
    per_entry = np.repeat(doc_weight / index.doc_len[top], np.diff(rows.indptr)) * rows.data
    relevance = np.bincount(rows.indices, weights=per_entry, minlength=index.n_terms)
    best = top_ids(relevance, fb_terms, positive_only=True)
    feedback = {forward.terms[j]: float(relevance[j]) for j in best.tolist()}
    total = sum(feedback.values())
    expanded: dict[str, float] = {}
    for t, w in original.items():
        expanded[t] = expanded.get(t, 0.0) + original_weight * w
    for t, w in feedback.items():
        expanded[t] = expanded.get(t, 0.0) + (1 - original_weight) * w / total
    return expanded


def weighted_bm25(weights: Mapping[str, float], index: BM25Index) -> np.ndarray:
    """(n_docs,) scores of a weighted query: sum over terms of weight x that term's BM25 contribution.

    With every weight 1/len(query) this is BM25 of the query divided by its length,
    so the ranking of the original query is unchanged.
    """
    scores = np.zeros(index.n_docs)
    for term, weight in weights.items():
        scores += weight * bm25_scores([term], index)
    return scores
