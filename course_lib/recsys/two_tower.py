"""Two-tower retrieval from scratch: towers, in-batch softmax with the logQ correction, baselines, recall.

A retrieval model must score a whole catalogue in milliseconds, so it is split
into two networks that never see each other's input: a **user tower**
``u = f(user)`` and an **item tower** ``v = g(item)``, scored by the inner
product ``s(u, i) = <u, v_i>``.  Item vectors are computed offline and put in a
maximum-inner-product index (lesson 02); only the user tower runs per request.

Training uses the other items of the mini-batch as negatives (**in-batch
softmax**).  A batch of logged (user, item) pairs holds items in proportion to
their frequency in the log, so popular items are negatives far more often than
a uniform sample would make them: the model learns to push them down.  Yi et
al. (RecSys 2019, "Sampling-Bias-Corrected Neural Modeling for Large Corpus
Item Recommendations") subtract the log of each item's sampling probability
from its logit, ``s^c(u, i) = s(u, i) - log q_i`` (the *logQ correction*), which
makes the sampled softmax an estimate of the full softmax over the catalogue.

This module holds:

* :func:`in_batch_softmax_loss` (the graded function of the exercise) and
  :func:`log_sampling_prob` (``log q_i`` from the training stream's counts);
* :class:`TwoTower` (id embedding + content-feature MLP in each tower, L2-normalised
  outputs) and :func:`train_two_tower`;
* baselines: :func:`popularity_scores` and :func:`mf_svds` (truncated SVD of the
  train interaction matrix, ``scipy.sparse.linalg.svds``);
* evaluation: :func:`top_k_excluding` (retrieval with each user's train items
  left out), :func:`recall_vs_sets` (recall@K against held-out items, equal to
  ``course_lib.ir.metrics.recall_at_k``) and :func:`overlap_at_k` (share of a
  true top-K that was retrieved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

__all__ = [
    "in_batch_softmax_loss",
    "log_sampling_prob",
    "TwoTower",
    "TrainHistory",
    "train_two_tower",
    "popularity_scores",
    "mf_svds",
    "interaction_matrix",
    "top_k_excluding",
    "drop_excluded",
    "recall_vs_sets",
    "overlap_at_k",
]


# ----------------------------------------------------------------------------- the loss


def in_batch_softmax_loss(u: Any, v: Any, logq: Any, temperature: float = 1.0, item_ids: Any = None) -> Any:
    """In-batch sampled softmax with the logQ correction (Yi et al., RecSys 2019).

    Row ``i`` of the batch is a logged pair (user i, item i).  Its positive is
    item i; the other ``B - 1`` items of the batch are its negatives.  The logits
    are ``u v^T / temperature - logq[None, :]``: every *column* j (item j, as a
    candidate) is shifted by ``-log q_j``, its log probability of being sampled
    into a batch.  The loss is the cross-entropy with the diagonal as labels,
    averaged over the batch.

    Duplicates: when the same item appears twice in a batch, row i would treat
    the other copy as a negative although it is the same item as its positive
    (an *accidental hit*).  Pass ``item_ids`` to mask those off-diagonal logits
    to ``-inf``; without ``item_ids`` they are treated as negatives, as in the
    paper's basic form.

    Parameters
    ----------
    u : torch tensor (B, d), user embeddings.
    v : torch tensor (B, d), embeddings of each row's positive item.
    logq : torch tensor (B,), log sampling probability of each in-batch item
        (zeros give the plain in-batch softmax).
    temperature : positive float; the inner product is divided by it.
    item_ids : optional int tensor (B,), item id of each row, to mask accidental hits.

    Returns
    -------
    Scalar tensor: mean cross-entropy (nats).
    """
    import torch
    import torch.nn.functional as F

    for name, t in (("u", u), ("v", v), ("logq", logq)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if u.ndim != 2 or v.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"u and v must both be (B, d) with the same shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    if logq.shape != (u.shape[0],):
        raise ValueError(f"logq must have shape (B,) = ({u.shape[0]},), got {tuple(logq.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    logits = u @ v.T / temperature - logq[None, :]
    if item_ids is not None:
        ids = torch.as_tensor(item_ids)
        if ids.shape != (u.shape[0],):
            raise ValueError(f"item_ids must have shape (B,) = ({u.shape[0]},), got {tuple(ids.shape)}")
        same = ids[:, None] == ids[None, :]
        same.fill_diagonal_(False)  # the positive itself stays
        logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(u.shape[0], device=u.device)
    return F.cross_entropy(logits, labels)


def log_sampling_prob(train_items: Any, n_items: int) -> np.ndarray:
    """``log q_i = log(count_i / N)``: log frequency of each item in the training stream.

    A batch drawn uniformly from the N logged pairs contains item i with
    probability proportional to ``count_i``, so that is the probability of
    item i being an in-batch negative.  Items never seen get ``log(0.5 / N)``
    (they never appear in a batch; the value only matters if they do).

    Returns float64 (n_items,).
    """
    items = np.asarray(train_items)
    if items.ndim != 1 or items.size == 0 or not np.issubdtype(items.dtype, np.integer):
        raise ValueError(f"train_items must be a non-empty 1-D integer array, "
                         f"got shape {items.shape}, dtype {items.dtype}")
    if items.min() < 0 or items.max() >= n_items:
        raise ValueError(f"item ids must lie in [0, {n_items}), got range [{items.min()}, {items.max()}]")
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    return np.log(np.maximum(counts, 0.5) / items.size)


# ----------------------------------------------------------------------------- the towers


def _mlp(d_in: int, hidden: int, d_out: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def _tower_class() -> type:
    from torch import nn

    class _Tower(nn.Module):
        """id embedding + MLP(content features), summed, then L2-normalised."""

        def __init__(self, n_ids: int, features: np.ndarray, dim: int, hidden: int) -> None:
            super().__init__()
            import torch

            self.register_buffer("features", torch.as_tensor(features, dtype=torch.float32))
            self.embedding = nn.Embedding(n_ids, dim)
            nn.init.normal_(self.embedding.weight, std=0.05)
            self.mlp = _mlp(features.shape[1], hidden, dim)

        def forward(self, ids: Any) -> Any:
            import torch.nn.functional as F

            return F.normalize(self.embedding(ids) + self.mlp(self.features[ids]), dim=-1)

    return _Tower


class TwoTower:
    """User tower and item tower: ``s(u, i) = <f(u), g(i)>`` with unit-norm outputs.

    Each tower embeds the id (a free vector per user / item: memorisation) and
    passes the content features through a one-hidden-layer MLP (generalisation,
    and the only signal for an item never seen in training); the sum is
    L2-normalised, so the score is a cosine in [-1, 1] and ``temperature``
    sets how peaked the softmax is.

    Parameters
    ----------
    user_features : (n_users, f_u) float array.
    item_features : (n_items, f_i) float array.
    dim : embedding dimension d.
    hidden : hidden units of each tower's MLP.
    seed : torch seed of the initial weights.
    """

    def __init__(self, user_features: np.ndarray, item_features: np.ndarray, dim: int = 32, hidden: int = 64,
                 seed: int = 0) -> None:
        import torch

        uf, itf = np.asarray(user_features), np.asarray(item_features)
        if uf.ndim != 2 or itf.ndim != 2:
            raise ValueError(f"features must be 2-D (n, f), got {uf.shape} and {itf.shape}")
        if dim < 1 or hidden < 1:
            raise ValueError(f"dim and hidden must be >= 1, got {dim}, {hidden}")
        torch.manual_seed(seed)
        Tower = _tower_class()
        self.user_tower = Tower(uf.shape[0], uf, dim, hidden)
        self.item_tower = Tower(itf.shape[0], itf, dim, hidden)
        self.dim = dim

    def parameters(self) -> list[Any]:
        return list(self.user_tower.parameters()) + list(self.item_tower.parameters())

    def user_embeddings(self, users: Any) -> np.ndarray:
        """float32 (len(users), d): what the serving path computes per request."""
        import torch

        with torch.no_grad():
            return self.user_tower(torch.as_tensor(np.asarray(users), dtype=torch.long)).numpy()

    def item_embeddings(self) -> np.ndarray:
        """float32 (n_items, d): the vectors exported to the ANN index."""
        import torch

        n = self.item_tower.embedding.num_embeddings
        with torch.no_grad():
            return self.item_tower(torch.arange(n)).numpy()


@dataclass
class TrainHistory:
    """Per epoch: mean training loss and whatever ``eval_fn`` returned."""

    loss: list[float] = field(default_factory=list)
    evals: list[Any] = field(default_factory=list)


def train_two_tower(model: TwoTower, users: np.ndarray, items: np.ndarray, *, logq: np.ndarray | None,
                    epochs: int = 5, batch_size: int = 512, lr: float = 0.01, temperature: float = 0.1,
                    seed: int = 0, eval_fn: Callable[[TwoTower], Any] | None = None) -> TrainHistory:
    """Train with in-batch softmax on logged (user, item) pairs; Adam, shuffled each epoch.

    ``logq`` (n_items,) is the log sampling probability per item (:func:`log_sampling_prob`),
    or ``None`` for the uncorrected loss.  ``eval_fn(model)`` runs after each epoch.
    """
    import torch

    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"users and items must be aligned 1-D arrays, got {users.shape} and {items.shape}")
    lq = torch.as_tensor(np.zeros(model.item_tower.embedding.num_embeddings) if logq is None else logq,
                         dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)  # fused: one kernel for all parameters (CPU too)
    rng = np.random.default_rng(seed)
    U, I = torch.as_tensor(users), torch.as_tensor(items)
    history = TrainHistory()
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(users)))
        total, n_batches = 0.0, 0
        for start in range(0, len(order) - batch_size + 1, batch_size):  # full batches only
            b = order[start:start + batch_size]
            loss = in_batch_softmax_loss(model.user_tower(U[b]), model.item_tower(I[b]), lq[I[b]],
                                         temperature=temperature, item_ids=I[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n_batches = total + loss.item(), n_batches + 1
        history.loss.append(total / max(n_batches, 1))
        if eval_fn is not None:
            history.evals.append(eval_fn(model))
    return history


# ----------------------------------------------------------------------------- baselines


def interaction_matrix(users: Any, items: Any, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary (n_users, n_items) CSR matrix with a 1 for every logged (user, item) pair."""
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"users and items must be aligned 1-D arrays, got {users.shape} and {items.shape}")
    X = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(n_users, n_items))
    X.data[:] = 1.0  # a pair logged twice still counts once
    return X


