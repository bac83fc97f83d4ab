"""Retrieval-augmented generation without an LLM: evaluation set, MMR, an extractive answerer, metrics.

No generative language model runs offline in this course, so the "generator"
here is **extractive**: it copies whole sentences of the retrieved chunks,
chosen by their similarity to the query, until a token budget is spent.
Everything else of a RAG pipeline is the real thing and is measured:

1. **An evaluation set with gold spans** (:func:`long_documents`,
   :func:`rag_queries`, :func:`rag_collection`): long documents reassembled
   from the benchmark's passages, and, for each sentence query, the
   character span of the document where the answer lies (:func:`gold_span`).
2. **Context metrics** against gold spans: :func:`context_recall` (share of
   the gold characters the retrieved chunks cover) and
   :func:`context_precision` (share of the retrieved characters that are gold).
3. **Re-ranking for diversity**: :func:`mmr`, maximal marginal relevance.
4. **The answer**: :func:`extract_answer` (greedy selection, under a token
   budget, among the :func:`whole_sentences` of the retrieved chunks), scored
   with :func:`token_f1` (SQuAD's answer F1) and
   :func:`faithfulness` (share of the answer's sentences found verbatim, after
   normalisation, in the retrieved context).

Spans are ``(doc_id, start, end)`` character offsets, end exclusive; any
object with ``doc_id``, ``start`` and ``end`` attributes
(``course_lib.ir.chunking.Chunk``) is accepted where spans are.
"""

from __future__ import annotations

import bisect
import re
import string
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..data.retrieval_bench import cut_span, normalize_space, sentence_spans

SpanLike = Any  # a (doc_id, start, end) tuple or an object with those attributes
#: The sources whose passages are reassembled into long documents.
LONG_SOURCES: tuple[str, ...] = ("topic", "module", "class")
#: Query kinds whose answer location is known (the sentence was cut out of a passage).
SENTENCE_KINDS: tuple[str, ...] = ("held_out", "first_sentence")


# --------------------------------------------------------------------------
# 1. The evaluation set: long documents and gold spans
# --------------------------------------------------------------------------


def long_documents(docs: Sequence[dict], sources: Sequence[str] = LONG_SOURCES) -> list[dict]:
    """Reassemble the passages of each text into one long document.

    The corpus stores a long docstring or help topic as consecutive passages
    of at most 800 characters sharing one ``title``.  Passages of the same
    (source, title) are joined in id order with a blank line (``"\\n\\n"``).

    Parameters
    ----------
    docs : benchmark (or corpus) documents ``{"id", "source", "title", "text"}``.
    sources : which sources to keep (default: topics, modules, classes).

    Returns
    -------
    list of dict ``{"id", "source", "title", "text", "passages"}``, ids 0..n-1
    in order of each document's first passage; ``passages`` lists
    ``(passage_id, start, end)`` with ``text[start:end]`` the passage's text.
    """
    if isinstance(sources, str) or not set(sources) & {d["source"] for d in docs}:
        present = sorted({d["source"] for d in docs})
        raise ValueError(f"no document has a source in {sources!r}; sources present: {present}")
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for doc in sorted(docs, key=lambda d: d["id"]):
        if doc["source"] in sources:
            groups[(doc["source"], doc["title"])].append(doc)
    out = []
    for (source, title), passages in groups.items():  # dicts keep insertion order: by first passage id
        spans, pos = [], 0
        for p in passages:
            spans.append((p["id"], pos, pos + len(p["text"])))
            pos += len(p["text"]) + 2
        out.append({"id": len(out), "source": source, "title": title,
                    "text": "\n\n".join(p["text"] for p in passages), "passages": spans})
    return out


