"""Text to terms: the tokeniser every lexical method of chapter 04 shares.

A lexical retriever (BM25, an inverted index, spelling correction) matches a
query with a document only through the *terms* both contain, so the tokeniser
decides what can match at all.  The corpus is Python documentation, full of
identifiers: ``json.dumps``, ``os.path.join``, ``max_seq_length``,
``__init__``.  Our choice, and why:

1. **Lowercase** (``str.lower``): "Return" at the start of a sentence and
   "return" in the middle are the same word to a reader.
2. **Split on every character that is not a letter or a digit**, underscores
   and dots included: ``os.path.join`` -> ``os``, ``path``, ``join`` and
   ``max_seq_length`` -> ``max``, ``seq``, ``length``.  A query that says
   "join paths" then reaches the docstring of ``os.path.join``, and a query
   that types the identifier still matches every part of it.  Unicode letters
   and digits count as letters (``[^\\W_]`` in a regular expression), so
   "naïve" stays one term.
3. **Nothing else**: no stemming, no stop-word list, no camelCase splitting.
   BM25's idf already gives "the" almost no weight; stemming would merge
   ``dump`` and ``dumps`` (two different functions here); camelCase splitting
   would turn ``OrderedDict`` into the two very common terms "ordered" and
   "dict".  Each of these is a product decision to measure, not a default.

``tokenize`` is deterministic and has no state, so documents and queries are
always split the same way; that is the one rule a tokeniser must never break.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A term: a maximal run of letters or digits (``[^\W_]`` = a word character that is not "_").
TERM_PATTERN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into runs of letters and digits.

    Parameters
    ----------
    text : any string (a query or a document).

    Returns
    -------
    list of str
        The terms in order of appearance, repeats kept (BM25 counts them).

    Examples
    --------
    >>> tokenize("json.dumps(obj, *, skipkeys=False) -> str")
    ['json', 'dumps', 'obj', 'skipkeys', 'false', 'str']
    >>> tokenize("os.path.join joins max_seq_length")
    ['os', 'path', 'join', 'joins', 'max', 'seq', 'length']
    """
    if not isinstance(text, str):
        raise ValueError(f"tokenize expects a str, got {type(text).__name__}")
    return TERM_PATTERN.findall(text.lower())


def tokenize_all(texts: Iterable[str]) -> list[list[str]]:
    """:func:`tokenize` applied to each text (a corpus or a batch of queries)."""
    if isinstance(texts, str):
        raise ValueError("tokenize_all expects an iterable of str (e.g. a list of documents), got a single str")
    return [tokenize(t) for t in texts]


def document_text(doc: dict) -> str:
    """The string a lexical index reads for a corpus document: ``"<title>: <text>"``.

    It is the same string the cached MiniLM embeddings were computed from
    (``course_lib.data.corpus.embedding_text``), so BM25 and dense retrieval
    see exactly the same words.
    """
    try:
        return f"{doc['title']}: {doc['text']}"
    except (KeyError, TypeError):
        raise ValueError(f"expected a document dict with 'title' and 'text', got {doc!r:.80}") from None
