"""Chunking: cutting long documents into pieces a retriever can index, with their offsets.

A retrieval-augmented system does not retrieve documents, it retrieves
*chunks*: a 50,000-character language-reference page is useless as context,
one paragraph of it is what answers a question.  How the page is cut decides
what can be found (a fact split across two chunks is found by neither) and how
much useless text comes with it.  Four strategies, the ones production systems
use, all from scratch:

* :func:`fixed_size_chunks`: windows of ``chunk_size`` **characters**, each
  starting ``chunk_size - chunk_overlap`` characters after the previous one.
  Blind to the text: it cuts words and sentences in half.
* :func:`recursive_split` / :func:`recursive_chunks`: LangChain's
  ``RecursiveCharacterTextSplitter``, reproduced exactly: cut at the first
  separator of ``["\\n\\n", "\\n", " ", ""]`` that occurs, greedily merge the
  pieces back up to ``chunk_size``, and cut any piece still too long at the
  next separator.  Paragraphs stay whole when they fit.
* :func:`sentence_chunks`: whole sentences packed greedily up to ``chunk_size``.
* :func:`semantic_chunks`: Kamradt's "semantic chunking" (LangChain's
  ``SemanticChunker``): embed each sentence and cut where the cosine distance
  between consecutive sentences is above a percentile of all such distances.

Every chunker here returns :class:`Chunk` objects carrying
``(doc_id, start, end)`` **character offsets** into the document, with
``text == document[start:end]``.  Offsets are what make evaluation against
gold spans possible (``course_lib.ir.rag.context_recall``) and what lets an
application show the user where an answer came from.  LangChain recovers
offsets afterwards with ``str.find`` (``add_start_index=True``); here they are
tracked while cutting, so they are exact by construction.

Sizes are in characters unless a ``length_function`` says otherwise; 800
characters of this corpus are about 215 MiniLM WordPiece tokens (3.7
characters per token, see ``datasets/cpython_docs/CARD.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..data.retrieval_bench import sentence_spans
from ..validate import check_int

#: LangChain's default separators: paragraph, line, word, character.
DEFAULT_SEPARATORS: tuple[str, ...] = ("\n\n", "\n", " ", "")

KeepSeparator = bool | Literal["start", "end"]
Span = tuple[int, int]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``text == document[start:end]``.

    Attributes
    ----------
    doc_id : id of the document the chunk was cut from.
    start, end : character offsets, ``0 <= start <= end <= len(document)``.
    text : the chunk's text.
    """

    doc_id: int
    start: int
    end: int
    text: str

    def __len__(self) -> int:
        return self.end - self.start


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return text


def _check_int(value: object, name: str, lowest: int) -> int:
    return check_int(value, name, low=lowest)


def _check_sizes(chunk_size: object, chunk_overlap: object) -> tuple[int, int]:
    """LangChain's rules: chunk_size > 0, 0 <= chunk_overlap <= chunk_size."""
    size = _check_int(chunk_size, "chunk_size", 1)
    overlap = _check_int(chunk_overlap, "chunk_overlap", 0)
    if overlap > size:
        raise ValueError(f"chunk_overlap ({overlap}) must not be larger than chunk_size ({size})")
    return size, overlap


# --------------------------------------------------------------------------
# 1. Fixed-size windows
# --------------------------------------------------------------------------


def fixed_size_chunks(text: str, chunk_size: int, chunk_overlap: int = 0, doc_id: int = 0) -> list[Chunk]:
    """Windows of ``chunk_size`` characters, consecutive windows sharing ``chunk_overlap``.

    Window i covers ``[i * step, i * step + chunk_size)`` with
    ``step = chunk_size - chunk_overlap``; the last window ends at ``len(text)``
    and may be shorter.  Words and sentences are cut wherever they fall.

    Returns
    -------
    list of Chunk, in document order; empty for an empty text.
    """
    text = _check_text(text)
    size, overlap = _check_sizes(chunk_size, chunk_overlap)
    if overlap == size:
        raise ValueError(
            f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size}): the window would never move"
        )
    step, chunks, start = size - overlap, [], 0
    while start < len(text):
        end = min(start + size, len(text))
        chunks.append(Chunk(doc_id, start, end, text[start:end]))
        if end == len(text):
            break
        start += step
    return chunks


