"""course_lib.nn.gptq: GPTQ's invariants (H = I is round-to-nearest, the block size changes nothing), its gain on
held-out data, dead columns and damping; AWQ (alpha = 0 is round-to-nearest); the weight-swapping helper; bad input."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from course_lib.nn import gptq, quant  # noqa: E402


@pytest.fixture(scope="module")
def layer():
    return gptq.synthetic_layer(32, 192, 1024, seed=0)


def test_hessian():
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.testing.assert_allclose(gptq.hessian(X), 2 * X.T @ X / 4)
    with pytest.raises(ValueError, match="n_tokens"):
        gptq.hessian(np.ones(3))


def test_inverse_cholesky_upper(rng):
    A = rng.normal(size=(50, 20))
    H = A.T @ A / 50 + 0.1 * np.eye(20)
    U = gptq.inverse_cholesky_upper(H)
    assert np.allclose(np.triu(U), U) and (np.diag(U) > 0).all()
    np.testing.assert_allclose(U.T @ U, np.linalg.inv(H), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bits,group_size", [(4, 32), (4, 128), (3, None), (8, 64)])
def test_identity_hessian_is_round_to_nearest(layer, bits, group_size):
    W = layer[0]
    q = gptq.gptq_quantize(W, np.eye(W.shape[1]), bits, group_size)
    r = quant.rtn_quantize(W, bits, group_size)
    assert np.array_equal(q.codes, r.codes) and np.array_equal(q.scale, r.scale) and np.array_equal(q.zero, r.zero)
    assert np.array_equal(q.dequantize(), r.dequantize())


@pytest.mark.parametrize("group_size", [32, 100, None])
def test_block_size_does_not_change_the_result(layer, group_size):
    W, Xc, _ = layer
    H = gptq.hessian(Xc)
    base = gptq.gptq_quantize(W, H, 4, group_size, block_size=W.shape[1])  # one block: no lazy updates at all
    for block_size in (1, 48, 128):  # with 48 and 100, groups start inside blocks and straddle their ends
        q = gptq.gptq_quantize(W, H, 4, group_size, block_size=block_size)
        assert np.array_equal(q.codes, base.codes), block_size
        assert np.abs(q.dequantize() - base.dequantize()).max() <= 1e-12 * np.abs(W).max()


def test_gptq_beats_rtn_on_held_out_tokens(layer):
    W, Xc, Xt = layer
    q = gptq.gptq_quantize(W, gptq.hessian(Xc), 4, 64).dequantize()
    r = quant.rtn_quantize(W, 4, 64).dequantize()
    assert gptq.output_error(W, q, Xt) <= 0.5 * gptq.output_error(W, r, Xt)


def test_gptq_stays_on_the_grid(layer):
    W, Xc, _ = layer
    q = gptq.gptq_quantize(W, gptq.hessian(Xc), 3, 32)
    assert q.codes.max() <= 7
    for j in range(0, W.shape[1], 32):
        assert max(len(np.unique(row)) for row in q.dequantize()[:, j : j + 32]) <= 8


def test_dead_columns_and_rank_deficient_hessian(layer):
    W, _, _ = layer
    X = np.random.default_rng(1).normal(size=(100, W.shape[1]))  # 100 tokens < 256 inputs: H is singular
    X[:, [3, 77]] = 0.0
    q = gptq.gptq_quantize(W, gptq.hessian(X), 4, 64)
    W_hat = q.dequantize()
    assert np.isfinite(W_hat).all()
    assert np.all(W_hat[:, [3, 77]] == 0.0)  # dead inputs: weights zeroed, as the reference does


def test_gptq_bad_input(layer):
    W, Xc, _ = layer
    H = gptq.hessian(Xc)
    with pytest.raises(ValueError, match="columns"):
        gptq.gptq_quantize(W, H[:10, :10], 4, 64)
    asym = H.copy()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        gptq.gptq_quantize(W, asym, 4, 64)
    neg = H.copy()
    neg[2, 2] = -1.0
    with pytest.raises(ValueError, match="negative diagonal"):
        gptq.gptq_quantize(W, neg, 4, 64)
    with pytest.raises(ValueError, match="block_size"):
        gptq.gptq_quantize(W, H, 4, 64, block_size=0)
    with pytest.raises(ValueError, match="percdamp"):
        gptq.gptq_quantize(W, H, 4, 64, percdamp=-0.1)


def test_gptq_does_not_modify_inputs(layer):
    W, Xc, _ = layer
    H = gptq.hessian(Xc)
    W0, H0 = W.copy(), H.copy()
    gptq.gptq_quantize(W, H, 4, 64)
    assert np.array_equal(W, W0) and np.array_equal(H, H0)


def test_awq_alpha_zero_is_rtn_and_search_never_worse(layer):
    W, Xc, Xt = layer
    res = gptq.awq_search(W, Xc, 4, 64)
    assert len(res.alphas) == 20 and res.alphas[0] == 0.0 and res.alphas[-1] == 0.95
    s0 = gptq.awq_scales(np.abs(Xc).mean(0), 0.0)
    assert np.array_equal(s0, np.ones(W.shape[1]))
    rtn = quant.rtn_quantize(W, 4, 64).dequantize()
    assert np.array_equal(quant.rtn_quantize(W * s0, 4, 64).dequantize() / s0, rtn)
    assert res.losses.min() <= res.losses[0] and res.alpha > 0  # outlier channels: scaling helps
    assert gptq.output_error(W, res.dequantize(), Xt) < gptq.output_error(W, rtn, Xt)


def test_awq_scales_normalised():
    s = gptq.awq_scales(np.array([0.5, 2.0, 8.0]), 0.5)
    assert np.isclose(s.max() * s.min(), 1.0)
    assert gptq.awq_scales(np.array([0.0, 1.0]), 1.0).min() > 0  # clamped at 1e-4 before normalising


def test_awq_bad_input(layer):
    W, Xc, _ = layer
    with pytest.raises(ValueError, match="n_tokens"):
        gptq.awq_search(W, Xc[:, :10], 4, 64)


def test_output_error(layer):
    W, Xc, _ = layer
    assert gptq.output_error(W, W, Xc) == 0.0
    W2 = W * 1.1
    e = gptq.output_error(W, W2, Xc)
    assert np.isclose(e, 0.01, rtol=1e-4)
    energy = float(np.sum((Xc @ W.T) ** 2, dtype=np.float64))
    assert np.isclose(gptq.output_error(W, W2, Xc, energy=energy), e)
    with pytest.raises(ValueError, match="shape"):
        gptq.output_error(W, W[:, :5], Xc)


def test_synthetic_layer_is_reproducible():
    a, b = gptq.synthetic_layer(8, 64, 32, seed=3), gptq.synthetic_layer(8, 64, 32, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (8, 64) and a[1].shape == a[2].shape == (32, 64) and not np.array_equal(a[1], a[2])


def test_encoder_linears_and_swapped_weights():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.query = torch.nn.Linear(4, 3)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Module()
            self.encoder.layer = torch.nn.ModuleList([Block(), Block()])
            self.head = torch.nn.Linear(3, 2)  # not in the encoder: ignored

    m = Model()
    lin = gptq.encoder_linears(m)
    assert list(lin) == ["encoder.layer.0.query", "encoder.layer.1.query"]
    x = torch.ones(1, 4)
    before = m.encoder.layer[0].query(x).detach().clone()
    with gptq.swapped_weights(m, {"encoder.layer.0.query": np.zeros((3, 4))}):
        assert torch.equal(m.encoder.layer[0].query(x), m.encoder.layer[0].query.bias.detach()[None])
    assert torch.equal(m.encoder.layer[0].query(x), before)
    with pytest.raises(ValueError, match="unknown"):
        with gptq.swapped_weights(m, {"encoder.layer.9.query": np.zeros((3, 4))}):
            pass
    with pytest.raises(ValueError, match="shape"):
        with gptq.swapped_weights(m, {"encoder.layer.0.query": np.zeros((4, 4))}):
            pass
    assert torch.equal(m.encoder.layer[0].query(x), before)
    with pytest.raises(ValueError, match="no encoder"):
        gptq.encoder_linears(torch.nn.Linear(2, 2))
