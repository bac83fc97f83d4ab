"""Tests for the exercise of lesson 05.01 (two-tower retrieval): ``in_batch_softmax_loss``.

The task, as the exercise states it:

* ``in_batch_softmax_loss(u, v, logq, temperature=1.0)``: u (B, d) user embeddings,
  v (B, d) embeddings of each row's positive item, logq (B,) log sampling
  probability of each in-batch item (torch tensors).  Logits
  ``u v^T / temperature - logq[None, :]`` (Yi et al., RecSys 2019), cross-entropy
  with the diagonal as labels, mean over the batch, as a scalar torch tensor.
  Duplicated items in a batch are treated as negatives (the paper's basic form).
  Mismatched shapes raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON = "05_recsys/01_two_tower"


def _torch() -> Any:
    import torch

    return torch


def _batch(B: int = 6, d: int = 4, seed: int = 0) -> tuple[Any, Any, Any]:
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, d, generator=g, dtype=torch.float64)
    v = torch.randn(B, d, generator=g, dtype=torch.float64)
    logq = torch.log(torch.rand(B, generator=g, dtype=torch.float64) * 0.5 + 0.01)
    return u, v, logq


def _reference(u: Any, v: Any, logq: Any, temperature: float = 1.0) -> float:
    """Row by row in numpy, a log-sum-exp written out: a different route from torch's cross_entropy."""
    U, V, L = (np.asarray(x.detach().numpy(), dtype=np.float64) for x in (u, v, logq))
    total = 0.0
    for i in range(len(U)):
        z = U[i] @ V.T / temperature - L
        m = z.max()
        total += m + np.log(np.exp(z - m).sum()) - z[i]
    return total / len(U)


def _loss(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    torch = _torch()
    out = fn(*args, **kwargs)
    if not isinstance(out, torch.Tensor):
        raise TestFailure(f"expected a torch tensor (so it can be backpropagated), got {type(out).__name__}")
    if out.numel() != 1:
        raise TestFailure(f"expected a scalar loss, got a tensor of shape {tuple(out.shape)}")
    return out


task = register(
    "recsys.in_batch_softmax_loss",
    function="in_batch_softmax_loss",
    title="In-batch softmax with the logQ correction",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


@task.test("equals the hand-written log-softmax route", hint="logits = u @ v.T - logq[None, :]; the label of row i is column i; take the mean of the cross-entropy over rows")
def _equal(fn: Callable[..., Any]) -> None:
    for seed in (0, 1):
        u, v, lq = _batch(seed=seed)
        got, want = float(_loss(fn, u, v, lq)), _reference(u, v, lq)
        if not abs(got - want) < 1e-9:
            raise TestFailure(f"loss {got:.6f}, expected {want:.6f}")


@task.test("logq = 0 gives the plain in-batch softmax", hint="with logq all zeros nothing should be subtracted: the logits are exactly u @ v.T")
def _plain(fn: Callable[..., Any]) -> None:
    torch = _torch()
    u, v, _ = _batch(seed=2)
    got = float(_loss(fn, u, v, torch.zeros(len(u), dtype=u.dtype)))
    want = float(torch.nn.functional.cross_entropy(u @ v.T, torch.arange(len(u))))
    if not abs(got - want) < 1e-9:
        raise TestFailure(f"with logq = 0: loss {got:.6f}, expected the plain in-batch softmax {want:.6f}")


@task.test("the correction has the right sign", hint="popular items are sampled as negatives more often, so their logits are lowered: subtract logq (logits - logq), do not add it")
def _sign(fn: Callable[..., Any]) -> None:
    torch = _torch()
    B = 5
    u, v = torch.zeros(B, 3, dtype=torch.float64), torch.randn(B, 3, dtype=torch.float64)
    lq = torch.log(torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64))
    want = float((lq + torch.logsumexp(-lq, 0)).mean())  # all scores 0: logits are -log q
    got = float(_loss(fn, u, v, lq))
    if not abs(got - want) < 1e-9:
        raise TestFailure(f"with all scores equal the loss should be mean(log q_i) + logsumexp(-log q) = {want:.6f}, got {got:.6f}")


@task.test("the correction shifts columns (candidate items), not rows", hint="logq[None, :] broadcasts over rows so each column j (item j as a candidate) is shifted; logq[:, None] shifts a whole row and cancels in the softmax")
def _columns(fn: Callable[..., Any]) -> None:
    u, v, lq = _batch(B=8, seed=3)
    got, want = float(_loss(fn, u, v, lq)), _reference(u, v, lq)
    plain = _reference(u, v, lq * 0)
    if abs(got - plain) < 1e-9 and abs(want - plain) > 1e-6:
        raise TestFailure("the loss did not change when logq changed: a row-wise shift cancels in the softmax")
    if not abs(got - want) < 1e-9:
        raise TestFailure(f"loss {got:.6f}, expected {want:.6f}")


@task.test("temperature divides the inner product only", hint="logits = u @ v.T / temperature - logq[None, :]: the correction is a log-probability and is not scaled")
def _temperature(fn: Callable[..., Any]) -> None:
    u, v, lq = _batch(seed=4)
    for T in (0.5, 2.0):
        got, want = float(_loss(fn, u, v, lq, temperature=T)), _reference(u, v, lq, T)
        if not abs(got - want) < 1e-9:
            raise TestFailure(f"temperature={T}: loss {got:.6f}, expected {want:.6f}")


@task.test("gradients are right (torch.autograd.gradcheck in float64)", hint="stay in torch for every step (no .numpy(), no float()), so autograd can follow the computation")
def _gradcheck(fn: Callable[..., Any]) -> None:
    torch = _torch()
    u, v, lq = _batch(B=4, d=3, seed=5)
    u.requires_grad_(True)
    v.requires_grad_(True)
    try:
        ok = torch.autograd.gradcheck(lambda a, b: fn(a, b, lq), (u, v), raise_exception=False)
    except Exception as err:  # noqa: BLE001 - a learner's bug of any kind is a failed test
        raise TestFailure(f"gradcheck could not run: {type(err).__name__}: {err}") from None
    if not ok:
        raise TestFailure("analytic gradients differ from finite differences")


@task.test("mismatched shapes raise ValueError", hint="check that u and v are both (B, d) with the same shape and that logq is (B,), and raise ValueError otherwise")
def _shapes(fn: Callable[..., Any]) -> None:
    u, v, lq = _batch()
    for what, args in (("v with a different d", (u, v[:, :2], lq)), ("logq of length B - 1", (u, v, lq[:-1])),
                       ("v with a different B", (u, v[:-1], lq[:-1]))):
        try:
            fn(*args)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001
            raise TestFailure(f"{what}: expected ValueError, got {type(err).__name__}") from None
        raise TestFailure(f"{what}: expected ValueError, nothing was raised")
