"""A multi-stage ranking funnel: candidate sources, a light ranker, a heavy ranker, rules.

A catalogue is too large to run the best model on every item for every
request, so production recommenders (YouTube, Instagram, Pinterest) run a
*funnel*: cheap **candidate sources** propose a few hundred items, a **light
ranker** (a linear model) keeps the best K1, a **heavy ranker** (trees or a
deep net) orders those, and **business rules** shape the final slate.  Each
stage sees fewer items and may spend more per item.

The pieces, in order of the funnel:

1. Sources, all learned from the train period of the organic log only:
   :func:`interaction_matrix`, :func:`mf_embeddings` (truncated SVD of the
   user-item matrix, searched with a chapter-02 index), :func:`covisitation`
   (item-item co-occurrence counts) and the popularity order.
2. :func:`merge_candidates`: round-robin merge with per-source quotas.
3. :func:`ranking_features`: features of (user, item) pairs; they depend on the
   pair only, never on which other items are candidates, so an item gets the
   same score in the funnel and in an exhaustive ranking.
4. :class:`LogisticRanker`: the light ranker (Newton's method in numpy).
5. :func:`apply_rules`: no consumed items, at most ``max_per_topic`` per topic.
7. :class:`Funnel`: the stages chained for one request, and the exhaustive oracle.
6. :func:`ndcg_at_k_batch`: NDCG@k of many slates against graded truth.

No function here reads the simulator's latent vectors: the truth is used only
to evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..ann import FlatIndex
from .two_tower import interaction_matrix, mf_svds

__all__ = [
    "Funnel",
    "FunnelData",
    "LogisticRanker",
    "MLPRanker",
    "apply_rules",
    "build_funnel_data",
    "candidate_sources",
    "covisitation",
    "interaction_matrix",
    "merge_candidates",
    "mf_embeddings",
    "ndcg_at_k_batch",
    "pad_slates",
    "ranking_features",
    "split_quotas",
    "training_slates",
    "true_grades",
]

LIGHT_FEATURES = ("mf_score", "log_popularity", "log_covisitation", "content_cosine", "topic_share")
HEAVY_FEATURES = LIGHT_FEATURES + ("max_history_cosine", "top3_history_cosine")


# --------------------------------------------------------------------------- 1. merge with quotas


def _quota(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"quota of source {name!r} must be an int >= 0, got {value!r}")
    return int(value)


def merge_candidates(sources: dict[str, Any], quotas: dict[str, int]) -> tuple[np.ndarray, list[str]]:
    """Merge ranked candidate lists, round-robin, with a quota per source.

    The rule, deterministic for given inputs: in round r = 1, 2, ... each source,
    in the order of ``sources``, offers its r-th item.  An item already taken (by
    any source) or a source whose quota is filled is skipped; otherwise the item
    is taken and credited to that source.  So an item is counted once, under the
    first source that offered it, and a duplicate does not use up the second
    source's quota (that source simply moves on to its next item).  A source
    absent from ``quotas`` contributes nothing; unused quota is not given to
    other sources (no backfill), so at most ``sum(quotas.values())`` items come out.

    Parameters
    ----------
    sources : dict name -> ranked item ids (list or 1-d int array), best first.
    quotas : dict name -> the most items taken from that source (int >= 0).

    Returns
    -------
    ids : (n,) int64 merged item ids, in the order they were taken.
    origin : list of n source names, ``origin[j]`` the source credited with ``ids[j]``.
    """
    if not isinstance(sources, dict) or not isinstance(quotas, dict):
        raise ValueError(f"sources and quotas must be dicts, got {type(sources).__name__} and {type(quotas).__name__}")
    unknown = [name for name in quotas if name not in sources]
    if unknown:
        raise ValueError(f"quotas name unknown sources {unknown}; sources are {list(sources)}")
    limits = {name: _quota(q, name) for name, q in quotas.items()}
    lists = {}
    for name, items in sources.items():
        arr = np.asarray(items)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"source {name!r} must be a 1-d list of int ids, got shape {arr.shape}, dtype {arr.dtype}")
        lists[name] = arr.astype(np.int64)
    taken: dict[int, str] = {}  # insertion-ordered: item -> source
    counts = dict.fromkeys(lists, 0)
    for r in range(max((len(a) for a in lists.values()), default=0)):
        for name, arr in lists.items():
            if r < len(arr) and counts[name] < limits.get(name, 0) and int(arr[r]) not in taken:
                taken[int(arr[r])] = name
                counts[name] += 1
    return np.fromiter(taken.keys(), dtype=np.int64, count=len(taken)), list(taken.values())


def split_quotas(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Integer quotas summing to ``total`` in proportion to ``shares`` (largest remainders)."""
    names = list(shares)
    w = np.array([shares[n] for n in names], dtype=np.float64)
    if total < 0 or w.size == 0 or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"need total >= 0 and non-negative shares with a positive sum, got {total}, {shares}")
    raw = total * w / w.sum()
    q = np.floor(raw).astype(int)
    q[np.argsort(-(raw - q), kind="stable")[: total - q.sum()]] += 1
    return dict(zip(names, q.tolist()))


