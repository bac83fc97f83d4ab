"""course_lib.systolic: the simulator against np.matmul, and its cycle count against the closed form."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import systolic as S


def _shapes(seed: int, n: int) -> list[tuple[int, int, int, int, int]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(v) for v in (*rng.integers(1, 6, 2), *rng.integers(1, 13, 3))) for _ in range(n)]


@pytest.mark.parametrize("double_buffer", [False, True])
def test_integer_product_is_exact_and_cycles_match_the_formula(double_buffer):
    rng = np.random.default_rng(0)
    for R, C, M, K, N in _shapes(1, 25):
        X = rng.integers(-50, 51, size=(M, K))
        W = rng.integers(-50, 51, size=(K, N))
        run = S.simulate_matmul(X, W, (R, C), double_buffer=double_buffer)
        assert run.Y.dtype == np.int64
        assert np.array_equal(run.Y, X @ W), (R, C, M, K, N)
        assert run.cycles == S.systolic_cycles(M, K, N, (R, C), double_buffer=double_buffer), (R, C, M, K, N)
        assert run.macs == M * K * N          # every real product exactly once
        assert run.misaligned == 0
        assert run.tiles == S.cycle_breakdown(M, K, N, (R, C))["tiles"]
        assert len(run.active) == run.cycles and run.active.sum() == run.macs


def test_float_product_is_close():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((7, 11)).astype(np.float32)
    W = rng.standard_normal((11, 5)).astype(np.float32)
    run = S.simulate_matmul(X, W, (4, 3))
    assert run.Y.dtype == np.float64
    np.testing.assert_allclose(run.Y, X.astype(np.float64) @ W.astype(np.float64), rtol=1e-12, atol=1e-12)


def test_closed_form_values():
    # one full tile, serial: load R + stream M + fill/drain R + C - 2
    assert S.systolic_cycles(10, 4, 4, (4, 4)) == 4 + 10 + 4 + 4 - 2
    assert S.systolic_cycles(10, 4, 4, (4, 4), double_buffer=True) == 4 + 10 + 4 + 4 - 2
    # 129 columns on a 128-wide array: twice the tiles
    assert S.systolic_cycles(1024, 128, 129, (128, 128)) == 2 * S.systolic_cycles(1024, 128, 128, (128, 128))
    # rectangular array: K is tiled by rows, N by columns
    assert S.tile_grid(10, 10, (5, 2)) == (2, 5)
    b = S.cycle_breakdown(100, 300, 200, (128, 64), double_buffer=True)
    assert b["tiles"] == 3 * 4 and b["load"] == 128 and b["stream"] == 12 * 100 and b["fill_drain"] == 12 * (128 + 64 - 2)
    assert b["total"] == b["load"] + b["stream"] + b["fill_drain"]
    u = S.systolic_utilization(4096, 4096, 4096, (128, 128), double_buffer=True)
    assert 0.9 < u < 1.0


def test_ragged_tile_costs_a_full_tile_in_the_simulator_too():
    rng = np.random.default_rng(3)
    full = S.simulate_matmul(rng.integers(-3, 4, (6, 4)), rng.integers(-3, 4, (4, 4)), (4, 4))
    ragged = S.simulate_matmul(rng.integers(-3, 4, (6, 1)), rng.integers(-3, 4, (1, 1)), (4, 4))
    assert full.cycles == ragged.cycles
    assert ragged.utilization < full.utilization


def test_weights_really_load_row_by_row():
    reg, real = np.zeros((3, 2)), np.zeros((3, 2), dtype=bool)
    tile = np.arange(6.0).reshape(3, 2)
    for i in (2, 1, 0):
        S.shift_in_weights(reg, real, tile[i], np.ones(2, dtype=bool))
    assert np.array_equal(reg, tile) and real.all()


def test_left_edge_is_skewed():
    X = np.arange(12).reshape(4, 3)
    values, tags = S.left_edge(X, 2)
    assert tags.tolist() == [2, 1, 0] and values.tolist() == [X[2, 0], X[1, 1], X[0, 2]]
    values, tags = S.left_edge(X, 5)
    assert tags.tolist() == [-1, -1, 3] and values.tolist() == [0, 0, X[3, 2]]


def test_without_skew_the_sums_are_misaligned_and_wrong():
    rng = np.random.default_rng(4)
    X, W = rng.integers(-5, 6, (5, 4)), rng.integers(-5, 6, (4, 4))
    run = S.simulate_matmul(X, W, (4, 4), skew=False)
    assert run.misaligned > 0 and not np.array_equal(run.Y, X @ W)


def test_history_records_the_wavefront():
    X = np.ones((3, 3), dtype=np.int64)
    run = S.simulate_matmul(X, np.ones((3, 3), dtype=np.int64), (3, 3), record=4)
    assert len(run.history) == 4
    # at compute cycle c, cell (i, j) holds the activation of row c - i - j
    c = 3
    want = np.array([[c - i - j if 0 <= c - i - j < 3 else -1 for j in range(3)] for i in range(3)])
    assert np.array_equal(run.history[c]["a_tag"], want)


def test_peak_and_cost_helpers():
    assert S.peak_flops(1, 256, 256, 700e6) == 2 * 65536 * 700e6
    for chip in S.TPU_CHIPS:
        if chip.clock_hz is not None:
            assert S.peak_flops(chip.mxus, chip.rows, chip.cols, chip.clock_hz) == pytest.approx(chip.published_peak, rel=0.01)
    # $1 per hour at 1e18 FLOP/s: one exaFLOP takes one second
    assert S.dollars_per_exaflop(3600.0, 1e18) == pytest.approx(1.0)
    assert S.dollars_per_exaflop(3600.0, 1e18, utilization=0.5) == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [(0, 4), (4,), 4, (4, 2.5), (True, 4), "128x128"])
def test_bad_arrays(bad):
    with pytest.raises(ValueError, match="array"):
        S.systolic_cycles(4, 4, 4, bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="M must be a positive int"):
        S.systolic_cycles(0, 4, 4, (4, 4))
    with pytest.raises(ValueError, match="inner dimensions"):
        S.simulate_matmul(np.ones((2, 3)), np.ones((4, 2)), (2, 2))
    with pytest.raises(ValueError, match="2-D"):
        S.simulate_matmul(np.ones(3), np.ones((3, 2)), (2, 2))
    with pytest.raises(ValueError, match="NaN"):
        S.simulate_matmul(np.full((2, 2), np.nan), np.ones((2, 2)), (2, 2))
    with pytest.raises(ValueError, match="utilization"):
        S.dollars_per_exaflop(1.0, 1e12, utilization=1.5)
    with pytest.raises(ValueError, match="clock_hz"):
        S.peak_flops(1, 2, 2, 0)
