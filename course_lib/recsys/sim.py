"""A seeded recommendation world that knows the truth.

Real logs only tell you what users clicked among what you showed them.  This
simulator also knows *why*: every user and item has a latent preference vector,
so every lesson of chapter 05 can score a model against the true preferences,
not only against logged clicks (which carry the bias of the policy that logged
them).

The generative story, in order:

1. **Topics and latent vectors.**  ``n_topics`` centroids in ``R^dim``.  Each item
   belongs to one topic; its vector is the centroid plus noise.  Each user likes
   one to three topics; their vector mixes those centroids plus noise.
2. **Popularity.**  Items get Zipf popularity ``p_i`` (a random rank per item,
   ``course_lib.data.zipf_probs``); it enters the affinity as
   ``pop_weight * log(n_items * p_i)``, so popular items are chosen more often
   whatever their fit.
3. **Affinity** ``s(u, i) = aff_scale * <u, v_i> / sqrt(dim) + pop_bias_i``.
4. **Organic consumption** (the log a recommender is trained on): a user picks
   items with probability proportional to ``exp(s(u, i))``, without replacement
   (Gumbel top-k).  The last ``test_frac`` of each user's history is the test
   period; *cold* items are released only then, so a model trained on the first
   part has never seen them.
5. **Feedback on a slate** (what a shown recommendation gets): the examination
   model of position bias (Joachims et al. 2005; Craswell et al. 2008)::

        P(click at position k) = P(examine k) * P(relevant)
        P(examine k)           = (1 / k) ** eta            (k = 1, 2, ...)
        P(relevant | u, i)     = sigmoid(s(u, i) + offset)

   ``offset`` is solved at construction so the mean relevance of a random
   user-item pair equals ``base_rate``.
6. **Watch time** of a click: ``duration_i * Beta(kappa c, kappa (1 - c))`` with
   completion ``c(u, i) = sigmoid(completion_slope * <u, v_i> * aff_scale / sqrt(dim))``,
   so ``E[watch | click] = duration_i * c(u, i)`` exactly.
7. **Sessions with topic drift**: a session stays on a topic and switches with
   probability ``drift`` per step (to a topic drawn afresh from the user's taste,
   which may be the same one); each
   step picks an item of the current topic with probability proportional to
   ``exp(s(u, i))``.

Content features (``item_features``, ``user_features``) are noisy views of the
latent vectors plus the topic one-hot: what a cold-start model may use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.synthetic import zipf_probs
from ..validate import check_int, check_number

__all__ = [
    "Interactions",
    "Sessions",
    "World",
    "make_interactions",
    "make_sessions",
    "make_world",
    "examination_probs",
]


def _count(value: Any, name: str, low: int = 1) -> int:
    return check_int(value, name, low=low)


def _real(value: Any, name: str, low: float | None = None, high: float | None = None) -> float:
    return check_number(value, name, low=low, high=high)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def examination_probs(n_positions: int, eta: float = 1.0) -> np.ndarray:
    """Position-bias examination probabilities ``(1 / k) ** eta`` for k = 1..n_positions.

    Returns float64 of shape (n_positions,); position 1 is always examined.
    """
    n_positions = _count(n_positions, "n_positions")
    eta = _real(eta, "eta", low=0.0)
    return np.arange(1, n_positions + 1, dtype=np.float64) ** -eta


@dataclass
class World:
    """The true state of a simulated recommendation product (see the module docstring).

    Attributes
    ----------
    user_vecs : (n_users, dim) float32, latent preferences.
    item_vecs : (n_items, dim) float32, latent item vectors.
    item_topic : (n_items,) int64, each item's topic.
    user_topics : (n_users, n_topics) float64, each user's topic taste (rows sum to 1).
    item_pop : (n_items,) float64, Zipf popularity (sums to 1).
    pop_bias : (n_items,) float64, ``pop_weight * log(n_items * item_pop)``.
    is_cold : (n_items,) bool, released only in the test period.
    duration_s : (n_items,) float64, video length in seconds.
    item_features, user_features : content features (noisy latent vector ++ topic one-hot).
    offset : relevance logit offset solved so mean relevance = ``base_rate``.
    """

    user_vecs: np.ndarray
    item_vecs: np.ndarray
    item_topic: np.ndarray
    user_topics: np.ndarray
    item_pop: np.ndarray
    pop_bias: np.ndarray
    is_cold: np.ndarray
    duration_s: np.ndarray
    item_features: np.ndarray
    user_features: np.ndarray
    offset: float
    params: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.user_vecs.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_vecs.shape[0]

    @property
    def n_topics(self) -> int:
        return self.user_topics.shape[1]

    # -- the truth ---------------------------------------------------------
    def _users(self, users: Any) -> np.ndarray:
        u = np.asarray(users)
        if u.size and (not np.issubdtype(u.dtype, np.integer) or u.min() < 0 or u.max() >= self.n_users):
            raise ValueError(f"users must be integer ids in [0, {self.n_users}), got dtype {u.dtype}, "
                             f"range [{u.min() if u.size else '-'}, {u.max() if u.size else '-'}]")
        return u.astype(np.int64)

    def _items(self, items: Any) -> np.ndarray:
        i = np.asarray(items)
        if i.size and (not np.issubdtype(i.dtype, np.integer) or i.min() < 0 or i.max() >= self.n_items):
            raise ValueError(f"items must be integer ids in [0, {self.n_items}), got dtype {i.dtype}, "
                             f"range [{i.min() if i.size else '-'}, {i.max() if i.size else '-'}]")
        return i.astype(np.int64)

    def _match(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``aff_scale * <u, v> / sqrt(dim)`` for matching shapes (broadcast over a trailing slate axis)."""
        scale = self.params["aff_scale"] / np.sqrt(self.user_vecs.shape[1])
        U = self.user_vecs[users].astype(np.float64)
        V = self.item_vecs[items].astype(np.float64)
        if V.ndim == U.ndim + 1:  # users (n,), items (n, L): one slate per user
            return scale * np.einsum("nd,nld->nl", U, V)
        return scale * np.sum(U * V, axis=-1)

    def affinity(self, users: Any, items: Any) -> np.ndarray:
        """True affinity ``s(u, i)`` for aligned ``users`` (n,) and ``items`` (n,) or slates (n, L)."""
        u, i = self._users(users), self._items(items)
        return self._match(u, i) + self.pop_bias[i]

    def affinity_matrix(self, users: Any) -> np.ndarray:
        """True affinity of the given users to every item: float64 (len(users), n_items)."""
        u = self._users(users)
        scale = self.params["aff_scale"] / np.sqrt(self.user_vecs.shape[1])
        return scale * (self.user_vecs[u].astype(np.float64) @ self.item_vecs.T.astype(np.float64)) + self.pop_bias

    def relevance(self, users: Any, items: Any) -> np.ndarray:
        """``P(click | examined)`` for aligned users and items (or slates)."""
        return _sigmoid(self.affinity(users, items) + self.offset)

    def relevance_matrix(self, users: Any) -> np.ndarray:
        """``P(click | examined)`` of the given users for every item: float64 (len(users), n_items)."""
        return _sigmoid(self.affinity_matrix(users) + self.offset)

    def completion(self, users: Any, items: Any) -> np.ndarray:
        """Expected fraction of the video watched after a click, ``c(u, i)``."""
        u, i = self._users(users), self._items(items)
        return _sigmoid(self.params["completion_slope"] * self._match(u, i) + self.params["completion_offset"])

    def expected_watch_s(self, users: Any, items: Any) -> np.ndarray:
        """``E[watch seconds | click] = duration * c(u, i)``."""
        i = self._items(items)
        return self.duration_s[i] * self.completion(users, i)

    def true_top_k(self, users: Any, k: int, exclude: list[np.ndarray] | None = None,
                   include_cold: bool = True) -> np.ndarray:
        """The k most relevant items per user by the truth (ties by lower item id).

        ``exclude[j]`` lists items to leave out for ``users[j]`` (e.g. already consumed).
        Returns int64 (len(users), k).
        """
        u = self._users(users)
        k = _count(k, "k")
        if k > self.n_items:
            raise ValueError(f"k = {k} exceeds the number of items ({self.n_items})")
        S = self.affinity_matrix(u)
        if not include_cold:
            S[:, self.is_cold] = -np.inf
        if exclude is not None:
            if len(exclude) != len(u):
                raise ValueError(f"exclude must have one entry per user ({len(u)}), got {len(exclude)}")
            for row, items in enumerate(exclude):
                S[row, self._items(items)] = -np.inf
        order = np.lexsort((np.broadcast_to(np.arange(self.n_items), S.shape), -S), axis=1)
        return order[:, :k].astype(np.int64)

    # -- feedback on shown slates ---------------------------------------------
    def slate_feedback(self, users: Any, slates: Any, rng: np.random.Generator,
                       eta: float | None = None) -> dict[str, np.ndarray]:
        """Show each user a ranked slate; sample examination, clicks and watch time.

        Parameters
        ----------
        users : (n,) int user ids.
        slates : (n, L) int item ids, position 1 first.
        rng : the generator that draws the outcomes.
        eta : position-bias exponent (default: the world's).

        Returns
        -------
        dict with ``examined``, ``click`` (bool (n, L)), ``watch_s`` (float64 (n, L), 0 where no click),
        ``p_click`` (float64 (n, L): the true click probability, examination included).
        """
        u = self._users(users)
        S = self._items(slates)
        if S.ndim != 2 or S.shape[0] != u.shape[0]:
            raise ValueError(f"slates must be (n_users, L) with n_users = {u.shape[0]}, got shape {S.shape}")
        e = examination_probs(S.shape[1], self.params["eta"] if eta is None else eta)
        rel = self.relevance(u, S)
        examined = rng.random(S.shape) < e
        click = examined & (rng.random(S.shape) < rel)
        c = self.completion(u, S)
        kappa = self.params["kappa"]
        frac = rng.beta(kappa * c + 1e-9, kappa * (1 - c) + 1e-9)
        watch = np.where(click, self.duration_s[S] * frac, 0.0)
        return {"examined": examined, "click": click, "watch_s": watch, "p_click": e * rel}


