"""What a token costs: a roofline model of LLM inference, per device and precision.

One forward step of a decoder-only model on a batch of ``B`` sequences does
``2 P B`` FLOPs (every weight in one multiply-add per token) and must read
every weight once (``P b`` bytes at ``b`` bytes per weight) plus each
sequence's key/value cache.  The roofline (:func:`course_lib.hardware.roofline_time`)
turns that into a lower bound on the step's time:

* **prefill** (the prompt, ``n`` tokens at once): ``2 P n`` FLOPs for one
  read of the weights, compute-bound for any realistic prompt;
* **decode** (one new token per sequence per step): ``2 P B`` FLOPs for
  ``P b + B kv`` bytes, memory-bound until the batch reaches the ridge
  (:func:`decode_ridge_batch`).

The model ignores the attention FLOPs (``4 L T d`` per token: small next to
``2 P`` for the contexts used here), kernel launch and communication
overheads, and assumes peak FLOP/s and bandwidth are reached: real servers
get 50-80% of either, so read every number as an upper bound on throughput.
Units: SI bytes, seconds, FLOP/s, US dollars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .capacity import kv_cache_bytes, weight_bytes
from .hardware import Accelerator, roofline_time
from .validate import check_int, check_number

#: Bytes per weight of each storage precision the lesson compares.
PRECISION_BYTES: dict[str, float] = {"fp16": 2.0, "int8": 1.0, "int4": 0.5}
#: The arithmetic each storage precision runs at.  int4 is weight-only: the
#: weights are widened to fp16 before the multiply (as in AWQ/GPTQ kernels).
COMPUTE_PRECISION: dict[str, str] = {"fp16": "fp16", "int8": "int8", "int4": "fp16"}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only LLM the cost model needs.

    ``params``: weights used for every token; ``n_layer`` and ``d_kv``
    (= KV heads x head dim, smaller than d_model with grouped-query attention)
    size the KV cache.  ``source``: where the numbers come from.
    """

    name: str
    params: float
    n_layer: int
    d_kv: int
    source: str

    def kv_bytes_per_seq(self, context: int, bytes_per_value: float = 2.0) -> float:
        """KV-cache bytes of one sequence of ``context`` tokens (fp16 cache by default)."""
        return kv_cache_bytes(self.n_layer, self.d_kv, context, batch=1, bytes_per_value=bytes_per_value)


#: Three model sizes of the Llama 3 family (Meta's model cards, 2024): 8 KV heads x 128 dims,
#: except 1B (8 x 64).  Parameter counts as the model cards state them.
MODELS: dict[str, ModelShape] = {
    m.name: m for m in [
        ModelShape("1B", 1.24e9, 16, 8 * 64, "Llama 3.2 1B model card (Meta, 2024): 16 layers, GQA 8 KV heads x 64"),
        ModelShape("8B", 8.03e9, 32, 8 * 128, "Llama 3.1 8B model card (Meta, 2024): 32 layers, GQA 8 KV heads x 128"),
        ModelShape("70B", 70.6e9, 80, 8 * 128, "Llama 3.1 70B model card (Meta, 2024): 80 layers, GQA 8 KV heads x 128"),
    ]
}


def _positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    return check_number(value, name, low=0, low_open=not allow_zero)


def _batch(value: object, name: str = "batch") -> int:
    return check_int(value, name, low=1)


def decode_step(params: float, bytes_per_param: float, batch: int, kv_bytes_per_seq: float) -> tuple[float, float]:
    """``(FLOPs, bytes)`` of one decode step: ``2 P B`` and ``P b + B kv``.

    Parameters
    ----------
    params : P, weights used per token.
    bytes_per_param : b, bytes per stored weight (2 fp16, 1 int8, 0.5 int4).
    batch : B, sequences decoded together (one new token each).
    kv_bytes_per_seq : bytes of one sequence's KV cache, read once per step.
    """
    P = _positive(params, "params")
    b = _positive(bytes_per_param, "bytes_per_param")
    B = _batch(batch)
    kv = _positive(kv_bytes_per_seq, "kv_bytes_per_seq", allow_zero=True)
    return 2.0 * P * B, P * b + B * kv


def decode_tokens_per_second(params: float, bytes_per_param: float, batch: int, kv_bytes_per_seq: float,
                             bandwidth: float, peak_flops: float) -> float:
    """Output tokens per second of decode: ``B / max(2 P B / peak, (P b + B kv) / bandwidth)``.

    Each step produces one token for each of the ``batch`` sequences; its time is
    the roofline bound of :func:`decode_step`'s FLOPs and bytes.  Units: bytes/s
    and FLOP/s in, tokens/s out (summed over the batch).
    """
    flops, n_bytes = decode_step(params, bytes_per_param, batch, kv_bytes_per_seq)
    return batch / roofline_time(flops, n_bytes, _positive(peak_flops, "peak_flops"), _positive(bandwidth, "bandwidth"))


