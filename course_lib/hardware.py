"""Hardware numbers: a dated, sourced spec table, transfer times, the roofline, and this machine measured.

Four parts, used by chapter 08 (lessons 00 and 01) and the inference-hardware lesson:

* :data:`HARDWARE` and :data:`LINKS`: what the datasheets say about a handful
  of accelerators, CPUs and links, each row with its source and the date the
  table was compiled (:data:`AS_OF`).  A number we could not trace to a
  vendor document is left out (``None`` or absent), never guessed.
* :func:`transfer_time` and :func:`ring_allreduce_time`: how long moving
  bytes takes, from bandwidth and latency.
* :func:`op_cost`, :func:`arithmetic_intensity`, :func:`attainable_flops`,
  :func:`roofline_time`: the roofline model (Williams, Waterman and Patterson,
  CACM 2009).
* ``measure_*``: the same quantities measured on the machine running the
  notebook (GEMM FLOP/s, STREAM triad, memcpy by size, a file read, the
  latency of a tiny call), always through :func:`course_lib.perf.time_fn` and reported as
  the best of interleaved repeats, which is the least noisy estimate of what
  the hardware *can* do on a shared machine.

Units, everywhere: SI bytes (1 GB = 1e9 bytes, 1 GiB = 2**30 bytes), bytes per
second, seconds, FLOPs with one multiply-add counted as 2 FLOPs.  Peak FLOP/s
are **dense** (no 2:4 structured sparsity) unless a name says ``sparse``.
Int8 rates are integer operations per second (TOPS) stored in the same field.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from . import perf
from .validate import check_number

#: The date this table was compiled from the documents named in each row.
AS_OF = "2026-11-27"
#: Precisions of the spec table, in the order the tables show them.
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")

TERA = 1e12
GIGA = 1e9


# --------------------------------------------------------------------------- #
# The spec table
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Accelerator:
    """One device as its datasheet describes it.

    Attributes
    ----------
    name, vendor, kind : e.g. "H100 SXM", "NVIDIA", "GPU" (or "TPU", "CPU").
    year : year of launch.
    flops : dense peak FLOP/s by precision (``PRECISIONS``); a precision that is
        absent is not supported or not published.  Int8 is in OP/s.
    sparse_flops : the figures the datasheet quotes *with* 2:4 structured
        sparsity (twice the dense ones), where it quotes any.
    mem_bandwidth : peak memory bandwidth, bytes/s.
    mem_capacity : memory capacity, bytes (as the datasheet states it: "80 GB" is 80e9).
    tdp_w : maximum power (TDP, or AMD's TBP), watts; ``None`` if not published.
    interconnect : device-to-device and host links, as the datasheet words them.
    interconnect_bandwidth : the device-to-device figure, bytes/s, as quoted
        (NVLink and ICI figures are both directions added), or ``None``.
    source : the document each number comes from (title, year).
    notes : derivations and caveats (a derived number says how it was derived).
    """

    name: str
    vendor: str
    kind: str
    year: int
    flops: Mapping[str, float]
    mem_bandwidth: float
    mem_capacity: float
    tdp_w: float | None
    interconnect: str
    interconnect_bandwidth: float | None
    source: str
    sparse_flops: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""

    def peak(self, precision: str = "bf16") -> float:
        """Dense peak FLOP/s at ``precision``; ``ValueError`` if the datasheet lists none."""
        if precision not in self.flops:
            raise ValueError(f"{self.name} lists no dense {precision!r} rate; it lists {sorted(self.flops)}")
        return self.flops[precision]

    def ridge_point(self, precision: str = "bf16") -> float:
        """FLOPs per byte at which the roofline turns from memory- to compute-bound."""
        return self.peak(precision) / self.mem_bandwidth


def _dense_from_sparse(sparse: Mapping[str, float]) -> dict[str, float]:
    # NVIDIA's Hopper and Ada datasheets quote tensor-core rates "with sparsity" and
    # state that "specifications are one-half lower without sparsity".
    return {k: v / 2 for k, v in sparse.items()}


_H100_SPARSE = {"tf32": 989 * TERA, "bf16": 1979 * TERA, "fp16": 1979 * TERA, "fp8": 3958 * TERA, "int8": 3958 * TERA}
_L4_SPARSE = {"tf32": 120 * TERA, "bf16": 242 * TERA, "fp16": 242 * TERA, "fp8": 485 * TERA, "int8": 485 * TERA}

HARDWARE: dict[str, Accelerator] = {
    a.name: a
    for a in [
        Accelerator(
            name="A100 SXM 80GB", vendor="NVIDIA", kind="GPU", year=2020,
            flops={"fp32": 19.5 * TERA, "tf32": 156 * TERA, "bf16": 312 * TERA, "fp16": 312 * TERA, "int8": 624 * TERA},
            sparse_flops={"tf32": 312 * TERA, "bf16": 624 * TERA, "fp16": 624 * TERA, "int8": 1248 * TERA},
            mem_bandwidth=2039 * GIGA, mem_capacity=80 * GIGA, tdp_w=400,
            interconnect="NVLink 3: 600 GB/s; PCIe Gen4: 64 GB/s", interconnect_bandwidth=600 * GIGA,
            source="NVIDIA A100 Tensor Core GPU datasheet (2021)",
            notes="HBM2e. No FP8. The datasheet lists dense and sparse figures side by side.",
        ),
        Accelerator(
            name="H100 SXM", vendor="NVIDIA", kind="GPU", year=2022,
            flops={"fp32": 67 * TERA, **_dense_from_sparse(_H100_SPARSE)}, sparse_flops=_H100_SPARSE,
            mem_bandwidth=3.35 * TERA, mem_capacity=80 * GIGA, tdp_w=700,
            interconnect="NVLink 4: 900 GB/s; PCIe Gen5: 128 GB/s", interconnect_bandwidth=900 * GIGA,
            source="NVIDIA H100 Tensor Core GPU datasheet (2023)",
            notes="HBM3. Tensor-core rates are quoted with sparsity; dense = half (datasheet footnote).",
        ),
        Accelerator(
            name="H200 SXM", vendor="NVIDIA", kind="GPU", year=2024,
            flops={"fp32": 67 * TERA, **_dense_from_sparse(_H100_SPARSE)}, sparse_flops=_H100_SPARSE,
            mem_bandwidth=4.8 * TERA, mem_capacity=141 * GIGA, tdp_w=700,
            interconnect="NVLink 4: 900 GB/s; PCIe Gen5: 128 GB/s", interconnect_bandwidth=900 * GIGA,
            source="NVIDIA H200 Tensor Core GPU datasheet (2024)",
            notes="HBM3e. The same compute as the H100 SXM; more and faster memory.",
        ),
        Accelerator(
            name="L4", vendor="NVIDIA", kind="GPU", year=2023,
            flops={"fp32": 30.3 * TERA, **_dense_from_sparse(_L4_SPARSE)}, sparse_flops=_L4_SPARSE,
            mem_bandwidth=300 * GIGA, mem_capacity=24 * GIGA, tdp_w=72,
            interconnect="PCIe Gen4 x16: 64 GB/s; no NVLink", interconnect_bandwidth=None,
            source="NVIDIA L4 Tensor Core GPU datasheet (2023)",
            notes="GDDR6, an inference card. Tensor-core rates are quoted with sparsity; dense = half.",
        ),
        Accelerator(
            name="TPU v5e", vendor="Google", kind="TPU", year=2023,
            flops={"bf16": 197 * TERA, "int8": 393 * TERA},
            mem_bandwidth=819 * GIGA, mem_capacity=16 * GIGA, tdp_w=None,
            interconnect="ICI, 4 ports per chip, 2-D torus: 400 GB/s (both directions)", interconnect_bandwidth=400 * GIGA,
            source="Google Cloud documentation, 'TPU v5e' system architecture (cloud.google.com/tpu/docs/v5e)",
            notes="Per chip. HBM2. Google publishes no FP32 rate and no power figure for v5e; left out.",
        ),
        Accelerator(
            name="MI300X", vendor="AMD", kind="GPU", year=2023,
            flops={"fp32": 163.4 * TERA, "tf32": 653.7 * TERA, "bf16": 1307.4 * TERA, "fp16": 1307.4 * TERA,
                   "fp8": 2614.9 * TERA, "int8": 2614.9 * TERA},
            sparse_flops={"bf16": 2614.9 * TERA, "fp16": 2614.9 * TERA, "fp8": 5229.8 * TERA, "int8": 5229.8 * TERA},
            mem_bandwidth=5.3 * TERA, mem_capacity=192 * GIGA, tdp_w=750,
            interconnect="Infinity Fabric: 7 links x 128 GB/s; PCIe Gen5 x16: 128 GB/s", interconnect_bandwidth=896 * GIGA,
            source="AMD Instinct MI300X accelerator data sheet (2023)",
            notes="HBM3. Power is AMD's total board power (TBP). 896 GB/s = 7 links x 128 GB/s (our product).",
        ),
        Accelerator(
            name="EPYC 9654 (CPU)", vendor="AMD", kind="CPU", year=2022,
            flops={"fp32": 96 * 2.4e9 * 32},
            mem_bandwidth=460.8 * GIGA, mem_capacity=6 * TERA, tdp_w=360,
            interconnect="128 lanes PCIe Gen5", interconnect_bandwidth=None,
            source="AMD EPYC 9654 product specifications (2022); 12 channels of DDR5-4800",
            notes=("96 Zen 4 cores. The FP32 rate is DERIVED, not on the datasheet: 96 cores x 2.4 GHz base clock "
                   "x 32 FP32 FLOP/cycle (two 256-bit FMA pipes). Memory: 12 x 38.4 GB/s; up to 6 TB per socket."),
        ),
    ]
}


@dataclass(frozen=True)
class Link:
    """One way to move bytes: a bus, a network port, a disk, a memory channel.

    ``bandwidth`` is bytes/s **per direction** (for networks: the line rate in
    bits/s divided by 8).  Datasheets quote bandwidth, not latency, and latency
    depends on the software stack (drivers, NCCL, the file system), so the
    table has none: measure it, or pass your own to :func:`transfer_time`.
    """

    name: str
    kind: str  # "host-device", "device-device", "network", "storage", "memory"
    bandwidth: float
    source: str
    notes: str = ""


LINKS: dict[str, Link] = {
    link.name: link
    for link in [
        Link("PCIe 4.0 x16", "host-device", 16e9 * 16 * 128 / 130 / 8,
             "PCI Express Base Specification 4.0 (PCI-SIG, 2017)", "16 GT/s per lane, 128b/130b encoding: 31.5 GB/s"),
        Link("PCIe 5.0 x16", "host-device", 32e9 * 16 * 128 / 130 / 8,
             "PCI Express Base Specification 5.0 (PCI-SIG, 2019)", "32 GT/s per lane, 128b/130b encoding: 63.0 GB/s"),
        Link("NVLink 4 (H100, 18 links)", "device-device", 450 * GIGA,
             "NVIDIA H100 Tensor Core GPU datasheet (2023)", "the datasheet's 900 GB/s is both directions added"),
        Link("InfiniBand NDR (1 port)", "network", 400e9 / 8,
             "NVIDIA ConnectX-7 adapter datasheet (2022): 400 Gb/s NDR", "400 Gb/s = 50 GB/s"),
        Link("100 GbE", "network", 100e9 / 8, "IEEE 802.3ba-2010 (100 Gb/s Ethernet)", "100 Gb/s = 12.5 GB/s"),
        Link("400 GbE", "network", 400e9 / 8, "IEEE 802.3bs-2017 (400 Gb/s Ethernet)", "400 Gb/s = 50 GB/s"),
        Link("NVMe SSD (PCIe 4.0 x4)", "storage", 7.45 * GIGA,
             "Samsung 990 PRO data sheet (2022): sequential read up to 7,450 MB/s", "sequential read; random 4 KB reads are far slower"),
        Link("DDR5-4800 (1 channel)", "memory", 4800e6 * 8,
             "JEDEC JESD79-5 DDR5 SDRAM standard (2020)", "4800 MT/s x 8 bytes: 38.4 GB/s"),
        Link("HBM3 (1 stack)", "memory", 6.4e9 * 1024 / 8,
             "JEDEC JESD238 HBM3 standard (2022)", "6.4 Gb/s per pin x 1024 pins: 819.2 GB/s"),
    ]
}


def spec_rows(devices: Mapping[str, Accelerator] | None = None) -> list[dict[str, Any]]:
    """The spec table as rows for :func:`course_lib.viz.show_table` (TFLOP/s, GB/s, GB, W)."""
    rows = []
    for dev in (HARDWARE if devices is None else devices).values():
        row: dict[str, Any] = {"device": dev.name, "vendor": dev.vendor, "year": str(dev.year)}  # text: not "2,022"
        for p in PRECISIONS:
            row[f"{p} dense TFLOP/s"] = dev.flops[p] / TERA if p in dev.flops else None
        row["memory GB/s"] = dev.mem_bandwidth / GIGA
        row["memory GB"] = dev.mem_capacity / GIGA
        row["TDP W"] = dev.tdp_w
        row["interconnect"] = dev.interconnect
        row["source"] = dev.source
        rows.append(row)
    return rows


def link_rows(links: Mapping[str, Link] | None = None) -> list[dict[str, Any]]:
    """The links table as rows (GB/s per direction)."""
    return [{"link": link.name, "kind": link.kind, "GB/s per direction": link.bandwidth / GIGA,
             "notes": link.notes, "source": link.source} for link in (LINKS if links is None else links).values()]


# --------------------------------------------------------------------------- #
# Transfer times
# --------------------------------------------------------------------------- #
def _number(value: object, name: str) -> float:
    return check_number(value, name)


def transfer_time(n_bytes: float, bandwidth: float, latency: float = 0.0) -> float:
    """Seconds to move ``n_bytes`` over one link: ``latency + n_bytes / bandwidth``.

    Parameters
    ----------
    n_bytes : bytes to move (SI: a 7B-parameter model in fp16 is 14e9 bytes).
    bandwidth : bytes per second, per direction.  A link quoted in bits per
        second is divided by 8 first (100 Gb/s Ethernet = 12.5e9 B/s).
    latency : seconds before the first byte arrives (paid once per transfer).

    This is Hockney's two-parameter model: latency dominates small messages,
    bandwidth large ones; they cost the same at ``n_bytes = latency * bandwidth``.
    """
    n = _number(n_bytes, "n_bytes")
    bw = _number(bandwidth, "bandwidth")
    lat = _number(latency, "latency")
    if n < 0:
        raise ValueError(f"n_bytes must be >= 0, got {n_bytes!r}")
    if bw <= 0:
        raise ValueError(f"bandwidth must be > 0 bytes/s, got {bandwidth!r}")
    if lat < 0:
        raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
    return lat + n / bw


def ring_allreduce_time(n_bytes: float, n_workers: int, bandwidth: float, latency: float = 0.0) -> float:
    """Seconds for a ring all-reduce of ``n_bytes`` per worker across ``n_workers``.

    A ring does ``2 (p - 1)`` steps (reduce-scatter, then all-gather), each
    sending one ``n / p`` chunk to the next worker, so every worker sends
    ``2 (p - 1) / p * n`` bytes (Patarasuk and Yuan, 2009):
    ``2 (p - 1) * latency + 2 (p - 1) / p * n_bytes / bandwidth``.  One worker needs no communication.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, Integral) or n_workers < 1:
        raise ValueError(f"n_workers must be an int >= 1, got {n_workers!r}")
    p = int(n_workers)
    if p == 1:
        transfer_time(n_bytes, bandwidth, latency)  # validates the other arguments
        return 0.0
    steps = 2 * (p - 1)
    return steps * transfer_time(_number(n_bytes, "n_bytes") / p, bandwidth, latency)