# --------------------------------------------------------------------------- 2. what the sources learn from


def mf_embeddings(X: sp.csr_matrix, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Matrix factorisation by truncated SVD, split symmetrically: ``X ~ (U sqrt(S)) (V sqrt(S))^T``.

    The SVD is lesson 05.01's :func:`~course_lib.recsys.two_tower.mf_svds` (user factors ``U S``,
    item factors ``V``); here the singular values are shared between the sides, so user and
    item vectors live on one scale for inner-product search.  Returns float32 (n_users, dim)
    and (n_items, dim); ``user @ item`` is the rank-``dim`` reconstruction.
    """
    US, V = mf_svds(X, dim, seed=seed)
    root = np.sqrt(np.linalg.norm(US, axis=0))        # U has unit columns, so |column j of U S| = s_j
    return (US / np.where(root > 0, root, 1.0)).astype(np.float32), (V * root).astype(np.float32)


def covisitation(X: sp.csr_matrix) -> sp.csr_matrix:
    """Item-item co-occurrence counts ``C = X^T X`` with a zero diagonal (n_items, n_items), csr.

    ``C[i, j]`` = how many users consumed both i and j.  A user's co-visitation
    score for item j is ``sum over their items h of C[h, j]``, i.e. ``X[u] @ C``.
    """
    C = (X.T @ X).tocsr().astype(np.float32)
    C.setdiag(0.0)
    C.eliminate_zeros()
    return C


@dataclass
class FunnelData:
    """Everything the funnel serves from, computed from the train log only.

    ``X`` (n_users, n_items) train interactions; ``user_emb`` / ``item_emb`` MF
    vectors; ``index`` a chapter-02 index over ``item_emb`` (inner product);
    ``C`` co-visitation counts; ``popularity`` train counts per item and
    ``pop_order`` items by descending count; ``profile`` (n_users, f) the mean
    content features of each user's history; ``item_features`` (n_items, f)
    content features; ``item_topic`` (n_items,); ``content_dim`` the leading
    columns of the features that are the (noisy) content vector, the rest being
    the topic one-hot.
    """

    X: sp.csr_matrix
    user_emb: np.ndarray
    item_emb: np.ndarray
    index: Any
    C: sp.csr_matrix
    popularity: np.ndarray
    pop_order: np.ndarray
    profile: np.ndarray
    item_features: np.ndarray
    item_topic: np.ndarray
    content_dim: int

    @property
    def n_items(self) -> int:
        return self.X.shape[1]

    def history(self, user: int) -> np.ndarray:
        """Items the user consumed in the train period (int32)."""
        return self.X.indices[self.X.indptr[user] : self.X.indptr[user + 1]]


def build_funnel_data(world: Any, log: Any, mf_dim: int = 32, seed: int = 0) -> FunnelData:
    """Fit the sources on the train period of ``log``; read only observable item data from ``world``.

    From the world it takes the content features (noisy latent vector plus topic
    one-hot, what a catalogue knows about its items) and the item topics; never
    the latent vectors, the affinity or the relevance.
    """
    X = interaction_matrix(*log.split(train=True), world.n_users, world.n_items)
    user_emb, item_emb = mf_embeddings(X, mf_dim, seed=seed)
    index = FlatIndex(mf_dim, metric="ip")
    index.add(item_emb)
    popularity = np.asarray(X.sum(axis=0)).ravel()
    pop_order = np.lexsort((np.arange(len(popularity)), -popularity))
    counts = np.maximum(np.diff(X.indptr), 1).astype(np.float32)[:, None]
    profile = np.asarray(X @ world.item_features) / counts
    return FunnelData(X, user_emb, item_emb, index, covisitation(X), popularity, pop_order,
                      profile.astype(np.float32), world.item_features.astype(np.float32),
                      world.item_topic.astype(np.int64), int(world.params["dim"]))


# --------------------------------------------------------------------------- 3. candidate sources


def candidate_sources(data: FunnelData, user: int, depth: int) -> dict[str, np.ndarray]:
    """The three ranked sources for one user, ``depth`` items each, consumed items left out.

    * ``ann``: nearest items to the user's MF vector by inner product (the index);
    * ``covis``: items most co-consumed with the user's history (``X[u] @ C``);
    * ``pop``: the most popular items overall.
    """
    seen = data.history(user)
    over = depth + len(seen)
    _, I = data.index.search(data.user_emb[user : user + 1], min(over, data.n_items))
    covis = np.asarray((data.X[user] @ data.C).todense()).ravel()
    covis[seen] = 0.0
    nz = np.flatnonzero(covis > 0)
    top = nz[np.lexsort((nz, -covis[nz]))][:depth]  # a total order (ties by id): depth d is a prefix of depth d' > d
    fresh = lambda ids: ids[~np.isin(ids, seen)][:depth]  # noqa: E731
    return {"ann": fresh(I[0]).astype(np.int64), "covis": top.astype(np.int64), "pop": fresh(data.pop_order).astype(np.int64)}


# --------------------------------------------------------------------------- 4. features


def ranking_features(data: FunnelData, users: np.ndarray, items: np.ndarray, heavy: bool = False) -> np.ndarray:
    """Features of (user, item) pairs: float32 (n, m, F) for users (n,) and items (n, m).

    Light (F = 5, :data:`LIGHT_FEATURES`): MF score, log(1 + train count),
    log(1 + co-visitation score), cosine of the user's mean content profile
    with the item's content vector, and the share of the user's history in the
    item's topic.  Heavy (F = 7, :data:`HEAVY_FEATURES`) adds the largest and
    the mean of the three largest cosines between the item and each item of
    the user's history: a user with several tastes is a blur as a mean
    profile but not item by item, and it costs ``len(history)`` dot products
    per item instead of one.  Every feature is a function of the pair alone.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if items.ndim != 2 or items.shape[0] != users.shape[0]:
        raise ValueError(f"items must be (n_users, m) with n_users = {users.shape[0]}, got shape {items.shape}")
    d = data.content_dim
    mf = np.einsum("nd,nmd->nm", data.user_emb[users], data.item_emb[items])
    pop = np.log1p(data.popularity[items])
    uniq, inverse = np.unique(users, return_inverse=True)  # one sparse row product per distinct user
    covis_rows = (data.X[uniq] @ data.C).toarray()[inverse]
    covis = np.log1p(np.take_along_axis(covis_rows, items, axis=1))
    prof = data.profile[users, :d]
    vecs = data.item_features[items, :d]
    cos = np.einsum("nd,nmd->nm", prof, vecs) / (
        np.linalg.norm(prof, axis=1)[:, None] * np.linalg.norm(vecs, axis=2) + 1e-9)
    share = np.take_along_axis(data.profile[users, d:], data.item_topic[items], axis=1)
    cols = [mf, pop, covis, cos, share]
    F = np.stack(cols, axis=-1).astype(np.float32)
    if heavy:
        unit = vecs / (np.linalg.norm(vecs, axis=2, keepdims=True) + 1e-9)
        extra = np.empty(items.shape + (2,), dtype=np.float32)
        for row, user in enumerate(users.tolist()):  # a loop over requests: each has its own history
            H = data.item_features[data.history(user), :d]
            if len(H) == 0:
                extra[row] = 0.0
                continue
            sims = unit[row] @ (H / (np.linalg.norm(H, axis=1, keepdims=True) + 1e-9)).T   # (m, h) cosines
            extra[row, :, 0] = sims.max(axis=1)
            extra[row, :, 1] = np.sort(sims, axis=1)[:, -3:].mean(axis=1)
        F = np.concatenate([F, extra], axis=-1)
    return F