def gold_span(original: str, cut_text: str, query: str) -> tuple[int, int]:
    """Where the answer to a cut-out sentence lies, as (start, end) in ``cut_text``.

    The benchmark made ``cut_text`` by removing the sentence ``query`` from the
    passage ``original`` (``retrieval_bench.cut_span``).  The cut point is where
    the sentence was; the gold span runs from the start of the last sentence
    that starts before the cut to the end of the first sentence that ends after
    it (sentences by the benchmark's ``sentence_spans`` on ``cut_text``): the
    sentences that surrounded the held-out one, or the single sentence that
    now contains the cut.  For a first sentence (cut at 0) it is the sentence
    that follows.
    """
    found = [(s, e) for s, e in sentence_spans(original) if normalize_space(original[s:e]) == query]
    if len(found) != 1:
        raise ValueError(
            f"the query sentence occurs {len(found)} times in the original passage, expected once: {query[:60]!r}"
        )
    s, e = found[0]
    if cut_span(original, s, e) != cut_text:
        raise ValueError("cut_text is not the original passage with the query sentence cut out")
    cut = len(original[:s].rstrip())
    spans = sentence_spans(cut_text)
    before = [sp for sp in spans if sp[0] < cut]
    after = [sp for sp in spans if sp[1] > cut]
    first = before[-1] if before else after[0]
    last = after[0] if after else before[-1]
    return first[0], last[1]


def rag_queries(
    bench: Any, corpus: Sequence[dict], docs: Sequence[dict], kinds: Sequence[str] = SENTENCE_KINDS
) -> list[dict]:
    """The benchmark's sentence queries whose source passage lies in ``docs``, with gold spans.

    Parameters
    ----------
    bench : the loaded ``RetrievalBenchmark`` (its docs have the sentences cut out).
    corpus : the original corpus (``load_corpus()``), which still has them.
    docs : long documents from :func:`long_documents` (built from ``bench.docs``).
    kinds : query kinds to use (``"held_out"``, ``"first_sentence"``).

    Returns
    -------
    list of dict ``{"qid", "text", "kind", "split", "row", "doc_id", "gold",
    "gold_text"}``: ``row`` is the query's row in ``bench.queries`` and
    ``bench.query_embeddings()``; ``gold`` is the span ``(doc_id, start, end)``
    of the long document, ``gold_text`` its text.
    """
    bad = set(kinds) - set(SENTENCE_KINDS)
    if bad:
        raise ValueError(
            f"kinds must be among {SENTENCE_KINDS} (identifier queries have no gold span), got {sorted(bad)}"
        )
    home = {pid: (d["id"], start) for d in docs for pid, start, _ in d["passages"]}
    out = []
    for row, q in enumerate(bench.queries):
        if q["kind"] not in kinds or q["doc_id"] not in home:
            continue
        doc_id, offset = home[q["doc_id"]]
        start, end = gold_span(corpus[q["doc_id"]]["text"], bench.docs[q["doc_id"]]["text"], q["text"])
        gold = (doc_id, offset + start, offset + end)
        out.append({"qid": q["qid"], "text": q["text"], "kind": q["kind"], "split": q["split"], "row": row,
                    "doc_id": doc_id, "gold": gold, "gold_text": docs[doc_id]["text"][gold[1]:gold[2]]})
    return out


def rag_collection(docs: Sequence[dict], queries: Sequence[dict], max_chars: int) -> tuple[list[dict], list[dict]]:
    """A reproducible sub-collection: documents holding a question, up to ``max_chars`` characters.

    Documents that hold at least one query are taken in the order of a stable
    hash of their title (``retrieval_bench.stable_hash("rag", title)``); one
    that would take the total over ``max_chars`` is skipped.  The kept
    documents are renumbered 0..n-1 in their original order, and the queries'
    ``doc_id`` and ``gold`` follow.

    Returns
    -------
    (docs, queries): the kept documents and the queries on them.
    """
    from ..data.retrieval_bench import stable_hash

    if isinstance(max_chars, bool) or not isinstance(max_chars, (int, np.integer)) or max_chars < 1:
        raise ValueError(f"max_chars must be a positive int, got {max_chars!r}")
    holding = {q["doc_id"] for q in queries}
    kept, total = [], 0
    order = sorted((d for d in docs if d["id"] in holding), key=lambda d: stable_hash("rag", d["source"], d["title"]))
    for doc in order:
        if total + len(doc["text"]) <= max_chars:
            kept.append(doc["id"])
            total += len(doc["text"])
    new_id = {old: new for new, old in enumerate(sorted(kept))}
    out_docs = [{**d, "id": new_id[d["id"]]} for d in sorted(docs, key=lambda d: d["id"]) if d["id"] in new_id]
    out_queries = [{**q, "doc_id": new_id[q["doc_id"]], "gold": (new_id[q["doc_id"]], *q["gold"][1:])}
                   for q in queries if q["doc_id"] in new_id]
    return out_docs, out_queries


