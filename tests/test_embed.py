"""Tests for course_lib.nn.embed: mean pooling, padding accounting, and the MiniLM encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.nn import embed


def _batch(seed: int = 0, B: int = 5, T: int = 9, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tok = torch.randn(B, T, d, generator=g)
    lengths = torch.tensor([T, 1, 4, 7, 2][:B])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    return tok, mask


def _loop_reference(tok: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Row by row in float64, over the real tokens only."""
    out = []
    for row, m in zip(tok.double().numpy(), mask.numpy()):
        mean = row[m.astype(bool)].mean(axis=0)
        out.append(mean / np.linalg.norm(mean))
    return np.array(out)


def test_mean_pool_equals_a_masked_loop():
    tok, mask = _batch()
    got = embed.mean_pool(tok, mask)
    assert got.shape == (5, 16) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), _loop_reference(tok, mask), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got.numpy(), axis=1), 1.0, atol=1e-6)


def test_mean_pool_ignores_whatever_sits_under_padding():
    tok, mask = _batch(1)
    noisy = tok.clone()
    noisy[mask == 0] = 1e3  # garbage in the padded positions
    torch.testing.assert_close(embed.mean_pool(noisy, mask), embed.mean_pool(tok, mask))


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.int32])
def test_mean_pool_accepts_any_mask_dtype(dtype):
    tok, mask = _batch(2)
    torch.testing.assert_close(embed.mean_pool(tok, mask.to(dtype)), embed.mean_pool(tok, mask))


def test_all_padding_row_gives_zeros_not_nan():
    tok, mask = _batch(3)
    mask[1] = 0
    out = embed.mean_pool(tok, mask)
    assert torch.isfinite(out).all() and torch.count_nonzero(out[1]) == 0


def test_mean_pool_does_not_modify_inputs():
    tok, mask = _batch(4)
    tok0, mask0 = tok.clone(), mask.clone()
    embed.mean_pool(tok, mask)
    assert torch.equal(tok, tok0) and torch.equal(mask, mask0)


@pytest.mark.parametrize(
    "tok, mask",
    [
        (np.zeros((2, 3, 4)), torch.ones(2, 3)),              # numpy, not a tensor
        (torch.zeros(2, 3), torch.ones(2, 3)),                # 2-D states
        (torch.zeros(2, 3, 4), torch.ones(2, 4)),             # mask of the wrong length
        (torch.zeros(2, 3, 4), torch.ones(3)),                # 1-D mask
    ],
)
def test_mean_pool_rejects_bad_shapes(tok, mask):
    with pytest.raises(ValueError):
        embed.mean_pool(tok, mask)


def test_padding_waste_by_hand():
    lengths = np.array([1, 3, 2, 4])
    # unsorted, batches [1, 3] and [2, 4]: 2*3 + 2*4 = 14 slots for 10 tokens
    assert embed.padding_waste(lengths, 2, sort_by_length=False) == pytest.approx(1 - 10 / 14)
    # sorted, batches [1, 2] and [3, 4]: 2*2 + 2*4 = 12 slots
    assert embed.padding_waste(lengths, 2, sort_by_length=True) == pytest.approx(1 - 10 / 12)
    assert embed.padding_waste(lengths, 1) == 0.0  # a batch of one is never padded
    # a last, shorter batch is padded only to its own longest member
    assert embed.padding_waste(np.array([5, 1, 1]), 2, sort_by_length=False) == pytest.approx(1 - 7 / 11)


def test_sorting_never_wastes_more(rng):
    lengths = rng.integers(5, 257, size=500)
    for bs in (2, 8, 32, 128):
        assert embed.padding_waste(lengths, bs, True) <= embed.padding_waste(lengths, bs, False)


def test_batch_order_is_stable():
    assert embed.batch_order([3, 1, 3, 1]).tolist() == [1, 3, 0, 2]
    assert embed.batch_order([3, 1], sort_by_length=False).tolist() == [0, 1]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_padding_waste_rejects_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        embed.padding_waste(np.array([1, 2]), bad)


@pytest.mark.parametrize("lengths", [np.array([]), np.array([1.5, 2.0]), np.array([[1, 2]]), np.array([0, 3])])
def test_padding_waste_rejects_bad_lengths(lengths):
    with pytest.raises(ValueError, match="lengths"):
        embed.padding_waste(lengths, 2)


def test_encode_rejects_a_bare_string():
    with pytest.raises(ValueError, match="sequence of str"):
        embed.encode("just one text")


@pytest.mark.slow
def test_encode_equals_sentence_transformers_and_the_frozen_embeddings():
    from course_lib.data import load_corpus, load_corpus_embeddings
    from course_lib.data.corpus import embedding_text, load_model

    docs = load_corpus(300)
    ids = [0, 5, 120, 299, 42, 7]  # long topic passages and short docstrings together
    texts = [embedding_text(docs[i]) for i in ids]
    ours, stats = embed.encode(texts, batch_size=4, return_stats=True)
    unsorted = embed.encode(texts, batch_size=4, sort_by_length=False)
    reference = load_model().encode(texts, batch_size=4, convert_to_numpy=True)
    frozen = load_corpus_embeddings(300)[ids]
    assert ours.shape == (6, 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.abs(ours - unsorted).max() < 1e-5  # padding changes nothing but rounding
    assert (ours * frozen).sum(1).min() > 0.9999  # the frozen copy is float16
    assert stats.n_batches == 2 and 0 <= stats.pad_fraction < 1
    lengths = embed.load_minilm().token_lengths(texts)
    assert stats.real_tokens == lengths.sum() and lengths.max() <= embed.MAX_SEQ_LENGTH
