"""Feedback loops, off-policy evaluation and exploration, from scratch (lesson 05.05).

A recommender is trained on the log of what it showed.  Items it never shows get
no clicks, so the next model never shows them either: a **feedback loop**.  This
module holds the pieces the lesson builds to see the loop and to break it:

* **Off-policy estimators** of a target policy's value from a log collected by
  another (stochastic) policy with recorded propensities: IPS (Horvitz and
  Thompson 1952), SNIPS (Swaminathan and Joachims 2015), both with weight
  clipping, their standard errors, and the effective sample size (Kish 1965).
* **Exposure metrics**: the Gini coefficient of impressions per item and
  catalogue coverage.
* **Policies**: softmax over scores (a stochastic logging policy with exact
  propensities), epsilon-greedy, and Thompson sampling with a Beta-Bernoulli
  posterior per (user segment, item).
* **The closed loop**: each round a policy shows slates to users, the simulator
  (:mod:`course_lib.recsys.sim`) returns clicks with position bias, the log
  grows, the model retrains on it, and the next round uses it.

Conventions: ``r`` rewards (n,) in [0, 1] (clicks), ``pi_t`` the target
policy's probability of the *logged* action (n,), ``pi_log`` the logging
policy's propensity of that action (n,), all float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .sim import World, examination_probs

__all__ = [
    "LoopResult",
    "action_cdf",
    "closed_loop",
    "clipped_ips_moments",
    "coverage",
    "effective_sample_size",
    "epsilon_greedy_probs",
    "exposure_gini",
    "importance_weights",
    "ips_estimate",
    "ips_se",
    "naive_estimate",
    "sample_actions",
    "segment_of",
    "segment_relevance",
    "snips_estimate",
    "snips_se",
    "softmax_probs",
    "true_value",
]


# --------------------------------------------------------------------------- estimators
def _vector(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(a)))} non-finite values")
    return a


def importance_weights(pi_t: Any, pi_log: Any, clip: float | None = None) -> np.ndarray:
    """Importance weights ``w = pi_t / pi_log``, optionally clipped to ``min(w, clip)``.

    Parameters
    ----------
    pi_t : (n,) target-policy probability of each logged action, in [0, 1].
    pi_log : (n,) logging propensity of each logged action, in (0, 1].
    clip : the clipping threshold M > 0 (None: no clipping).

    Returns
    -------
    (n,) float64 weights.  A zero propensity is an error: the logged action could
    not have been logged, so the log was not produced by that policy.
    """
    pt, pl = _vector(pi_t, "pi_t"), _vector(pi_log, "pi_log")
    if pt.shape != pl.shape:
        raise ValueError(f"pi_t and pi_log must have the same shape, got {pt.shape} and {pl.shape}")
    if np.any(pl <= 0) or np.any(pl > 1):
        raise ValueError(f"pi_log must lie in (0, 1] (a logged action has positive propensity), "
                         f"got min {pl.min():.3g}, max {pl.max():.3g}")
    if np.any(pt < 0) or np.any(pt > 1):
        raise ValueError(f"pi_t must lie in [0, 1], got min {pt.min():.3g}, max {pt.max():.3g}")
    w = pt / pl
    if clip is not None:
        if not np.isfinite(clip) or clip <= 0:
            raise ValueError(f"clip must be a positive number, got {clip!r}")
        w = np.minimum(w, clip)
    return w


def _rewards(r: Any, n: int) -> np.ndarray:
    r = _vector(r, "r")
    if r.shape != (n,):
        raise ValueError(f"r must have shape ({n},) like the propensities, got {r.shape}")
    return r


def ips_estimate(r: Any, pi_t: Any, pi_log: Any, clip: float | None = None) -> float:
    r"""Inverse propensity scoring: :math:`\hat V_{IPS} = \frac1n \sum_j w_j r_j`.

    Unbiased when every action the target can take has positive logging
    propensity and ``clip`` is None; clipping trades bias (downwards, for
    non-negative rewards) for variance.
    """
    w = importance_weights(pi_t, pi_log, clip)
    return float(np.mean(w * _rewards(r, w.size)))


def ips_se(r: Any, pi_t: Any, pi_log: Any, clip: float | None = None) -> float:
    """Standard error of :func:`ips_estimate`: sample std of ``w r`` (ddof=1) / sqrt(n)."""
    w = importance_weights(pi_t, pi_log, clip)
    x = w * _rewards(r, w.size)
    return float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("inf")


def snips_estimate(r: Any, pi_t: Any, pi_log: Any, clip: float | None = None) -> float:
    r"""Self-normalised IPS: :math:`\hat V_{SNIPS} = \sum_j w_j r_j / \sum_j w_j`.

    Swaminathan and Joachims (NeurIPS 2015).  Invariant to scaling all weights,
    equal to the logged mean reward when ``pi_t == pi_log``, slightly biased
    (O(1/n)) but far less variable than IPS.  Undefined (ValueError) when every
    weight is zero: no logged action is one the target policy would take.
    """
    w = importance_weights(pi_t, pi_log, clip)
    r = _rewards(r, w.size)
    total = w.sum()
    if total <= 0:
        raise ValueError("SNIPS is undefined: all importance weights are zero "
                         "(the target policy gives probability 0 to every logged action)")
    return float(np.sum(w * r) / total)


def snips_se(r: Any, pi_t: Any, pi_log: Any, clip: float | None = None) -> float:
    r"""Delta-method standard error of SNIPS:
    :math:`\sqrt{\sum_j w_j^2 (r_j - \hat V)^2} / \sum_j w_j`."""
    v = snips_estimate(r, pi_t, pi_log, clip)
    w = importance_weights(pi_t, pi_log, clip)
    r = _rewards(r, w.size)
    return float(np.sqrt(np.sum(w**2 * (r - v) ** 2)) / w.sum())


def effective_sample_size(w: Any) -> float:
    r"""Kish's effective sample size :math:`(\sum w)^2 / \sum w^2` (n when all weights are equal)."""
    w = _vector(w, "w")
    if np.any(w < 0) or not np.any(w > 0):
        raise ValueError("weights must be non-negative with at least one positive weight")
    return float(w.sum() ** 2 / np.sum(w**2))