def training_slates(data: FunnelData, users: np.ndarray, positives: list[np.ndarray], candidates: list[np.ndarray],
                    n_hard: int, n_random: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labelled items per user for training the rankers: positives, hard and random negatives.

    Positives are what each user consumed *after* the train period (``positives[j]``,
    the same count for every user).  Negatives: ``n_hard`` of the user's
    ``candidates`` (what the rankers will be asked to order) and ``n_random``
    uniform among all other unconsumed items (what an exhaustive ranking also
    sees).  Returns items int64 (n, m) and labels float64 (n, m) with
    m = n_positives + n_hard + n_random.
    """
    sizes = {len(p) for p in positives}
    if len(sizes) != 1 or len(positives) != len(users) or len(candidates) != len(users):
        raise ValueError(f"need one candidate list and an equal number of positives per user; "
                         f"got {len(users)} users, positive counts {sorted(sizes)}, {len(candidates)} candidate lists")
    rows = []
    for user, pos, cand in zip(np.asarray(users).tolist(), positives, candidates):
        blocked = np.zeros(data.n_items, dtype=bool)
        blocked[pos] = True
        blocked[data.history(user)] = True
        pool = cand[~blocked[cand]]
        hard = rng.choice(pool, min(n_hard, len(pool)), replace=False)
        blocked[hard] = True
        easy = rng.choice(np.flatnonzero(~blocked), n_random + n_hard - len(hard), replace=False)
        rows.append(np.concatenate([pos, hard, easy]))
    items = np.array(rows, dtype=np.int64)
    labels = np.zeros(items.shape)
    labels[:, : sizes.pop()] = 1.0
    return items, labels


# --------------------------------------------------------------------------- 5. the light ranker


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class LogisticRanker:
    """L2-regularised logistic regression, fitted by Newton's method (IRLS) in numpy.

    Minimises ``sum_i logloss(y_i, sigmoid(b + x_i . w)) + l2 / 2 * ||w||^2`` on
    standardised features (the intercept ``b`` is not penalised): the objective
    of scikit-learn's ``LogisticRegression(C=1 / l2)``.
    """

    l2: float = 1.0
    max_iter: int = 50
    tol: float = 1e-10
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None
    coef_: np.ndarray | None = None
    intercept_: float = 0.0
    n_iter_: int = 0

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticRanker:
        """X (n, F) features, y (n,) 0/1 labels."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or y.shape != (X.shape[0],) or not np.all((y == 0) | (y == 1)):
            raise ValueError(f"need X (n, F) and 0/1 labels y (n,), got {X.shape} and {y.shape}")
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0) + 1e-12
        Z = np.hstack([np.ones((len(X), 1)), (X - self.mean_) / self.scale_])
        w = np.zeros(Z.shape[1])
        penalty = np.full(Z.shape[1], self.l2)
        penalty[0] = 0.0
        for self.n_iter_ in range(1, self.max_iter + 1):
            p = _sigmoid(Z @ w)
            grad = Z.T @ (p - y) + penalty * w
            hess = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(penalty)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.max(np.abs(step)) < self.tol:
                break
        self.intercept_, self.coef_ = float(w[0]), w[1:]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits for X (..., F): the ranking score (float64, shape X.shape[:-1])."""
        if self.coef_ is None:
            raise ValueError("the ranker is not fitted: call fit(X, y) first")
        return ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1 | x) for X (..., F)."""
        return _sigmoid(self.decision_function(X))


