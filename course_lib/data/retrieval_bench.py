"""A frozen relevance benchmark on the CPython corpus: queries, graded judgments, embeddings.

Every retrieval lesson of chapter 04 reports on this one benchmark, so their
numbers are comparable.  It is built deterministically from the frozen corpus
(:func:`course_lib.data.load_corpus`, 6,302 passages) with no human in the
loop, by three query generators:

* ``identifier`` (set ``"keyword"``): the dotted name of a function, class or
  method (``"json.dumps"``), or for about a third of them its bare last name
  when that name is unique in the corpus (``"getrecursionlimit"``).  Relevant:
  the object's own passages (grade 2); its parent's docstring and its nearest
  siblings (grade 1).
* ``first_sentence`` (set ``"paraphrase"``): the first sentence of a docstring
  that has more; the sentence is **cut out of the benchmark's copy** of the
  document, so the query is not a substring of the text it must find.
* ``held_out`` (set ``"paraphrase"``): one sentence held out of a long passage
  of the interactive-help topics (``help("assignment")``), also cut out.

Queries are split train/test by a stable hash of their top-level package (or
topic page), so no judged document appears on both sides.  The benchmark is
frozen into ``datasets/cpython_retrieval/`` with MiniLM embeddings of every
document and query, and SHA-256 checksums verified on first load.

Rebuild (maintainers only; needs the model)::

    python -m course_lib.data retrieval      # also part of `python -m course_lib.data all`
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import DATASETS_DIR
from .corpus import (
    CORPUS_DIR,
    EMBEDDING_DIM,
    EMBEDDINGS_FILE,
    MANIFEST_FILE,
    MIN_CHARS,
    MIN_WORDS,
    CHECKSUMS_FILE,
    _read_jsonl_gz,
    _update_manifest,
    _verified_dir,
    _write_jsonl_gz,
    embedding_text,
    load_corpus,
    sha256_of,
)

#: Folder holding the frozen benchmark, its embeddings, checksums and card.
BENCH_DIR: Path = DATASETS_DIR / "cpython_retrieval"

DOCS_FILE = "docs.jsonl.gz"
QUERIES_FILE = "queries.jsonl.gz"
QRELS_FILE = "qrels.tsv"
DOC_EMBEDDINGS_FILE = "doc_embeddings.f16.npy"
QUERY_EMBEDDINGS_FILE = "query_embeddings.f16.npy"
DATA_FILES: tuple[str, ...] = (DOCS_FILE, QUERIES_FILE, QRELS_FILE, DOC_EMBEDDINGS_FILE, QUERY_EMBEDDINGS_FILE)

#: Query kind -> the query set it belongs to.
KIND_SET: dict[str, str] = {"identifier": "keyword", "first_sentence": "paraphrase", "held_out": "paraphrase"}
KINDS: tuple[str, ...] = tuple(KIND_SET)
SETS: tuple[str, ...] = ("keyword", "paraphrase")
SPLITS: tuple[str, ...] = ("train", "test")
QID_PREFIX: dict[str, str] = {"identifier": "id", "first_sentence": "fs", "held_out": "ho"}
#: How many queries of each kind the frozen benchmark has.
N_QUERIES: dict[str, int] = {"identifier": 700, "first_sentence": 500, "held_out": 300}

#: Grades of the judgments.
GRADE_OWN, GRADE_SIBLING = 2, 1
#: An identifier query judges at most this many passages of its parent (class or module) ...
MAX_PARENT_PASSAGES = 2
#: ... and the first passage of at most this many siblings (nearest in sorted name order).
MAX_SIBLINGS = 4
#: Share of identifier queries asked by their bare last name (only where that name is unique).
BARE_FRACTION = 1 / 3
MIN_BARE_CHARS = 6
#: Share of package / topic groups whose queries go to the test split.
TEST_FRACTION = 0.5
#: Sentence lengths (in words) accepted as queries.
FIRST_SENTENCE_WORDS = (6, 40)
HELD_OUT_WORDS = (8, 40)
#: A topic passage needs this many characters and sentences to lend one.
HELD_OUT_MIN_CHARS = 400
HELD_OUT_MIN_SENTENCES = 4

_LOADED: dict[Path, "RetrievalBenchmark"] = {}


# --------------------------------------------------------------------------
# 1. Deterministic building blocks
# --------------------------------------------------------------------------


def stable_hash(*parts: str) -> int:
    """A 64-bit hash of strings that, unlike ``hash()``, is the same in every process.

    >>> stable_hash("split", "json") == stable_hash("split", "json")
    True
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def stable_unit(*parts: str) -> float:
    """:func:`stable_hash` mapped to [0, 1): a reproducible coin for sampling and splitting."""
    return stable_hash(*parts) / 2.0**64