def popularity_scores(train_items: Any, n_items: int) -> np.ndarray:
    """Train-period count of each item: float64 (n_items,); every user gets the same ranking."""
    return np.bincount(np.asarray(train_items), minlength=n_items).astype(np.float64)


def mf_svds(X: sp.spmatrix, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Matrix factorisation by truncated SVD: ``X ~ (U S) V^T`` (PureSVD, Cremonesi et al. 2010).

    Returns user factors ``U * S`` (n_users, rank) and item factors ``V`` (n_items, rank),
    float64, so ``scores = user_factors @ item_factors.T`` is the rank-``rank`` reconstruction.
    """
    if not 1 <= rank < min(X.shape):
        raise ValueError(f"rank must lie in [1, {min(X.shape) - 1}], got {rank}")
    v0 = np.random.default_rng(seed).standard_normal(min(X.shape))
    U, s, Vt = svds(sp.csr_matrix(X, dtype=np.float64), k=rank, v0=v0)
    order = np.argsort(-s)
    return U[:, order] * s[order], Vt[order].T


# ----------------------------------------------------------------------------- evaluation


def top_k_excluding(user_vecs: np.ndarray, item_vecs: np.ndarray, k: int, exclude: Sequence[np.ndarray],
                    chunk: int = 1024) -> np.ndarray:
    """Exact top-k items by inner product per user, leaving out each user's ``exclude`` items.

    ``user_vecs`` (n, d), ``item_vecs`` (n_items, d); ``exclude[j]`` lists item ids for user j
    (already consumed). Ties are broken by the lower item id. Returns int64 (n, k), best first.
    """
    Uv, Iv = np.asarray(user_vecs, dtype=np.float64), np.asarray(item_vecs, dtype=np.float64)
    if Uv.ndim != 2 or Iv.ndim != 2 or Uv.shape[1] != Iv.shape[1]:
        raise ValueError(f"user_vecs (n, d) and item_vecs (n_items, d) must share d, got {Uv.shape} and {Iv.shape}")
    if len(exclude) != len(Uv):
        raise ValueError(f"exclude must have one entry per user ({len(Uv)}), got {len(exclude)}")
    if not 1 <= k <= Iv.shape[0]:
        raise ValueError(f"k must lie in [1, {Iv.shape[0]}], got {k}")
    out = np.empty((len(Uv), k), dtype=np.int64)
    for start in range(0, len(Uv), chunk):
        S = Uv[start:start + chunk] @ Iv.T
        for row, ex in enumerate(exclude[start:start + chunk]):
            S[row, np.asarray(ex, dtype=np.int64)] = -np.inf
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(S, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def drop_excluded(I: np.ndarray, exclude: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Keep, per row of an index's answer ``I`` (n, k'), the first ``k`` ids not in ``exclude[row]``.

    How a served index handles "already consumed": ask for ``k + max(len(exclude))`` results,
    then filter.  Missing slots (too few results) are ``-1``.  Returns int64 (n, k).
    """
    I = np.asarray(I)
    if I.ndim != 2 or len(exclude) != I.shape[0]:
        raise ValueError(f"I must be (n, k') with n = len(exclude) = {len(exclude)}, got {I.shape}")
    out = np.full((I.shape[0], k), -1, dtype=np.int64)
    for row, (ids, ex) in enumerate(zip(I, exclude)):
        keep = ids[(ids >= 0) & ~np.isin(ids, ex)][:k]
        out[row, :len(keep)] = keep
    return out


def recall_vs_sets(retrieved: np.ndarray, relevant: Sequence[np.ndarray], k: int) -> float:
    """Mean recall@k: ``|top-k ∩ relevant| / |relevant|`` over users with at least one relevant item.

    Equals ``course_lib.ir.metrics.recall_at_k`` (trec_eval ``recall.k``) on the same lists.
    """
    R = np.asarray(retrieved)
    if R.ndim != 2 or R.shape[1] < k or len(relevant) != R.shape[0]:
        raise ValueError(f"retrieved must be (n_users, >= {k}) with n_users = len(relevant) = {len(relevant)}, "
                         f"got {R.shape}")
    vals = [len(np.intersect1d(R[j, :k], rel)) / len(np.unique(rel)) for j, rel in enumerate(relevant) if len(rel)]
    return float(np.mean(vals)) if vals else 0.0


def overlap_at_k(retrieved: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-K (``truth`` (n, K)) found in the first K retrieved items, averaged over users."""
    R, T = np.asarray(retrieved), np.asarray(truth)
    if R.ndim != 2 or T.ndim != 2 or R.shape[0] != T.shape[0] or R.shape[1] < T.shape[1]:
        raise ValueError(f"retrieved (n, >= K) and truth (n, K) must align, got {R.shape} and {T.shape}")
    K = T.shape[1]
    return float(np.mean([len(np.intersect1d(R[j, :K], T[j])) / K for j in range(len(T))]))
