"""Next-item prediction inside a session: a GRU against a bag of recent items.

Within a session a user's intent moves (``make_sessions`` switches topic with
probability ``drift`` per step), so the *order* of what they just watched says
more about the next video than their whole history does.  Two models, trained
the same way (softmax over all items, item embeddings tied between input and
output):

* :class:`SessionModel` with ``kind="bag"``: the mean of the last ``m`` item
  embeddings (a bag of recent items, order ignored);
* :class:`SessionModel` with ``kind="gru"``: a GRU over the whole prefix
  (Hidasi et al., ICLR 2016, "Session-based Recommendations with Recurrent
  Neural Networks"), whose state can keep what the bag forgets.

:func:`train_session_model` fits either on session prefixes;
:func:`next_item_metrics` scores the true next item by recall@K and MRR.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["SessionModel", "next_item_metrics", "train_session_model"]


class SessionModel(nn.Module):
    """Scores every item as the next one after each prefix of a session.

    Parameters
    ----------
    n_items : number of item ids.
    dim : embedding (and GRU state) size.
    kind : ``"gru"`` or ``"bag"``.
    m : for ``"bag"``, how many recent items are averaged.
    """

    def __init__(self, n_items: int, dim: int = 32, kind: str = "gru", m: int = 3) -> None:
        super().__init__()
        if kind not in ("gru", "bag"):
            raise ValueError(f"kind must be 'gru' or 'bag', got {kind!r}")
        if m < 1:
            raise ValueError(f"m must be >= 1, got {m}")
        self.kind, self.m = kind, int(m)
        self.emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        self.gru = nn.GRU(dim, dim, batch_first=True) if kind == "gru" else None
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(n_items))   # item popularity

    def states(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) item ids -> (B, T, dim): the state after each prefix ``items[:, :t+1]``."""
        x = self.emb(items)
        if self.kind == "gru":
            h, _ = self.gru(x)
            return h
        c = torch.cumsum(x, dim=1)                          # mean of the last m: a windowed cumulative sum
        lagged = torch.zeros_like(c)
        lagged[:, self.m:] = c[:, :-self.m]
        count = torch.clamp(torch.arange(1, x.shape[1] + 1, device=x.device), max=self.m).to(x.dtype)
        return (c - lagged) / count[None, :, None]

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) item ids -> (B, T, n_items) logits of the next item after each prefix."""
        return self.proj(self.states(items)) @ self.emb.weight.T + self.bias


def _sessions(items: Any) -> torch.Tensor:
    a = np.asarray(items)
    if a.ndim != 2 or a.shape[1] < 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"items must be an int (n_sessions, length >= 2) array, got {a.dtype} {a.shape}")
    return torch.as_tensor(a, dtype=torch.long)


def train_session_model(model: SessionModel, items: Any, *, epochs: int = 5, batch: int = 128,
                        lr: float = 0.01, seed: int = 0) -> list[float]:
    """Fit ``model`` to predict ``items[:, t+1]`` from ``items[:, :t+1]`` (cross-entropy over all items).

    ``items`` (n_sessions, length) int.  Returns the mean training loss of each epoch (nats).
    """
    X = _sessions(items)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(X.shape[0], generator=gen)
        total, count = 0.0, 0
        for start in range(0, X.shape[0], batch):
            b = X[order[start:start + batch]]
            logits = model(b[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * b.shape[0]
            count += b.shape[0]
        losses.append(total / count)
    model.eval()
    return losses


@torch.no_grad()
def next_item_metrics(model: SessionModel, items: Any, k: int = 10, min_prefix: int = 1) -> dict[str, float]:
    """Recall@k and MRR of the true next item, over every prefix of length >= ``min_prefix``.

    With one relevant item per prefix, recall@k is the hit rate (was the next item in the
    top k?) and MRR is the mean of 1 / rank (rank 1 = best; every item is ranked, so no
    cut-off).  Returns ``{"recall": ..., "mrr": ..., "n": number of predictions}``.
    """
    X = _sessions(items)
    if not 1 <= min_prefix < X.shape[1]:
        raise ValueError(f"min_prefix must lie in [1, {X.shape[1] - 1}], got {min_prefix}")
    model.eval()
    logits = model(X[:, :-1])[:, min_prefix - 1:]                       # (B, T', n_items)
    target = X[:, min_prefix:]                                           # (B, T')
    true = logits.gather(-1, target[..., None])                          # (B, T', 1)
    rank = 1 + (logits > true).sum(-1)                                   # ties counted in the item's favour
    return {"recall": float((rank <= k).float().mean()), "mrr": float((1.0 / rank.float()).mean()),
            "n": int(rank.numel())}
