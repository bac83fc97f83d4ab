"""Tests for the exercise of lesson 08.00 (hardware numbers): ``transfer_time``.

The task, as the exercise states it: ``transfer_time(n_bytes, bandwidth,
latency=0.0)`` returns the seconds to move ``n_bytes`` bytes over a link of
``bandwidth`` bytes per second with a start-up ``latency`` in seconds:
``latency + n_bytes / bandwidth`` (Hockney's model).  It raises ``ValueError``
for ``n_bytes < 0``, ``bandwidth <= 0`` or ``latency < 0``.

The expected values are worked by hand here (not by calling course_lib), and
one test checks the properties any such model must have.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_08_00 = "08_hardware/00_hardware_numbers"


def _seconds(fn: Callable[..., Any], *args: Any) -> float:
    out = fn(*args)
    if isinstance(out, bool) or not isinstance(out, (int, float, np.integer, np.floating)):
        raise TestFailure(f"transfer_time{args} returned {out!r} ({type(out).__name__}); expected a number of seconds")
    return float(out)


def _expect(fn: Callable[..., Any], args: tuple, want: float, what: str) -> None:
    got = _seconds(fn, *args)
    if not math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-18):
        raise TestFailure(f"{what}: transfer_time{args} returned {got!r} s, expected {want!r} s")


task = register(
    "hardware.transfer_time",
    function="transfer_time",
    title="Seconds to move bytes over a link: latency + n_bytes / bandwidth",
    lesson=LESSON_08_00,
    points=2,
    timeout_s=30,
)


@task.test("hand-worked examples: a 7B fp16 model over PCIe 4.0 x16, 1 MB at 1 GB/s after 5 µs",
           hint="time = latency + n_bytes / bandwidth: bytes divided by bytes per second, plus the latency once")
def _worked(fn: Callable[..., Any]) -> None:
    pcie4 = 16e9 * 16 * 128 / 130 / 8
    _expect(fn, (14e9, pcie4, 0.0), 14e9 / pcie4, "7B fp16 over PCIe 4.0 x16 (about 0.444 s)")
    _expect(fn, (1e6, 1e9, 5e-6), 1.005e-3, "1 MB at 1 GB/s with 5 µs latency")


@task.test("a zero-byte message still costs the latency",
           hint="the latency is paid once per transfer, whatever its size: transfer_time(0, bw, lat) == lat")
def _zero(fn: Callable[..., Any]) -> None:
    _expect(fn, (0, 1e9, 2e-6), 2e-6, "zero bytes")
    _expect(fn, (0.0, 3.0, 0.0), 0.0, "zero bytes, zero latency")


@task.test("bandwidth is already in bytes per second (no factor of 8)",
           hint="the function receives bytes and bytes/s: converting bits to bytes (/ 8) is the caller's job, done once when a link is quoted in Gb/s")
def _bytes_not_bits(fn: Callable[..., Any]) -> None:
    _expect(fn, (12.5e9, 12.5e9, 0.0), 1.0, "one second of 100 GbE (12.5e9 B/s)")
    _expect(fn, (8.0, 1.0, 0.0), 8.0, "8 bytes at 1 B/s")


@task.test("latency defaults to 0, and integers divide exactly (3 bytes at 2 B/s = 1.5 s)",
           hint="give latency a default of 0.0 and use true division (/), not floor division (//)")
def _defaults(fn: Callable[..., Any]) -> None:
    try:
        got = _seconds(fn, 3, 2)
    except TypeError as err:
        raise TestFailure(f"transfer_time(3, 2) failed ({err}): latency needs a default of 0.0") from None
    if got != 1.5:
        raise TestFailure(f"transfer_time(3, 2) returned {got!r}, expected 1.5")
    _expect(fn, (np.int64(10), np.float32(4.0), np.float64(0.5)), 3.0, "numpy numbers")


@task.test("rejects impossible input with ValueError",
           hint="raise ValueError (with what arrived) for n_bytes < 0, bandwidth <= 0 or latency < 0; a zero bandwidth would otherwise divide by zero")
def _bad_input(fn: Callable[..., Any]) -> None:
    for args, what in [((-1.0, 1e9, 0.0), "negative n_bytes"), ((1.0, 0.0, 0.0), "zero bandwidth"),
                       ((1.0, -1e9, 0.0), "negative bandwidth"), ((1.0, 1e9, -1e-6), "negative latency")]:
        try:
            fn(*args)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 - the learner's code may raise anything
            raise TestFailure(f"{what}: expected ValueError, got {type(err).__name__}: {err}") from None
        raise TestFailure(f"{what}: transfer_time{args} returned instead of raising ValueError")


@task.test("only the byte term grows with size: t(a) + t(b) = t(a + b) + latency, and t(latency x bandwidth) = 2 x latency",
           hint="latency is a constant per transfer and n_bytes / bandwidth is proportional to the size; at n = latency x bandwidth (n½) both terms are equal")
def _properties(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = (float(v) for v in rng.uniform(0, 1e9, 2))
        bw, lat = float(rng.uniform(1e6, 1e11)), float(rng.uniform(0, 1e-3))
        left, right = _seconds(fn, a, bw, lat) + _seconds(fn, b, bw, lat), _seconds(fn, a + b, bw, lat) + lat
        if not math.isclose(left, right, rel_tol=1e-9):
            raise TestFailure(f"t({a:.3g}) + t({b:.3g}) = {left!r} but t(a + b) + latency = {right!r} (bandwidth {bw:.3g}, latency {lat:.3g})")
    got = _seconds(fn, 2e-6 * 5e9, 5e9, 2e-6)
    if not math.isclose(got, 4e-6, rel_tol=1e-12):
        raise TestFailure(f"at n½ = latency x bandwidth = 10 kB (2 µs, 5 GB/s) expected 4 µs, got {got!r} s")
