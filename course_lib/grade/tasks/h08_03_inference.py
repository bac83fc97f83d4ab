"""Tests for the exercise of lesson 08.03 (inference hardware): ``decode_tokens_per_second``.

The contract, as the exercise states it: one decode step on ``batch`` sequences
does ``2 * params * batch`` FLOPs and moves ``params * bytes_per_param +
batch * kv_bytes_per_seq`` bytes; its time is ``max(FLOPs / peak_flops,
bytes / bandwidth)``; the function returns ``batch / time`` tokens/s.
``ValueError`` for a non-positive params, bytes_per_param, bandwidth or
peak_flops, a negative kv_bytes_per_seq, or a batch that is not an int >= 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import TestFailure, register

LESSON = "08_hardware/03_inference_hardware"


def _reference(P: float, b: float, B: int, kv: float, bw: float, peak: float) -> float:
    # written out separately from course_lib: time of the slower of the two resources
    t_mem = (P * b + B * kv) / bw
    t_comp = 2 * P * B / peak
    return B / (t_comp if t_comp > t_mem else t_mem)


def _close(fn: Callable[..., Any], args: tuple, what: str) -> None:
    got = fn(*args)
    want = _reference(*args)
    try:
        got = float(got)
    except (TypeError, ValueError):
        raise TestFailure(f"expected a float (tokens/s), got {got!r}") from None
    if not abs(got - want) <= 1e-9 * abs(want):
        raise TestFailure(f"{what}: decode_tokens_per_second{args} returned {got:.6g}, expected {want:.6g}")


task = register(
    "hardware.decode_tokens_per_second",
    function="decode_tokens_per_second",
    title="Decode throughput from the roofline",
    lesson=LESSON,
    points=3,
    timeout_s=30,
)


@task.test("batch 1 on an H100-like device is memory-bound: weights / bandwidth", hint="at batch 1 the time of a step is reading every weight once: params * bytes_per_param / bandwidth")
def _batch_one(fn: Callable[..., Any]) -> None:
    _close(fn, (8e9, 2.0, 1, 0.0, 3.35e12, 989e12), "8B fp16, batch 1, no KV cache")


@task.test("the KV cache of every sequence is read each step", hint="bytes per step = params * bytes_per_param + batch * kv_bytes_per_seq (the KV cache scales with the batch, the weights do not)")
def _kv(fn: Callable[..., Any]) -> None:
    _close(fn, (8e9, 2.0, 16, 1.3e8, 3.35e12, 989e12), "8B fp16, batch 16, 130 MB of KV per sequence")


@task.test("a batch amortises the weight reads", hint="the weights are read once per step for the whole batch, not once per sequence; tokens per step = batch")
def _amortise(fn: Callable[..., Any]) -> None:
    _close(fn, (1e9, 1.0, 32, 0.0, 1e12, 1e16), "1B int8, batch 32")
    one = float(fn(1e9, 1.0, 1, 0.0, 1e12, 1e16))
    many = float(fn(1e9, 1.0, 32, 0.0, 1e12, 1e16))
    if not many > 20 * one:
        raise TestFailure(f"memory-bound decode with batch 32 should give ~32x the tokens/s of batch 1; got {many / one:.3g}x")


@task.test("large batches become compute-bound: 2 * params * batch FLOPs", hint="the step time is the MAX of compute time (2 * params * batch / peak_flops) and memory time, not their sum or the memory time alone")
def _compute(fn: Callable[..., Any]) -> None:
    _close(fn, (1e9, 0.5, 512, 1e5, 2e12, 1e14), "1B int4, batch 512 on a slow-compute device")
    _close(fn, (7e9, 2.0, 64, 0.0, 1e12, 2e13), "7B fp16, batch 64")


@task.test("the two times overlap (max), they do not add", hint="a roofline step takes max(compute, memory): the hardware streams weights while it multiplies")
def _max(fn: Callable[..., Any]) -> None:
    # a point where compute and memory are close: sum and max differ by ~2x
    _close(fn, (1e9, 2.0, 100, 0.0, 1e12, 1e14), "compute time = memory time")


@task.test("bad input raises ValueError", hint="check batch is an int >= 1, kv_bytes_per_seq >= 0 and the other numbers > 0 before computing")
def _bad(fn: Callable[..., Any]) -> None:
    for args in [(0.0, 2.0, 1, 0.0, 1e12, 1e15), (1e9, 2.0, 0, 0.0, 1e12, 1e15), (1e9, 2.0, 2.5, 0.0, 1e12, 1e15),
                 (1e9, 2.0, 1, -5.0, 1e12, 1e15), (1e9, 2.0, 1, 0.0, 0.0, 1e15), (1e9, 2.0, 1, 0.0, 1e12, -1.0)]:
        try:
            fn(*args)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001
            raise TestFailure(f"decode_tokens_per_second{args} raised {type(err).__name__}, expected ValueError") from None
        raise TestFailure(f"decode_tokens_per_second{args} returned instead of raising ValueError")
