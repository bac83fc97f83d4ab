"""Tests for the exercise of lesson 04.01 (the embedding pipeline): ``mean_pool``.

The task, as the exercise states it: ``mean_pool(token_embeddings, attention_mask)``
takes the encoder's token states, a torch tensor (B, T, d), and the attention
mask, a torch tensor (B, T) of 0/1 (int64, as the tokenizer returns it), and
returns a (B, d) tensor: per row, the mean of the states of the real tokens
(mask 1), L2-normalised, as sentence-transformers' ``Pooling`` (mean tokens) +
``Normalize`` compute it; a row without any real token gives zeros, not NaN.

torch is imported inside the tests, not at import time: the grader imports
every task module, and most lessons never touch torch.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_04_01 = "04_retrieval/01_embedding_pipeline"


def _data(seed: int, lengths: tuple[int, ...] = (9, 1, 4, 7, 2), T: int = 9, d: int = 24) -> tuple[Any, Any]:
    """Token states with a shared offset (as real ones have) and a right-padded int64 mask."""
    import torch

    g = torch.Generator().manual_seed(seed)
    states = torch.randn(len(lengths), T, d, generator=g) + 0.5 * torch.randn(d, generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).to(torch.int64)
    return states, mask


def _reference(states: Any, mask: Any) -> np.ndarray:
    """Row by row in float64 over the real tokens only: a different route from a masked batch sum."""
    out = []
    for row, m in zip(states.double().numpy(), mask.numpy().astype(bool)):
        if not m.any():
            out.append(np.zeros(row.shape[1]))
            continue
        mean = row[m].mean(axis=0)
        out.append(mean / np.linalg.norm(mean))
    return np.array(out)


def _as_array(out: Any) -> np.ndarray:
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    return np.asarray(out, dtype=np.float64)


def _call(fn: Callable[..., Any], states: Any, mask: Any) -> np.ndarray:
    out = _as_array(fn(states.clone(), mask.clone()))
    want = (states.shape[0], states.shape[2])
    if out.shape != want:
        raise TestFailure(f"expected shape (B, d) = {want}, got {out.shape}")
    return out


def _expect_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(got)):
        raise TestFailure(f"{what}: the result contains NaN or infinity")
    if not np.allclose(got, want, atol=1e-5):
        row = int(np.argmax(np.abs(got - want).max(axis=1)))
        cos = float(got[row] @ want[row] / max(np.linalg.norm(got[row]) * np.linalg.norm(want[row]), 1e-12))
        raise TestFailure(f"{what}: row {row} differs from the expected embedding (max |diff| "
                          f"{np.abs(got[row] - want[row]).max():.3g}, cosine {cos:.4f})")


pool = register(
    "retrieval.mean_pool",
    function="mean_pool",
    title="Mean pooling + L2 normalisation of MiniLM token states",
    lesson=LESSON_04_01,
    points=2,
    timeout_s=60,
)


@pool.test("returns one vector per row: shape (B, d)", hint="average over the token axis (dim=1 of a (B, T, d) tensor), not over the batch (dim=0) or the features (dim=-1)")
def _shape(fn: Callable[..., Any]) -> None:
    states, mask = _data(0)
    _call(fn, states, mask)


@pool.test("rows have unit L2 norm", hint="all-MiniLM-L6-v2 ends with a Normalize module: divide each pooled row by its own L2 norm (torch.nn.functional.normalize(x, p=2, dim=1))")
def _unit(fn: Callable[..., Any]) -> None:
    states, mask = _data(1, lengths=(9, 9, 9))
    out = _call(fn, states, mask)
    norms = np.linalg.norm(out, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-5):
        raise TestFailure(f"row norms are {np.round(norms, 4).tolist()}, expected 1.0")


@pool.test("no padding: equals the normalised mean of all tokens", hint="with every mask entry 1 the result is the mean over dim=1, then L2-normalised per row; check which dimension you average and which you normalise")
def _no_padding(fn: Callable[..., Any]) -> None:
    states, mask = _data(2, lengths=(9, 9, 9, 9))
    _expect_same(_call(fn, states, mask), _reference(states, mask), "without padding")


@pool.test("padded rows: only real tokens count", hint="multiply the states by the mask (mask.unsqueeze(-1)) before summing, and divide by the number of real tokens per row (mask.sum(dim=1)), not by T")
def _padded(fn: Callable[..., Any]) -> None:
    states, mask = _data(3)
    _expect_same(_call(fn, states, mask), _reference(states, mask), "with padding")


@pool.test("whatever sits under the padding is ignored", hint="padding positions have non-zero states: an unmasked mean (or max) lets them in. Zero them with the mask before summing")
def _garbage(fn: Callable[..., Any]) -> None:
    states, mask = _data(4)
    noisy = states.clone()
    noisy[mask == 0] = 50.0
    _expect_same(_call(fn, noisy, mask), _reference(states, mask), "with large values under the padding")


@pool.test("a row gives the same vector alone or inside a padded batch", hint="each row must be pooled and normalised on its own: normalise along dim=1 of the (B, d) result, never over the whole batch")
def _batch_independent(fn: Callable[..., Any]) -> None:
    states, mask = _data(5)
    together = _call(fn, states, mask)
    for row, n in enumerate(mask.sum(dim=1).tolist()):
        alone = _call(fn, states[row : row + 1, :n], mask[row : row + 1, :n])
        if not np.allclose(alone[0], together[row], atol=1e-5):
            raise TestFailure(f"row {row} pooled alone (length {n}, no padding) differs from the same row in the padded batch")


@pool.test("int64, bool and float masks all work", hint="the tokenizer returns an int64 mask: convert it to the states' dtype (mask.to(token_embeddings.dtype)) before multiplying and dividing")
def _mask_dtypes(fn: Callable[..., Any]) -> None:
    import torch

    states, mask = _data(6)
    want = _reference(states, mask)
    for dtype in (torch.int64, torch.bool, torch.float32):
        _expect_same(_call(fn, states, mask.to(dtype)), want, f"with a {dtype} mask")


@pool.test("a row with no real token gives zeros, not NaN; inputs are not modified", hint="clamp the token count (counts.clamp(min=1e-9)) and use F.normalize (it clamps the norm at 1e-12), as sentence-transformers does; avoid in-place operations such as token_embeddings *= mask")
def _edge(fn: Callable[..., Any]) -> None:
    states, mask = _data(7)
    mask[2] = 0
    states0, mask0 = states.clone(), mask.clone()
    out = _as_array(fn(states, mask))
    if not (states.equal(states0) and mask.equal(mask0)):
        raise TestFailure("token_embeddings or attention_mask was modified in place")
    if out.shape != (5, 24):
        raise TestFailure(f"expected shape (5, 24), got {out.shape}")
    if not np.all(np.isfinite(out[2])) or np.abs(out[2]).max() > 0:
        raise TestFailure(f"the all-padding row should be all zeros, got {out[2][:4]} ...")
    _expect_same(out, _reference(states0, mask0), "with an all-padding row")
