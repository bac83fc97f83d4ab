"""Systolic arrays: a cycle-level weight-stationary simulator and its closed-form cycle count.

A systolic array (Kung & Leiserson 1979; the MXU of Google's TPU, Jouppi et al.
2017) is an ``R x C`` grid of multiply-accumulate (MAC) cells that only talk to
their neighbours.  In the **weight-stationary** dataflow this module simulates:

* **weights** stay put: cell ``(i, j)`` holds ``W[i, j]`` of an ``R x C`` weight
  tile.  A tile is loaded by shifting rows down from the top edge, one row per
  cycle, so loading takes ``R`` cycles;
* **activations** enter at the left edge and move one cell right per cycle.
  Row ``m`` of ``X`` is fed *skewed*: ``X[m, i]`` enters row ``i`` at cycle ``m + i``;
* **partial sums** start at 0 above the top row and move one cell down per
  cycle; each cell adds ``a * w``.  What leaves the bottom of column ``j`` is
  ``Y[m, j] = sum_i X[m, i] W[i, j]``.

The schedule (what :func:`systolic_cycles` counts, and :func:`simulate_matmul` runs):

1. ``W`` (``K x N``) is cut into ``ceil(K / R) * ceil(N / C)`` tiles; ragged
   edges are padded with zeros, and a padded tile costs as much as a full one.
2. For each tile, all ``M`` rows of ``X`` (its ``R`` columns of ``K``) stream
   through; the tile is done when the array has drained: ``M + R + C - 2``
   cycles (the first row needs ``R + C - 1`` cycles to reach the far corner,
   then one row finishes per cycle).  The next tile starts on an empty array.
3. Loading a tile's weights takes ``R`` cycles.  Without double buffering it
   happens before every tile, with the array idle.  With double buffering the
   next tile shifts into a second weight register while the current tile
   computes (``R <= M + R + C - 2`` always, so it is always hidden), and only
   the first load is exposed.
4. Outputs of the ``ceil(K / R)`` tiles of one column block are added in
   accumulators below the array, at no cycle cost.

Arrays are given as ``(rows, cols)``; ``rows`` (R) runs along K, ``cols`` (C) along N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .validate import as_matrix


# ---------------------------------------------------------------------------
# The closed form
# ---------------------------------------------------------------------------


def check_array(array: Any) -> tuple[int, int]:
    """Return ``array`` as ``(rows, cols)`` of positive ints, or raise ``ValueError``."""
    if not isinstance(array, (tuple, list)) or len(array) != 2:
        raise ValueError(f"array must be a (rows, cols) pair such as (128, 128), got {array!r}")
    rows, cols = array
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"array {name} must be a positive int, got {v!r}")
    return int(rows), int(cols)


def _check_dims(**dims: Any) -> tuple[int, ...]:
    out = []
    for name, v in dims.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
        out.append(int(v))
    return tuple(out)


def tile_grid(K: int, N: int, array: tuple[int, int]) -> tuple[int, int]:
    """Number of weight tiles along K and along N: ``(ceil(K / R), ceil(N / C))``."""
    K, N = _check_dims(K=K, N=N)
    R, C = check_array(array)
    return -(-K // R), -(-N // C)


def cycle_breakdown(M: int, K: int, N: int, array: tuple[int, int], *, double_buffer: bool = False) -> dict[str, int]:
    """Where the cycles of (M x K) @ (K x N) go: exposed weight loads, streaming, fill and drain.

    Returns ``{"tiles", "load", "stream", "fill_drain", "total"}`` (cycles except ``tiles``);
    ``load + stream + fill_drain == total == systolic_cycles(...)``.
    """
    M, K, N = _check_dims(M=M, K=K, N=N)
    R, C = check_array(array)
    kt, nt = tile_grid(K, N, (R, C))
    tiles = kt * nt
    load = R if double_buffer else tiles * R       # only the first load is exposed when double-buffered
    stream = tiles * M                             # one new row of X enters per cycle
    fill_drain = tiles * (R + C - 2)               # the skewed wavefront crossing the array
    return {"tiles": tiles, "load": load, "stream": stream, "fill_drain": fill_drain,
            "total": load + stream + fill_drain}


def systolic_cycles(M: int, K: int, N: int, array: tuple[int, int], *, double_buffer: bool = False) -> int:
    """Cycles to compute (M x K) @ (K x N) on an R x C weight-stationary array.

    With ``T = ceil(K / R) * ceil(N / C)`` weight tiles (ragged edges padded):

    * without double buffering: ``T * (R + M + R + C - 2)``  (load, then stream and drain, per tile);
    * with double buffering:    ``R + T * (M + R + C - 2)``  (only the first load is exposed).

    Parameters
    ----------
    M, K, N : matrix dimensions (rows of X, the shared dimension, columns of W).
    array : ``(R, C)``, rows along K and columns along N (a TPU MXU is (128, 128)).
    double_buffer : whether the next tile's weights load while the current tile computes.
    """
    return cycle_breakdown(M, K, N, array, double_buffer=double_buffer)["total"]


def systolic_utilization(M: int, K: int, N: int, array: tuple[int, int], *, double_buffer: bool = False) -> float:
    """Useful MACs / MAC slots: ``M K N / (R C cycles)``, in (0, 1]."""
    R, C = check_array(array)
    return M * K * N / (R * C * systolic_cycles(M, K, N, array, double_buffer=double_buffer))


def peak_flops(n_arrays: int, rows: int, cols: int, clock_hz: float) -> float:
    """Peak FLOP/s of ``n_arrays`` arrays of ``rows x cols`` cells: one MAC (2 FLOPs) per cell per cycle."""
    n_arrays, rows, cols = _check_dims(n_arrays=n_arrays, rows=rows, cols=cols)
    if not clock_hz > 0:
        raise ValueError(f"clock_hz must be > 0, got {clock_hz!r}")
    return n_arrays * rows * cols * 2 * float(clock_hz)


def dollars_per_exaflop(price_per_hour: float, flops: float, utilization: float = 1.0) -> float:
    """Dollars to execute 10^18 FLOPs on a device rented at ``price_per_hour`` with ``flops`` peak FLOP/s.

    ``utilization`` (0, 1] is the share of peak actually achieved (MFU).
    """
    if not price_per_hour > 0 or not flops > 0:
        raise ValueError(f"price_per_hour and flops must be > 0, got {price_per_hour!r}, {flops!r}")
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization!r}")
    seconds = 1e18 / (flops * utilization)
    return price_per_hour * seconds / 3600.0


@dataclass(frozen=True)
class MXUChip:
    """One TPU generation: how many systolic arrays, their size and clock, and the published peak.

    ``clock_hz`` is None where the vendor does not publish it (it is then implied by the peak).
    """

    name: str
    mxus: int
    rows: int
    cols: int
    clock_hz: float | None
    published_peak: float
    precision: str
    source: str


#: Dated, sourced facts, as published (compiled 2026-11 from the sources named in each row).
TPU_CHIPS: tuple[MXUChip, ...] = (
    MXUChip("TPU v1 (2015)", 1, 256, 256, 700e6, 92e12, "int8",
            "Jouppi et al. 2017, In-Datacenter Performance Analysis of a TPU (ISCA): 65,536 MACs, 700 MHz, 92 TOPS"),
    MXUChip("TPU v3 (2018)", 4, 128, 128, 940e6, 123e12, "bf16",
            "cloud.google.com/tpu/docs/v3 (2 TensorCores x 2 MXUs, 123 TFLOPS); clock: Jouppi et al. 2020 (CACM) and 2023 (ISCA)"),
    MXUChip("TPU v4 (2021)", 8, 128, 128, 1050e6, 275e12, "bf16",
            "cloud.google.com/tpu/docs/v4 (2 TensorCores x 4 MXUs, 275 TFLOPS); clock: Jouppi et al. 2023 (ISCA)"),
    MXUChip("TPU v5e (2023)", 4, 128, 128, None, 197e12, "bf16",
            "cloud.google.com/tpu/docs/v5e (1 TensorCore x 4 MXUs, 197 TFLOPS); clock not published"),
)


# ---------------------------------------------------------------------------
# The cycle-level simulator
# ---------------------------------------------------------------------------


@dataclass
class ArrayState:
    """The registers of an R x C weight-stationary array; every field is an (R, C) array.

    Tags say which row ``m`` of X (or Y) a value belongs to, ``-1`` for an empty
    register.  Hardware knows this from timing alone; the simulator carries the
    tags so that a wrong skew shows up as a *misaligned* partial sum.
    """

    w: np.ndarray            # stationary weight of each cell (the tile in use)
    w_real: np.ndarray       # bool: the weight is data, not padding
    shadow: np.ndarray       # second weight buffer: the next tile shifts in here (double buffering)
    shadow_real: np.ndarray
    a: np.ndarray            # activation register: passed one cell right next cycle
    a_tag: np.ndarray
    p: np.ndarray            # partial-sum register: passed one cell down next cycle
    p_tag: np.ndarray

    @classmethod
    def empty(cls, rows: int, cols: int, dtype: Any) -> ArrayState:
        z = lambda: np.zeros((rows, cols), dtype=dtype)  # noqa: E731
        no = lambda: np.zeros((rows, cols), dtype=bool)  # noqa: E731
        tag = lambda: np.full((rows, cols), -1, dtype=np.int64)  # noqa: E731
        return cls(z(), no(), z(), no(), z(), tag(), z(), tag())


def shift_in_weights(reg: np.ndarray, real: np.ndarray, row: np.ndarray, row_real: np.ndarray) -> None:
    """One cycle of weight loading: every row moves one cell down, ``row`` enters at the top.

    Feeding a tile's rows bottom-first (``R-1, ..., 0``) leaves row ``i`` in
    array row ``i`` after ``R`` cycles.
    """
    reg[1:] = reg[:-1].copy()
    real[1:] = real[:-1].copy()
    reg[0] = row
    real[0] = row_real


def left_edge(X_tile: np.ndarray, cycle: int, *, skew: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Values and tags entering the R rows at the left edge in ``cycle``.

    With the skew, row ``i`` receives ``X_tile[cycle - i, i]`` (row ``m`` of X
    enters row ``i`` at cycle ``m + i``); outside ``0 <= m < M`` it gets a bubble
    (value 0, tag -1).  ``skew=False`` feeds ``X_tile[cycle, :]`` all at once: wrong.
    """
    M, R = X_tile.shape
    rows = np.arange(R)
    m = cycle - rows if skew else np.full(R, cycle)
    ok = (m >= 0) & (m < M)
    values = np.zeros(R, dtype=X_tile.dtype)
    values[ok] = X_tile[m[ok], rows[ok]]
    return values, np.where(ok, m, -1)