# --------------------------------------------------------------------------
# 2. Recursive separators (LangChain's RecursiveCharacterTextSplitter)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    chunk_size: int
    chunk_overlap: int
    keep_separator: KeepSeparator
    strip_whitespace: bool
    length: Callable[[str], int]


def _pick_separator(text: str, lo: int, hi: int, separators: Sequence[str]) -> tuple[str, list[str]]:
    """The first separator that occurs in ``text[lo:hi]`` and the finer ones after it.

    ``""`` (cut between characters) always applies and leaves nothing finer.
    If none occurs, the last separator is used (it cuts nothing) with nothing finer.
    """
    for i, sep in enumerate(separators):
        if sep == "":
            return "", []
        if text.find(sep, lo, hi) != -1:
            return sep, list(separators[i + 1 :])
    return separators[-1], []


def _cut(text: str, lo: int, hi: int, separator: str, keep: KeepSeparator) -> list[Span]:
    """Cut ``text[lo:hi]`` at every occurrence of ``separator``: the pieces' (start, end), empties dropped.

    Occurrences are found left to right without overlap (as ``re.split`` does).
    ``keep`` says where a separator goes: True or ``"start"`` opens the next
    piece with it, ``"end"`` closes the previous piece with it, False drops it.
    """
    if separator == "":
        return [(i, i + 1) for i in range(lo, hi)]
    hits, width = [], len(separator)
    at = text.find(separator, lo, hi)
    while at != -1:
        hits.append(at)
        at = text.find(separator, at + width, hi)
    if keep == "end":
        bounds = [lo] + [h + width for h in hits] + [hi]
        pieces = list(zip(bounds[:-1], bounds[1:]))
    elif keep:  # True or "start"
        bounds = [lo] + hits + [hi]
        pieces = list(zip(bounds[:-1], bounds[1:]))
    else:
        pieces = list(zip([lo] + [h + width for h in hits], hits + [hi]))
    return [(s, e) for s, e in pieces if e > s]


def _join(text: str, window: list[Span], separator: str, strip: bool) -> tuple[int, int, str] | None:
    """The chunk made of the pieces in ``window``: (start, end, text), or None if it is blank.

    The pieces are joined with ``separator`` ("" when separators were kept,
    so the join is the contiguous ``text[window start:window end]``) and
    stripped of surrounding whitespace if ``strip``; the offsets move inwards
    by what was stripped.
    """
    raw = separator.join(text[s:e] for s, e in window)
    chunk = raw.strip() if strip else raw
    if not chunk:
        return None
    lead = len(raw) - len(raw.lstrip()) if strip else 0
    trail = len(raw) - len(raw.rstrip()) if strip else 0
    return window[0][0] + lead, window[-1][1] - trail, chunk


def _merge(text: str, pieces: list[Span], separator: str, cfg: _Settings) -> list[tuple[int, int, str]]:
    """Greedily pack consecutive pieces into chunks of at most ``chunk_size``, with overlap.

    LangChain's ``_merge_splits``, line for line.  ``total`` is the length of the
    current window, separators between its pieces included.  When the next
    piece does not fit, the window becomes a chunk, then pieces are dropped
    from its front while it is longer than ``chunk_overlap`` (or while the
    next piece still does not fit): what remains is the overlap that starts
    the next chunk.
    """
    sep_len = cfg.length(separator)
    chunks: list[tuple[int, int, str]] = []
    window: list[Span] = []
    sizes: list[int] = []
    total = 0
    for lo, hi in pieces:
        size = cfg.length(text[lo:hi])
        if total + size + (sep_len if window else 0) > cfg.chunk_size:
            if window:
                chunk = _join(text, window, separator, cfg.strip_whitespace)
                if chunk is not None:
                    chunks.append(chunk)
                while total > cfg.chunk_overlap or (
                    total + size + (sep_len if window else 0) > cfg.chunk_size and total > 0
                ):
                    total -= sizes[0] + (sep_len if len(window) > 1 else 0)
                    window, sizes = window[1:], sizes[1:]
        window.append((lo, hi))
        sizes.append(size)
        total += size + (sep_len if len(window) > 1 else 0)
    chunk = _join(text, window, separator, cfg.strip_whitespace)
    if chunk is not None:
        chunks.append(chunk)
    return chunks


