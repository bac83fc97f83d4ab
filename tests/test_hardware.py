"""course_lib.hardware: the spec table's integrity, calculators against hand arithmetic, FLOPs against
torch's FlopCounterMode, the ring all-reduce formula against a simulation, the measurements, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from course_lib import hardware as hw


# --- the spec table -------------------------------------------------------------------------
def test_every_row_is_sourced_and_uses_known_precisions():
    assert hw.AS_OF and len(hw.AS_OF) == 10
    for dev in hw.HARDWARE.values():
        assert dev.source and dev.kind in ("GPU", "TPU", "CPU") and 2015 <= dev.year <= 2026
        assert set(dev.flops) <= set(hw.PRECISIONS) and set(dev.sparse_flops) <= set(hw.PRECISIONS)
        assert dev.mem_bandwidth > 0 and dev.mem_capacity > 0
        assert all(v > 0 for v in dev.flops.values())
    for link in hw.LINKS.values():
        assert link.source and link.bandwidth > 0
        assert link.kind in ("host-device", "device-device", "network", "storage", "memory")


def test_sparse_figures_are_twice_the_dense_ones():
    for dev in hw.HARDWARE.values():
        for p, sparse in dev.sparse_flops.items():
            assert sparse == pytest.approx(2 * dev.flops[p], rel=1e-3), (dev.name, p)


def test_datasheet_numbers_we_rely_on():
    h100, a100 = hw.HARDWARE["H100 SXM"], hw.HARDWARE["A100 SXM 80GB"]
    assert h100.peak("bf16") == 989.5e12 and h100.peak("fp8") == 1979e12 and h100.mem_bandwidth == 3.35e12
    assert a100.peak("tf32") == 156e12 and a100.mem_bandwidth == 2039e9
    assert h100.ridge_point("bf16") == pytest.approx(989.5e12 / 3.35e12)
    assert hw.HARDWARE["H200 SXM"].flops == h100.flops              # same compute, more memory
    assert "fp8" not in a100.flops                                   # Ampere has no FP8: absent, not zero
    with pytest.raises(ValueError, match="fp8"):
        a100.peak("fp8")


def test_links_by_hand():
    assert hw.LINKS["PCIe 4.0 x16"].bandwidth == pytest.approx(31.5077e9, rel=1e-4)   # 16 GT/s, 128b/130b
    assert hw.LINKS["PCIe 5.0 x16"].bandwidth == pytest.approx(2 * hw.LINKS["PCIe 4.0 x16"].bandwidth)
    assert hw.LINKS["100 GbE"].bandwidth == 12.5e9
    assert hw.LINKS["DDR5-4800 (1 channel)"].bandwidth == 38.4e9
    assert hw.LINKS["HBM3 (1 stack)"].bandwidth == pytest.approx(819.2e9)
    assert 12 * hw.LINKS["DDR5-4800 (1 channel)"].bandwidth == pytest.approx(hw.HARDWARE["EPYC 9654 (CPU)"].mem_bandwidth)


def test_table_rows():
    rows = hw.spec_rows()
    assert len(rows) == len(hw.HARDWARE) and rows[0]["device"] == "A100 SXM 80GB"
    assert rows[0]["fp8 dense TFLOP/s"] is None and rows[0]["bf16 dense TFLOP/s"] == 312
    assert {r["link"] for r in hw.link_rows()} == set(hw.LINKS)


# --- transfer times -------------------------------------------------------------------------
def test_transfer_time_by_hand():
    assert hw.transfer_time(14e9, 31.5e9) == 14e9 / 31.5e9
    assert hw.transfer_time(1e6, 1e9, 5e-6) == pytest.approx(1.005e-3)
    assert hw.transfer_time(0, 1e9, 2e-6) == 2e-6
    assert hw.transfer_time(3, 2) == 1.5                              # no integer division
    assert hw.transfer_time(np.int64(10), np.float32(5.0)) == 2.0


@pytest.mark.parametrize("args, match", [
    ((-1, 1e9), "n_bytes"), ((1, 0), "bandwidth"), ((1, -1e9), "bandwidth"), ((1, 1e9, -1e-6), "latency"),
    ((float("nan"), 1e9), "finite"), (("10", 1e9), "finite"), ((True, 1e9), "finite"),
])
def test_transfer_time_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        hw.transfer_time(*args)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
def test_ring_allreduce_simulation_matches_the_formula(p):
    rng = np.random.default_rng(p)
    n = 24 * p
    chunks = [rng.integers(-5, 5, n).astype(np.float32) for _ in range(p)]
    results, steps, sent = hw.ring_allreduce(chunks)
    for r in results:
        np.testing.assert_array_equal(r, np.sum(chunks, axis=0))
    assert steps == 2 * (p - 1)
    assert sent == 2 * (p - 1) / p * chunks[0].nbytes
    bw, lat = 1e9, 1e-5
    assert hw.ring_allreduce_time(chunks[0].nbytes, p, bw, lat) == pytest.approx(steps * lat + sent / bw)


def test_ring_allreduce_bad_input():
    with pytest.raises(ValueError, match="n_workers"):
        hw.ring_allreduce_time(1e6, 0, 1e9)
    with pytest.raises(ValueError, match="bandwidth"):
        hw.ring_allreduce_time(1e6, 1, 0)
    with pytest.raises(ValueError, match="divisible"):
        hw.ring_allreduce([np.zeros(5), np.zeros(5)])


# --- arithmetic intensity and the roofline --------------------------------------------------
def test_op_cost_by_hand():
    M, K, N = 8, 64, 32
    assert hw.op_cost("gemm", (M, K, N), "float32") == (2 * M * K * N, 4 * (M * K + K * N + M * N))
    assert hw.op_cost("gemv", (M, K), "bf16") == (2 * M * K, 2 * (M * K + K + M))
    assert hw.op_cost("add", (3, 5), np.float64) == (15, 8 * 45)
    assert hw.op_cost("softmax", 10, "fp16") == (50, 2 * 20)
    BH, T, d = 2, 16, 8
    assert hw.op_cost("attention_fused", (BH, T, d), "float32") == (4 * BH * T * T * d, 4 * BH * 4 * T * d)
    assert hw.op_cost("attention_naive", (BH, T, d), "float32")[1] == 4 * BH * (4 * T * d + 4 * T * T)
    assert hw.arithmetic_intensity("gemm", (1024, 1024, 1024)) == pytest.approx(1024 / 6)
    assert hw.arithmetic_intensity("add", 100, "int8") == pytest.approx(1 / 3)


def test_intensity_scales_with_bytes_per_element():
    for op, shape in [("gemm", (64, 32, 16)), ("gemv", (64, 32)), ("softmax", (4, 4)), ("attention_naive", (1, 8, 4))]:
        ai32 = hw.arithmetic_intensity(op, shape, "fp32")
        assert hw.arithmetic_intensity(op, shape, "bf16") == pytest.approx(2 * ai32)
        assert hw.arithmetic_intensity(op, shape, "int4") == pytest.approx(8 * ai32)


def test_flops_equal_flop_counter_mode():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    def counted(fn):
        with FlopCounterMode(display=False) as c:
            fn()
        return c.get_total_flops()

    A, B = torch.rand(12, 20), torch.rand(20, 7)
    assert counted(lambda: A @ B) == hw.op_cost("gemm", (12, 20, 7))[0]
    x = torch.rand(20, 1)                                            # GEMV as an (M, K) @ (K, 1) product
    assert counted(lambda: A @ x) == hw.op_cost("gemv", (12, 20))[0]
    q = torch.rand(2, 3, 16, 8)                                      # (B, H, T, d): 6 heads
    with sdpa_kernel(SDPBackend.MATH):
        got = counted(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert got == hw.op_cost("attention_naive", (6, 16, 8))[0] == hw.op_cost("attention_fused", (6, 16, 8))[0]


def test_fusion_only_changes_the_bytes():
    naive, fused = (hw.op_cost(op, (8, 1024, 64), "bf16") for op in ("attention_naive", "attention_fused"))
    assert naive[0] == fused[0] and naive[1] > fused[1]
    assert hw.arithmetic_intensity("attention_fused", (8, 1024, 64), "bf16") == pytest.approx(1024 / 2)


@pytest.mark.parametrize("args, match", [
    (("conv", (1, 2, 3)), "unknown op"), (("gemm", (2, 3)), "gemm takes"), (("gemv", (2, 0)), "positive"),
    (("add", (2, 2.5)), "positive"), (("gemm", (2, 3, 4), "complex128"), "dtype"), (("add", ()), "positive"),
])
def test_op_cost_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        hw.op_cost(*args)


def test_bytes_per_element():
    assert hw.bytes_per_element("fp32") == hw.bytes_per_element(np.float32) == hw.bytes_per_element(torch.float32) == 4
    assert hw.bytes_per_element(torch.bfloat16) == hw.bytes_per_element("BF16") == 2
    assert hw.bytes_per_element(np.dtype("int8")) == 1 and hw.bytes_per_element("int4") == 0.5
    with pytest.raises(ValueError, match="unknown dtype"):
        hw.bytes_per_element("float24")


def test_roofline():
    peak, bw = 100e9, 10e9                                            # ridge at 10 FLOP/byte
    assert hw.attainable_flops(1.0, peak, bw) == 10e9
    assert hw.attainable_flops(10.0, peak, bw) == peak
    assert hw.attainable_flops(1e6, peak, bw) == peak
    np.testing.assert_allclose(hw.attainable_flops(np.array([0.5, 20.0]), peak, bw), [5e9, peak])
    flops, moved = 1e9, 4e8                                           # AI 2.5: memory bound
    assert hw.roofline_time(flops, moved, peak, bw) == moved / bw == flops / hw.attainable_flops(flops / moved, peak, bw)
    with pytest.raises(ValueError):
        hw.attainable_flops(-1.0, peak, bw)
    with pytest.raises(ValueError):
        hw.roofline_time(1e9, 1e9, 0, bw)


def test_plot_roofline_draws_a_line_and_the_ridge():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    hw.plot_roofline(ax, 100e9, 10e9, label="x")
    assert len(ax.lines) == 2 and ax.lines[1].get_xdata()[0] == pytest.approx(10.0)
    plt.close(fig)


# --- measuring this machine (tiny sizes: these check plumbing, not speed) ---------------------
def test_measure_rates_and_gemm():
    rates = hw.measure_gemm([16, 32], threads=(1,), max_seconds=0.02)
    assert set(rates) == {1} and set(rates[1]) == {16, 32}
    r = rates[1][32]
    assert r.work == 2 * 32**3 and r.unit == "FLOP/s" and r.best >= r.median > 0 and r.seconds > 0
    with pytest.raises(ValueError, match="no kernels"):
        hw.measure_rates({}, unit="B/s")
    with pytest.raises(ValueError, match="work"):
        hw.measure_rates({"x": (lambda: None, 0)}, unit="B/s")
    with pytest.raises(ValueError, match="threads"):
        hw.measure_gemm([16], threads=(0,))


def test_measure_bandwidths_and_latency():
    triad = hw.measure_triad(100_000, threads=(1,), max_seconds=0.02)[1]
    assert triad.work == 1.2e6 and triad.best > 0
    a, b, c = torch.empty(1000), torch.empty(1000), torch.empty(1000)
    assert hw.measure_triad(arrays=(a, b, c), max_seconds=0.01)[1].work == 12_000 and bool((a == 7.5).all())
    with pytest.raises(ValueError, match="arrays"):
        hw.measure_triad(arrays=(a, b, torch.empty(10)))
    with pytest.raises(ValueError, match="positive int"):
        hw.measure_triad(0)
    sweep = hw.measure_copy_sweep([8, 4096, 1_000_000], max_seconds=0.02)
    assert sweep[1_000_000].work == 2e6 and all(r.best > 0 for r in sweep.values())
    with pytest.raises(ValueError, match="sizes"):
        hw.measure_copy_sweep([0])
    a = np.ones(8)
    assert 0 < hw.measure_call_latency(lambda: a + a, calls=10, repeats=2) < 1e-2


def test_measure_file_read(tmp_path):
    r = hw.measure_file_read(3 * 2**20 + 5, directory=str(tmp_path), repeats=1)
    assert r.intact and r.n_bytes == 3 * 2**20 + 5 and r.cached.best > 0
    assert r.evicted is None or r.evicted.best > 0
    assert r.filesystem != "" and not list(tmp_path.iterdir())       # the temporary file is gone


def test_load_measured_gpu(tmp_path):
    assert hw.load_measured_gpu(tmp_path / "absent.json") is None
    good = {"device": "x", "date": "2026-01-01", "peak_flops": {"bf16": 1e15}, "bandwidth": 3e12, "kernels": []}
    (tmp_path / "g.json").write_text(json.dumps(good))
    assert hw.load_measured_gpu(tmp_path / "g.json")["device"] == "x"
    (tmp_path / "bad.json").write_text(json.dumps({"device": "x"}))
    with pytest.raises(ValueError, match="lacks"):
        hw.load_measured_gpu(tmp_path / "bad.json")


def test_transfer_time_worked_example():
    """The lesson's headline: a 7B fp16 model over PCIe 4.0 x16 takes about 0.44 s."""
    t = hw.transfer_time(7e9 * 2, hw.LINKS["PCIe 4.0 x16"].bandwidth)
    assert math.isclose(t, 14e9 * 130 * 8 / (16e9 * 16 * 128))
    assert 0.44 < t < 0.45


def test_cache_sizes_are_positive_when_reported():
    caches = hw.cache_sizes()
    assert all(isinstance(v, int) and v > 0 for v in caches.values())
    assert set(caches) <= {"L1d", "L1", "L2", "L3", "L4"}