def prefill_tokens_per_second(params: float, bytes_per_param: float, tokens: int,
                              bandwidth: float, peak_flops: float) -> float:
    """Prompt tokens per second when ``tokens`` tokens go through in one pass: ``n / max(2 P n / peak, P b / bw)``."""
    P = _positive(params, "params")
    n = _batch(tokens, "tokens")
    t = roofline_time(2.0 * P * n, P * _positive(bytes_per_param, "bytes_per_param"),
                      _positive(peak_flops, "peak_flops"), _positive(bandwidth, "bandwidth"))
    return n / t


def decode_ridge_batch(params: float, bytes_per_param: float, kv_bytes_per_seq: float,
                       bandwidth: float, peak_flops: float) -> float:
    """The (real-valued) batch at which a decode step's compute time equals its memory time.

    Solving ``2 P B / peak = (P b + B kv) / bw`` for B gives
    ``B* = (P b / bw) / (2 P / peak - kv / bw)``.  Below B* decode is memory-bound,
    above it compute-bound.  ``inf`` when the KV cache alone costs more time per
    sequence than its FLOPs (``kv / bw >= 2 P / peak``): decode never becomes compute-bound.
    """
    P = _positive(params, "params")
    b = _positive(bytes_per_param, "bytes_per_param")
    kv = _positive(kv_bytes_per_seq, "kv_bytes_per_seq", allow_zero=True)
    bw, peak = _positive(bandwidth, "bandwidth"), _positive(peak_flops, "peak_flops")
    denom = 2.0 * P / peak - kv / bw
    return math.inf if denom <= 0 else (P * b / bw) / denom


def cost_per_million_tokens(price_per_hour: float, tokens_per_second: float) -> float:
    """Dollars per 1M tokens: ``price_per_hour / (3600 * tokens_per_second) * 1e6``."""
    return _positive(price_per_hour, "price_per_hour", allow_zero=True) / (
        3600.0 * _positive(tokens_per_second, "tokens_per_second")) * 1e6


def memory_needed(params: float, bytes_per_param: float, kv_bytes_per_seq: float, batch: int) -> float:
    """Bytes of weights plus the KV caches of ``batch`` sequences (activations left out)."""
    return weight_bytes(params, bytes_per_param) + _batch(batch) * _positive(kv_bytes_per_seq, "kv_bytes_per_seq", allow_zero=True)


def device_peak(device: Accelerator, precision: str) -> float:
    """Dense peak FLOP/s a storage ``precision`` computes at on ``device`` (``COMPUTE_PRECISION``).

    A device without that rate falls back to bf16 (TPUs list no fp16), then fp32;
    the fallback is what the hardware would actually run.
    """
    if precision not in COMPUTE_PRECISION:
        raise ValueError(f"unknown precision {precision!r}: expected one of {sorted(COMPUTE_PRECISION)}")
    for p in (COMPUTE_PRECISION[precision], "bf16", "fp32"):
        if p in device.flops:
            return device.flops[p]
    raise ValueError(f"{device.name} lists no usable rate; it lists {sorted(device.flops)}")


def scenario(device: Accelerator, model: ModelShape, precision: str, batch: int, *, context: int = 2048,
             prompt: int = 2048, price_per_hour: float | None = None) -> dict[str, float | str | bool]:
    """Every number of one (device, model, precision, batch) setting, as one table row.

    The KV cache is fp16 for every weight precision and holds ``context`` tokens per sequence.
    """
    if precision not in PRECISION_BYTES:
        raise ValueError(f"unknown precision {precision!r}: expected one of {sorted(PRECISION_BYTES)}")
    b = PRECISION_BYTES[precision]
    kv = model.kv_bytes_per_seq(context)
    peak, bw = device_peak(device, precision), device.mem_bandwidth
    flops, n_bytes = decode_step(model.params, b, batch, kv)
    tps = decode_tokens_per_second(model.params, b, batch, kv, bw, peak)
    need = memory_needed(model.params, b, kv, batch)
    row: dict[str, float | str | bool] = {
        "device": device.name, "model": model.name, "precision": precision, "batch": batch,
        "prefill tok/s": prefill_tokens_per_second(model.params, b, prompt, bw, peak),
        "decode tok/s": tps, "per-seq tok/s": tps / batch,
        "memory/compute time": (n_bytes / bw) / (flops / peak),
        "ridge batch": decode_ridge_batch(model.params, b, kv, bw, peak),
        "memory GB": need / 1e9, "fits": need <= device.mem_capacity,
    }
    if price_per_hour is not None:
        row["$/1M out tok"] = cost_per_million_tokens(price_per_hour, tps)
    return row