def _split(text: str, lo: int, hi: int, separators: Sequence[str], cfg: _Settings) -> list[tuple[int, int, str]]:
    """LangChain's ``_split_text`` on ``text[lo:hi]``: cut, merge the short pieces, recurse into the long ones.

    A piece counts as short when its length is *strictly* below ``chunk_size``.
    A long piece is cut again with the finer separators; if there are none
    left it becomes a chunk as it is (too long, and not stripped).
    """
    separator, finer = _pick_separator(text, lo, hi, separators)
    joiner = "" if cfg.keep_separator else separator
    chunks: list[tuple[int, int, str]] = []
    short: list[Span] = []
    for s, e in _cut(text, lo, hi, separator, cfg.keep_separator):
        if cfg.length(text[s:e]) < cfg.chunk_size:
            short.append((s, e))
            continue
        if short:
            chunks.extend(_merge(text, short, joiner, cfg))
            short = []
        if finer:
            chunks.extend(_split(text, s, e, finer, cfg))
        else:
            chunks.append((s, e, text[s:e]))
    if short:
        chunks.extend(_merge(text, short, joiner, cfg))
    return chunks


def _recursive(
    text: str,
    chunk_size: int,
    chunk_overlap: int,
    separators: Sequence[str],
    keep_separator: KeepSeparator,
    strip_whitespace: bool,
    length_function: Callable[[str], int],
) -> list[tuple[int, int, str]]:
    text = _check_text(text)
    size, overlap = _check_sizes(chunk_size, chunk_overlap)
    if isinstance(separators, str) or not separators or not all(isinstance(s, str) for s in separators):
        raise ValueError(
            f"separators must be a non-empty list of str such as {list(DEFAULT_SEPARATORS)}, got {separators!r}"
        )
    if keep_separator not in (True, False, "start", "end"):
        raise ValueError(f"keep_separator must be True, False, 'start' or 'end', got {keep_separator!r}")
    if not callable(length_function):
        raise ValueError(f"length_function must be callable (e.g. len), got {length_function!r}")
    cfg = _Settings(size, overlap, keep_separator, bool(strip_whitespace), length_function)
    return _split(text, 0, len(text), list(separators), cfg)


def recursive_split(
    text: str,
    chunk_size: int,
    chunk_overlap: int,
    separators: Sequence[str] = DEFAULT_SEPARATORS,
    keep_separator: KeepSeparator = True,
    strip_whitespace: bool = True,
    length_function: Callable[[str], int] = len,
) -> list[str]:
    """Split ``text`` exactly as LangChain's ``RecursiveCharacterTextSplitter`` does.

    Parameters
    ----------
    text : the document.
    chunk_size : the largest chunk wanted, in units of ``length_function``
        (characters by default).  A chunk can be longer only when a piece has
        no finer separator left to cut at.
    chunk_overlap : how much of the end of a chunk (at most) the next one repeats.
    separators : literal strings (not regular expressions), coarsest first;
        ``""`` means "between any two characters".
    keep_separator : True or ``"start"``: a separator stays with the text after
        it; ``"end"``: with the text before it; False: separators are dropped
        and re-inserted (one) between merged pieces.
    strip_whitespace : strip each merged chunk.
    length_function : measures a string (``len``, or a tokenizer's token count).

    Returns
    -------
    list of str, the chunks in document order, identical to
    ``RecursiveCharacterTextSplitter(chunk_size=..., chunk_overlap=...,
    separators=..., keep_separator=..., strip_whitespace=...,
    length_function=...).split_text(text)``.  (LangChain silently replaces an
    empty ``separators`` list by the defaults; here it is an error.)
    """
    chunks = _recursive(text, chunk_size, chunk_overlap, separators, keep_separator, strip_whitespace, length_function)
    return [chunk for _, _, chunk in chunks]


