"""Multi-task learning from scratch: the MMoE synthetic tasks, shared-bottom and MMoE, uncertainty
weighting, PCGrad, a gradient-conflict monitor and a negative-transfer detector.

A ranking model in production predicts several things at once (click, watch
time, like, share) from one input.  Sharing a network between tasks saves
serving cost and lets a data-poor task borrow from a data-rich one, but two
tasks that want different things from the shared layers can make each other
worse (*negative transfer*).  This module holds the pieces lesson 05.04 builds
and measures:

* :func:`make_mtl_tasks`: the synthetic generator of Ma et al. (KDD 2018,
  "Modeling Task Relationships in Multi-task Learning with Multi-gate
  Mixture-of-Experts", section 3.2), whose task correlation ``rho`` is known,
  and :func:`label_correlation`, the closed form of the labels' Pearson
  correlation for it (a Hermite-series reference);
* :class:`SharedBottom`, :class:`MMoE` and :class:`SingleTask` (torch modules
  with one output column per task);
* :func:`pcgrad` (Yu et al., NeurIPS 2020), :func:`grad_cosine`,
  :class:`UncertaintyWeights` (Kendall, Gal and Cipolla, CVPR 2018);
* :func:`train_mtl`, a compact training loop that records per-task losses and
  the cosine between the task gradients, and :func:`negative_transfer`, a
  paired-bootstrap test of "this task is worse than its single-task baseline".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # torch is a core dependency; keep the import error readable if it is missing
    import torch
    from torch import nn
except ImportError as err:  # pragma: no cover
    raise ImportError("course_lib.recsys.mtl needs torch") from err


# --------------------------------------------------------------------------- the generator


@dataclass(frozen=True)
class MTLTasks:
    """Two regression tasks with a known correlation (Ma et al. 2018, section 3.2).

    Attributes
    ----------
    X : (n, d) float32 inputs, i.i.d. N(0, I).
    Y : (n, 2) float32 labels, one column per task.
    w : (2, d) the task weight vectors ``w1 = c u1``, ``w2 = c (rho u1 + sqrt(1 - rho^2) u2)``.
    alpha, beta : (m,) the shared parameters of the sine terms.
    rho : the cosine of ``w1`` and ``w2``.
    c : the scale constant.
    noise_std : (2,) standard deviation of each task's label noise.
    """

    X: np.ndarray
    Y: np.ndarray
    w: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    rho: float
    c: float
    noise_std: np.ndarray

    def split(self, n_train: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``((X_train, Y_train), (X_val, Y_val))``: the first ``n_train`` rows and the rest."""
        if not 0 < n_train < len(self.X):
            raise ValueError(f"n_train must be in (0, {len(self.X)}), got {n_train}")
        return (self.X[:n_train], self.Y[:n_train]), (self.X[n_train:], self.Y[n_train:])


