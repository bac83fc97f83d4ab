"""Tests for the exercise of lesson 08.02 (systolic arrays and TPUs): ``systolic_cycles``.

The task, as the exercise states it: ``systolic_cycles(M, K, N, array, double_buffer=False) -> int``
is the number of clock cycles the course's weight-stationary simulator takes for
(M x K) @ (K x N) on an ``array = (R, C)`` grid:

* ``T = ceil(K / R) * ceil(N / C)`` weight tiles, ragged edges padded to full tiles;
* per tile: ``R`` cycles to load its weights, then ``M + R + C - 2`` cycles to
  stream the M rows of X through and drain the array;
* with ``double_buffer=True`` every weight load but the first hides behind the
  previous tile's compute: ``R + T (M + R + C - 2)``.

Reference routes, independent of ``course_lib.systolic.systolic_cycles``: an
explicit tile-by-tile loop below, and the cycle-level simulator itself
(``course_lib.systolic.simulate_matmul``) on small shapes.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON_08_02 = "08_hardware/02_systolic_tpu"


def _tile_by_tile(M: int, K: int, N: int, array: tuple[int, int], double_buffer: bool = False) -> int:
    """The schedule walked tile by tile (a different route from the closed form)."""
    R, C = array
    cycles, first = 0, True
    for _k0 in range(0, K, R):
        for _n0 in range(0, N, C):
            if first or not double_buffer:
                cycles += R               # weights shift in, one row per cycle, array idle
            first = False
            cycles += M + R + C - 2       # stream M rows, the wavefront crosses R + C - 1 cells
    return cycles


def _call(fn: Callable[..., Any], M: int, K: int, N: int, array: tuple[int, int], *, strict: bool = False, **kw: Any) -> int:
    """The learner's answer as an int; a whole-number float passes unless ``strict`` (the int test)."""
    got = fn(M, K, N, array, **kw)
    if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
        if isinstance(got, (float, np.floating)) and float(got).is_integer():
            if not strict:
                return int(got)
            raise TestFailure(f"expected an int, got the float {got!r}: use integer arithmetic (// and ceil division), not /")
        raise TestFailure(f"expected an int number of cycles, got {got!r} ({type(got).__name__})")
    return int(got)


def _expect(fn: Callable[..., Any], M: int, K: int, N: int, array: tuple[int, int], **kw: Any) -> None:
    got = _call(fn, M, K, N, array, **kw)
    want = _tile_by_tile(M, K, N, array, **kw)
    if got != want:
        extra = "".join(f", {k}={v!r}" for k, v in kw.items())
        raise TestFailure(f"systolic_cycles({M}, {K}, {N}, {array}{extra}) returned {got:,}, expected {want:,} "
                          f"(off by {got - want:+,})")


cycles_task = register(
    "hardware.systolic_cycles",
    function="systolic_cycles",
    title="Closed-form cycle count of a weight-stationary systolic array",
    lesson=LESSON_08_02,
    points=2,
    timeout_s=60,
)


@cycles_task.test("one full tile: load + stream + fill/drain", hint="a single tile costs R cycles of weight loading, then M cycles of streaming plus the wavefront crossing: the first row of X needs R + C - 1 cycles to reach the bottom-right cell, so the tile ends after M + R + C - 2 cycles, not M + R + C")
def _one_tile(fn: Callable[..., Any]) -> None:
    _expect(fn, 10, 4, 4, (4, 4))
    _expect(fn, 1, 8, 8, (8, 8))


@cycles_task.test("returns an int", hint="cycles are whole numbers: compute with ints (ceil division is -(-a // b)); math.ceil(a / b) is fine too, but return int(...)")
def _int(fn: Callable[..., Any]) -> None:
    _call(fn, 7, 12, 9, (4, 4), strict=True)


@cycles_task.test("ragged K and N are padded to whole tiles", hint="the number of tiles is ceil(K / R) * ceil(N / C): 129 columns on a 128-wide array need 2 tiles; floor division, or M K N / (R C), undercounts ragged edges")
def _ragged(fn: Callable[..., Any]) -> None:
    _expect(fn, 32, 129, 128, (128, 128))
    _expect(fn, 32, 128, 129, (128, 128))
    _expect(fn, 5, 9, 7, (4, 4))


@cycles_task.test("without double buffering, every tile pays its own weight load", hint="with the array idle during loading, each of the T tiles costs R load cycles, not just the first one")
def _serial(fn: Callable[..., Any]) -> None:
    _expect(fn, 16, 256, 384, (128, 128))
    _expect(fn, 100, 12, 8, (4, 4), double_buffer=False)


@cycles_task.test("double buffering exposes only the first weight load", hint="with double_buffer=True the next tile's weights shift in while the current tile computes: only the very first R-cycle load is visible; fill and drain are still paid per tile")
def _double(fn: Callable[..., Any]) -> None:
    _expect(fn, 16, 256, 384, (128, 128), double_buffer=True)
    _expect(fn, 1, 4, 4, (4, 4), double_buffer=True)
    _expect(fn, 3, 10, 10, (4, 4), double_buffer=True)


@cycles_task.test("rectangular arrays: K is tiled by rows, N by columns", hint="array = (R, C): the R rows run along K (each row holds one k), the C columns along N; the weight load takes R cycles (one row per cycle); do not swap R and C")
def _rectangular(fn: Callable[..., Any]) -> None:
    _expect(fn, 20, 10, 30, (5, 8))
    _expect(fn, 20, 30, 10, (8, 5))
    _expect(fn, 20, 30, 10, (8, 5), double_buffer=True)


@cycles_task.test("M streams: it is never cut into tiles", hint="rows of X enter one per cycle for as long as there are rows: M adds M cycles per tile, it is not divided by R or C and does not change the number of tiles")
def _long_m(fn: Callable[..., Any]) -> None:
    _expect(fn, 4096, 128, 128, (128, 128))
    _expect(fn, 1000, 7, 3, (4, 4))


@cycles_task.test("agrees with the cycle-level simulator", hint="run course_lib.systolic.simulate_matmul on a small shape and compare its .cycles with yours, first with one tile, then with ragged ones")
def _simulator(fn: Callable[..., Any]) -> None:
    from ...systolic import simulate_matmul

    rng = np.random.default_rng(8)
    for R, C, M, K, N in [(3, 4, 5, 7, 9), (4, 2, 1, 4, 5), (2, 5, 6, 3, 11)]:
        X, W = rng.integers(-3, 4, (M, K)), rng.integers(-3, 4, (K, N))
        for db in (False, True):
            want = simulate_matmul(X, W, (R, C), double_buffer=db).cycles
            got = _call(fn, M, K, N, (R, C), double_buffer=db)
            if got != want:
                raise TestFailure(f"systolic_cycles({M}, {K}, {N}, {(R, C)}, double_buffer={db}) returned {got:,}; "
                                  f"the simulator took {want:,} cycles")