def ring_allreduce(chunks: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int, int]:
    """Simulate a ring all-reduce step by step: the sum on every worker, the steps, the bytes each sent.

    ``chunks[w]`` is worker ``w``'s vector (all the same length, divisible by
    the number of workers).  Each step, every worker sends one chunk of
    ``n / p`` elements to its right-hand neighbour, which adds it
    (reduce-scatter) or stores it (all-gather).  Returns ``(results, steps,
    bytes sent per worker)``; the results all equal ``sum(chunks)``.
    """
    p = len(chunks)
    if p < 1:
        raise ValueError("need at least one worker")
    data = [np.array(c, copy=True) for c in chunks]
    n = data[0].size
    if any(d.ndim != 1 or d.size != n for d in data) or n % p:
        raise ValueError(f"need {p} 1-D vectors of one length divisible by {p}, got sizes {[d.size for d in data]}")
    part = n // p
    sl = [slice(i * part, (i + 1) * part) for i in range(p)]
    steps = sent = 0
    for phase in ("reduce-scatter", "all-gather"):
        for s in range(p - 1):
            # worker w sends chunk (w - s) in reduce-scatter, (w + 1 - s) in all-gather
            outgoing = [(w, (w - s + (phase == "all-gather")) % p) for w in range(p)]
            messages = [(w, c, data[w][sl[c]].copy()) for w, c in outgoing]  # all send at once
            for w, c, payload in messages:
                dst = (w + 1) % p
                data[dst][sl[c]] = data[dst][sl[c]] + payload if phase == "reduce-scatter" else payload
            steps += 1
            sent += messages[0][2].nbytes
    return data, steps, sent


