"""Tests of course_lib.inference_cost: the roofline cost model of LLM inference."""

import math

import pytest

from course_lib import hardware as hw
from course_lib import inference_cost as ic


def test_decode_tokens_per_second_by_hand():
    # 8e9 weights, fp16, batch 4, 1e8 KV bytes each, 2e12 B/s, 1e15 FLOP/s
    mem = (8e9 * 2 + 4 * 1e8) / 2e12
    comp = 2 * 8e9 * 4 / 1e15
    assert mem > comp
    assert ic.decode_tokens_per_second(8e9, 2, 4, 1e8, 2e12, 1e15) == pytest.approx(4 / mem, rel=1e-12)
    # compute-bound: a tiny peak
    got = ic.decode_tokens_per_second(1e9, 1, 8, 0, 1e12, 1e12)
    assert got == pytest.approx(8 / max(2e9 * 8 / 1e12, 1e9 / 1e12), rel=1e-12)


def test_ridge_batch_balances_compute_and_memory():
    P, b, kv, bw, peak = 8e9, 2, 1e6, 3.35e12, 989e12
    B = ic.decode_ridge_batch(P, b, kv, bw, peak)
    assert 2 * P * B / peak == pytest.approx((P * b + B * kv) / bw, rel=1e-12)
    assert math.isinf(ic.decode_ridge_batch(P, b, 1e9, bw, peak))


def test_prefill_and_cost():
    assert ic.prefill_tokens_per_second(1e9, 2, 1000, 1e12, 1e14) == pytest.approx(1000 / max(2e12 / 1e14, 2e9 / 1e12))
    assert ic.cost_per_million_tokens(3.6, 1000) == pytest.approx(3.6 / 3.6e6 * 1e6)


def test_batch_one_is_memory_bound_on_every_gpu():
    for dev in hw.HARDWARE.values():
        for m in ic.MODELS.values():
            for prec in ic.PRECISION_BYTES:
                row = ic.scenario(dev, m, prec, 1, context=128)
                assert row["memory/compute time"] > 1


def test_memory_fit():
    h100 = hw.HARDWARE["H100 SXM"]
    assert ic.scenario(h100, ic.MODELS["8B"], "fp16", 1)["fits"]
    assert not ic.scenario(h100, ic.MODELS["70B"], "fp16", 1)["fits"]
    assert ic.scenario(h100, ic.MODELS["70B"], "int4", 1)["fits"]


@pytest.mark.parametrize("args", [(0, 2, 1, 0, 1e12, 1e15), (1e9, 2, 0, 0, 1e12, 1e15), (1e9, 2, 1.5, 0, 1e12, 1e15),
                                  (1e9, 2, 1, -1, 1e12, 1e15), (1e9, 2, 1, 0, 0, 1e15), (1e9, 2, 1, 0, 1e12, float("nan"))])
def test_bad_input(args):
    with pytest.raises(ValueError):
        ic.decode_tokens_per_second(*args)


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        ic.scenario(hw.HARDWARE["L4"], ic.MODELS["1B"], "fp8", 1)
