"""Tests for the exercise of lesson 08.04 (quantization): ``quantize_affine`` and ``gptq_quantize``.

``quantize_affine(x, scale, zero_point, qmin, qmax)`` must return the integer
codes of ``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine``
(``q = clamp(rint(x * float32(1 / scale)) + zero_point, qmin, qmax)``, float32
arithmetic, round half to even), with ``scale`` and ``zero_point`` scalars or
arrays broadcastable to ``x``.

``gptq_quantize(W, H, bits, group_size, block_size=128, percdamp=0.01)`` must
return GPTQ's dequantized weights (float64, W's shape) on the grid of
``course_lib.nn.quant.grid_params`` / ``quantize_to_grid``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import TestFailure, register

LESSON = "08_hardware/04_quantization"


# --------------------------------------------------------------------------
# quantize_affine
# --------------------------------------------------------------------------


def _reference_codes(x: np.ndarray, scale: Any, zero_point: Any, qmin: int, qmax: int) -> np.ndarray:
    """A second route to the torch rule: the exact float64 product of the two float32 numbers, rounded once to float32."""
    inv = (np.float32(1.0) / np.asarray(scale, dtype=np.float32)).astype(np.float64)
    prod = (x.astype(np.float64) * inv).astype(np.float32)  # exact product -> one rounding = float32 multiply
    q = np.rint(prod).astype(np.float64) + np.asarray(zero_point, dtype=np.float64)  # exact for |q| < 2^53
    return np.clip(q, qmin, qmax).astype(np.int64)  # clamp before the cast: 1e30 does not fit an int64


def _codes(fn: Callable[..., Any], x: np.ndarray, scale: Any, zero_point: Any, qmin: int, qmax: int) -> np.ndarray:
    x_in = x.copy()
    out = fn(x_in, scale, zero_point, qmin, qmax)
    if not np.array_equal(x_in, x):
        raise TestFailure("x was modified in place")
    q = np.asarray(out)
    if q.shape != x.shape:
        raise TestFailure(f"expected codes of x's shape {x.shape}, got {q.shape}")
    if not np.issubdtype(q.dtype, np.integer):
        if not np.all(np.isfinite(q)) or not np.array_equal(q, np.round(q)):
            raise TestFailure(f"codes must be integers, got dtype {q.dtype} with non-integer values")
        raise TestFailure(f"codes must have an integer dtype (e.g. np.int64, or int8/uint8), got {q.dtype}")
    return q.astype(np.int64)


def _expect_codes(fn: Callable[..., Any], x: np.ndarray, scale: Any, zero_point: Any, qmin: int, qmax: int, what: str) -> None:
    got = _codes(fn, x, scale, zero_point, qmin, qmax)
    want = _reference_codes(x, scale, zero_point, qmin, qmax)
    bad = np.flatnonzero(got.ravel() != want.ravel())
    if bad.size:
        i = int(bad[0])
        xi = x.ravel()[i]
        raise TestFailure(f"{what}: {bad.size} of {x.size} codes differ; first: x = {xi!r} -> {got.ravel()[i]}, expected {want.ravel()[i]}")


def _ties(scale: float, seed: int, n: int = 200) -> np.ndarray:
    """float32 values whose float32 product with the float32 reciprocal is exactly k + 0.5."""
    from ...nn.quant import adversarial_values

    s = np.float32(scale)
    x = adversarial_values(float(s), 0, -128, 127, n=n, seed=seed)
    prod = x * (np.float32(1) / s)
    return x[(prod - np.floor(prod) == np.float32(0.5))]


def _traps(scale: float, seed: int, kind: str) -> np.ndarray:
    """Values where x / s and x * (1/s) round differently ("recip"), or float64 and float32 do ("f64")."""
    from ...nn.quant import adversarial_values

    s = np.float32(scale)
    x = adversarial_values(float(s), 0, -128, 127, n=400, seed=seed)
    inv = np.float32(1) / s
    prod32 = x * inv
    inside = np.abs(prod32) < 120
    if kind == "recip":
        return x[inside & (np.rint(x / s) != np.rint(prod32))]
    return x[inside & (np.rint(x.astype(np.float64) * np.float64(inv)) != np.rint(prod32))]


affine = register(
    "hardware.quantize_affine",
    function="quantize_affine",
    title="Affine quantization, bit-exact with torch's fake-quantize rule",
    lesson=LESSON,
    points=2,
    timeout_s=60,
)


@affine.test("returns integer codes of x's shape, inside [qmin, qmax]", hint="round, add the zero point, clamp with np.clip(q, qmin, qmax), and return an integer array (q.astype(np.int64))")
def _shape(fn: Callable[..., Any]) -> None:
    x = np.random.default_rng(0).normal(0, 1, (7, 5)).astype(np.float32)
    q = _codes(fn, x, 0.01, 3, -128, 127)
    if q.min() < -128 or q.max() > 127:
        raise TestFailure(f"codes outside [-128, 127]: min {q.min()}, max {q.max()}")


@affine.test("the worked example: x in [-1, 2] into quint8 (s = 3/255, z = 85)", hint="q = clamp(round(x / s) + z, qmin, qmax): round first, then add the zero point, then clamp")
def _worked(fn: Callable[..., Any]) -> None:
    x = np.array([-1.0, -0.26, 0.0, 0.71, 2.0], dtype=np.float32)
    got = _codes(fn, x, np.float32(3.0) / np.float32(255.0), 85, 0, 255)
    want = np.array([0, 63, 85, 145, 255])
    if not np.array_equal(got, want):
        raise TestFailure(f"expected {want.tolist()}, got {got.tolist()}")


@affine.test("exact ties round half to even", hint="np.rint / np.round / torch.round round half to even (2.5 -> 2, 3.5 -> 4); np.floor(v + 0.5) and Python's int(v + 0.5) round half up")
def _ties_even(fn: Callable[..., Any]) -> None:
    s = float(np.float32(0.0123))
    x = _ties(s, seed=1)
    if x.size < 20:  # pragma: no cover - the generator guarantees many
        raise AssertionError("test data generation failed")
    _expect_codes(fn, x, np.float32(s), 0, -128, 127, "values exactly halfway between two codes")


@affine.test("the zero point is added after rounding", hint="torch's fake_quantize computes rint(x * inv) + z: rint(x * inv + z) rounds ties differently when z is odd")
def _zero_after(fn: Callable[..., Any]) -> None:
    s = float(np.float32(0.0123))
    x = _ties(s, seed=2)
    _expect_codes(fn, x, np.float32(s), 3, -128, 127, "ties with an odd zero point (z = 3)")


@affine.test("multiply by the float32 reciprocal 1/scale (not divide)", hint="torch computes inv = 1.0f / scale once and then x * inv; x / scale rounds differently for some x. Compute inv = np.float32(1) / np.float32(scale)")
def _reciprocal(fn: Callable[..., Any]) -> None:
    s = float(np.float32(0.0123))
    x = _traps(s, seed=3, kind="recip")
    if x.size < 5:  # pragma: no cover
        raise AssertionError("test data generation failed")
    _expect_codes(fn, x, np.float32(s), 0, -128, 127, "values where x / s and x * (1/s) round differently")


@affine.test("float32 arithmetic, as torch's kernel", hint="keep x and inv in float32 (x.astype(np.float32) * np.float32(inv)): a float64 product rounds differently near .5")
def _float32(fn: Callable[..., Any]) -> None:
    s = float(np.float32(0.0071))
    x = _traps(s, seed=4, kind="f64")
    if x.size < 5:  # pragma: no cover
        raise AssertionError("test data generation failed")
    _expect_codes(fn, x, np.float32(s), 0, -128, 127, "values where float64 and float32 products round differently")


@affine.test("values outside the range are clamped (saturate, no wrap-around)", hint="clamp to [qmin, qmax] after adding the zero point and *before* converting to integers: casting 1e30 to int64 (or 200 to int8) wraps around")
def _clamp(fn: Callable[..., Any]) -> None:
    x = np.array([-1e6, -3.0, -1.3, 1.3, 2.0, 1e6, 0.0, 1e30, -1e30], dtype=np.float32)
    _expect_codes(fn, x, np.float32(0.01), 5, -128, 127, "out-of-range values (qint8)")
    _expect_codes(fn, x, np.float32(0.01), 130, 0, 255, "out-of-range values (quint8, z = 130)")


@affine.test("per-channel scales and zero points broadcast along rows (== torch.fake_quantize_per_channel_affine)", hint="scale and zero_point may be arrays of shape (C, 1): use numpy broadcasting, do not call float(scale) or int(zero_point)")
def _per_channel(fn: Callable[..., Any]) -> None:
    from ...nn.quant import minilm_linear_weights

    rng = np.random.default_rng(5)
    try:
        w = next(iter(minilm_linear_weights().values()))[:48].copy()
    except ImportError:  # the MiniLM package is optional: heavy-tailed random weights instead
        w = (0.05 * rng.standard_t(5, size=(48, 384))).astype(np.float32)
    scale = (np.abs(w).max(axis=1, keepdims=True) / np.float32(100.0)).astype(np.float32)  # some weights clip
    zp = rng.integers(-5, 6, size=(w.shape[0], 1))
    _expect_codes(fn, w, scale, zp, -128, 127, "MiniLM weights, per-row scale and zero point")
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    ref = torch.fake_quantize_per_channel_affine(torch.from_numpy(w), torch.from_numpy(scale[:, 0]),
                                                 torch.from_numpy(zp[:, 0].astype(np.int32)), 0, -128, 127).numpy()
    got = (_codes(fn, w, scale, zp, -128, 127) - zp).astype(np.float32) * scale
    if not np.array_equal(got, ref):
        raise TestFailure(f"(q - z) * s differs from torch.fake_quantize_per_channel_affine in {int(np.sum(got != ref))} values")


# --------------------------------------------------------------------------
# gptq_quantize
# --------------------------------------------------------------------------


def _layer(seed: int, rows: int = 64, cols: int = 256, n_tokens: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ...nn.gptq import synthetic_layer

    return synthetic_layer(rows, cols, n_tokens, seed)


def _gptq_call(fn: Callable[..., Any], W: np.ndarray, H: np.ndarray, bits: int, group_size: int, **kw: Any) -> np.ndarray:
    W_in, H_in = W.copy(), H.copy()
    out = fn(W_in, H_in, bits, group_size, **kw)
    if not (np.array_equal(W_in, W) and np.array_equal(H_in, H)):
        raise TestFailure("W or H was modified in place: work on copies (W = np.array(W, dtype=np.float64))")
    W_hat = np.asarray(out)
    if W_hat.shape != W.shape:
        raise TestFailure(f"expected the dequantized weights, shape {W.shape}, got {W_hat.shape}")
    if not np.issubdtype(W_hat.dtype, np.floating) or not np.isfinite(W_hat).all():
        raise TestFailure("the result must be a finite float array (NaN or inf: is the Cholesky input damped?)")
    return W_hat.astype(np.float64)


def _errors(W: np.ndarray, W_hat: np.ndarray, X: np.ndarray) -> float:
    from ...nn.gptq import output_error

    return output_error(W, W_hat, X)


gptq_task = register(
    "hardware.gptq_quantize",
    function="gptq_quantize",
    title="GPTQ: column-by-column quantization with error feedback",
    lesson=LESSON,
    points=3,
    timeout_s=120,
)


@gptq_task.test("returns W's shape, finite, inputs untouched", hint="return the dequantized weights scale * (q - zero) as a float64 array of W's shape; copy W and H before editing them")
def _g_shape(fn: Callable[..., Any]) -> None:
    W, Xc, _ = _layer(10, rows=16, cols=64)
    from ...nn.gptq import hessian

    _gptq_call(fn, W, hessian(Xc), 4, 32)


@gptq_task.test("H = I reproduces round-to-nearest exactly", hint="with H = I the inverse Cholesky factor is diagonal, so no error may leak to other columns; take each group's grid from quant.grid_params and round with quant.quantize_to_grid, in float64")
def _g_identity(fn: Callable[..., Any]) -> None:
    from ...nn.quant import rtn_quantize

    W, _, _ = _layer(11, rows=32, cols=128)
    for bits, g in ((4, 32), (3, 128)):
        got = _gptq_call(fn, W, np.eye(W.shape[1]), bits, g)
        want = rtn_quantize(W, bits, g).dequantize()
        bad = np.abs(got - want) > 1e-6 * float(np.abs(W).max())
        if bad.any():
            r, c = (int(v) for v in np.argwhere(bad)[0])
            raise TestFailure(f"bits={bits}, group_size={g}: {int(bad.sum())} weights differ from round-to-nearest; first at row {r}, column {c}: {got[r, c]:.6g} vs {want[r, c]:.6g}")


@gptq_task.test("every row-group lies on a 2^bits-level grid", hint="quantize each column with its group's (scale, zero) and store scale * (q - zero); the grid of a group is fixed when its first column is reached")
def _g_grid(fn: Callable[..., Any]) -> None:
    from ...nn.gptq import hessian

    W, Xc, _ = _layer(12, rows=24, cols=128)
    bits, g = 3, 32
    W_hat = _gptq_call(fn, W, hessian(Xc), bits, g)
    for j in range(0, W.shape[1], g):
        levels = max(len(np.unique(np.round(row, 12))) for row in W_hat[:, j : j + g])
        if levels > 2**bits:
            raise TestFailure(f"group starting at column {j}: a row uses {levels} distinct values, more than 2^{bits} = {2**bits}")


@gptq_task.test("error feedback pays: held-out layer-output error <= 0.8 x round-to-nearest", hint="after rounding column i, spread err = (w - q) / U[i, i] onto the later columns: W[:, i+1:] -= outer(err, U[i, i+1:]), with U the upper Cholesky factor of inv(H)")
def _g_better(fn: Callable[..., Any]) -> None:
    from ...nn.gptq import hessian
    from ...nn.quant import rtn_quantize

    for seed in (13, 14):
        W, Xc, Xt = _layer(seed)
        got = _gptq_call(fn, W, hessian(Xc), 4, 64)
        ratio = _errors(W, got, Xt) / _errors(W, rtn_quantize(W, 4, 64).dequantize(), Xt)
        if not ratio <= 0.8:
            raise TestFailure(f"layer seed {seed}: GPTQ / RTN output error on held-out tokens = {ratio:.3f}, expected <= 0.8")


@gptq_task.test("as good as the reference GPTQ (error within 5%)", hint="use the *inverse* Hessian's upper Cholesky factor (np.linalg.cholesky(np.linalg.inv(H)).T, after damping), not H itself, and divide each error by its diagonal entry U[i, i]")
def _g_reference(fn: Callable[..., Any]) -> None:
    from ...nn.gptq import gptq_quantize, hessian

    W, Xc, Xt = _layer(15, rows=48, cols=256)
    H = hessian(Xc)
    got = _errors(W, _gptq_call(fn, W, H, 4, 128), Xt)
    want = _errors(W, gptq_quantize(W, H, 4, 128).dequantize(), Xt)
    if not got <= 1.05 * want:
        raise TestFailure(f"held-out output error {got:.4g}, the reference reaches {want:.4g} (ratio {got / want:.3f}, allowed 1.05)")


@gptq_task.test("the block size does not change the result", hint="lazy blocks defer the updates of later blocks, they must not skip any; and when a group starts inside a block, take its grid from the block's updated columns (W1), not from W, which lacks this block's updates")
def _g_blocks(fn: Callable[..., Any]) -> None:
    from ...nn.gptq import hessian

    W, Xc, _ = _layer(16, rows=32, cols=256)
    H = hessian(Xc)
    a = _gptq_call(fn, W, H, 4, 64, block_size=32)
    b = _gptq_call(fn, W, H, 4, 64, block_size=128)
    diff = np.abs(a - b) > 1e-6 * float(np.abs(W).max())
    if diff.any():
        raise TestFailure(f"block_size=32 and block_size=128 give {int(diff.sum())} different weights (of {W.size})")


@gptq_task.test("robust: fewer tokens than inputs and a dead input", hint="add the damping percdamp * mean(diag H) to the diagonal before the Cholesky factorisation, and give a dead input (H[j, j] == 0) H[j, j] = 1 and W[:, j] = 0")
def _g_singular(fn: Callable[..., Any]) -> None:
    from ...nn.gptq import hessian
    from ...nn.quant import rtn_quantize

    W, Xc, Xt = _layer(17, rows=32, cols=128, n_tokens=96)  # rank(H) <= 96 < 128
    Xc, Xt = Xc.copy(), Xt.copy()
    Xc[:, 5] = 0.0
    Xt[:, 5] = 0.0
    got = _gptq_call(fn, W, hessian(Xc), 4, 64)
    ratio = _errors(W, got, Xt) / _errors(W, rtn_quantize(W, 4, 64).dequantize(), Xt)
    if not ratio <= 1.5:
        raise TestFailure(f"output error {ratio:.2f}x round-to-nearest on held-out tokens: the damping or dead-column handling is off")