def naive_estimate(r: Any) -> float:
    """The logged mean reward: what a dashboard shows, the value of the *logging* policy."""
    return float(np.mean(_vector(r, "r")))


# --------------------------------------------------------------------------- exposure
def exposure_gini(exposure: Any) -> float:
    r"""Gini coefficient of impressions per item: 0 = every item equally exposed, -> 1 = one item gets all.

    With counts sorted ascending :math:`x_{(1)} \le \dots \le x_{(n)}`:
    :math:`G = \frac{2\sum_i i\,x_{(i)}}{n \sum_i x_i} - \frac{n+1}{n}`.
    Items never shown count (with zero), so a catalogue that is mostly dark has a high Gini.
    """
    x = np.sort(_vector(exposure, "exposure"))
    if x[0] < 0 or x[-1] <= 0:
        raise ValueError("exposure must be non-negative counts with at least one positive")
    n = x.size
    return float(2.0 * np.sum(np.arange(1, n + 1) * x) / (n * x.sum()) - (n + 1) / n)


def coverage(exposure: Any) -> float:
    """Catalogue coverage: the share of items shown at least once."""
    x = _vector(exposure, "exposure")
    return float(np.mean(x > 0))


# --------------------------------------------------------------------------- policies
def softmax_probs(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature``: (n, m) action probabilities (rows sum to 1)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def epsilon_greedy_probs(scores: np.ndarray, epsilon: float) -> np.ndarray:
    """Action probabilities of epsilon-greedy: ``1 - eps + eps/m`` on the arg-max, ``eps/m`` elsewhere."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon!r}")
    s = np.asarray(scores, dtype=np.float64)
    p = np.full(s.shape, epsilon / s.shape[1])
    p[np.arange(s.shape[0]), np.argmax(s, axis=1)] += 1 - epsilon
    return p


def action_cdf(probs: np.ndarray) -> np.ndarray:
    """The row-wise CDFs of ``probs`` (n_rows, m), row r shifted by r, flattened: (n_rows * m,) sorted.

    Compute it once per policy and pass it to :func:`sample_actions` for many draws.
    """
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]                                     # guard against rounding: each row ends at exactly 1
    return (cdf + np.arange(probs.shape[0])[:, None]).ravel()


def sample_actions(probs: np.ndarray, rows: np.ndarray, rng: np.random.Generator,
                   cdf: np.ndarray | None = None) -> np.ndarray:
    """One action per request: ``a_j ~ probs[rows[j]]`` (inverse CDF, all rows at once).

    ``probs`` (n_rows, m) rows summing to 1; ``cdf`` its :func:`action_cdf` if
    already computed.  Returns int64 (len(rows),).  The trick: row r's CDF
    shifted by r makes one sorted array, so a single ``searchsorted`` of
    ``r + U(0, 1)`` samples every request.
    """
    flat = action_cdf(probs) if cdf is None else cdf     # float64: ~1e-12 resolution for thousands of rows
    m = probs.shape[1]
    pos = np.searchsorted(flat, rows + rng.random(rows.size), side="right")
    return np.clip(pos - rows * m, 0, m - 1).astype(np.int64)


def clipped_ips_moments(pi_t: np.ndarray, pi_log: np.ndarray, rel: np.ndarray,
                        clip: float | None = None) -> tuple[float, float]:
    r"""Exact mean and per-sample variance of clipped IPS with Bernoulli rewards.

    ``pi_t``, ``pi_log``, ``rel`` (n_users, m): action probabilities and click
    probabilities of a population whose users arrive uniformly.  With
    :math:`\bar w = \min(\pi_t/\pi_{log}, M)`:
    :math:`E[\bar w r] = \mathrm{mean}_u \sum_a \pi_{log}\,\bar w\,\rho` and, since
    :math:`r^2 = r`, :math:`E[\bar w^2 r^2] = \mathrm{mean}_u \sum_a \pi_{log}\,\bar w^2\rho`.
    The estimator on n logged rows has variance ``var / n``; its bias is ``mean - V(pi_t)``.
    """
    w = pi_t / pi_log if clip is None else np.minimum(pi_t / pi_log, clip)
    m1 = float(np.mean(np.sum(pi_log * w * rel, axis=1)))
    m2 = float(np.mean(np.sum(pi_log * w**2 * rel, axis=1)))
    return m1, m2 - m1**2


def true_value(world: World, users: np.ndarray, probs: np.ndarray, position: int = 1) -> float:
    r"""Exact value of a single-item policy: :math:`V(\pi) = \frac1{|U|}\sum_u \sum_i \pi(i|u)\,e_k\,\rho(u, i)`.

    ``probs`` (len(users), n_items) are the policy's action probabilities, the
    item is shown at ``position`` (examination ``e_k = (1/k)^eta``) and
    ``rho = world.relevance``.  Expected clicks per user: no sampling involved.
    """
    e = examination_probs(position, world.params["eta"])[-1]
    return float(e * np.mean(np.sum(probs * world.relevance_matrix(users), axis=1)))


# --------------------------------------------------------------------------- the closed loop
def segment_of(world: World) -> np.ndarray:
    """Each user's segment: their favourite topic (arg-max of ``world.user_topics``), int64 (n_users,)."""
    return np.argmax(world.user_topics, axis=1).astype(np.int64)


def segment_relevance(world: World, chunk: int | None = None) -> np.ndarray:
    """Mean true relevance of every item within every segment: float64 (n_topics, n_items).

    Users are processed ``chunk`` at a time (default: about 20M matrix entries per chunk).
    """
    seg = segment_of(world)
    chunk = max(1, 20_000_000 // world.n_items) if chunk is None else chunk
    out = np.zeros((world.n_topics, world.n_items))
    for start in range(0, world.n_users, chunk):
        users = np.arange(start, min(start + chunk, world.n_users))
        onehot = np.zeros((world.n_topics, users.size))
        onehot[seg[users], np.arange(users.size)] = 1.0
        out += onehot @ world.relevance_matrix(users)       # per-segment sums as one matrix product
    return out / np.maximum(np.bincount(seg, minlength=world.n_topics), 1)[:, None]


@dataclass
class LoopResult:
    """What :func:`closed_loop` measured, one entry per round.

    ``value`` true expected clicks per user of the slates shown (sum over positions
    of examination x relevance: exact given the slates); ``clicks`` the realised
    clicks per user; ``gini`` and ``coverage`` of the cumulative exposure so far;
    ``model_value`` the true value of exploiting the model learned so far (greedy
    slates on its posterior means, exact over every user): what the log has taught;
    ``exposure`` (n_items,) the final impressions per item.
    """

    policy: str
    value: np.ndarray
    model_value: np.ndarray
    clicks: np.ndarray
    gini: np.ndarray
    coverage: np.ndarray
    exposure: np.ndarray


def _top_slates(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def closed_loop(world: World, policy: str = "greedy", *, rounds: int = 20, users_per_round: int = 1_000,
                slate_size: int = 5, epsilon: float = 0.1, prior: tuple[float, float] = (0.5, 9.5),
                warm_start: np.ndarray | None = None, draws: int = 6,
                seg_rel: np.ndarray | None = None, seed: int = 0) -> LoopResult:
    """Recommend, log, retrain, repeat.

    The model is a Beta-Bernoulli click-rate per (segment, item) (segment:
    :func:`segment_of`), ``Beta(a0 + clicks, b0 + views - clicks)`` where
    ``views`` counts impressions weighted by their examination probability (the
    position-bias correction, known in the simulator).  Each round
    ``users_per_round`` random users get a slate of ``slate_size`` items:

    * ``"greedy"``: the top items by posterior mean (pure exploitation);
    * ``"epsilon"``: greedy, but each slot shows a uniformly random item with probability ``epsilon``;
    * ``"thompson"``: the top items by a posterior *draw* instead of the mean: ``draws``
      independent draws per (segment, item) each round, each request ranked by one
      of them picked at random (batched Thompson sampling).

    Before any click all posterior means are equal; ``warm_start`` (n_segments,
    n_items) breaks the tie (e.g. organic popularity per segment), as a launch
    recommender would.

    Parameters
    ----------
    world : the simulator; rounds, users_per_round, slate_size : the loop's size.
    epsilon : exploration share of epsilon-greedy.  prior : ``(a0, b0)`` of the Beta prior.
    draws : posterior draws per round for Thompson sampling.
    seg_rel : :func:`segment_relevance` if already computed (it is the truth behind ``model_value``).
    seed : everything random in the loop (users, exploration, clicks) comes from it.

    Returns
    -------
    :class:`LoopResult`, one entry per round.
    """
    if policy not in ("greedy", "epsilon", "thompson"):
        raise ValueError(f"policy must be 'greedy', 'epsilon' or 'thompson', got {policy!r}")
    rng = np.random.default_rng(seed)
    seg = segment_of(world)
    n_seg, m = world.n_topics, world.n_items
    clicks = np.zeros((n_seg, m))
    views = np.zeros((n_seg, m))
    tie = np.zeros((n_seg, m)) if warm_start is None else 1e-6 * warm_start / max(float(np.max(warm_start)), 1e-12)
    e = examination_probs(slate_size, world.params["eta"])
    exposure = np.zeros(m)
    a0, b0 = prior
    out = {k: np.zeros(rounds) for k in ("value", "model_value", "clicks", "gini", "coverage")}
    share = np.bincount(seg, minlength=n_seg) / world.n_users
    seg_rel = segment_relevance(world) if seg_rel is None else seg_rel
    for t in range(rounds):
        users = rng.integers(0, world.n_users, users_per_round)
        s = seg[users]
        mean = (a0 + clicks) / (a0 + b0 + np.maximum(views, clicks)) + tie   # (n_seg, m) posterior means
        if policy == "thompson":  # one posterior draw per (segment, item) for each of `draws` request batches
            theta = rng.beta(a0 + clicks, b0 + np.maximum(views - clicks, 0.0), size=(draws, n_seg, m)) + tie
            pick = rng.integers(0, draws, s.size)                  # which draw ranks each request
            slates = _top_slates(theta.reshape(draws * n_seg, m), slate_size)[pick * n_seg + s]
        else:  # the model scores depend on the segment only: rank once per segment
            slates = _top_slates(mean, slate_size)[s]
        if policy == "epsilon":
            explore = rng.random(slates.shape) < epsilon
            slates = np.where(explore, rng.integers(0, m, slates.shape), slates)
        fb = world.slate_feedback(users, slates, rng)
        cell = (s[:, None] * m + slates).ravel()          # flat (segment, item) index of every impression
        clicks += np.bincount(cell, fb["click"].ravel(), minlength=n_seg * m).reshape(n_seg, m)
        views += np.bincount(cell, np.broadcast_to(e, slates.shape).ravel(), minlength=n_seg * m).reshape(n_seg, m)
        exposure += np.bincount(slates.ravel(), minlength=m)
        out["value"][t] = fb["p_click"].sum(axis=1).mean()
        out["clicks"][t] = fb["click"].sum(axis=1).mean()
        best = _top_slates((a0 + clicks) / (a0 + b0 + np.maximum(views, clicks)) + tie, slate_size)
        out["model_value"][t] = float(share @ (np.take_along_axis(seg_rel, best, axis=1) @ e))
        out["gini"][t] = exposure_gini(exposure)
        out["coverage"][t] = coverage(exposure)
    return LoopResult(policy, out["value"], out["model_value"], out["clicks"], out["gini"], out["coverage"], exposure)