# --------------------------------------------------------------------------- #
# Arithmetic intensity and the roofline
# --------------------------------------------------------------------------- #
_DTYPE_BYTES: dict[str, float] = {
    "float64": 8, "fp64": 8, "double": 8,
    "float32": 4, "fp32": 4, "float": 4, "tf32": 4,  # TF32 is a compute mode: values are stored in 32 bits
    "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2,
    "fp8": 1, "float8": 1, "float8_e4m3fn": 1, "float8_e5m2": 1, "int8": 1, "uint8": 1,
    "int4": 0.5,
}
#: The operations :func:`op_cost` knows, with the shape each takes.
OPS: dict[str, str] = {
    "gemm": "(M, K, N): C[M, N] = A[M, K] @ B[K, N]",
    "gemv": "(M, K): y[M] = A[M, K] @ x[K]",
    "add": "any shape: z = x + y elementwise",
    "softmax": "any shape: softmax over the last axis",
    "attention_naive": "(BH, T, d): BH heads of self-attention over T tokens, score matrix written to memory",
    "attention_fused": "(BH, T, d): the same attention, fused (FlashAttention): scores never leave the chip",
}
#: FLOPs per element of a softmax: max, subtract, exp, sum, divide (an exp counted as one FLOP).
SOFTMAX_FLOPS_PER_ELEMENT = 5


