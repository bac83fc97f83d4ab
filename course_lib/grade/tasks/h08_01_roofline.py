"""Tests for the exercise of lesson 08.01 (the roofline): ``arithmetic_intensity``.

The task, as the exercise states it: ``arithmetic_intensity(op, shape, dtype="float32")``
returns FLOPs / bytes moved, each operand read once from memory and the output
written once, for

* ``"gemm"``, shape ``(M, K, N)``: C = A @ B with A (M, K), B (K, N); 2 M K N FLOPs;
* ``"gemv"``, shape ``(M, K)``: y = A @ x; 2 M K FLOPs;
* ``"add"``, any shape (n elements): z = x + y; n FLOPs;
* ``"softmax"``, any shape (n elements): 5 n FLOPs (max, subtract, exp, sum, divide);
* ``"attention_naive"`` / ``"attention_fused"``, shape ``(BH, T, d)``: 4 BH T^2 d FLOPs
  (Q K^T and P V); naive also writes and reads the T x T scores S and probabilities P;

``dtype`` is one of ``"float64"``, ``"float32"``, ``"bfloat16"``, ``"float16"``,
``"int8"`` or a numpy dtype.  Unknown ops and malformed shapes raise ``ValueError``.

FLOPs are checked against torch's ``FlopCounterMode`` where it counts the
operation (an independent route); bytes are worked by hand in each test.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_08_01 = "08_hardware/01_roofline"


def _ai(fn: Callable[..., Any], op: str, shape: Any, dtype: Any) -> float:
    out = fn(op, shape, dtype)
    if isinstance(out, bool) or not isinstance(out, (int, float, np.integer, np.floating)):
        raise TestFailure(f"arithmetic_intensity({op!r}, {shape}, {dtype!r}) returned {out!r}; expected a number (FLOP/byte)")
    return float(out)


def _expect(fn: Callable[..., Any], op: str, shape: Any, dtype: Any, flops: float, moved: float) -> None:
    got, want = _ai(fn, op, shape, dtype), flops / moved
    if not math.isclose(got, want, rel_tol=1e-9):
        raise TestFailure(f"arithmetic_intensity({op!r}, {shape}, {dtype!r}) = {got!r}, expected {flops:g} FLOPs / "
                          f"{moved:g} bytes = {want!r} (yours is {got / want:.4g}x that)")


def _counted(run: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


task = register(
    "hardware.arithmetic_intensity",
    function="arithmetic_intensity",
    title="Arithmetic intensity (FLOPs per byte) of GEMM, GEMV, add, softmax and attention",
    lesson=LESSON_08_01,
    points=3,
    timeout_s=60,
)


@task.test("gemm: 2 M K N FLOPs over (M K + K N + M N) elements; square float32 gives n / 6",
           hint="a multiply-add is 2 FLOPs, so FLOPs = 2 M K N; bytes = (A + B + C elements) x 4 for float32. Forgetting the 2 halves the answer")
def _gemm_square(fn: Callable[..., Any]) -> None:
    for n in (64, 1024):
        got = _ai(fn, "gemm", (n, n, n), "float32")
        if not math.isclose(got, n / 6, rel_tol=1e-9):
            raise TestFailure(f"square GEMM n={n} in float32: expected n / 6 = {n / 6:.6g} FLOP/byte, got {got!r}")


@task.test("gemm: shape is (M, K, N) with A (M x K), B (K x N), C (M x N); FLOPs match torch's FlopCounterMode",
           hint="unpack M, K, N = shape in that order: A has M*K elements, B has K*N, C has M*N. Test with a non-square shape")
def _gemm_rect(fn: Callable[..., Any]) -> None:
    import torch

    for M, K, N in [(8, 4096, 1024), (1024, 8, 4096), (3, 5, 7)]:
        flops = _counted(lambda: torch.zeros(M, K) @ torch.zeros(K, N))
        _expect(fn, "gemm", (M, K, N), "float32", flops, 4 * (M * K + K * N + M * N))


@task.test("dtype sets the bytes per element: float64 8, float32 4, bfloat16 and float16 2, int8 1",
           hint="numpy has no bfloat16 dtype: map the names yourself (e.g. a dict), and accept a numpy dtype via np.dtype(dtype).name")
def _dtypes(fn: Callable[..., Any]) -> None:
    M, K, N = 32, 48, 16
    flops, elems = 2 * M * K * N, M * K + K * N + M * N
    for dtype, b in [("float64", 8), ("float32", 4), ("bfloat16", 2), ("float16", 2), ("int8", 1),
                     (np.dtype("float16"), 2), (np.dtype("float32"), 4)]:
        _expect(fn, "gemm", (M, K, N), dtype, flops, b * elems)


@task.test("gemv: y = A x reads A and x once and writes y once",
           hint="FLOPs = 2 M K; bytes = (M K + K + M) x bytes per element. The vector and the output are small but count them")
def _gemv(fn: Callable[..., Any]) -> None:
    import torch

    for M, K, dtype, b in [(8192, 8192, "bfloat16", 2), (100, 30, "float32", 4), (5, 1000, "float64", 8)]:
        flops = _counted(lambda: torch.zeros(M, K) @ torch.zeros(K, 1))   # mv as an (M, K) x (K, 1) matmul
        _expect(fn, "gemv", (M, K), dtype, flops, b * (M * K + K + M))


@task.test("add: 1 FLOP per element, three arrays moved (x, y read; z written), for any shape",
           hint="n = the product of all dimensions of shape (1-D or 2-D); bytes = 3 n x bytes per element, so float32 gives 1/12")
def _add(fn: Callable[..., Any]) -> None:
    for shape, dtype, b in [((1000,), "float32", 4), ((7, 9), "float16", 2), ((2, 3, 4), "int8", 1)]:
        n = math.prod(shape)
        _expect(fn, "add", shape, dtype, n, 3 * n * b)


@task.test("softmax: 5 FLOPs per element (max, subtract, exp, sum, divide), read once and written once",
           hint="FLOPs = 5 n; bytes = 2 n x bytes per element (one input, one output), so float32 gives 5/8")
def _softmax(fn: Callable[..., Any]) -> None:
    for shape, dtype, b in [((4096, 4096), "float32", 4), ((10, 3), "bfloat16", 2)]:
        n = math.prod(shape)
        _expect(fn, "softmax", shape, dtype, 5 * n, 2 * n * b)


@task.test("attention: FLOPs as FlopCounterMode counts them; naive adds the T x T scores and probabilities, fused does not",
           hint="FLOPs = 4 BH T^2 d (Q K^T and P V, 2 each). Fused moves Q, K, V, O: 4 T d elements per head. Naive adds 4 T^2 per head: S written and read, P written and read")
def _attention(fn: Callable[..., Any]) -> None:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for BH, T, d, dtype, b in [(4, 64, 16, "float32", 4), (8, 256, 64, "bfloat16", 2), (1, 100, 7, "float64", 8)]:
        q = torch.zeros(1, BH, T, d)
        with sdpa_kernel(SDPBackend.MATH):                       # the math backend is countable
            flops = _counted(lambda: F.scaled_dot_product_attention(q, q, q))
        _expect(fn, "attention_fused", (BH, T, d), dtype, flops, b * BH * 4 * T * d)
        _expect(fn, "attention_naive", (BH, T, d), dtype, flops, b * BH * (4 * T * d + 4 * T * T))


@task.test("an unknown op or a malformed shape raises ValueError",
           hint="check op against the six names, the number of dimensions (gemm 3, gemv 2, attention 3) and that every dimension is a positive int")
def _bad_input(fn: Callable[..., Any]) -> None:
    for args, what in [(("conv2d", (3, 3, 3), "float32"), "unknown op"), (("gemm", (4, 4), "float32"), "gemm with 2 dimensions"),
                       (("gemv", (4, 0), "float32"), "a zero dimension"), (("attention_naive", (2, 8), "float32"), "attention with 2 dimensions"),
                       (("gemm", (2, -3, 4), "float32"), "a negative dimension")]:
        try:
            fn(*args)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001
            raise TestFailure(f"{what}: expected ValueError, got {type(err).__name__}: {err}") from None
        raise TestFailure(f"{what}: arithmetic_intensity{args} returned instead of raising ValueError")