def step(state: ArrayState, x_left: np.ndarray, tag_left: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Advance every cell by one clock cycle.

    Each cell reads the activation of its left neighbour and the partial sum of
    its upper neighbour *as they were at the end of the previous cycle* (the
    left column reads the edge input, the top row reads 0), does one MAC
    ``p = p_in + a * w``, and keeps ``a`` and ``p`` in its registers.

    Returns the bottom row's partial sums and tags after this cycle (what leaves
    the array), the number of MACs on real data, and the number of cells where
    the activation and the partial sum belong to different rows (0 when the
    skew is right).
    """
    a_in = np.concatenate([x_left[:, None], state.a[:, :-1]], axis=1)             # shift right
    a_tag_in = np.concatenate([tag_left[:, None], state.a_tag[:, :-1]], axis=1)
    p_in = np.concatenate([np.zeros_like(state.p[:1]), state.p[:-1]], axis=0)      # shift down
    p_tag_in = np.concatenate([a_tag_in[:1], state.p_tag[:-1]], axis=0)            # a new sum starts at the top
    misaligned = int(np.count_nonzero(p_tag_in != a_tag_in))
    macs = int(np.count_nonzero((a_tag_in >= 0) & state.w_real))
    state.a, state.a_tag = a_in, a_tag_in
    state.p, state.p_tag = p_in + a_in * state.w, p_tag_in                         # one MAC per cell
    return state.p[-1].copy(), state.p_tag[-1].copy(), macs, misaligned


@dataclass(frozen=True)
class SystolicRun:
    """What :func:`simulate_matmul` measured.

    Attributes
    ----------
    Y : (M, N) product, int64 for integer inputs, float64 otherwise.
    cycles : clock cycles, weight loads included.
    macs : multiply-accumulates on real (non-padding) data; equals M * K * N when every product is done once.
    tiles : weight tiles processed.
    misaligned : cell-cycles where an activation met a partial sum of another row (0 for a correct skew).
    active : (cycles,) cells doing a real MAC in each cycle.
    history : register snapshots of the first recorded compute cycles of tile 0.
    """

    Y: np.ndarray
    cycles: int
    macs: int
    tiles: int
    misaligned: int
    array: tuple[int, int]
    active: np.ndarray
    history: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def utilization(self) -> float:
        """Real MACs / (R * C * cycles)."""
        return self.macs / (self.array[0] * self.array[1] * self.cycles)


def _operands(X: Any, W: Any) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.asarray(X), np.asarray(W)
    integer = all(np.issubdtype(v.dtype, np.integer) or v.dtype == np.bool_ for v in (x, w))
    dtype = np.int64 if integer else np.float64
    x, w = as_matrix(x, "X", dtype=dtype), as_matrix(w, "W", dtype=dtype)
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"inner dimensions differ: X is {x.shape} and W is {w.shape} (need X.shape[1] == W.shape[0])")
    return x, w


def simulate_matmul(X: Any, W: Any, array: tuple[int, int], *, double_buffer: bool = False,
                    record: int = 0, skew: bool = True) -> SystolicRun:
    """Compute ``X @ W`` cycle by cycle on an R x C weight-stationary array (the schedule of the module docstring).

    Parameters
    ----------
    X : (M, K) activations; W : (K, N) weights.  Integer inputs are computed in
        int64 (exact), anything else in float64.
    array : ``(R, C)``.
    double_buffer : load the next tile's weights into the shadow registers while the current tile computes.
    record : keep register snapshots of this many compute cycles of the first tile.
    skew : feed the left edge skewed (correct) or not (to see what breaks).

    The cycle count is not computed from a formula: a tile ends when all
    ``M * C`` partial sums of its columns have left the bottom edge.
    """
    X, W = _operands(X, W)
    R, C = check_array(array)
    M, K = X.shape
    N = W.shape[1]
    kt, nt = tile_grid(K, N, (R, C))
    Xp = np.zeros((M, kt * R), dtype=X.dtype)
    Xp[:, :K] = X
    Wp = np.zeros((kt * R, nt * C), dtype=W.dtype)
    Wp[:K, :N] = W
    real = np.zeros((kt * R, nt * C), dtype=bool)
    real[:K, :N] = True
    tiles = [(ki, nj) for nj in range(nt) for ki in range(kt)]

    def tile_rows(t: int) -> tuple[np.ndarray, np.ndarray]:
        ki, nj = tiles[t]
        rs, cs = slice(ki * R, (ki + 1) * R), slice(nj * C, (nj + 1) * C)
        return Wp[rs, cs], real[rs, cs]

    state = ArrayState.empty(R, C, X.dtype)
    Y = np.zeros((M, nt * C), dtype=X.dtype)
    cycles = macs = misaligned = 0
    active: list[int] = []
    history: list[dict[str, np.ndarray]] = []
    columns = np.arange(C)
    max_tile_cycles = M + 2 * (R + C) + 8          # a safety bound only, far above the real drain time
    for t, (ki, nj) in enumerate(tiles):
        w_tile, w_real = tile_rows(t)
        if t == 0 or not double_buffer:            # load with the array idle: R cycles, no MACs
            for i in range(R - 1, -1, -1):
                shift_in_weights(state.w, state.w_real, w_tile[i], w_real[i])
            cycles += R
            active.extend([0] * R)
        else:                                      # the shadow already holds this tile: swap, 0 cycles
            state.w, state.shadow = state.shadow, state.w
            state.w_real, state.shadow_real = state.shadow_real, state.w_real
        nxt = tile_rows(t + 1) if double_buffer and t + 1 < len(tiles) else None
        X_tile = Xp[:, ki * R:(ki + 1) * R]
        received, c = 0, 0
        while received < M * C:
            if c > max_tile_cycles:
                raise RuntimeError(f"tile {t} did not drain within {max_tile_cycles} cycles")
            if nxt is not None and c < R:          # next tile's weights shift in behind the compute
                shift_in_weights(state.shadow, state.shadow_real, nxt[0][R - 1 - c], nxt[1][R - 1 - c])
            x_left, tag_left = left_edge(X_tile, c, skew=skew)
            y, y_tag, n_macs, bad = step(state, x_left, tag_left)
            out = y_tag >= 0
            Y[y_tag[out], (nj * C + columns)[out]] += y[out]           # accumulators below the array
            received += int(out.sum())
            macs += n_macs
            misaligned += bad
            active.append(n_macs)
            if t == 0 and c < record:
                history.append({"cycle": np.array(c), "a": state.a.copy(), "a_tag": state.a_tag.copy(),
                                "p": state.p.copy(), "p_tag": state.p_tag.copy(), "w": state.w.copy()})
            c += 1
        cycles += c
    return SystolicRun(Y=Y[:, :N], cycles=cycles, macs=macs, tiles=len(tiles), misaligned=misaligned,
                       array=(R, C), active=np.asarray(active), history=history)