def normalize_space(text: str) -> str:
    """Runs of whitespace (line breaks included) collapsed to one space, ends stripped."""
    return " ".join(text.split())


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# A sentence ends at . ! or ? (optionally closed by quotes or brackets) followed by
# whitespace and a capital letter, possibly behind an opening quote, bracket or star.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s+[\"'(*`]?[A-Z])")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``, in order.

    A sentence never crosses a blank line (a paragraph break); inside a
    paragraph it ends at ``.``, ``!`` or ``?`` followed by whitespace and a
    capital letter.  ``text[start:end]`` has no leading or trailing whitespace.
    A simple rule, not a linguistic parser: "e.g. Foo" is cut after "e.g.".
    """
    spans = []
    starts = [0] + [m.end() for m in _PARAGRAPH_BREAK.finditer(text)]
    ends = [m.start() for m in _PARAGRAPH_BREAK.finditer(text)] + [len(text)]
    for para_start, para_end in zip(starts, ends):
        pos = para_start
        cuts = [m.end() for m in _SENTENCE_END.finditer(text, para_start, para_end)] + [para_end]
        for cut in cuts:
            piece = text[pos:cut]
            if piece.strip():
                lead = len(piece) - len(piece.lstrip())
                spans.append((pos + lead, pos + len(piece.rstrip())))
            pos = cut
    return spans


_WORD = re.compile(r"[(\"']?[A-Za-z][A-Za-z'-]*[.,;:!?)\"']*")
_NOT_PROSE = (">>>", "::", "->", "=>", "{", "}", "|", "http", "\t", "\n ")


def is_prose(sentence: str, min_words: int, max_words: int) -> bool:
    """Whether a sentence reads as English prose, fit to be a query.

    Its word count is in ``[min_words, max_words]``, it starts with a capital
    letter and ends with ``.``, ``!`` or ``?``, it has no code markers (``>>>``,
    ``->``, ``::``, braces, indented lines, URLs) and at least 80 % of its
    words are plain words (letters, maybe an apostrophe, hyphen or punctuation).
    """
    words = sentence.split()
    if not min_words <= len(words) <= max_words:
        return False
    if not sentence[0].isupper() or sentence[-1] not in ".!?":
        return False
    if any(marker in sentence for marker in _NOT_PROSE):
        return False
    plain = sum(bool(_WORD.fullmatch(w)) for w in words)
    return plain >= 0.8 * len(words)


def cut_span(text: str, start: int, end: int) -> str:
    """``text`` with ``text[start:end]`` removed and the whitespace around it mended.

    The whitespace that followed the span is kept (a space inside a paragraph,
    a blank line at a paragraph's end), the one before it is dropped.
    """
    before, after = text[:start].rstrip(), text[end:]
    rest = after.lstrip()
    gap = after[: len(after) - len(rest)]
    if not before:
        return rest
    if not rest:
        return before
    return before + (gap if gap else " ") + rest


def split_group(doc: dict) -> str:
    """The unit of the train/test split: a topic page, or a top-level package.

    Every judgment of a query stays inside its group (a parent class or module,
    a sibling, a neighbouring passage), so no document is judged on both sides.
    """
    if doc["source"] == "topic":
        return "topic:" + doc["title"]
    return doc["title"].split(".")[0]


def split_of(doc: dict, test_fraction: float = TEST_FRACTION) -> str:
    """``"test"`` or ``"train"`` for a document, by a stable hash of its :func:`split_group`."""
    return "test" if stable_unit("split", split_group(doc)) < test_fraction else "train"


def _is_long_enough(text: str) -> bool:
    return len(text) >= MIN_CHARS and len(text.split()) >= MIN_WORDS


# --------------------------------------------------------------------------
# 2. The three query generators
# --------------------------------------------------------------------------


class _Corpus:
    """Indexes over the documents that the generators share."""

    def __init__(self, docs: Sequence[dict]) -> None:
        self.docs = list(docs)
        self.by_id = {d["id"]: d for d in self.docs}
        self.passages: dict[str, list[int]] = defaultdict(list)  # title -> ids in corpus order
        for d in self.docs:
            self.passages[d["title"]].append(d["id"])
        self.source = {d["title"]: d["source"] for d in self.docs}
        objects = sorted(t for t, s in self.source.items() if s in ("function", "class", "method"))
        self.objects = objects
        self.children: dict[str, list[str]] = defaultdict(list)  # parent name -> sorted member names
        for title in objects:
            self.children[title.rsplit(".", 1)[0]].append(title)
        last = defaultdict(int)
        for title in self.source:
            last[title.rsplit(".", 1)[-1]] += 1
        self.unique_last = {name for name, count in last.items() if count == 1}
        # Whitespace-normalised texts joined by a character they never contain,
        # to count in one pass how often a sentence occurs anywhere in the corpus.
        self.haystack = "\n".join(normalize_space(d["text"]) for d in self.docs)

    def occurrences(self, sentence: str) -> int:
        return self.haystack.count(normalize_space(sentence))

    def neighbours(self, doc_id: int) -> list[int]:
        """The passages just before and after ``doc_id`` of the same text (same title)."""
        title = self.by_id[doc_id]["title"]
        return [i for i in (doc_id - 1, doc_id + 1) if i in self.by_id and self.by_id[i]["title"] == title]


def identifier_qrels(corpus: _Corpus, title: str) -> dict[int, int]:
    """Judgments of an identifier query for object ``title``.

    * grade 2: every passage of the object's own docstring;
    * grade 1: the first ``MAX_PARENT_PASSAGES`` passages of its parent's
      docstring (the class of a method, the module of a function or class),
      and the first passage of up to ``MAX_SIBLINGS`` siblings (other members
      of the same parent), the nearest in sorted name order, alternating
      before and after (``json.dump`` and ``json.load`` for ``json.dumps``).
    """
    qrels = {i: GRADE_OWN for i in corpus.passages[title]}
    parent = title.rsplit(".", 1)[0]
    for i in corpus.passages.get(parent, [])[:MAX_PARENT_PASSAGES]:
        qrels.setdefault(i, GRADE_SIBLING)
    members = corpus.children[parent]
    pos = members.index(title)
    siblings = []
    for dist in range(1, len(members)):
        for j in (pos - dist, pos + dist):
            if 0 <= j < len(members) and len(siblings) < MAX_SIBLINGS:
                siblings.append(members[j])
    for name in siblings:
        qrels.setdefault(corpus.passages[name][0], GRADE_SIBLING)
    return qrels


def identifier_queries(corpus: _Corpus, n: int) -> list[dict]:
    """``n`` identifier queries on objects drawn by stable hash (fewer if fewer exist).

    The query is the dotted name (``"json.dumps"``), or, for a stable third of
    the objects whose last name is unique in the corpus and at least
    ``MIN_BARE_CHARS`` long, that bare name (``"getrecursionlimit"``).
    """
    chosen = sorted(corpus.objects, key=lambda t: stable_hash("identifier", t))[:n]
    out = []
    for title in chosen:
        bare = title.rsplit(".", 1)[-1]
        use_bare = (
            bare in corpus.unique_last
            and len(bare) >= MIN_BARE_CHARS
            and stable_unit("bare", title) < BARE_FRACTION
        )
        doc_id = corpus.passages[title][0]
        out.append(
            {"kind": "identifier", "text": bare if use_bare else title, "doc_id": doc_id,
             "qrels": identifier_qrels(corpus, title), "new_text": None}
        )
    return out


def first_sentence_candidate(corpus: _Corpus, doc: dict) -> dict | None:
    """The first-sentence query of ``doc``, or None if it has no usable one.

    Usable: ``doc`` is the first passage of a docstring; its first sentence is
    prose (:func:`is_prose`); what remains after cutting it is still a passage
    (``MIN_CHARS`` characters, ``MIN_WORDS`` words); and the sentence occurs
    nowhere else in the corpus (a near-duplicate docstring elsewhere would be
    an unjudged exact match).
    """
    if doc["source"] == "topic" or corpus.passages[doc["title"]][0] != doc["id"]:
        return None
    spans = sentence_spans(doc["text"])
    if len(spans) < 2:
        return None
    start, end = spans[0]
    sentence = doc["text"][start:end]
    if not is_prose(sentence, *FIRST_SENTENCE_WORDS):
        return None
    rest = cut_span(doc["text"], start, end)
    if not _is_long_enough(rest) or corpus.occurrences(sentence) != 1:
        return None
    return {"kind": "first_sentence", "text": normalize_space(sentence), "doc_id": doc["id"],
            "new_text": rest}


def held_out_candidate(corpus: _Corpus, doc: dict) -> dict | None:
    """A held-out-sentence query of a long topic passage, or None.

    Among the passage's sentences after the first that are prose
    (``HELD_OUT_WORDS`` words) and occur nowhere else in the corpus, the one
    with the smallest stable hash is held out and cut from the passage.
    """
    if doc["source"] != "topic" or len(doc["text"]) < HELD_OUT_MIN_CHARS:
        return None
    spans = sentence_spans(doc["text"])
    if len(spans) < HELD_OUT_MIN_SENTENCES:
        return None
    usable = [
        (stable_hash("held_out", str(doc["id"]), str(k)), start, end)
        for k, (start, end) in enumerate(spans[1:], start=1)
        if is_prose(doc["text"][start:end], *HELD_OUT_WORDS)
    ]
    for _, start, end in sorted(usable):
        sentence = doc["text"][start:end]
        rest = cut_span(doc["text"], start, end)
        if corpus.occurrences(sentence) == 1 and normalize_space(sentence) not in normalize_space(rest):
            return {"kind": "held_out", "text": normalize_space(sentence), "doc_id": doc["id"],
                    "new_text": rest}
    return None


def sentence_queries(corpus: _Corpus, kind: str, n: int) -> list[dict]:
    """``n`` usable ``first_sentence`` or ``held_out`` queries, documents drawn by stable hash.

    Judgments: grade 2 the cut passage; grade 1 the passages just before and
    after it in the same docstring or topic page.
    """
    make = {"first_sentence": first_sentence_candidate, "held_out": held_out_candidate}[kind]
    out = []
    for doc in sorted(corpus.docs, key=lambda d: stable_hash(kind, str(d["id"]))):
        if len(out) == n:
            break
        query = make(corpus, doc)
        if query is not None:
            query["qrels"] = {doc["id"]: GRADE_OWN, **{i: GRADE_SIBLING for i in corpus.neighbours(doc["id"])}}
            out.append(query)
    return out


def build_benchmark(
    docs: Sequence[dict], n_queries: dict[str, int] | None = None, test_fraction: float = TEST_FRACTION
) -> tuple[list[dict], list[dict], dict[str, dict[int, int]]]:
    """Generate the benchmark from corpus documents: a pure, deterministic function.

    Parameters
    ----------
    docs : corpus documents ``{"id", "source", "title", "text"}`` (e.g. ``load_corpus()``).
    n_queries : queries per kind (default :data:`N_QUERIES`); fewer if fewer are usable.
    test_fraction : share of split groups (packages, topic pages) sent to the test split.

    Returns
    -------
    bench_docs : the documents, same ids and order, with every query sentence cut out.
    queries : ``{"qid", "text", "kind", "set", "split", "doc_id"}``, ordered by kind then doc id.
    qrels : qid -> {doc id: grade}, grade 2 = the item's own document, 1 = a sibling.
    """
    n_queries = dict(N_QUERIES if n_queries is None else n_queries)
    unknown = set(n_queries) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown query kinds {sorted(unknown)}: expected some of {KINDS}")
    if not docs:
        raise ValueError("docs is empty: expected corpus documents such as load_corpus()")
    corpus = _Corpus(docs)
    generated = identifier_queries(corpus, n_queries.get("identifier", 0))
    for kind in ("first_sentence", "held_out"):
        generated += sentence_queries(corpus, kind, n_queries.get(kind, 0))
    new_text = {q["doc_id"]: q["new_text"] for q in generated if q["new_text"] is not None}
    bench_docs = [{**d, "text": new_text.get(d["id"], d["text"])} for d in docs]
    generated.sort(key=lambda q: (KINDS.index(q["kind"]), q["doc_id"]))
    queries, qrels = [], {}
    for q in generated:
        qid = f"{QID_PREFIX[q['kind']]}-{q['doc_id']:04d}"
        split = split_of(corpus.by_id[q["doc_id"]], test_fraction)
        queries.append({"qid": qid, "text": q["text"], "kind": q["kind"], "set": KIND_SET[q["kind"]],
                        "split": split, "doc_id": q["doc_id"]})
        qrels[qid] = dict(sorted(q["qrels"].items()))
    return bench_docs, queries, qrels


# --------------------------------------------------------------------------
# 3. Freezing and loading
# --------------------------------------------------------------------------


def write_qrels(path: Path, queries: Sequence[dict], qrels: dict[str, dict[int, int]]) -> None:
    """TREC qrels, one judgment a line: ``qid<TAB>0<TAB>doc_id<TAB>grade``, in query order."""
    lines = [f"{q['qid']}\t0\t{doc}\t{grade}\n" for q in queries for doc, grade in qrels[q["qid"]].items()]
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_qrels(path: Path) -> dict[str, dict[int, int]]:
    """Read :func:`write_qrels`' file back: qid -> {doc id (int): grade (int)}."""
    qrels: dict[str, dict[int, int]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, grade = line.split()
            qrels.setdefault(qid, {})[int(doc)] = int(grade)
    return qrels


def _counts(queries: Sequence[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for q in queries:
        counts[f"{q['kind']}/{q['split']}"] += 1
        counts[f"{q['set']}/{q['split']}"] += 1
    return dict(sorted(counts.items()))


def build_retrieval_benchmark(
    out_dir: Path = BENCH_DIR, batch_size: int = 64, max_seq_length: int = 256
) -> Path:
    """Build the benchmark from the frozen corpus, embed it, and write every file.

    Document rows whose text is unchanged are copied from the corpus's frozen
    embeddings (the same model on the same string); the documents a query
    sentence was cut from, and all queries, are embedded with
    :func:`course_lib.data.corpus.load_model` (documents as ``title: text``,
    queries as their bare text).  Returns ``out_dir``.
    """
    from .corpus import embed_texts, load_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    corpus_docs = load_corpus()
    bench_docs, queries, qrels = build_benchmark(corpus_docs)
    text_seconds = time.perf_counter() - start
    _write_jsonl_gz(out_dir / DOCS_FILE, bench_docs)
    _write_jsonl_gz(out_dir / QUERIES_FILE, queries)
    write_qrels(out_dir / QRELS_FILE, queries, qrels)
    print(f"benchmark text: {len(queries)} queries {_counts(queries)} in {text_seconds:.1f} s", flush=True)

    changed = [d["id"] for d, c in zip(bench_docs, corpus_docs) if d["text"] != c["text"]]
    t0 = time.perf_counter()
    model = load_model(max_seq_length)
    doc_emb = np.load(CORPUS_DIR / EMBEDDINGS_FILE)  # float16, verified by load_corpus above
    fresh = embed_texts(model, [embedding_text(bench_docs[i]) for i in changed], batch_size)
    doc_emb[changed] = fresh.astype(np.float16)
    query_emb = embed_texts(model, [q["text"] for q in queries], batch_size)
    embed_seconds = time.perf_counter() - t0
    np.save(out_dir / DOC_EMBEDDINGS_FILE, doc_emb)
    np.save(out_dir / QUERY_EMBEDDINGS_FILE, query_emb.astype(np.float16))
    print(f"embedded {len(changed)} changed docs and {len(queries)} queries in {embed_seconds:.0f} s", flush=True)

    hashes = {name: sha256_of(out_dir / name) for name in DATA_FILES}
    (out_dir / CHECKSUMS_FILE).write_text("".join(f"{h}  {name}\n" for name, h in hashes.items()))
    corpus_manifest = json.loads((CORPUS_DIR / MANIFEST_FILE).read_text())
    _update_manifest(
        out_dir,
        n_docs=len(bench_docs),
        n_docs_with_sentence_cut=len(changed),
        n_queries=len(queries),
        n_judgments=sum(len(v) for v in qrels.values()),
        queries_per_kind_split=_counts(queries),
        n_queries_requested=N_QUERIES,
        rules={
            "max_parent_passages": MAX_PARENT_PASSAGES, "max_siblings": MAX_SIBLINGS,
            "bare_fraction": BARE_FRACTION, "min_bare_chars": MIN_BARE_CHARS,
            "test_fraction": TEST_FRACTION, "first_sentence_words": FIRST_SENTENCE_WORDS,
            "held_out_words": HELD_OUT_WORDS, "held_out_min_chars": HELD_OUT_MIN_CHARS,
            "held_out_min_sentences": HELD_OUT_MIN_SENTENCES,
        },
        source_corpus="datasets/cpython_docs",
        source_corpus_sha256=corpus_manifest.get("sha256", {}),
        model=corpus_manifest.get("model"),
        embedded_doc_text="title + ': ' + text (unchanged docs copied from cpython_docs)",
        embedded_query_text="query text",
        max_seq_length=max_seq_length,
        batch_size=batch_size,
        text_build_seconds=round(text_seconds, 1),
        embedding_seconds=round(embed_seconds, 1),
        build_date=_dt.date.today().isoformat(),
        python_version=corpus_manifest.get("python_version"),
        rebuild_command="make data  (= python -m course_lib.data all), or python -m course_lib.data retrieval",
        sha256=hashes,
    )
    _LOADED.pop(out_dir.resolve(), None)
    baseline = dense_baseline(load_retrieval_benchmark(out_dir))
    _update_manifest(out_dir, dense_minilm_baseline=baseline, total_build_seconds=round(time.perf_counter() - start, 1))
    for row in baseline:
        print("  dense MiniLM", row)
    print(f"benchmark -> {out_dir} in {time.perf_counter() - start:.0f} s")
    return out_dir


def verify_benchmark(folder: Path = BENCH_DIR) -> None:
    """Check every file listed in ``folder/SHA256SUMS``; raises ValueError naming a bad file."""
    try:
        _verified_dir(folder)
    except ValueError as err:
        raise ValueError(
            str(err).replace("datasets/cpython_docs", f"datasets/{Path(folder).name}")
            .replace("`make data` to rebuild", "`python -m course_lib.data retrieval` to rebuild")
        ) from None


def _load_embeddings(path: Path, n_rows: int) -> np.ndarray:
    emb = np.load(path).astype(np.float32)
    if emb.shape != (n_rows, EMBEDDING_DIM):
        raise ValueError(f"{path} has shape {emb.shape}, expected ({n_rows}, {EMBEDDING_DIM})")
    emb /= np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True).astype(np.float32)
    return emb


@dataclass
class RetrievalBenchmark:
    """The frozen relevance benchmark (load it with :func:`load_retrieval_benchmark`).

    Attributes
    ----------
    docs : list of ``{"id", "source", "title", "text"}``; ids 0..n-1 are the
        corpus ids and the rows of :meth:`doc_embeddings`.  A document a query
        sentence was cut from has that sentence removed.
    queries : list of ``{"qid", "text", "kind", "set", "split", "doc_id"}``;
        row i of :meth:`query_embeddings` embeds ``queries[i]``.
    qrels : qid -> {doc id: grade}; 2 = the item's own document, 1 = a sibling.
    folder : where the files live.

    The loaded object is shared (cached) by every caller in the process:
    copy before modifying.
    """

    docs: list[dict]
    queries: list[dict]
    qrels: dict[str, dict[int, int]]
    folder: Path = BENCH_DIR
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"RetrievalBenchmark({len(self.docs)} docs, {len(self.queries)} queries, folder={self.folder})"

    def doc_embeddings(self) -> np.ndarray:
        """float32 (n_docs, 384), unit rows; row i embeds ``title + ": " + text`` of doc i (a copy)."""
        if "docs" not in self._cache:
            self._cache["docs"] = _load_embeddings(self.folder / DOC_EMBEDDINGS_FILE, len(self.docs))
        return self._cache["docs"].copy()

    def query_embeddings(self) -> np.ndarray:
        """float32 (n_queries, 384), unit rows; row i embeds ``queries[i]["text"]`` (a copy)."""
        if "queries" not in self._cache:
            self._cache["queries"] = _load_embeddings(self.folder / QUERY_EMBEDDINGS_FILE, len(self.queries))
        return self._cache["queries"].copy()

    def select(self, set: str | None = None, split: str | None = None, kind: str | None = None) -> list[int]:
        """Indices (into ``queries`` and query-embedding rows) of the queries matching every filter.

        ``set`` in ("keyword", "paraphrase"), ``split`` in ("train", "test"),
        ``kind`` in ("identifier", "first_sentence", "held_out"); None means any.
        """
        for name, value, allowed in (("set", set, SETS), ("split", split, SPLITS), ("kind", kind, KINDS)):
            if value is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {allowed} or None, got {value!r}")
        return [
            i for i, q in enumerate(self.queries)
            if (set is None or q["set"] == set) and (split is None or q["split"] == split)
            and (kind is None or q["kind"] == kind)
        ]

    def qrels_of(self, indices: Sequence[int]) -> dict[str, dict[int, int]]:
        """The judgments of the queries at ``indices`` (e.g. from :meth:`select`)."""
        return {self.queries[i]["qid"]: self.qrels[self.queries[i]["qid"]] for i in indices}


def load_retrieval_benchmark(folder: Path = BENCH_DIR) -> RetrievalBenchmark:
    """The frozen benchmark, checksums verified on first load, cached per process.

    Returns
    -------
    RetrievalBenchmark with ``docs``, ``queries``, ``qrels``, ``doc_embeddings()``,
    ``query_embeddings()`` and ``select(set=, split=)``.
    """
    key = Path(folder).resolve()
    if key not in _LOADED:
        verify_benchmark(key)
        docs = _read_jsonl_gz(key / DOCS_FILE)
        queries = _read_jsonl_gz(key / QUERIES_FILE)
        qrels = read_qrels(key / QRELS_FILE)
        _LOADED[key] = RetrievalBenchmark(docs=docs, queries=queries, qrels=qrels, folder=key)
    return _LOADED[key]


# --------------------------------------------------------------------------
# 4. A reference point: dense MiniLM retrieval on the frozen embeddings
# --------------------------------------------------------------------------


def dense_baseline(bench: RetrievalBenchmark, k: int = 100) -> list[dict]:
    """Exact cosine search with the frozen MiniLM embeddings, scored per query set and split.

    Returns
    -------
    Rows ``{"set", "kind", "split", "queries", "ndcg@10", "recall@100", "mrr"}``
    per set, per paraphrase kind and for all queries (``"all"``), rounded to 4
    decimals.  The card reports them; a lesson that re-ranks or fuses should
    start from here.
    """
    from ..ir.metrics import evaluate
    from ..vec import exact_knn

    scores, ids = exact_knn(bench.query_embeddings(), bench.doc_embeddings(), k, metric="ip")
    run = {q["qid"]: {int(d): float(s) for d, s in zip(ids[i], scores[i])} for i, q in enumerate(bench.queries)}
    rows = []
    groups = [("keyword", None), ("paraphrase", None), ("paraphrase", "first_sentence"),
              ("paraphrase", "held_out"), (None, None)]
    for set_, kind in groups:
        for split in SPLITS:
            idx = bench.select(set=set_, split=split, kind=kind)
            sub = {bench.queries[i]["qid"]: run[bench.queries[i]["qid"]] for i in idx}
            means = evaluate(sub, bench.qrels_of(idx), ("ndcg@10", "recall@100", "mrr"))
            rows.append({"set": set_ or "all", "kind": kind or "all", "split": split, "queries": len(idx),
                         **{name: round(value, 4) for name, value in means.items()}})
    return rows


# --------------------------------------------------------------------------
# 5. Command line
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m course_lib.data retrieval [--out DIR]``: rebuild the frozen benchmark."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_lib.data retrieval", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help=f"output folder (default {BENCH_DIR})")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=256)
    args = parser.parse_args(argv)
    build_retrieval_benchmark(args.out, batch_size=args.batch_size, max_seq_length=args.max_seq_length)