def make_mtl_tasks(
    n: int,
    rho: float,
    rng: np.random.Generator,
    *,
    d: int = 100,
    c: float = 1.0,
    m: int = 10,
    alpha_std: float = 1.0,
    noise_std: float | tuple[float, float] = 0.1,
) -> MTLTasks:
    """Draw ``n`` examples of the two MMoE-paper tasks whose weight vectors have cosine ``rho``.

    The recipe of Ma et al. (2018), section 3.2, step by step:

    1. two orthogonal unit vectors ``u1, u2`` in ``R^d`` (Gram-Schmidt on two Gaussian draws);
    2. ``w1 = c u1``, ``w2 = c (rho u1 + sqrt(1 - rho^2) u2)``, so ``cos(w1, w2) = rho``;
    3. ``x ~ N(0, I_d)``;
    4. ``y_i = w_i^T x + sum_j sin(alpha_j w_i^T x + beta_j) + eps_i`` with the *same*
       ``alpha_j ~ N(0, alpha_std^2)``, ``beta_j ~ N(0, 1)`` for both tasks and ``eps_i ~ N(0, noise_std_i^2)``
       (the paper uses variance 0.01, i.e. ``noise_std = 0.1``).

    The rng is consumed in the same order whatever ``rho`` is, so two calls with
    the same seed and different ``rho`` share ``u1, u2, alpha, beta, x``: task 1
    is then the same task, and only task 2 turns away from it.

    Parameters
    ----------
    n : number of examples.
    rho : cosine of the two weight vectors, in [-1, 1].
    rng : numpy Generator.
    d : input dimension (100 in the paper).
    c : scale of the weight vectors.
    m : number of sine terms (10 in the paper).
    alpha_std : standard deviation of the ``alpha_j`` (larger: wigglier, harder labels).
    noise_std : label noise standard deviation, one value or one per task.

    Returns
    -------
    MTLTasks with ``X`` (n, d) and ``Y`` (n, 2), float32.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not -1.0 <= float(rho) <= 1.0:
        raise ValueError(f"rho is a cosine and must be in [-1, 1], got {rho!r}")
    if d < 2:
        raise ValueError(f"d must be >= 2 to hold two orthogonal vectors, got {d}")
    if m < 0 or c <= 0:
        raise ValueError(f"need m >= 0 and c > 0, got m={m}, c={c}")
    noise = np.broadcast_to(np.asarray(noise_std, dtype=np.float64), (2,)).copy()
    if np.any(noise < 0):
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    a, b = rng.standard_normal(d), rng.standard_normal(d)
    u1 = a / np.linalg.norm(a)
    u2 = b - (b @ u1) * u1  # Gram-Schmidt: remove the u1 component
    u2 /= np.linalg.norm(u2)
    alpha, beta = alpha_std * rng.standard_normal(m), rng.standard_normal(m)
    X = rng.standard_normal((n, d))
    eps = rng.standard_normal((n, 2)) * noise
    rho = float(rho)
    w = np.stack([c * u1, c * (rho * u1 + math.sqrt(max(0.0, 1.0 - rho * rho)) * u2)])
    z = X @ w.T  # (n, 2): w_i^T x
    Y = z + np.sin(z[:, :, None] * alpha + beta).sum(axis=2) + eps
    return MTLTasks(X.astype(np.float32), Y.astype(np.float32), w, alpha, beta, rho, float(c), noise)


def label_correlation(tasks: MTLTasks, rho: float | None = None, n_terms: int = 80) -> float:
    """The Pearson correlation of the two labels in closed form (Hermite series).

    Each label is ``f(z_i) + eps_i`` with ``z_i = w_i^T x / c ~ N(0, 1)``,
    ``corr(z_1, z_2) = rho`` and ``f(z) = c z + sum_j sin(alpha_j c z + beta_j)``.
    Mehler's formula gives ``cov(f(z1), f(z2)) = sum_{k>=1} mu_k^2 rho^k / k!``
    with ``mu_k = E[f^(k)(z)]``; for the sine terms
    ``E[d^k/dz^k sin(a z + b)] = a^k exp(-a^2 / 2) sin(b + k pi / 2)``.
    So the labels' correlation is ``rho`` only when ``f`` is linear: the sines
    make it smaller than ``rho`` in magnitude.

    Parameters
    ----------
    tasks : the generator's output (its ``alpha``, ``beta``, ``c``, ``noise_std`` are used).
    rho : the cosine to evaluate at (default ``tasks.rho``).
    n_terms : terms of the series (it converges factorially fast).

    Returns
    -------
    float, the population Pearson correlation of ``Y[:, 0]`` and ``Y[:, 1]``.
    """
    r = tasks.rho if rho is None else float(rho)
    a = tasks.alpha * tasks.c
    mu = np.empty(n_terms)
    for k in range(1, n_terms + 1):
        mu[k - 1] = np.sum(a**k * np.exp(-(a**2) / 2) * np.sin(tasks.beta + k * np.pi / 2))
    mu[0] += tasks.c  # the linear term's first derivative
    ks = np.arange(1, n_terms + 1)
    weights = mu**2 / np.exp([math.lgamma(k + 1) for k in ks])
    cov = float(np.sum(weights * r**ks))
    var_f = float(np.sum(weights))
    v1, v2 = var_f + tasks.noise_std[0] ** 2, var_f + tasks.noise_std[1] ** 2
    return cov / math.sqrt(v1 * v2)


# --------------------------------------------------------------------------- the models


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class SharedBottom(nn.Module):
    """One shared ReLU layer, then one small tower per task (Caruana 1997).

    ``forward(x)`` maps (n, d) to (n, n_tasks).
    """

    def __init__(self, d: int, n_tasks: int = 2, bottom: int = 32, tower: int = 8) -> None:
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(d, bottom), nn.ReLU())
        self.towers = nn.ModuleList(_mlp(bottom, tower, 1) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bottom(x)
        return torch.cat([t(h) for t in self.towers], dim=1)


class MMoE(nn.Module):
    """Multi-gate mixture of experts (Ma et al. 2018).

    ``n_experts`` one-layer ReLU experts are shared; task ``k`` mixes them with
    its own softmax gate ``g_k(x) = softmax(W_k x)`` and feeds the mix to its tower:
    ``y_k = tower_k(sum_e g_k(x)_e f_e(x))``.  ``forward(x)`` maps (n, d) to
    (n, n_tasks); :meth:`gates` returns the gate weights (n_tasks, n, n_experts).
    """

    def __init__(self, d: int, n_tasks: int = 2, n_experts: int = 4, expert: int = 16, tower: int = 8) -> None:
        super().__init__()
        self.experts = nn.Linear(d, n_experts * expert)  # all experts in one matmul
        self.n_experts, self.expert = n_experts, expert
        self.gate = nn.ModuleList(nn.Linear(d, n_experts) for _ in range(n_tasks))
        self.towers = nn.ModuleList(_mlp(expert, tower, 1) for _ in range(n_tasks))

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(g(x), dim=1) for g in self.gate])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.experts(x)).view(len(x), self.n_experts, self.expert)  # (n, E, h)
        out = []
        for gate, tower in zip(self.gates(x), self.towers):
            out.append(tower(torch.einsum("ne,neh->nh", gate, f)))
        return torch.cat(out, dim=1)


class SingleTask(nn.Module):
    """Single-task baselines: ``n_tasks`` *independent* networks of the shared-bottom shape, (n, d) -> (n, n_tasks).

    Network ``k`` (ReLU layer of ``bottom`` units, tower of ``tower`` units) sees only
    task ``k``'s loss: no weight is shared, so training them together on the sum of the
    task losses (Adam is per-parameter) is the same as training each alone on the same
    minibatches, at the cost of one batched matmul instead of ``n_tasks`` loops.
    """

    def __init__(self, d: int, n_tasks: int = 1, bottom: int = 32, tower: int = 8) -> None:
        super().__init__()
        sizes = [(d, bottom), (bottom, tower), (tower, 1)]
        self.W, self.b = nn.ParameterList(), nn.ParameterList()
        for d_in, d_out in sizes:
            fresh = [nn.Linear(d_in, d_out) for _ in range(n_tasks)]  # torch's default init, one per network
            self.W.append(nn.Parameter(torch.stack([f.weight.detach().T for f in fresh])))  # (T, in, out)
            self.b.append(nn.Parameter(torch.stack([f.bias.detach() for f in fresh])[:, None, :]))  # (T, 1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0)  # (1, n, d), broadcast over the T networks
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            h = torch.matmul(h, W) + b  # (T, n, out)
            if i < len(self.W) - 1:
                h = torch.relu(h)
        return h[:, :, 0].T  # (n, T)


# --------------------------------------------------------------------------- gradients


def _as_grad_matrix(grads: Any) -> torch.Tensor:
    g = torch.as_tensor(grads)
    if g.ndim != 2 or g.shape[0] < 1:
        raise ValueError(
            f"expected a (n_tasks, n_params) matrix of flattened task gradients, got shape {tuple(g.shape)}"
        )
    if not torch.is_floating_point(g):
        g = g.to(torch.float64)
    return g


def pcgrad(grads: Any, rng: np.random.Generator | None = None) -> Any:
    """Projecting conflicting gradients (Yu et al., NeurIPS 2020, Algorithm 1).

    For each task ``i`` take ``g_i``; for every other task ``j`` (in random order)
    if ``g_i^PC . g_j < 0`` remove the conflicting component,
    ``g_i^PC <- g_i^PC - (g_i^PC . g_j) / ||g_j||^2 g_j``.  The projection is
    always against the *original* ``g_j`` (as the paper's algorithm), so for two
    tasks the result does not depend on the order.  A zero ``g_j`` conflicts with
    nothing.  The update is the sum of the rows returned.

    Parameters
    ----------
    grads : (n_tasks, n_params) flattened task gradients, numpy array or torch tensor.
    rng : numpy Generator for the order of the other tasks (more than two tasks);
        None keeps the natural order.

    Returns
    -------
    The projected gradients, (n_tasks, n_params), of the same type as ``grads``.
    """
    is_numpy = isinstance(grads, np.ndarray)
    g = _as_grad_matrix(grads)
    out = g.clone()
    sq = (g * g).sum(dim=1)
    k = g.shape[0]
    for i in range(k):
        others = [j for j in range(k) if j != i]
        if rng is not None and len(others) > 1:
            others = [others[t] for t in rng.permutation(len(others))]
        for j in others:
            dot = out[i] @ g[j]
            if dot < 0 and sq[j] > 0:
                out[i] = out[i] - dot / sq[j] * g[j]
    return out.numpy() if is_numpy else out


def grad_cosine(g1: Any, g2: Any) -> float:
    """Cosine of two flattened gradients; 0.0 when either is zero (no direction, no conflict)."""
    a, b = torch.as_tensor(g1).double().ravel(), torch.as_tensor(g2).double().ravel()
    if a.shape != b.shape:
        raise ValueError(f"gradients must have the same number of entries, got {a.numel()} and {b.numel()}")
    na, nb = float(a.norm()), float(b.norm())
    return 0.0 if na == 0 or nb == 0 else float(a @ b) / (na * nb)


class UncertaintyWeights(nn.Module):
    """Homoscedastic uncertainty weighting for regression tasks (Kendall, Gal and Cipolla, CVPR 2018).

    One learnable ``s_k = log sigma_k^2`` per task; the combined loss is
    ``sum_k L_k / (2 sigma_k^2) + log sigma_k = sum_k exp(-s_k) L_k / 2 + s_k / 2``.
    Setting its derivative in ``s_k`` to zero gives ``sigma_k^2 = L_k``: at the
    optimum each learned variance equals that task's mean squared error, and a
    noisy task is down-weighted by ``1 / (2 sigma_k^2)``.
    """

    def __init__(self, n_tasks: int = 2) -> None:
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(n_tasks))

    def forward(self, task_losses: torch.Tensor) -> torch.Tensor:
        """Per-task weighted losses (n_tasks,), to sum (or to differentiate one by one for PCGrad)."""
        if task_losses.shape != self.log_var.shape:
            raise ValueError(f"expected {tuple(self.log_var.shape)} task losses, got {tuple(task_losses.shape)}")
        return 0.5 * torch.exp(-self.log_var) * task_losses + 0.5 * self.log_var

    @property
    def sigma2(self) -> np.ndarray:
        return torch.exp(self.log_var.detach()).numpy().copy()


# --------------------------------------------------------------------------- training


@dataclass
class History:
    """What :func:`train_mtl` records, one entry per step (``cosine`` only when gradients were split)."""

    loss: list[list[float]] = field(default_factory=list)  # per-task training MSE of the batch
    cosine: list[float] = field(default_factory=list)  # cos(g_1, g_2) on the shared parameters (tasks 1 and 2)
    sigma2: list[list[float]] = field(default_factory=list)  # uncertainty weighting's sigma_k^2


def _flat_grads(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def train_mtl(
    model: nn.Module,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    steps: int,
    batch: int = 256,
    lr: float = 2e-2,
    uw_lr: float = 5e-2,
    seed: int = 0,
    weighting: str = "equal",
    use_pcgrad: bool = False,
    monitor: bool = False,
    monitor_every: int = 1,
) -> History:
    """Train ``model`` on the mean squared error of each column of ``Y`` with Adam.

    Parameters
    ----------
    model : maps (n, d) to (n, n_tasks).
    X, Y : (n, d) inputs and (n, n_tasks) labels.
    steps, batch, lr : Adam steps on minibatches drawn with replacement.
    uw_lr : Adam learning rate of the log-variances (a faster rate lets sigma^2 track the loss
        within a few hundred steps; their optimum does not depend on it).
    seed : seeds the minibatch order (and PCGrad's order of tasks).
    weighting : "equal" (sum of task losses) or "uncertainty" (:class:`UncertaintyWeights`).
    use_pcgrad : project conflicting task gradients (:func:`pcgrad`) before the update.
    monitor : record the cosine between the task gradients every ``monitor_every`` steps.
    monitor_every : steps between two gradient-cosine readings (each costs one backward pass per task).

    The network's learning rate follows a cosine decay to zero over ``steps`` (less end-of-training
    noise, so two models are compared at rest, not mid-bounce); the log-variances keep ``uw_lr``.

    Returns
    -------
    History with per-step task losses, gradient cosines and (uncertainty) sigma^2.
    """
    if weighting not in ("equal", "uncertainty"):
        raise ValueError(f"weighting must be 'equal' or 'uncertainty', got {weighting!r}")
    if steps < 1 or batch < 1 or monitor_every < 1:
        raise ValueError(f"steps, batch and monitor_every must be >= 1, got {steps}, {batch}, {monitor_every}")
    Xt, Yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(Y, dtype=torch.float32)
    if Xt.ndim != 2 or Yt.ndim != 2 or len(Xt) != len(Yt):
        raise ValueError(
            f"expected X (n, d) and Y (n, n_tasks) with the same n, got {tuple(Xt.shape)}, {tuple(Yt.shape)}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    uw = UncertaintyWeights(Yt.shape[1]) if weighting == "uncertainty" else None
    groups: list[dict[str, Any]] = [{"params": params}]
    if uw is not None:
        groups.append({"params": [uw.log_var], "lr": uw_lr})
    opt = torch.optim.Adam(groups, lr=lr)
    decay = lambda t: 0.5 * (1 + math.cos(math.pi * t / steps))  # noqa: E731
    # the log-variances keep their rate: they must keep tracking the (falling) task losses
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [decay] + [lambda t: 1.0] * (len(groups) - 1))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    hist = History()
    for step in range(steps):
        idx = torch.randint(0, len(Xt), (batch,), generator=gen)
        losses = ((model(Xt[idx]) - Yt[idx]) ** 2).mean(dim=0)  # (n_tasks,)
        weighted = uw(losses) if uw is not None else losses
        opt.zero_grad()
        watch = monitor and step % monitor_every == 0
        if use_pcgrad or watch:
            # One gradient per task over every parameter: the towers and gates of task j get no gradient
            # from task i, so dot products (and projections) only involve the shared parameters.
            G = torch.stack([_flat_grads(w, params) for w in weighted])
            if watch and len(G) >= 2:
                hist.cosine.append(grad_cosine(G[0], G[1]))
            if use_pcgrad:
                G = pcgrad(G, rng)
            flat = G.sum(dim=0)
            offset = 0
            for p in params:
                p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
            if uw is not None:
                (uw.log_var.grad,) = torch.autograd.grad(weighted.sum(), [uw.log_var])
        else:
            weighted.sum().backward()
        opt.step()
        sched.step()
        hist.loss.append(losses.detach().tolist())
        if uw is not None:
            hist.sigma2.append(uw.sigma2.tolist())
    return hist


def task_errors(model: nn.Module, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Squared error of every example and task, (n, n_tasks), with gradients off."""
    with torch.no_grad():
        pred = model(torch.as_tensor(X, dtype=torch.float32)).numpy()
    return (pred - np.asarray(Y, dtype=np.float32).reshape(pred.shape)) ** 2


# --------------------------------------------------------------------------- negative transfer


@dataclass(frozen=True)
class TransferTest:
    """Relative gap ``(L_mtl - L_single) / L_single`` with a bootstrap confidence interval."""

    gap: float
    ci_low: float
    ci_high: float
    margin: float
    negative: bool  # True when the whole interval lies above the margin


def negative_transfer(
    err_mtl: np.ndarray,
    err_single: np.ndarray,
    *,
    margin: float = 0.02,
    level: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator | None = None,
) -> TransferTest:
    """Is the multi-task model worse on this task than its single-task baseline, by more than ``margin``?

    The two models are scored on the *same* validation examples, so the test
    resamples examples in pairs (paired bootstrap): each replicate draws ``n``
    row indices with replacement and computes the relative gap of the two mean
    losses on those rows.  Negative transfer is declared when the lower end of
    the ``level`` percentile interval exceeds ``margin``: the MTL model is worse
    by more than the margin, and the sampling noise of the validation set does
    not explain it.  Rows may be stacked seeds: pass (n_seeds * n,) errors.

    Parameters
    ----------
    err_mtl, err_single : (n,) per-example validation losses of the two models.
    margin : relative gap tolerated before calling it negative transfer (0.02 = 2 %).
    level : confidence level of the interval.
    n_boot : bootstrap replicates.
    rng : numpy Generator (default seed 0).

    Returns
    -------
    TransferTest(gap, ci_low, ci_high, margin, negative).
    """
    a, b = np.asarray(err_mtl, dtype=np.float64).ravel(), np.asarray(err_single, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two paired arrays of the same length >= 2, got {a.size} and {b.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if b.mean() <= 0:
        raise ValueError("the single-task losses must have a positive mean")
    rng = np.random.default_rng(0) if rng is None else rng
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    gaps = a[idx].mean(axis=1) / b[idx].mean(axis=1) - 1.0
    lo, hi = np.quantile(gaps, [(1 - level) / 2, (1 + level) / 2])
    gap = a.mean() / b.mean() - 1.0
    return TransferTest(float(gap), float(lo), float(hi), float(margin), bool(lo > margin))
