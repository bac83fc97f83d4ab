"""Tests for the exercise of lesson 01.04 (capacity estimation): ``transformer_params`` and ``train_flops``.

The tasks, as the exercise states them:

* ``transformer_params(n_layer, d_model, vocab_size, ffn=None, *, block_size=0,
  bias=True, tie_weights=True, exact=True) -> int``: the parameter count of a
  GPT-2-style decoder (TinyGPT).  ``exact=False`` gives the rule of thumb
  ``L (4 d^2 + 2 d ffn) + V d`` (= 12 L d^2 + V d for ffn = 4d).
* ``train_flops(P, D, *, n_layer=0, d_model=0, seq_len=0) -> float``:
  ``6 P D`` plus the attention term ``12 L T d`` per token when L, d and T are all given.

The reference routes are independent of course_lib.capacity: real torch
modules (TinyGPT built on the meta device, ``sum(p.numel())``), published
counts, and ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from ..core import TestFailure, register

LESSON_01_04 = "01_foundations/04_capacity_estimation"


def _tinygpt_numel(**kw: Any) -> int:
    """Parameters of a real TinyGPT, counted by torch (meta device: no memory, no init cost)."""
    import torch

    from ...nn.tinygpt import GPTConfig, TinyGPT

    with torch.device("meta"):
        model = TinyGPT(GPTConfig(**kw))
    return sum(p.numel() for p in model.parameters())


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise TestFailure(f"{what}: expected an int, got {value!r} ({type(value).__name__})")
    return int(value)


def _expect_count(fn: Callable[..., Any], args: tuple, kwargs: dict, want: int, what: str) -> None:
    got = _as_int(fn(*args, **kwargs), what)
    if got != want:
        call = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        raise TestFailure(f"{what}: transformer_params({call}) returned {got:,}, expected {want:,} "
                          f"(off by {got - want:+,})")


params = register(
    "foundations.transformer_params",
    function="transformer_params",
    title="Parameter count of a GPT-style transformer (exact and 12 L d^2 + V d)",
    lesson=LESSON_01_04,
    points=2,
    timeout_s=60,
)


@params.test("exact=False gives 12 L d^2 + V d", hint="per layer: attention has four d x d matrices (q, k, v, output) and the MLP two d x 4d ones, 4 + 8 = 12 d^2; the embedding adds V d once, and nothing else is counted in the rule of thumb")
def _approx(fn: Callable[..., Any]) -> None:
    for L, d, V in [(2, 16, 100), (12, 768, 50257), (96, 12288, 50257)]:
        _expect_count(fn, (L, d, V), {"exact": False}, 12 * L * d * d + V * d, "rule of thumb")


@params.test("exact=False with a non-default ffn uses 2 d ffn per layer", hint="the MLP holds two matrices, d x ffn and ffn x d: 2 d ffn, not 8 d^2, once ffn is given; default ffn (None) means 4 d")
def _approx_ffn(fn: Callable[..., Any]) -> None:
    _expect_count(fn, (3, 32, 50, 80), {"exact": False}, 3 * (4 * 32 * 32 + 2 * 32 * 80) + 50 * 32, "rule of thumb, ffn=80")
    _expect_count(fn, (3, 32, 50, None), {"exact": False}, 3 * 12 * 32 * 32 + 50 * 32, "rule of thumb, ffn=None")


@params.test("exact count == sum(p.numel()) of a real TinyGPT (tied, with biases)", hint="count every bias (q, k, v and output projections: 4d; MLP: ffn + d) and both parameters of each LayerNorm (scale and shift: 2d), two per block plus the final one; a tied head adds nothing")
def _exact_default(fn: Callable[..., Any]) -> None:
    want = _tinygpt_numel(n_layer=3, n_embd=24, n_head=2, vocab_size=37, block_size=16)
    _expect_count(fn, (3, 24, 37), {"block_size": 16}, want, "tied, bias=True")


@params.test("block_size adds a learned position table of block_size x d", hint="the position embedding is a second embedding table with one row per position: block_size * d parameters (and none when block_size is 0)")
def _positions(fn: Callable[..., Any]) -> None:
    a = _as_int(fn(2, 16, 30, block_size=0), "block_size=0")
    b = _as_int(fn(2, 16, 30, block_size=64), "block_size=64")
    if b - a != 64 * 16:
        raise TestFailure(f"going from block_size=0 to 64 changed the count by {b - a:,}, expected 64 * 16 = {64 * 16:,}")
    _expect_count(fn, (2, 16, 30), {"block_size": 64}, _tinygpt_numel(n_layer=2, n_embd=16, n_head=2, vocab_size=30, block_size=64), "block_size=64")


@params.test("bias=False drops Linear biases and LayerNorm shifts, keeps LayerNorm scales", hint="a LayerNorm without bias still has its scale (d parameters): only the shift goes, together with every Linear's bias")
def _no_bias(fn: Callable[..., Any]) -> None:
    want = _tinygpt_numel(n_layer=3, n_embd=24, n_head=2, vocab_size=37, block_size=16, bias=False)
    _expect_count(fn, (3, 24, 37), {"block_size": 16, "bias": False}, want, "bias=False")


@params.test("tie_weights=False adds a bias-free V x d output head", hint="an untied model has a second V x d matrix for the output head (the head has no bias); a tied one reuses the embedding and counts it once")
def _untied(fn: Callable[..., Any]) -> None:
    want = _tinygpt_numel(n_layer=2, n_embd=32, n_head=4, vocab_size=101, block_size=8, tie_weights=False, n_ffn=48)
    _expect_count(fn, (2, 32, 101, 48), {"block_size": 8, "tie_weights": False}, want, "untied, ffn=48")


@params.test("GPT-2 small, medium and XL: 124,439,808 / 354,823,168 / 1,557,611,200", hint="GPT-2 is this architecture with V = 50257, block_size = 1024, biases and a tied head; L, d = (12, 768), (24, 1024), (48, 1600)")
def _gpt2(fn: Callable[..., Any]) -> None:
    for (L, d), want in [((12, 768), 124_439_808), ((24, 1024), 354_823_168), ((48, 1600), 1_557_611_200)]:
        _expect_count(fn, (L, d, 50257), {"block_size": 1024}, want, f"GPT-2 L={L}, d={d}")


# --------------------------------------------------------------------------------------------
flops = register(
    "foundations.train_flops",
    function="train_flops",
    title="Training compute C = 6 P D (+ 12 L T d per token for attention)",
    lesson=LESSON_01_04,
    points=2,
    timeout_s=60,
)


def _expect_flops(fn: Callable[..., Any], args: tuple, kwargs: dict, want: float, what: str, rtol: float = 1e-9) -> None:
    got = fn(*args, **kwargs)
    try:
        got = float(got)
    except (TypeError, ValueError):
        raise TestFailure(f"{what}: expected a number, got {got!r}") from None
    if not abs(got - want) <= rtol * abs(want):
        raise TestFailure(f"{what}: got {got:.6g}, expected {want:.6g} (ratio {got / want if want else float('nan'):.3g})")


@flops.test("6 P D without attention arguments", hint="forward: 2 FLOPs (a multiply and an add) per weight per token; backward: twice the forward. 2 + 4 = 6 per weight per token, times D tokens")
def _six(fn: Callable[..., Any]) -> None:
    for P, D in [(1e6, 1e9), (124e6, 3e11), (3, 7)]:
        _expect_flops(fn, (P, D), {}, 6 * P * D, f"train_flops({P:g}, {D:g})")


@flops.test("Chinchilla: 70e9 parameters on 1.4e12 tokens is 5.88e23 FLOPs", hint="C = 6 * P * D with P in parameters and D in tokens, no other factor")
def _chinchilla(fn: Callable[..., Any]) -> None:
    _expect_flops(fn, (70e9, 1.4e12), {}, 5.88e23, "Chinchilla")


@flops.test("attention adds 12 L T d per token", hint="per token and layer the forward has two weight-free matmuls, q k^T and A v, 2 T d FLOPs each: 4 L T d forward, 3x that with the backward, and it is paid for each of the D tokens")
def _attention(fn: Callable[..., Any]) -> None:
    P, D, L, d, T = 1e6, 1e8, 4, 128, 256
    _expect_flops(fn, (P, D), {"n_layer": L, "d_model": d, "seq_len": T}, 6 * P * D + 12 * L * T * d * D, "with attention")


@flops.test("no attention term when seq_len, n_layer or d_model is 0", hint="the attention term needs all three of L, d and T; with the defaults (0) the result is 6 P D exactly")
def _no_attention(fn: Callable[..., Any]) -> None:
    P, D = 2e6, 5e7
    _expect_flops(fn, (P, D), {"n_layer": 4, "d_model": 64}, 6 * P * D, "seq_len=0")
    _expect_flops(fn, (P, D), {"seq_len": 512}, 6 * P * D, "n_layer=d_model=0")


@flops.test("matches FlopCounterMode on a real TinyGPT forward + backward", hint="P is the weights that multiply every token (12 L d^2 + V d), D = batch x seq_len tokens; the counter sees both attention matmuls in the forward and twice as much in the backward")
def _measured(fn: Callable[..., Any]) -> None:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from ...nn.tinygpt import GPTConfig, TinyGPT

    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_embd=32, n_head=2, vocab_size=64, block_size=48)
    model = TinyGPT(cfg)
    B, T = 3, 48
    idx = torch.randint(0, cfg.vocab_size, (B, T))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # MATH: attention as visible bmm
        _, loss = model(idx, idx)
        loss.backward()
    measured = counter.get_total_flops()
    P = cfg.n_layer * 12 * cfg.n_embd**2 + cfg.vocab_size * cfg.n_embd
    _expect_flops(fn, (P, B * T), {"n_layer": cfg.n_layer, "d_model": cfg.n_embd, "seq_len": T}, measured,
                  "TinyGPT forward + backward", rtol=1e-6)