def whole_sentences(
    chunks: Sequence[SpanLike], sentences: Sequence[Sequence[tuple[int, int]]]
) -> list[tuple[int, int]]:
    """The sentences lying entirely inside at least one of the chunks: the extractive answerer's candidates.

    Parameters
    ----------
    chunks : retrieved spans ``(doc_id, start, end)`` (or Chunk objects).
    sentences : ``sentences[doc_id]`` = that document's sentence spans ``(start, end)``, in order.

    Returns
    -------
    sorted list of ``(doc_id, sentence index)``, each once.  A sentence cut by
    a chunk boundary is left out: an answer made of half-sentences would not
    read as an answer.
    """
    found = set()
    for doc_id, start, end in (_as_span(c) for c in chunks):
        spans = sentences[doc_id]
        lo = bisect.bisect_left([s for s, _ in spans], start)
        for j in range(lo, len(spans)):
            if spans[j][0] >= end:
                break
            if spans[j][1] <= end:
                found.add((doc_id, j))
    return sorted(found)


# --------------------------------------------------------------------------
# 2. Context metrics against gold spans
# --------------------------------------------------------------------------


def _as_span(span: SpanLike) -> tuple[int, int, int]:
    if all(hasattr(span, a) for a in ("doc_id", "start", "end")):
        doc_id, start, end = span.doc_id, span.start, span.end
    else:
        try:
            doc_id, start, end = span
        except (TypeError, ValueError):
            raise ValueError(
                f"a span must be (doc_id, start, end) or have those attributes, got {span!r:.80}"
            ) from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (doc_id, start, end)):
        raise ValueError(f"span values must be ints, got {(doc_id, start, end)!r}")
    if not 0 <= start <= end:
        raise ValueError(f"a span needs 0 <= start <= end, got {(doc_id, start, end)}")
    return int(doc_id), int(start), int(end)


def merge_spans(spans: Iterable[SpanLike]) -> list[tuple[int, int, int]]:
    """The union of ``spans`` as sorted, disjoint ``(doc_id, start, end)`` (touching spans are merged)."""
    merged: list[tuple[int, int, int]] = []
    for doc_id, start, end in sorted(_as_span(s) for s in spans):
        if start == end:
            continue
        if merged and merged[-1][0] == doc_id and start <= merged[-1][2]:
            merged[-1] = (doc_id, merged[-1][1], max(merged[-1][2], end))
        else:
            merged.append((doc_id, start, end))
    return merged


def overlap_chars(spans: Iterable[SpanLike], other: Iterable[SpanLike]) -> int:
    """Characters in both the union of ``spans`` and the union of ``other``."""
    a, b = merge_spans(spans), merge_spans(other)
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):  # both sorted and disjoint: one sweep, like merging two sorted lists
        (doc_a, start_a, end_a), (doc_b, start_b, end_b) = a[i], b[j]
        if doc_a == doc_b:
            total += max(0, min(end_a, end_b) - max(start_a, start_b))
        if (doc_a, end_a) < (doc_b, end_b):  # the span that ends first cannot meet anything further on
            i += 1
        else:
            j += 1
    return total


def _chars(spans: Iterable[tuple[int, int, int]]) -> int:
    return sum(end - start for _, start, end in spans)


def context_recall(retrieved: Sequence[SpanLike], gold: Sequence[SpanLike]) -> float:
    """Share of the gold characters covered by the retrieved spans, in [0, 1].

    ``|union(retrieved) & union(gold)| / |union(gold)|``: a gold character
    counts once however many chunks cover it.

    Raises ValueError if the gold spans hold no character.
    """
    gold_chars = _chars(merge_spans(gold))
    if gold_chars == 0:
        raise ValueError("gold spans are empty: context recall is undefined")
    return overlap_chars(retrieved, gold) / gold_chars


