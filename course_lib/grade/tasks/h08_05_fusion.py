"""Tests for the exercise of lesson 08.05 (compilers and fusion): ``fold_bn_into_linear``.

The task, as the exercise states it: ``fold_bn_into_linear(linear, bn)`` takes an
``nn.Linear`` and an eval-mode ``nn.BatchNorm1d`` over its output features and
returns a **new** ``nn.Linear`` (with a bias) such that ``new(x) == bn(linear(x))``:

* ``s = gamma / sqrt(running_var + eps)``, one scale per output feature;
* ``W' = W * s[:, None]`` (row j scaled by s_j);
* ``b' = (b - running_mean) * s + beta``, with ``b = 0`` when ``linear.bias is None``.

Reference routes, independent of ``course_lib.nn.fx_passes``: the formula in
float64 below, and torch's own ``torch.nn.utils.fusion.fuse_linear_bn_eval``
and ``bn(linear(x))`` for the outputs.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import torch
from torch import nn

from ..core import TestFailure, register

LESSON_08_05 = "08_hardware/05_compilers_fusion"


def _pair(seed: int, d_in: int = 7, d_out: int = 5, bias: bool = True, var_lo: float = 0.2,
          eps: float = 1e-5) -> tuple[nn.Linear, nn.BatchNorm1d]:
    """A Linear and an eval-mode BatchNorm1d with every statistic away from its default (seeded)."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d_in, d_out, bias=bias)
    bn = nn.BatchNorm1d(d_out, eps=eps)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(d_out, d_in, generator=g))
        if bias:
            lin.bias.copy_(torch.randn(d_out, generator=g))
        bn.running_mean.copy_(torch.randn(d_out, generator=g))
        bn.running_var.copy_(torch.rand(d_out, generator=g) * 2.0 + var_lo)
        bn.weight.copy_(torch.rand(d_out, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(d_out, generator=g))
    return lin.eval(), bn.eval()


def _expected(lin: nn.Linear, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """W' and b' from the formula, in float64."""
    W = lin.weight.detach().double()
    b = lin.bias.detach().double() if lin.bias is not None else torch.zeros(W.shape[0], dtype=torch.float64)
    s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return W * s[:, None], (b - bn.running_mean.double()) * s + bn.bias.detach().double()


def _call(fn: Callable[..., Any], lin: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    out = fn(lin, bn)
    if not isinstance(out, nn.Linear):
        raise TestFailure(f"expected an nn.Linear, got {type(out).__name__}")
    if out.bias is None:
        raise TestFailure("the folded Linear needs a bias (b' is not zero in general): create it with bias=True")
    want = (lin.out_features, lin.in_features)
    if tuple(out.weight.shape) != want or tuple(out.bias.shape) != (lin.out_features,):
        raise TestFailure(f"expected weight {want} and bias ({lin.out_features},), got "
                          f"{tuple(out.weight.shape)} and {tuple(out.bias.shape)}")
    return out


def _compare(name: str, got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    err = (got.detach().double() - want).abs().max().item()
    scale = max(1.0, want.abs().max().item())
    if not err <= tol * scale:
        raise TestFailure(f"{name} differs from the expected value by up to {err:.3g} (allowed {tol * scale:.1g})")


fold = register(
    "hardware.fold_bn_into_linear",
    function="fold_bn_into_linear",
    title="Fold an eval-mode BatchNorm into the Linear before it",
    lesson=LESSON_08_05,
    points=2,
    timeout_s=30,
)


@fold.test("returns a new nn.Linear with a bias and the Linear's shapes",
           hint="build a fresh nn.Linear(linear.in_features, linear.out_features, bias=True) and copy the new weights into it (under torch.no_grad())")
def _shape(fn: Callable[..., Any]) -> None:
    lin, bn = _pair(0)
    _call(fn, lin, bn)


@fold.test("weights: row j of W is scaled by gamma_j / sqrt(var_j + eps)",
           hint="the scale belongs to output feature j, which is row j of W (shape (out, in)): multiply by s[:, None], not s[None, :]")
def _weights(fn: Callable[..., Any]) -> None:
    lin, bn = _pair(1, d_in=6, d_out=6)  # square: broadcasting along the wrong axis runs and is wrong
    W, _ = _expected(lin, bn)
    _compare("weight", _call(fn, lin, bn).weight, W)


@fold.test("bias: (b - running_mean) * s + beta",
           hint="subtract the running mean from the Linear's bias, then scale by s, then add beta (the BatchNorm's bias)")
def _bias(fn: Callable[..., Any]) -> None:
    lin, bn = _pair(2)
    _, b = _expected(lin, bn)
    _compare("bias", _call(fn, lin, bn).bias, b)


@fold.test("running_var is a variance, and eps is added inside the square root",
           hint="s = gamma / sqrt(running_var + eps): running_var is sigma^2 (take its square root), and eps goes under the root")
def _eps(fn: Callable[..., Any]) -> None:
    lin, bn = _pair(3, var_lo=0.0, eps=0.05)   # small variances and a large eps: both mistakes show
    with torch.no_grad():
        bn.running_var[:2] = torch.tensor([0.0, 0.01])
    W, b = _expected(lin, bn)
    out = _call(fn, lin, bn)
    _compare("weight", out.weight, W)
    _compare("bias", out.bias, b)


@fold.test("a Linear without bias (bias=None) counts as b = 0",
           hint="when linear.bias is None, use zeros for b; the folded Linear still gets a bias: -running_mean * s + beta")
def _no_bias(fn: Callable[..., Any]) -> None:
    lin, bn = _pair(4, bias=False)
    W, b = _expected(lin, bn)
    out = _call(fn, lin, bn)
    _compare("weight", out.weight, W)
    _compare("bias", out.bias, b)


@fold.test("outputs equal bn(linear(x)) and torch's fuse_linear_bn_eval",
           hint="new(x) must equal bn(linear(x)) in eval mode: use the running statistics, never the statistics of a batch")
def _outputs(fn: Callable[..., Any]) -> None:
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    lin, bn = _pair(5, d_in=9, d_out=4)
    x = torch.randn(32, 9, generator=torch.Generator().manual_seed(6)) * 3.0
    out = _call(fn, lin, bn)
    with torch.no_grad():
        _compare("new(x)", out(x), bn(lin(x)).double(), tol=1e-4)
        _compare("weight vs fuse_linear_bn_eval", out.weight, fuse_linear_bn_eval(lin, bn).weight.double(), tol=1e-6)


@fold.test("does not modify the Linear or the BatchNorm",
           hint="do not scale linear.weight in place (no *=, mul_ or copy_ on it): build new tensors and a new module")
def _pure(fn: Callable[..., Any]) -> None:
    lin, bn = _pair(7)
    before = {k: v.clone() for k, v in [*lin.state_dict().items(), *(("bn." + k, v) for k, v in bn.state_dict().items())]}
    out = _call(fn, lin, bn)
    after = {k: v for k, v in [*lin.state_dict().items(), *(("bn." + k, v) for k, v in bn.state_dict().items())]}
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if changed:
        raise TestFailure(f"the inputs were modified: {', '.join(changed)}")
    if out is lin:
        raise TestFailure("returned the input Linear itself: return a new module")
