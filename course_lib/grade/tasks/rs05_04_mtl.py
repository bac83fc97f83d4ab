"""Tests for the exercise of lesson 05.04 (multi-task learning): ``pcgrad``.

The task, as the exercise states it:

* ``pcgrad(g1, g2)``: PCGrad's gradient surgery for two tasks (Yu et al., NeurIPS
  2020). ``g1`` and ``g2`` are flattened gradients (1-D float arrays of the same
  length). Return ``(g1_pc, g2_pc)``: when ``g1 . g2 < 0`` each is projected onto
  the normal plane of the *other original* gradient,
  ``g1_pc = g1 - (g1 . g2) / |g2|^2 g2`` and ``g2_pc = g2 - (g1 . g2) / |g1|^2 g1``;
  otherwise both are returned unchanged. A zero gradient conflicts with nothing;
  gradients of different shapes raise ``ValueError``. The update is
  ``g1_pc + g2_pc``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np

from ..core import TestFailure, register

LESSON = "05_recsys/04_multitask"


def _reference(g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Through unit vectors and angles: a different route from the exercise's formula."""
    n1, n2 = np.linalg.norm(g1), np.linalg.norm(g2)
    if n1 == 0 or n2 == 0:
        return g1.copy(), g2.copy()
    u1, u2 = g1 / n1, g2 / n2
    cos = float(u1 @ u2)
    if cos >= 0:
        return g1.copy(), g2.copy()
    return g1 - n1 * cos * u2, g2 - n2 * cos * u1