def context_precision(retrieved: Sequence[SpanLike], gold: Sequence[SpanLike]) -> float:
    """Share of the retrieved characters that are gold, in [0, 1], counted chunk by chunk.

    ``sum_c |c & union(gold)| / sum_c |c|``: each retrieved chunk counts with
    its full length, so two overlapping chunks that repeat the same text pay
    for it twice, as they would in a prompt.  0 when nothing was retrieved.
    (RAGAS's "context precision" is a different, rank-weighted measure of
    chunks judged relevant by an LLM.)
    """
    spans = [_as_span(s) for s in retrieved]
    total = sum(end - start for _, start, end in spans)
    if total == 0:
        return 0.0
    gold_spans = merge_spans(gold)
    return sum(overlap_chars([s], gold_spans) for s in spans) / total


# --------------------------------------------------------------------------
# 3. Answer metrics: token F1 (SQuAD) and faithfulness
# --------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace.

    The same steps, in the same order, as ``normalize_answer`` of the official
    SQuAD v1.1/v2.0 evaluation scripts.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a str, got {type(text).__name__}")
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """The tokens F1 compares: :func:`normalize_answer`, split on whitespace."""
    return normalize_answer(text).split()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD answer F1: harmonic mean of token precision and recall, in [0, 1].

    Tokens are compared as multisets (a word said twice counts twice only if
    the other side has it twice).  If either side has no token, F1 is 1 when
    both are empty and 0 otherwise (the SQuAD v2.0 convention).
    """
    pred, ref = answer_tokens(prediction), answer_tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _claims(answer: str | Sequence[str]) -> list[str]:
    if isinstance(answer, str):
        return [answer[s:e] for s, e in sentence_spans(answer)]
    if not all(isinstance(a, str) for a in answer):
        raise ValueError("answer must be a str or a list of str (its sentences)")
    return [a for a in answer if a.strip()]


def is_supported(claim: str, contexts: Sequence[str]) -> bool:
    """Whether ``claim``'s normalised tokens occur as one contiguous run in one of the ``contexts``."""
    needle = " " + " ".join(answer_tokens(claim)) + " "
    return any(needle in " " + " ".join(answer_tokens(c)) + " " for c in contexts)


def faithfulness(answer: str | Sequence[str], contexts: Sequence[str]) -> float:
    """Share of the answer's sentences supported verbatim by the retrieved context, in [0, 1].

    A sentence is supported when its normalised tokens (:func:`answer_tokens`)
    appear, in order and contiguous, inside one retrieved chunk.  An
    extractive answer (sentences copied from the chunks) scores 1 by
    construction.  This is a strict proxy: it flags an invented or altered
    sentence ("not" dropped, a number changed), but it also flags a correct
    paraphrase, which only a human or an entailment model could accept.

    Parameters
    ----------
    answer : a str (split into sentences with ``sentence_spans``) or a list of sentences.
    contexts : the retrieved chunks' texts.

    Returns 1.0 for an answer with no sentence (it claims nothing).
    """
    if isinstance(contexts, str):
        raise ValueError("contexts must be a list of str (one per retrieved chunk), got a single str")
    claims = _claims(answer)
    if not claims:
        return 1.0
    return sum(is_supported(c, contexts) for c in claims) / len(claims)


def token_support(answer: str, contexts: Sequence[str]) -> float:
    """A weaker proxy: share of the answer's tokens that appear anywhere in the context (bag of words).

    Blind to order: "X is not Y" and "Y is not X" get the same score.
    Returns 1.0 for an answer with no token.
    """
    if isinstance(contexts, str):
        raise ValueError("contexts must be a list of str (one per retrieved chunk), got a single str")
    tokens = answer_tokens(answer if isinstance(answer, str) else " ".join(answer))
    if not tokens:
        return 1.0
    vocab = {t for c in contexts for t in answer_tokens(c)}
    return sum(t in vocab for t in tokens) / len(tokens)


# --------------------------------------------------------------------------
# 4. Maximal marginal relevance
# --------------------------------------------------------------------------