def _solve_offset(world_logits: np.ndarray, base_rate: float) -> float:
    """Offset b with mean(sigmoid(logits + b)) = base_rate (bisection; the mean is increasing in b)."""
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _sigmoid(world_logits + mid).mean() < base_rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def make_world(n_users: int = 5_000, n_items: int = 2_000, *, dim: int = 16, n_topics: int = 20,
               zipf_s: float = 1.0, pop_weight: float = 0.5, aff_scale: float = 2.0, base_rate: float = 0.05,
               cold_frac: float = 0.1, eta: float = 1.0, completion_slope: float = 1.0,
               completion_offset: float = 0.0, kappa: float = 4.0, feature_noise: float = 0.5,
               seed: int = 0) -> World:
    """Draw a recommendation world (see the module docstring for the story).

    Sizes of the syllabus: ``small`` 5k users x 2k items; ``full`` 100k x 50k.
    Everything is a pure function of the arguments (``seed`` included).
    """
    n_users, n_items = _count(n_users, "n_users"), _count(n_items, "n_items", low=2)
    dim, n_topics = _count(dim, "dim"), _count(n_topics, "n_topics")
    zipf_s = _real(zipf_s, "zipf_s", low=0.0)
    pop_weight, aff_scale = _real(pop_weight, "pop_weight", low=0.0), _real(aff_scale, "aff_scale", low=0.0)
    base_rate = _real(base_rate, "base_rate", low=1e-6, high=1 - 1e-6)
    cold_frac = _real(cold_frac, "cold_frac", low=0.0, high=0.9)
    eta, kappa = _real(eta, "eta", low=0.0), _real(kappa, "kappa", low=1e-3)
    feature_noise = _real(feature_noise, "feature_noise", low=0.0)
    rng = np.random.default_rng(seed)

    centroids = rng.standard_normal((n_topics, dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids *= np.sqrt(dim) * 0.8
    item_topic = rng.integers(0, n_topics, n_items)
    item_vecs = centroids[item_topic] + 0.6 * rng.standard_normal((n_items, dim))

    user_topics = np.zeros((n_users, n_topics))
    n_liked = rng.integers(1, 4, n_users)
    for j in range(3):
        has = n_liked > j
        t = rng.integers(0, n_topics, n_users)
        w = rng.uniform(0.5, 1.0, n_users)
        user_topics[np.flatnonzero(has), t[has]] += w[has]
    user_topics /= user_topics.sum(axis=1, keepdims=True)
    user_vecs = (user_topics @ centroids) + 0.6 * rng.standard_normal((n_users, dim))
    user_vecs /= np.linalg.norm(user_vecs, axis=1, keepdims=True) / np.sqrt(dim)

    item_pop = zipf_probs(n_items, zipf_s)[rng.permutation(n_items)]
    pop_bias = pop_weight * np.log(n_items * item_pop)
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[rng.choice(n_items, int(round(cold_frac * n_items)), replace=False)] = True
    duration_s = np.exp(rng.normal(np.log(240.0), 0.6, n_items))

    one_hot = np.eye(n_topics)[item_topic]
    item_features = np.hstack([item_vecs / np.sqrt(dim) + feature_noise * rng.standard_normal((n_items, dim)) / np.sqrt(dim),
                               one_hot]).astype(np.float32)
    user_features = np.hstack([user_vecs / np.sqrt(dim) + feature_noise * rng.standard_normal((n_users, dim)) / np.sqrt(dim),
                               user_topics]).astype(np.float32)

    params = dict(dim=dim, n_topics=n_topics, zipf_s=zipf_s, pop_weight=pop_weight, aff_scale=aff_scale,
                  base_rate=base_rate, cold_frac=cold_frac, eta=eta, completion_slope=float(completion_slope),
                  completion_offset=float(completion_offset), kappa=kappa, feature_noise=feature_noise, seed=seed)
    world = World(user_vecs.astype(np.float32), item_vecs.astype(np.float32), item_topic.astype(np.int64),
                  user_topics, item_pop, pop_bias, is_cold, duration_s, item_features, user_features, 0.0, params)
    probe_u = rng.integers(0, n_users, 4_000)
    probe_i = rng.integers(0, n_items, 4_000)
    world.offset = _solve_offset(world.affinity(probe_u, probe_i), base_rate)
    return world


@dataclass
class Interactions:
    """An organic consumption log: one row per (user, item) event, time-ordered per user.

    ``user``, ``item`` int64; ``time`` float64 in [0, 1) (the test period is
    ``time >= 1 - test_frac``); ``train`` bool; ``watch_s`` float64 (seconds watched).
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    train: np.ndarray
    watch_s: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)`` of the train (True) or test (False) period."""
        m = self.train if train else ~self.train
        return self.user[m], self.item[m]

    def items_by_user(self, n_users: int, train: bool = True) -> list[np.ndarray]:
        """Per user, the items of one period (list of int64 arrays, length ``n_users``)."""
        u, i = self.split(train)
        order = np.argsort(u, kind="stable")
        bounds = np.searchsorted(u[order], np.arange(n_users + 1))
        return [i[order[bounds[j]:bounds[j + 1]]] for j in range(n_users)]


def _gumbel_top_k(logits: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k draws without replacement per row, with probability proportional to exp(logits) (Gumbel top-k)."""
    g = logits - np.log(-np.log(rng.random(logits.shape)))
    part = np.argpartition(-g, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(g, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def make_interactions(world: World, per_user: int = 20, *, test_frac: float = 0.2, seed: int = 0,
                      chunk: int = 1_000) -> Interactions:
    """Organic consumption: each user consumes ``per_user`` distinct items, the first
    ``1 - test_frac`` of them (the train period) among warm items only, the rest among all
    items (cold items are released in the test period).  Sampling is proportional to
    ``exp(s(u, i))``; watch time follows the world's watch model.  Rows are ordered by user,
    then time.
    """
    per_user = _count(per_user, "per_user")
    test_frac = _real(test_frac, "test_frac", low=0.0, high=0.9)
    n_test = int(round(per_user * test_frac))
    n_train = per_user - n_test
    if n_train > int((~world.is_cold).sum()) or per_user > world.n_items:
        raise ValueError(f"per_user = {per_user} exceeds the items available ({world.n_items}, "
                         f"{int((~world.is_cold).sum())} warm)")
    rng = np.random.default_rng(seed)
    users, items = [], []
    for start in range(0, world.n_users, chunk):
        u = np.arange(start, min(start + chunk, world.n_users))
        S = world.affinity_matrix(u)
        S_warm = np.where(world.is_cold, -np.inf, S)
        tr = _gumbel_top_k(S_warm, n_train, rng) if n_train else np.zeros((len(u), 0), np.int64)
        if n_test:
            np.put_along_axis(S, tr, -np.inf, axis=1)
            te = _gumbel_top_k(S, n_test, rng)
            tr = np.hstack([tr, te])
        users.append(np.repeat(u, per_user))
        items.append(tr.ravel())
    user = np.concatenate(users).astype(np.int64)
    item = np.concatenate(items).astype(np.int64)
    slot = np.tile(np.arange(per_user), world.n_users)
    jitter = rng.random(user.shape[0])
    time = np.where(slot < n_train, (slot + jitter) / max(n_train, 1) * (1 - test_frac),
                    1 - test_frac + (slot - n_train + jitter) / max(n_test, 1) * test_frac)
    c = world.completion(user, item)
    kappa = world.params["kappa"]
    watch = world.duration_s[item] * rng.beta(kappa * c + 1e-9, kappa * (1 - c) + 1e-9)
    return Interactions(user, item, time, slot < n_train, watch)


@dataclass
class Sessions:
    """Sessions with topic drift: ``items`` and ``topics`` int64 (n_sessions, length); ``user`` (n_sessions,)."""

    user: np.ndarray
    items: np.ndarray
    topics: np.ndarray


def make_sessions(world: World, n_sessions: int = 2_000, length: int = 20, *, drift: float = 0.15,
                  seed: int = 0) -> Sessions:
    """Sessions that stay on a topic and redraw it with probability ``drift`` per step.

    The start topic and every new topic are drawn from the user's taste
    (``world.user_topics``); each item is drawn among the current topic's warm
    items with probability proportional to ``exp(s(u, i))``.  The next item
    therefore depends on the *current* topic more than on the user's whole
    history: what a sequence model can exploit and a bag of all history cannot.
    """
    n_sessions, length = _count(n_sessions, "n_sessions"), _count(length, "length", low=2)
    drift = _real(drift, "drift", low=0.0, high=1.0)
    rng = np.random.default_rng(seed)
    user = rng.integers(0, world.n_users, n_sessions)
    S = world.affinity_matrix(user)
    S[:, world.is_cold] = -np.inf
    taste_cdf = np.cumsum(world.user_topics[user], axis=1)
    topics = np.empty((n_sessions, length), np.int64)
    items = np.empty((n_sessions, length), np.int64)

    def draw_topic(mask: np.ndarray) -> np.ndarray:
        r = rng.random(int(mask.sum()))[:, None]
        return np.minimum((taste_cdf[mask] < r).sum(axis=1), world.n_topics - 1)

    current = draw_topic(np.ones(n_sessions, bool))
    for t in range(length):
        if t:
            switch = rng.random(n_sessions) < drift
            if switch.any():
                current[switch] = draw_topic(switch)
        logits = np.where(world.item_topic[None, :] == current[:, None], S, -np.inf)
        empty = ~np.isfinite(logits).any(axis=1)  # a topic with no warm item: fall back to any warm item
        logits[empty] = S[empty]
        g = logits - np.log(-np.log(rng.random(logits.shape)))
        pick = np.argmax(g, axis=1)
        items[:, t], topics[:, t] = pick, world.item_topic[pick]
        current = world.item_topic[pick]
    return Sessions(user.astype(np.int64), items, topics)