def _call(fn: Callable[..., Any], g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = fn(g1.copy(), g2.copy())
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TestFailure(f"expected a pair (g1_pc, g2_pc), got {type(out).__name__}")
    a, b = (np.asarray(o, dtype=np.float64) for o in out)
    if a.shape != g1.shape or b.shape != g2.shape:
        raise TestFailure(f"expected two arrays of shape {g1.shape}, got {a.shape} and {b.shape}")
    return a, b


def _expect(fn: Callable[..., Any], g1: np.ndarray, g2: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _call(fn, g1, g2)
    w1, w2 = _reference(g1, g2)
    for k, (got, want) in enumerate(((a, w1), (b, w2)), start=1):
        if not np.allclose(got, want, rtol=1e-9, atol=1e-12):
            i = int(np.argmax(np.abs(got - want)))
            raise TestFailure(f"{what}: g{k}_pc[{i}] = {got[i]:.6g}, expected {want[i]:.6g} (g1 = {np.round(g1, 3).tolist()[:6]}, g2 = {np.round(g2, 3).tolist()[:6]})")
    return a, b


pcgrad_task = register(
    "recsys.pcgrad",
    function="pcgrad",
    title="PCGrad: project conflicting task gradients (two tasks)",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


@pcgrad_task.test("returns a pair of arrays shaped like the inputs", hint="return a tuple (g1_pc, g2_pc), one projected gradient per task, not their sum")
def _shape(fn: Callable[..., Any]) -> None:
    _call(fn, np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0]))


@pcgrad_task.test("no conflict: both gradients (and their sum) unchanged", hint="project only when the dot product g1 . g2 is negative; a positive or zero dot product means the tasks agree (or are orthogonal)")
def _no_conflict(fn: Callable[..., Any]) -> None:
    g1, g2 = np.array([1.0, 2.0, 0.0]), np.array([0.5, 0.0, 3.0])
    a, b = _expect(fn, g1, g2, "agreeing gradients")
    if not np.allclose(a + b, g1 + g2):
        raise TestFailure("the update g1_pc + g2_pc must equal g1 + g2 when there is no conflict")
    _expect(fn, np.array([1.0, 0.0]), np.array([0.0, 5.0]), "orthogonal gradients (dot = 0)")


@pcgrad_task.test("the worked example: g1 = (1, 0), g2 = (-1, 1)", hint="g1_pc = g1 - (g1 . g2) / |g2|^2 * g2: divide by the squared norm of the OTHER gradient, and subtract (the dot is negative, so this adds a multiple of g2)")
def _worked(fn: Callable[..., Any]) -> None:
    a, b = _call(fn, np.array([1.0, 0.0]), np.array([-1.0, 1.0]))
    if not (np.allclose(a, [0.5, 0.5]) and np.allclose(b, [0.0, 1.0])):
        raise TestFailure(f"expected g1_pc = [0.5, 0.5], g2_pc = [0.0, 1.0]; got {a.tolist()}, {b.tolist()}")


@pcgrad_task.test("conflict: each projection is orthogonal to the other gradient", hint="after projection, g1_pc . g2 must be 0 (and g2_pc . g1 too); check the sign and that you divide by |g_other|^2, not |g_other|")
def _orthogonal(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(4)
    done = 0
    while done < 10:
        g1, g2 = rng.standard_normal(12) * rng.uniform(0.1, 10), rng.standard_normal(12) * rng.uniform(0.1, 10)
        if g1 @ g2 >= 0:
            continue
        a, b = _call(fn, g1, g2)
        for name, got, other in (("g1_pc . g2", a @ g2, g2), ("g2_pc . g1", b @ g1, g1)):
            if got < -1e-9 * max(1.0, float(other @ other)) or abs(got) > 1e-8 * max(1.0, float(np.abs(a).max() * np.abs(other).max()) * 12):
                raise TestFailure(f"{name} = {got:.3g}: a projected gradient must be orthogonal to the other task's gradient")
        upd = a + b
        if upd @ g1 < -1e-9 or upd @ g2 < -1e-9:
            raise TestFailure("the update g1_pc + g2_pc must not point against either task's gradient")
        done += 1


@pcgrad_task.test("both projections use the ORIGINAL gradients (order does not matter)", hint="compute g2_pc from the original g1, not from the already projected g1_pc: save the originals (or the dot product) before changing anything")
def _original(fn: Callable[..., Any]) -> None:
    rng = np.random.default_rng(7)
    done = 0
    while done < 10:
        g1, g2 = rng.standard_normal(8), rng.standard_normal(8)
        if g1 @ g2 >= -0.5:
            continue
        a, b = _expect(fn, g1, g2, "random conflicting pair")
        b2, a2 = _call(fn, g2, g1)
        if not (np.allclose(a, a2) and np.allclose(b, b2)):
            raise TestFailure("pcgrad(g2, g1) must give the same two projections as pcgrad(g1, g2), swapped")
        done += 1


@pcgrad_task.test("a zero gradient conflicts with nothing; inputs are not modified", hint="when a gradient is all zeros its dot product is 0: return both unchanged (no division by |0|^2, no nan); work on copies, not in place")
def _zero(fn: Callable[..., Any]) -> None:
    g1, g2 = np.zeros(4), np.array([1.0, -2.0, 0.5, 3.0])
    a, b = _call(fn, g1, g2)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise TestFailure("a zero gradient produced nan or inf")
    if not (np.array_equal(a, g1) and np.array_equal(b, g2)):
        raise TestFailure(f"with g1 = 0 both must come back unchanged, got {a.tolist()}, {b.tolist()}")
    x, y = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    x0, y0 = x.copy(), y.copy()
    fn(x, y)
    if not (np.array_equal(x, x0) and np.array_equal(y, y0)):
        raise TestFailure("pcgrad modified its input arrays in place")


@pcgrad_task.test("gradients of different shapes raise ValueError", hint="check g1.shape == g2.shape first and raise ValueError saying both shapes")
def _mismatch(fn: Callable[..., Any]) -> None:
    try:
        fn(np.ones(3), np.ones(4))
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001 - report what arrived instead
        raise TestFailure(f"expected ValueError for shapes (3,) and (4,), got {type(err).__name__}: {err}") from None
    raise TestFailure("expected ValueError for gradients of shapes (3,) and (4,), got no error")