def _unit_rows(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ValueError(f"{name} must be a finite (n, d) array, got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has a zero row: its cosine similarity is undefined")
    return X / norms


def mmr(query_vec: np.ndarray, cand_vecs: np.ndarray, k: int, lambda_: float = 0.5) -> np.ndarray:
    """Maximal marginal relevance (Carbonell and Goldstein, 1998): pick k relevant *and* diverse candidates.

    The first pick is the candidate most similar to the query; then, until k are
    picked, the candidate maximising

        lambda_ * cos(q, c) - (1 - lambda_) * max over picked p of cos(c, p)

    (ties to the lowest index).  ``lambda_ = 1`` is plain relevance ranking;
    ``lambda_ = 0`` only avoids what was already picked.

    Parameters
    ----------
    query_vec : (d,) query embedding.
    cand_vecs : (n, d) candidate embeddings (any norm: cosines are used).
    k : how many to pick, 1 <= k <= n.
    lambda_ : trade-off in [0, 1].

    Returns
    -------
    (k,) int64 indices into ``cand_vecs``, in the order they were picked (the
    same as ``langchain_core.vectorstores.utils.maximal_marginal_relevance``).
    """
    q = _unit_rows(np.asarray(query_vec).reshape(1, -1), "query_vec")[0]
    C = _unit_rows(cand_vecs, "cand_vecs")
    if C.shape[1] != q.shape[0]:
        raise ValueError(f"query_vec has d={q.shape[0]} but cand_vecs has d={C.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(C):
        raise ValueError(f"k must be an int in [1, {len(C)}] (the number of candidates), got {k!r}")
    if isinstance(lambda_, bool) or not isinstance(lambda_, (int, float, np.floating)) or not 0 <= lambda_ <= 1:
        raise ValueError(f"lambda_ must be a number in [0, 1], got {lambda_!r}")
    relevance = C @ q                         # (n,) cosine to the query
    redundancy = np.full(len(C), -np.inf)     # (n,) max cosine to anything picked so far
    picked = [int(np.argmax(relevance))]
    while len(picked) < k:
        redundancy = np.maximum(redundancy, C @ C[picked[-1]])
        score = lambda_ * relevance - (1 - lambda_) * redundancy
        score[picked] = -np.inf
        picked.append(int(np.argmax(score)))
    return np.array(picked, dtype=np.int64)


# --------------------------------------------------------------------------
# 5. The extractive answerer
# --------------------------------------------------------------------------


def extract_answer(
    query_vec: np.ndarray, sentence_vecs: np.ndarray, sentence_tokens: Sequence[int], budget: int
) -> np.ndarray:
    """Greedy extractive answer: the sentences most similar to the query that fit in ``budget`` tokens.

    Sentences are taken by decreasing cosine similarity to the query; one that
    would overflow the budget is skipped (a shorter one after it may still fit).

    Parameters
    ----------
    query_vec : (d,) query embedding.
    sentence_vecs : (n, d) embeddings of the candidate sentences.
    sentence_tokens : (n,) token count of each sentence (e.g. MiniLM WordPiece tokens).
    budget : the most tokens the answer may use.

    Returns
    -------
    int64 indices of the chosen sentences, ascending (document order when the
    candidates are given in document order); empty if none fits.
    """
    q = _unit_rows(np.asarray(query_vec).reshape(1, -1), "query_vec")[0]
    S = _unit_rows(sentence_vecs, "sentence_vecs") if len(sentence_vecs) else np.empty((0, len(q)))
    lengths = np.asarray(sentence_tokens)
    if lengths.shape != (len(S),) or (len(S) and (not np.issubdtype(lengths.dtype, np.integer) or (lengths < 0).any())):
        raise ValueError(f"sentence_tokens must hold one non-negative int per sentence ({len(S)}), got {lengths!r:.80}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise ValueError(f"budget must be a non-negative int (tokens), got {budget!r}")
    chosen, used = [], 0
    for i in np.argsort(-(S @ q), kind="stable"):
        if used + lengths[i] <= budget:
            chosen.append(int(i))
            used += int(lengths[i])
    return np.array(sorted(chosen), dtype=np.int64)