class MLPRanker:
    """A heavy ranker written out in numpy: a ReLU network trained with Adam on binary cross-entropy.

    ``hidden`` layer widths; inputs are standardised with the training mean and
    standard deviation.  The loss on a batch of n rows with logits ``s`` is

        mean_i [softplus(s_i) - y_i s_i]  +  l2 / 2 * sum ||W||^2      (biases not penalised)

    and :meth:`gradients` returns it with the gradient of every parameter by the
    chain rule (backpropagation), so the training loop is visible line by line.
    """

    def __init__(self, hidden: tuple[int, ...] = (32, 16), *, lr: float = 3e-3, epochs: int = 8,
                 batch_size: int = 512, l2: float = 1e-4, seed: int = 0) -> None:
        self.hidden, self.lr, self.epochs, self.batch_size, self.l2, self.seed = hidden, lr, epochs, batch_size, l2, seed
        self.params: list[np.ndarray] = []
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def _init(self, n_features: int, rng: np.random.Generator) -> None:
        sizes = (n_features, *self.hidden, 1)
        self.params = []
        for a, b in zip(sizes, sizes[1:]):
            self.params += [rng.standard_normal((a, b)) * np.sqrt(2.0 / a), np.zeros(b)]   # He initialisation

    def _forward(self, Z: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        acts = [Z]
        h = Z
        n_layers = len(self.params) // 2
        for k in range(n_layers):
            h = h @ self.params[2 * k] + self.params[2 * k + 1]
            if k < n_layers - 1:
                h = np.maximum(h, 0.0)
            acts.append(h)
        return h[:, 0], acts

    def gradients(self, Z: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Loss and its gradient with respect to every parameter, on standardised inputs Z (n, F)."""
        s, acts = self._forward(Z)
        n = len(y)
        loss = float(np.mean(np.logaddexp(0.0, s) - y * s)) + self.l2 / 2 * sum(float(np.sum(W * W)) for W in self.params[::2])
        delta = ((_sigmoid(s) - y) / n)[:, None]                    # dL/ds, shape (n, 1)
        grads: list[np.ndarray] = [np.empty(0)] * len(self.params)
        for k in range(len(self.params) // 2 - 1, -1, -1):
            W = self.params[2 * k]
            grads[2 * k] = acts[k].T @ delta + self.l2 * W
            grads[2 * k + 1] = delta.sum(axis=0)
            if k:
                delta = (delta @ W.T) * (acts[k] > 0)               # back through the ReLU
        return loss, grads

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLPRanker:
        """X (n, F) features, y (n,) 0/1 labels; Adam (beta 0.9, 0.999) on shuffled mini-batches."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or y.shape != (X.shape[0],) or not np.all((y == 0) | (y == 1)):
            raise ValueError(f"need X (n, F) and 0/1 labels y (n,), got {X.shape} and {y.shape}")
        rng = np.random.default_rng(self.seed)
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0) + 1e-12
        Z = (X - self.mean_) / self.scale_
        self._init(Z.shape[1], rng)
        m = [np.zeros_like(p) for p in self.params]
        v = [np.zeros_like(p) for p in self.params]
        t = 0
        self.losses_: list[float] = []
        for _ in range(self.epochs):
            order = rng.permutation(len(Z))
            for start in range(0, len(Z), self.batch_size):
                idx = order[start:start + self.batch_size]
                loss, grads = self.gradients(Z[idx], y[idx])
                t += 1
                for i, g in enumerate(grads):
                    m[i] = 0.9 * m[i] + 0.1 * g
                    v[i] = 0.999 * v[i] + 0.001 * g * g
                    self.params[i] -= self.lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
                self.losses_.append(loss)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits for X (..., F) (float64, shape X.shape[:-1])."""
        if not self.params:
            raise ValueError("the ranker is not fitted: call fit(X, y) first")
        X = np.asarray(X, dtype=np.float64)
        s, _ = self._forward(((X - self.mean_) / self.scale_).reshape(-1, X.shape[-1]))
        return s.reshape(X.shape[:-1])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1 | x) for X (..., F)."""
        return _sigmoid(self.decision_function(X))


# --------------------------------------------------------------------------- 6. rules and evaluation


def apply_rules(items: np.ndarray, scores: np.ndarray, topics: np.ndarray, k: int = 10,
                max_per_topic: int = 2, exclude: np.ndarray | None = None) -> np.ndarray:
    """The final slate: the best ``k`` items by score, at most ``max_per_topic`` per topic.

    Walk the items by descending score (ties by lower id); drop excluded
    (e.g. consumed) items; keep an item unless its topic already has
    ``max_per_topic`` items in the slate; stop at ``k``.  The rule is hard: if
    too few items pass (a short candidate list from one or two topics), the
    slate is shorter than ``k`` rather than in breach of policy.

    Returns int64 ids, at most ``k``, best first.
    """
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if items.shape != scores.shape or items.ndim != 1:
        raise ValueError(f"items and scores must be 1-d of the same length, got {items.shape} and {scores.shape}")
    if max_per_topic < 1 or k < 1:
        raise ValueError(f"need k >= 1 and max_per_topic >= 1, got {k}, {max_per_topic}")
    order = items[np.lexsort((items, -scores))]
    if exclude is not None and len(exclude):
        order = order[~np.isin(order, exclude)]
    slate: list[int] = []
    per_topic: dict[int, int] = {}
    for item in order.tolist():
        t = int(topics[item])
        if per_topic.get(t, 0) < max_per_topic:
            slate.append(item)
            per_topic[t] = per_topic.get(t, 0) + 1
            if len(slate) == k:
                break
    return np.array(slate, dtype=np.int64)


def true_grades(relevance: np.ndarray, exclude: list[np.ndarray], bands: tuple[int, ...] = (10, 30, 100)) -> np.ndarray:
    """Graded truth from the simulator's relevance matrix (n_users, n_items): int8 grades.

    Excluded items (already consumed) get 0; of the rest, the true top ``bands[0]``
    get grade ``len(bands)``, the next up to ``bands[1]`` one less, and so on.
    """
    R = np.array(relevance, dtype=np.float64, copy=True)
    for row, items in enumerate(exclude):
        R[row, items] = -np.inf
    order = np.argsort(-R, axis=1, kind="stable")
    G = np.zeros(R.shape, dtype=np.int8)
    start = 0
    for grade, stop in zip(range(len(bands), 0, -1), bands):
        np.put_along_axis(G, order[:, start:stop], grade, axis=1)
        start = stop
    return G


def pad_slates(slates: list[np.ndarray], k: int = 10) -> np.ndarray:
    """Slates of possibly different lengths as one int64 array (n, k), padded with -1 (no item)."""
    out = np.full((len(slates), k), -1, dtype=np.int64)
    for row, slate in enumerate(slates):
        slate = np.asarray(slate, dtype=np.int64)[:k]
        out[row, : len(slate)] = slate
    return out


def ndcg_at_k_batch(slates: np.ndarray, grades: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k per user of ranked slates (n, >= k; -1 pads) against grades (n, n_items).

    Linear gain and ``1 / log2(rank + 1)`` discount, as trec_eval and
    ``course_lib.ir.metrics.ndcg_at_k``; the ideal is the best k grades.
    Returns float64 (n,), 0 where a user has no relevant item.
    """
    slates = np.asarray(slates)[:, :k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    valid = slates >= 0
    gains = np.where(valid, np.take_along_axis(grades, np.where(valid, slates, 0), axis=1), 0).astype(np.float64)
    dcg = gains @ disc[: gains.shape[1]]
    ideal = -np.sort(-grades.astype(np.float64), axis=1)[:, :k] @ disc[: min(k, grades.shape[1])]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


# --------------------------------------------------------------------------- 7. the funnel, per request


@dataclass
class Funnel:
    """One request through the funnel: sources -> merge -> light (keep K1) -> heavy -> rules.

    ``light`` scores :data:`LIGHT_FEATURES` (a :class:`LogisticRanker`);
    ``heavy`` is any model with ``decision_function`` on :data:`HEAVY_FEATURES`
    rows (here scikit-learn's ``HistGradientBoostingClassifier``).  ``shares``
    split the K0 candidate slots between the sources (:func:`split_quotas`);
    each source over-fetches ``overfetch`` times its quota so duplicates do not
    leave slots empty.
    """

    data: FunnelData
    light: LogisticRanker | None
    heavy: Any
    shares: dict[str, float]
    k: int = 10
    max_per_topic: int = 2
    overfetch: int = 2

    def retrieve(self, user: int, K0: int, sources: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, list[str]]:
        """Stage 1: at most K0 merged candidates and the source of each.

        ``sources`` may hold lists fetched earlier at a larger depth: each source's
        list at depth d is a prefix of its list at any larger depth, so the result
        is the same.
        """
        quotas = split_quotas(K0, self.shares)
        depth = self.overfetch * max(quotas.values())
        if sources is None:
            sources = candidate_sources(self.data, user, depth)
        return merge_candidates({name: lst[:depth] for name, lst in sources.items()}, quotas)

    def light_stage(self, user: int, items: np.ndarray, K1: int) -> np.ndarray:
        """Stage 2: the K1 best candidates by the light ranker (ties by lower id)."""
        s = self.light.decision_function(ranking_features(self.data, np.array([user]), items[None, :])[0])
        return items[np.lexsort((items, -s))[:K1]]

    def heavy_stage(self, user: int, items: np.ndarray) -> np.ndarray:
        """Stage 3: heavy-ranker scores of the survivors (float64, one per item)."""
        F = ranking_features(self.data, np.array([user]), items[None, :], heavy=True)[0]
        return np.asarray(self.heavy.decision_function(F), dtype=np.float64)

    def rules_stage(self, user: int, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Stage 4: the slate of k, no consumed item, at most ``max_per_topic`` per topic."""
        return apply_rules(items, scores, self.data.item_topic, self.k, self.max_per_topic,
                           exclude=self.data.history(user))

    def recommend(self, user: int, K0: int, K1: int) -> np.ndarray:
        """The whole funnel for one user: int64 slate of (at most) k items."""
        items, _ = self.retrieve(user, K0)
        kept = self.light_stage(user, items, K1)
        return self.rules_stage(user, kept, self.heavy_stage(user, kept))

    def exhaustive(self, user: int) -> np.ndarray:
        """The oracle the funnel is judged against: the heavy ranker on every item, then the rules."""
        items = np.arange(self.data.n_items, dtype=np.int64)
        return self.rules_stage(user, items, self.heavy_stage(user, items))