def bytes_per_element(dtype: Any) -> float:
    """Bytes of one value: ``"float32"``/``"fp32"`` -> 4, ``"bf16"`` -> 2, ``"int8"`` -> 1, ``"int4"`` -> 0.5.

    Accepts the names above, numpy dtypes and torch dtypes.
    """
    if isinstance(dtype, str):
        key = dtype.lower()
    else:
        key = str(getattr(dtype, "name", "") or dtype).lower().removeprefix("torch.")
        if key not in _DTYPE_BYTES:
            try:
                return float(np.dtype(dtype).itemsize)
            except TypeError:
                pass
    if key not in _DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of {sorted(_DTYPE_BYTES)} or a numpy/torch dtype")
    return float(_DTYPE_BYTES[key])


def _shape(shape: Any, op: str, ndim: int | None) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, Integral) and not isinstance(shape, bool) else tuple(shape)
    if ndim is not None and len(dims) != ndim:
        raise ValueError(f"{op} takes a shape {OPS[op].split(':')[0]}, got {shape!r}")
    if not dims or any(isinstance(d, bool) or not isinstance(d, Integral) or d < 1 for d in dims):
        raise ValueError(f"{op}: every dimension must be a positive int, got {shape!r}")
    return tuple(int(d) for d in dims)


def op_cost(op: str, shape: Any, dtype: Any = "float32") -> tuple[float, float]:
    """``(FLOPs, bytes moved)`` of one operation, each operand read once and the output written once.

    The bytes are the minimum any implementation must move between memory and
    the chip (perfect caching inside the kernel); real kernels move at least
    this.  FLOPs count a multiply-add as 2 and, for attention, only the two
    matrix products (4 T^2 d per head, the FlashAttention paper's convention
    and what ``FlopCounterMode`` counts); its softmax adds about 5 T^2, under
    2% for d = 64.  Shapes are described in :data:`OPS`.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}: expected one of {sorted(OPS)}")
    b = bytes_per_element(dtype)
    if op == "gemm":
        M, K, N = _shape(shape, op, 3)
        return 2.0 * M * K * N, b * (M * K + K * N + M * N)
    if op == "gemv":
        M, K = _shape(shape, op, 2)
        return 2.0 * M * K, b * (M * K + K + M)
    if op in ("add", "softmax"):
        n = math.prod(_shape(shape, op, None))
        if op == "add":
            return float(n), b * 3 * n                                  # read x and y, write z
        return float(SOFTMAX_FLOPS_PER_ELEMENT * n), b * 2 * n          # read x, write softmax(x)
    BH, T, d = _shape(shape, op, 3)
    flops = 4.0 * BH * T * T * d                                        # Q K^T and P V
    qkvo = 4 * T * d                                                    # read Q, K, V; write O
    if op == "attention_fused":
        return flops, b * BH * qkvo
    # naive: S = Q K^T is written, read by the softmax, P is written, read by P V
    return flops, b * BH * (qkvo + 4 * T * T)


def arithmetic_intensity(op: str, shape: Any, dtype: Any = "float32") -> float:
    """FLOPs per byte moved (see :func:`op_cost`): the x coordinate of a kernel on the roofline."""
    flops, moved = op_cost(op, shape, dtype)
    return flops / moved


def attainable_flops(intensity: Any, peak_flops: float, bandwidth: float) -> Any:
    """The roofline: ``min(peak_flops, intensity * bandwidth)`` FLOP/s (works on arrays)."""
    peak = _number(peak_flops, "peak_flops")
    bw = _number(bandwidth, "bandwidth")
    if peak <= 0 or bw <= 0:
        raise ValueError(f"peak_flops and bandwidth must be > 0, got {peak_flops!r} and {bandwidth!r}")
    ai = np.asarray(intensity, dtype=np.float64)
    if np.any(ai < 0) or not np.all(np.isfinite(ai)):
        raise ValueError("intensity must be finite and >= 0 FLOP/byte")
    out = np.minimum(peak, ai * bw)
    return float(out) if out.ndim == 0 else out


def roofline_time(flops: float, n_bytes: float, peak_flops: float, bandwidth: float) -> float:
    """Lower bound on a kernel's seconds: ``max(flops / peak_flops, n_bytes / bandwidth)``.

    Equal to ``flops / attainable_flops(flops / n_bytes, ...)``: whichever of
    compute and memory traffic takes longer sets the time (they overlap).
    """
    f, n = _number(flops, "flops"), _number(n_bytes, "n_bytes")
    peak, bw = _number(peak_flops, "peak_flops"), _number(bandwidth, "bandwidth")
    if f < 0 or n < 0 or peak <= 0 or bw <= 0:
        raise ValueError(f"need flops, n_bytes >= 0 and peak_flops, bandwidth > 0; got {flops!r}, {n_bytes!r}, {peak_flops!r}, {bandwidth!r}")
    return max(f / peak, n / bw)


def plot_roofline(ax: Any, peak_flops: float, bandwidth: float, *, label: str, color: str | None = None,
                  linestyle: str = "-", ai_range: tuple[float, float] = (1 / 32, 1024), mark_ridge: bool = True) -> None:
    """Draw one roofline (FLOP/s against FLOP/byte, log-log) on ``ax``, with its ridge point marked."""
    ai = np.geomspace(*ai_range, 200)
    lines = ax.loglog(ai, attainable_flops(ai, peak_flops, bandwidth), linestyle=linestyle, color=color, label=label)
    ridge = peak_flops / bandwidth
    if mark_ridge and ai_range[0] <= ridge <= ai_range[1]:
        ax.plot([ridge], [peak_flops], marker="D", color=lines[0].get_color(), markersize=5)


# --------------------------------------------------------------------------- #
# Measuring this machine
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Rate:
    """A measured throughput: ``work`` units (FLOPs or bytes) per call, and the timed calls."""

    name: str
    work: float
    unit: str  # "FLOP/s" or "B/s"
    timing: perf.Timing

    @property
    def best(self) -> float:
        """Work per second of the fastest call: what the hardware can do when nothing interferes."""
        return self.work / self.timing.best

    @property
    def median(self) -> float:
        """Work per second of the median call: what a typical call got on this (possibly shared) machine."""
        return self.work / self.timing.median

    @property
    def seconds(self) -> float:
        """The fastest call, in seconds."""
        return self.timing.best


def measure_rates(kernels: Mapping[Any, tuple[Callable[[], Any], float]], *, unit: str,
                  max_seconds: float = 0.5, min_rounds: int = 3, max_rounds: int = 50,
                  round_seconds: float = 0.005) -> dict[Any, Rate]:
    """Time several kernels in interleaved rounds and keep every call, so each gets its best.

    ``kernels`` maps a name (any key) to ``(fn, work per call)``.  A warm-up
    call (page faults, lazy initialisation) and one timed call estimate each
    kernel's time; each round then
    calls every kernel ``k`` times (enough for about ``round_seconds``), and
    rounds repeat until about ``max_seconds`` in total (at least
    ``min_rounds``).  Interleaving matters on a shared machine: a burst of
    load from a neighbour slows one round of every kernel, not all the
    repeats of one kernel.
    """
    if not kernels:
        raise ValueError("no kernels to time")
    per_call = {}
    for name, (fn, work) in kernels.items():
        if not work > 0:
            raise ValueError(f"work per call of {name!r} must be > 0, got {work!r}")
        per_call[name] = max(perf.time_fn(fn, repeats=1, warmup=1).best, 1e-7)
    calls = {name: max(1, min(1000, int(round_seconds / t))) for name, t in per_call.items()}
    round_cost = sum(calls[n] * per_call[n] for n in kernels)
    rounds = int(min(max_rounds, max(min_rounds, max_seconds / round_cost)))
    times: dict[Any, list[float]] = {name: [] for name in kernels}
    for _ in range(rounds):
        for name, (fn, _) in kernels.items():
            times[name] += perf.time_fn(fn, repeats=calls[name], warmup=0).times
    return {name: Rate(str(name), float(work), unit, perf.Timing(str(name), tuple(times[name])))
            for name, (_, work) in kernels.items()}


def _thread_counts(threads: Sequence[int]) -> list[int]:
    counts = [threads] if isinstance(threads, Integral) else list(threads)
    if not counts or any(isinstance(k, bool) or not isinstance(k, Integral) or k < 1 for k in counts):
        raise ValueError(f"threads must be positive ints, got {threads!r}")
    return [int(k) for k in counts]


def measure_gemm(sizes: Sequence[int], *, threads: Sequence[int] = (1,), dtype: Any = np.float32,
                 max_seconds: float = 1.0, seed: int = 0) -> dict[int, dict[int, Rate]]:
    """FLOP/s of square ``n x n @ n x n`` products (``np.matmul``: BLAS sgemm), 2 n^3 FLOPs each.

    Returns ``{threads: {n: Rate}}``: every size is timed, interleaved, with
    BLAS capped at each thread count in turn (``config.single_thread``).
    """
    from .config import single_thread

    if not sizes or any(isinstance(n, bool) or not isinstance(n, Integral) or n < 1 for n in sizes):
        raise ValueError(f"sizes must be positive ints, got {sizes!r}")
    rng = np.random.default_rng(seed)
    mats = {n: (rng.random((n, n)).astype(dtype), rng.random((n, n)).astype(dtype), np.empty((n, n), dtype)) for n in sizes}
    kernels = {f"gemm n={n}": ((lambda A=A, B=B, C=C: np.matmul(A, B, out=C)), 2.0 * n**3) for n, (A, B, C) in mats.items()}
    out = {}
    for k in _thread_counts(threads):
        with single_thread(k):
            rates = measure_rates(kernels, unit="FLOP/s", max_seconds=max_seconds)
        out[k] = {n: rates[f"gemm n={n}"] for n in sizes}
    return out


def measure_triad(n: int | None = None, *, arrays: Sequence[Any] | None = None, threads: Sequence[int] = (1,),
                  scalar: float = 3.0, max_seconds: float = 0.5) -> dict[int, Rate]:
    """STREAM triad ``a = b + s * c`` on float32 arrays of ``n`` elements, in one pass (``torch.add``).

    Pass ``arrays=(a, b, c)`` (float32 torch tensors of one length) to reuse
    memory you already hold; ``b`` and ``c`` are overwritten.  Returns
    ``{threads: Rate}`` (the same arrays for every thread count).  Bytes are
    counted as STREAM counts them, 3 arrays x 4 bytes per element.  The
    hardware moves a fourth: the cache line of ``a`` is read before it is
    written ("write-allocate"), so the DRAM traffic is 4/3 of the count.
    Make each array several times larger than the last-level cache.
    """
    import torch

    from .config import single_thread

    if arrays is None:
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ValueError(f"n must be a positive int (elements per array), got {n!r}")
        a, b, c = torch.empty(int(n)), torch.empty(int(n)), torch.empty(int(n))
    else:
        a, b, c = arrays
        if not all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.is_contiguous() and t.numel() == a.numel()
                   for t in (a, b, c)):
            raise ValueError("arrays must be three contiguous float32 torch tensors of one length")
    n = a.numel()
    b.fill_(1.5)   # written, so every page is real before timing
    c.fill_(2.0)
    out = {}
    for k in _thread_counts(threads):
        with single_thread(k):
            out[k] = measure_rates({f"triad {k} thread(s)": (lambda: torch.add(b, c, alpha=scalar, out=a), 12.0 * n)},
                                   unit="B/s", max_seconds=max_seconds)[f"triad {k} thread(s)"]
    if not bool((a == 1.5 + scalar * 2.0).all()):
        raise RuntimeError("the triad computed a wrong result")
    return out


def measure_copy_sweep(sizes: Sequence[int], *, max_seconds: float = 1.0) -> dict[int, Rate]:
    """memcpy (``np.copyto``) of each size in ``sizes`` bytes, interleaved: ``{n_bytes: Rate}``.

    Work is counted as STREAM's "Copy" counts it, read + write = ``2 n`` bytes
    per call, so ``rate.best / 2`` is the bytes delivered per second.  The
    smallest sizes measure the per-call latency, the largest (far beyond the
    caches) the memory bandwidth.
    """
    if not sizes or any(isinstance(n, bool) or not isinstance(n, Integral) or n < 1 for n in sizes):
        raise ValueError(f"sizes must be positive ints (bytes), got {sizes!r}")
    bufs = {int(n): (np.ones(int(n), dtype=np.uint8), np.zeros(int(n), dtype=np.uint8)) for n in sizes}
    for _, dst in bufs.values():
        dst[:] = 0  # touch every page before timing
    return measure_rates({n: (lambda s=s, d=d: np.copyto(d, s), 2.0 * n) for n, (s, d) in bufs.items()},
                         unit="B/s", max_seconds=max_seconds)


def measure_call_latency(fn: Callable[[], Any], *, calls: int = 1000, repeats: int = 7) -> float:
    """Seconds per call of a tiny ``fn`` (best of ``repeats`` loops of ``calls`` calls)."""
    def loop() -> None:
        for _ in range(calls):
            fn()
    return perf.time_fn(loop, repeats=repeats, warmup=1).best / calls


def filesystem_type(path: str | os.PathLike[str]) -> str:
    """The file system holding ``path`` ("ext4", "tmpfs", ...), from /proc/mounts; "unknown" elsewhere."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = os.path.realpath(path)
    best = max((m for m in mounts if target == m[0] or target.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else "unknown"


def cache_sizes() -> dict[str, int]:
    """This CPU's data caches as the OS reports them, ``{"L1d": bytes, "L2": ..., "L3": ...}``.

    Read from Linux sysfs (cpu0); empty elsewhere.  A virtual machine reports
    what the hypervisor tells it, which need not be what the silicon has:
    measure (a bandwidth sweep over working-set sizes) before you trust it.
    """
    out: dict[str, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        if kind == "Instruction":
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        out[f"L{level}" + ("d" if kind == "Data" else "")] = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    return out


@dataclass(frozen=True)
class FileRead:
    """Reading one temporary file back: from the page cache, and after asking the kernel to evict it."""

    n_bytes: int
    cached: Rate
    evicted: Rate | None  # None where posix_fadvise is unavailable (macOS, Windows)
    filesystem: str
    intact: bool          # the bytes read back equal the bytes written


def measure_file_read(n_bytes: int, *, directory: str | None = None, repeats: int = 3, seed: int = 0) -> FileRead:
    """Write ``n_bytes`` of random bytes to a temporary file and time reading them back.

    *cached*: the file is in the page cache (RAM) after being written, so this
    measures the kernel's memory copy, not the disk.  *evicted*: before each
    read, ``posix_fadvise(DONTNEED)`` asks the kernel to drop the file's pages,
    the closest an unprivileged process gets to a cold read.  Under a virtual
    machine the host may still cache the disk, so "evicted" can be faster
    than the physical device.  The file is deleted afterwards.
    """
    block = np.random.default_rng(seed).integers(0, 256, size=2**20, dtype=np.uint8)       # incompressible bytes
    data = np.resize(block, int(n_bytes))
    buf = np.empty_like(data)
    fd, path = tempfile.mkstemp(prefix="course_read_", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.tobytes())
            f.flush()
            os.fsync(f.fileno())  # dirty pages written out: eviction can then drop them

        def read() -> None:
            with open(path, "rb", buffering=0) as f:
                view, got = memoryview(buf), 0
                while got < buf.nbytes:
                    k = f.readinto(view[got:got + (8 << 20)])  # 8 MiB per system call
                    if not k:
                        break
                    got += k

        cached = Rate("file read (page cache)", float(n_bytes), "B/s", perf.time_fn(read, repeats=repeats, warmup=1))
        evicted = None
        if hasattr(os, "posix_fadvise"):
            times: list[float] = []
            for _ in range(repeats):
                rfd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(rfd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(rfd)
                times += perf.time_fn(read, repeats=1, warmup=0).times
            evicted = Rate("file read (evicted)", float(n_bytes), "B/s", perf.Timing("file read (evicted)", tuple(times)))
        return FileRead(int(n_bytes), cached, evicted, filesystem_type(path), bool(np.array_equal(buf, data)))
    finally:
        os.unlink(path)


#: Where a measured-GPU result would live (written by a GPU run; absent in the repository today).
MEASURED_GPU_FILE = Path(__file__).resolve().parent.parent / "datasets" / "hardware" / "gpu_roofline.json"


def load_measured_gpu(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """A measured GPU roofline, if one was recorded; ``None`` if the file is absent.

    Format (JSON): ``{"device": str, "date": str, "command": str,
    "peak_flops": {precision: FLOP/s}, "bandwidth": B/s,
    "kernels": [{"name": str, "flops": float, "bytes": float, "seconds": float}]}``.
    """
    import json

    p = Path(path) if path is not None else MEASURED_GPU_FILE
    if not p.exists():
        return None
    record = json.loads(p.read_text())
    missing = {"device", "date", "peak_flops", "bandwidth", "kernels"} - set(record)
    if missing:
        raise ValueError(f"{p} lacks the fields {sorted(missing)}")
    return record
