"""course_lib.capacity: closed forms, exact counts against real torch modules, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib import capacity as cap


# --- storage and replicas ---------------------------------------------------------------
def test_storage_bytes_formula():
    assert cap.storage_bytes(1000, 384) == 1000 * 384 * 4
    assert cap.storage_bytes(1000, 384, 2, replicas=3, overhead=0.25) == 1000 * 384 * 2 * 1.25 * 3
    assert cap.storage_bytes(0, 8) == 0.0
    assert cap.storage_bytes(np.int64(10), np.int32(4), 0.125) == 5.0  # numpy ints, 1-bit codes


def test_storage_bytes_matches_numpy_nbytes():
    for dtype in (np.float32, np.float16, np.int8):
        X = np.zeros((123, 77), dtype=dtype)
        assert cap.storage_bytes(*X.shape, X.itemsize) == X.nbytes


def test_replicas_for_qps():
    assert cap.replicas_for_qps(1000, 100) == math.ceil(1000 / 70) + 1 == 16
    assert cap.replicas_for_qps(1000, 100, target_utilization=1.0, spares=0) == 10  # no float noise
    assert cap.replicas_for_qps(49, 7, target_utilization=0.7, spares=0) == 10       # 49/(7*0.7) = 10.000000000000002
    assert cap.replicas_for_qps(0, 100, spares=2) == 2


def test_replicas_property_utilization_stays_below_target():
    rng = np.random.default_rng(0)
    for _ in range(200):
        qps, per, u = rng.uniform(1, 1e5), rng.uniform(1, 1e3), rng.uniform(0.1, 1.0)
        n = cap.replicas_for_qps(qps, per, target_utilization=u, spares=0)
        assert qps / (n * per) <= u * (1 + 1e-9)            # enough replicas
        assert n == 1 or qps / ((n - 1) * per) > u * (1 - 1e-9)  # and not one more than needed


@pytest.mark.parametrize("call, match", [
    (lambda: cap.storage_bytes(-1, 4), "n_items"),
    (lambda: cap.storage_bytes(10, 0), "dim"),
    (lambda: cap.storage_bytes(10, 4.5), "dim must be an int"),
    (lambda: cap.storage_bytes(10, 4, 0), "bytes_per_value"),
    (lambda: cap.storage_bytes(10, 4, replicas=0), "replicas"),
    (lambda: cap.storage_bytes(10, 4, overhead=-0.1), "overhead"),
    (lambda: cap.storage_bytes(10, 4, float("nan")), "finite"),
    (lambda: cap.replicas_for_qps(-1, 10), "peak_qps"),
    (lambda: cap.replicas_for_qps(10, 0), "qps_per_replica"),
    (lambda: cap.replicas_for_qps(10, 5, target_utilization=1.5), "target_utilization"),
    (lambda: cap.replicas_for_qps(10, 5, target_utilization=0), "target_utilization"),
    (lambda: cap.replicas_for_qps(10, 5, spares=-1), "spares"),
    (lambda: cap.replicas_for_qps("10", 5), "peak_qps"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- parameters -------------------------------------------------------------------------
def test_known_model_sizes():
    # GPT-2 small / medium / XL and BERT-base, as reported by Hugging Face's num_parameters()
    assert cap.transformer_params(12, 768, 50257, block_size=1024) == 124_439_808
    assert cap.transformer_params(24, 1024, 50257, block_size=1024) == 354_823_168
    assert cap.transformer_params(48, 1600, 50257, block_size=1024) == 1_557_611_200
    assert cap.bert_params(12, 768, 30522) == 109_482_240
    assert cap.bert_params(6, 384, 30522, 1536) == 22_713_216  # all-MiniLM-L6-v2


def test_approximation_is_12_L_d2_plus_V_d():
    for L, d, V in [(1, 8, 10), (12, 768, 50257), (96, 12288, 50257)]:
        assert cap.transformer_params(L, d, V, exact=False) == 12 * L * d * d + V * d
    assert cap.transformer_params(2, 64, 100, ffn=100, exact=False) == 2 * (4 * 64 * 64 + 2 * 64 * 100) + 100 * 64


def test_breakdown_sums_and_terms():
    parts = cap.transformer_param_breakdown(3, 32, 50, 96, block_size=16, bias=False, tie_weights=False)
    assert sum(parts.values()) == cap.transformer_params(3, 32, 50, 96, block_size=16, bias=False, tie_weights=False)
    assert parts["lm_head"] == parts["token_embedding"] == 50 * 32
    assert parts["layernorm"] == (2 * 3 + 1) * 32  # scale only without bias
    # untying adds exactly one V x d matrix; biases add 4d + ffn + d per layer and d per LayerNorm
    untied = cap.transformer_params(3, 32, 50, tie_weights=False)
    assert untied - cap.transformer_params(3, 32, 50) == 50 * 32
    assert cap.transformer_params(3, 32, 50) - cap.transformer_params(3, 32, 50, bias=False) == 3 * (4 * 32 + 128 + 32) + 7 * 32


def test_exact_count_equals_tinygpt_numel():
    torch = pytest.importorskip("torch")
    from course_lib.nn.tinygpt import GPTConfig, TinyGPT

    for kw in [dict(), dict(bias=False), dict(tie_weights=False), dict(n_ffn=72, bias=False, tie_weights=False)]:
        cfg = GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24, **kw)
        with torch.device("meta"):
            model = TinyGPT(cfg)
        want = sum(p.numel() for p in model.parameters())
        got = cap.transformer_params(cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.n_ffn, block_size=cfg.block_size,
                                     bias=cfg.bias, tie_weights=cfg.tie_weights)
        assert got == want, kw


@pytest.mark.parametrize("call, match", [
    (lambda: cap.transformer_params(0, 8, 10), "n_layer"),
    (lambda: cap.transformer_params(2, 8.0, 10), "d_model"),
    (lambda: cap.transformer_params(2, 8, 10, ffn=0), "ffn"),
    (lambda: cap.transformer_params(2, 8, 10, block_size=-1), "block_size"),
    (lambda: cap.bert_params(2, 8, 10, type_vocab_size=-1), "type_vocab_size"),
])
def test_param_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- FLOPs ------------------------------------------------------------------------------
def test_train_flops_closed_forms():
    assert cap.train_flops(70e9, 1.4e12) == pytest.approx(5.88e23)  # Chinchilla
    assert cap.train_flops(175e9, 300e9) == pytest.approx(3.15e23)  # GPT-3 (Brown et al.: 3.14e23)
    L, d, T, P, D = 4, 128, 256, 1e6, 1e9
    assert cap.train_flops(P, D, n_layer=L, d_model=d, seq_len=T) == pytest.approx(6 * P * D + 12 * L * T * d * D)
    assert cap.train_flops(P, D, n_layer=L, d_model=d) == 6 * P * D  # no T: no attention term


def test_train_is_three_forwards():
    for P, n, L, d, T in [(1e6, 100, 2, 64, 32), (7e9, 1e3, 32, 4096, 4096)]:
        fwd = cap.inference_flops(P, n, n_layer=L, d_model=d, context=T)
        assert cap.train_flops(P, n, n_layer=L, d_model=d, seq_len=T) == pytest.approx(3 * fwd)


def test_forward_flops_agrees_with_inference_flops():
    L, d, V, T, B = 3, 48, 101, 20, 5
    P = cap.transformer_params(L, d, V, exact=False)
    assert cap.transformer_forward_flops(L, d, T, batch=B, vocab_size=V) == cap.inference_flops(
        P, B * T, n_layer=L, d_model=d, context=T)
    assert cap.transformer_forward_flops(L, d, T, batch=B, vocab_size=V, attention=False) == 2 * P * B * T


def test_attention_share_is_T_over_6d():
    L, d, T = 12, 768, 1024
    P = 12 * L * d * d
    attn = cap.train_flops(P, 1, n_layer=L, d_model=d, seq_len=T) - cap.train_flops(P, 1)
    assert attn / (6 * P) == pytest.approx(T / (6 * d))


def test_forward_flops_match_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from course_lib.nn.tinygpt import GPTConfig, TinyGPT

    cfg = GPTConfig(block_size=32, vocab_size=50, n_layer=2, n_head=2, n_embd=16, n_ffn=40)
    model = TinyGPT(cfg)
    idx = torch.randint(0, 50, (3, 32))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx)
    assert counter.get_total_flops() == cap.transformer_forward_flops(2, 16, 32, batch=3, vocab_size=50, ffn=40)


def test_flops_bad_input():
    with pytest.raises(ValueError, match="P"):
        cap.train_flops(-1, 10)
    with pytest.raises(ValueError, match="D"):
        cap.train_flops(1, float("inf"))
    with pytest.raises(ValueError, match="context"):
        cap.inference_flops(1, 1, n_layer=2, d_model=4, context=-3)
    with pytest.raises(ValueError, match="batch"):
        cap.transformer_forward_flops(2, 8, 4, batch=0)


# --- memory and sizing ------------------------------------------------------------------
def test_memory_closed_forms():
    assert cap.weight_bytes(7e9, 2) == 14e9
    assert cap.kv_cache_bytes(80, 8 * 128, 1) == 327_680          # Llama-3-70B, bf16, per token
    assert cap.kv_cache_bytes(32, 4096, 4096, batch=2) == 2 * 32 * 4096 * 4096 * 2 * 2
    assert cap.training_state_bytes(1e9) == 16e9
    assert cap.training_state_bytes(1e9, weight_bytes=2, grad_bytes=2, optimizer_bytes=12) == 16e9
    with pytest.raises(ValueError, match="bytes_per_param"):
        cap.weight_bytes(10, 0)
    with pytest.raises(ValueError, match="d_kv"):
        cap.kv_cache_bytes(2, 0, 10)


def test_chinchilla_optimal_round_trip():
    for C in (1e18, 5.88e23, 1e26):
        P, D = cap.chinchilla_optimal(C)
        assert D == pytest.approx(20 * P)
        assert cap.train_flops(P, D) == pytest.approx(C)
    P, _ = cap.chinchilla_optimal(5.88e23)
    assert P == pytest.approx(70e9)  # Chinchilla itself: 70B params on 1.4T tokens
    rows = cap.compute_optimal_table([1e20, 1e21], flops_per_s=1e15)
    assert rows[1]["params"] / rows[0]["params"] == pytest.approx(math.sqrt(10))
    assert rows[0]["days"] == pytest.approx(1e5 / 86_400)
    with pytest.raises(ValueError, match="budgets"):
        cap.compute_optimal_table([])
    with pytest.raises(ValueError, match="C"):
        cap.chinchilla_optimal(0)