def recursive_chunks(
    text: str,
    chunk_size: int,
    chunk_overlap: int,
    separators: Sequence[str] = DEFAULT_SEPARATORS,
    keep_separator: KeepSeparator = True,
    strip_whitespace: bool = True,
    length_function: Callable[[str], int] = len,
    doc_id: int = 0,
) -> list[Chunk]:
    """:func:`recursive_split` with offsets: the same chunks, as :class:`Chunk` objects.

    Offsets need the separators kept (``keep_separator`` True, ``"start"`` or
    ``"end"``): a chunk is then a contiguous piece of the text.  With
    ``keep_separator=False`` a chunk re-joins pieces with one separator where
    the text may have had several, so it is not a substring and has no offsets.
    """
    if not keep_separator:
        raise ValueError("recursive_chunks needs keep_separator=True, 'start' or 'end': "
                         "with False a chunk is not a substring of the text, so it has no offsets")
    chunks = _recursive(text, chunk_size, chunk_overlap, separators, keep_separator, strip_whitespace, length_function)
    return [Chunk(doc_id, start, end, chunk) for start, end, chunk in chunks]


# --------------------------------------------------------------------------
# 3. Sentences
# --------------------------------------------------------------------------


def _check_spans(spans: Sequence[Span], text: str) -> list[Span]:
    spans = [(int(s), int(e)) for s, e in spans]
    last = 0
    for s, e in spans:
        if not last <= s < e <= len(text):
            raise ValueError(
                f"sentence spans must be ordered, non-overlapping and inside the text, got ({s}, {e}) after {last}"
            )
        last = e
    return spans


def _chunks_of_groups(text: str, spans: list[Span], cuts: Sequence[int], doc_id: int) -> list[Chunk]:
    """Chunks made of consecutive sentences: a new chunk starts after each sentence index in ``cuts``."""
    chunks, first = [], 0
    for last in [*cuts, len(spans) - 1]:
        start, end = spans[first][0], spans[last][1]
        chunks.append(Chunk(doc_id, start, end, text[start:end]))
        first = last + 1
    return chunks


def sentence_chunks(text: str, chunk_size: int, doc_id: int = 0, spans: Sequence[Span] | None = None) -> list[Chunk]:
    """Whole sentences packed greedily into chunks of at most ``chunk_size`` characters.

    A chunk runs from the start of its first sentence to the end of its last
    one (the whitespace between them included, the whitespace between chunks
    not).  A sentence longer than ``chunk_size`` becomes a chunk of its own.
    No overlap.

    Parameters
    ----------
    spans : the sentences' (start, end), default
        ``course_lib.data.retrieval_bench.sentence_spans(text)``, the
        benchmark's own rule (a sentence ends at . ! ? before a capital letter
        and never crosses a blank line).
    """
    text = _check_text(text)
    size = _check_int(chunk_size, "chunk_size", 1)
    spans = _check_spans(sentence_spans(text) if spans is None else spans, text)
    if not spans:
        return []
    cuts, start = [], spans[0][0]
    for i in range(1, len(spans)):
        if spans[i][1] - start > size:  # sentence i would overflow: close the chunk before it
            cuts.append(i - 1)
            start = spans[i][0]
    return _chunks_of_groups(text, spans, cuts, doc_id)


# --------------------------------------------------------------------------
# 4. Semantic breakpoints (Kamradt; LangChain's SemanticChunker)
# --------------------------------------------------------------------------


def neighbour_distances(vectors: np.ndarray) -> np.ndarray:
    """(n - 1,) cosine distances ``1 - cos(v_i, v_{i+1})`` between consecutive rows of (n, d) ``vectors``."""
    V = np.asarray(vectors, dtype=np.float64)
    if V.ndim != 2 or not np.isfinite(V).all():
        raise ValueError(f"vectors must be a finite (n, d) array, got shape {V.shape}")
    norms = np.linalg.norm(V, axis=1)
    if (norms == 0).any():
        raise ValueError("vectors has a zero row: its cosine with a neighbour is undefined")
    U = V / norms[:, None]
    return 1.0 - np.einsum("ij,ij->i", U[:-1], U[1:])


def semantic_breakpoints(distances: np.ndarray, percentile: float) -> np.ndarray:
    """Indices i where the chunk is cut after sentence i: ``distances[i] > percentile(distances)``.

    ``np.percentile`` with its default linear interpolation, as LangChain's
    ``SemanticChunker(breakpoint_threshold_type="percentile")``.  Percentile 95
    (its default) cuts at the 5 % largest jumps in meaning.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"distances must be 1-D, got shape {d.shape}")
    is_number = isinstance(percentile, (int, float, np.floating)) and not isinstance(percentile, bool)
    if not is_number or not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be a number in [0, 100], got {percentile!r}")
    if len(d) == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(d > np.percentile(d, percentile)).astype(np.int64)


def percentile_for_size(n_chars: int, n_sentences: int, chunk_size: int) -> float:
    """The percentile that makes :func:`semantic_chunks` aim at chunks of about ``chunk_size`` characters.

    A document of ``n_chars`` characters should be cut ``c = round(n_chars /
    chunk_size) - 1`` times (clipped to ``[0, n_sentences - 1]``).  With
    ``g = n_sentences - 1`` distances, percentile ``100 (1 - c / g)`` puts the
    interpolated threshold between the ``c``-th and ``(c+1)``-th largest
    distance, so exactly ``c`` are above it (when the distances are distinct
    and ``c < g``; ``c = g`` gives percentile 0, which leaves the smallest
    distance uncut).  This is how the strategy table compares semantic
    chunks with the others at the same mean chunk length.
    """
    n_chars = _check_int(n_chars, "n_chars", 0)
    n_sentences = _check_int(n_sentences, "n_sentences", 0)
    size = _check_int(chunk_size, "chunk_size", 1)
    gaps = n_sentences - 1
    if gaps <= 0:
        return 100.0
    cuts = min(max(round(n_chars / size) - 1, 0), gaps)
    return 100.0 * (1.0 - cuts / gaps)


def semantic_chunks(
    text: str,
    vectors: np.ndarray,
    percentile: float = 95.0,
    doc_id: int = 0,
    spans: Sequence[Span] | None = None,
) -> list[Chunk]:
    """Cut between consecutive sentences whose embeddings are far apart.

    Parameters
    ----------
    text : the document.
    vectors : (n_sentences, d) embeddings of the sentences, row i for
        ``text[spans[i][0]:spans[i][1]]``.
    percentile : cut after sentence i when the cosine distance between
        sentences i and i + 1 is above this percentile of all the document's
        neighbour distances (:func:`semantic_breakpoints`).
    spans : the sentences (default ``sentence_spans(text)``).

    Kamradt's notebook and LangChain embed each sentence together with its
    neighbours (``buffer_size=1``) to smooth the signal and re-join sentences
    with spaces; here each sentence is embedded alone and chunks keep their
    offsets.  There is no size limit: a run of similar sentences stays together.
    """
    text = _check_text(text)
    spans = _check_spans(sentence_spans(text) if spans is None else spans, text)
    V = np.asarray(vectors)
    if V.ndim != 2 or len(V) != len(spans):
        raise ValueError(f"vectors must have one row per sentence: expected ({len(spans)}, d), got shape {V.shape}")
    if not spans:
        return []
    cuts = semantic_breakpoints(neighbour_distances(V), percentile) if len(spans) > 1 else []
    return _chunks_of_groups(text, spans, [int(c) for c in cuts], doc_id)
