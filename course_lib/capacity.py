"""Capacity estimation: storage, replicas, parameters, FLOPs and memory.

Back-of-the-envelope numbers a designer computes before building anything,
each written as a short function so that it can be checked against the real
thing (``sum(p.numel())``, ``torch.utils.flop_counter.FlopCounterMode``).

Units: bytes, FLOPs (one multiply-add = 2 FLOPs), queries per second.
"""

from __future__ import annotations

import math

from .validate import check_int, check_number


def _check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    return check_number(value, name, low=0, low_open=not allow_zero)


def _check_int(value: object, name: str, *, minimum: int = 1) -> int:
    return check_int(value, name, low=minimum)  # numpy integers become Python ints (no overflow)


# --------------------------------------------------------------------------- #
# Storage and serving
# --------------------------------------------------------------------------- #
def storage_bytes(
    n_items: int,
    dim: int,
    bytes_per_value: float = 4,
    *,
    replicas: int = 1,
    overhead: float = 0.0,
) -> float:
    """Bytes to store ``n_items`` vectors of ``dim`` values each.

    ``n_items * dim * bytes_per_value * (1 + overhead) * replicas``.

    Parameters
    ----------
    n_items : int
        Number of vectors (rows), >= 0.
    dim : int
        Values per vector, >= 1.
    bytes_per_value : float
        4 for float32, 2 for float16, 1 for int8, 0.125 for one bit.
    replicas : int
        Full copies kept (for availability or throughput), >= 1.
    overhead : float
        Index/metadata overhead as a fraction of the raw size (0.2 = +20 %).

    Returns
    -------
    float
        Total bytes.
    """
    n_items = _check_int(n_items, "n_items", minimum=0)
    dim = _check_int(dim, "dim", minimum=1)
    bytes_per_value = _check_positive(bytes_per_value, "bytes_per_value")
    replicas = _check_int(replicas, "replicas", minimum=1)
    overhead = _check_positive(overhead, "overhead", allow_zero=True)
    return float(n_items) * dim * bytes_per_value * (1.0 + overhead) * replicas


def replicas_for_qps(
    peak_qps: float,
    qps_per_replica: float,
    *,
    target_utilization: float = 0.7,
    spares: int = 1,
) -> int:
    """Replicas needed to serve ``peak_qps`` while each runs at ``target_utilization``.

    ``ceil(peak_qps / (qps_per_replica * target_utilization)) + spares``.
    Running below 100 % keeps queueing delay (and so tail latency) bounded;
    the spares (N+1, N+2) absorb a replica failure or a rolling deploy.

    Parameters
    ----------
    peak_qps : float
        Peak offered load, queries/s, >= 0.
    qps_per_replica : float
        Measured saturation throughput of one replica, queries/s, > 0.
    target_utilization : float
        Fraction of saturation each replica may run at, in (0, 1].
    spares : int
        Extra replicas on top of the load-derived count, >= 0.

    Returns
    -------
    int
        Number of replicas.
    """
    peak_qps = _check_positive(peak_qps, "peak_qps", allow_zero=True)
    qps_per_replica = _check_positive(qps_per_replica, "qps_per_replica")
    target_utilization = _check_positive(target_utilization, "target_utilization")
    if target_utilization > 1:
        raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization}")
    spares = _check_int(spares, "spares", minimum=0)
    # round() absorbs float noise: 49 / (7 * 0.7) is 10.000000000000002, and ceil must give 10, not 11
    needed = math.ceil(round(peak_qps / (qps_per_replica * target_utilization), 9))
    return int(needed) + spares


# --------------------------------------------------------------------------- #
# Parameters
# --------------------------------------------------------------------------- #
def _ffn_width(ffn: int | None, d_model: int) -> int:
    return 4 * d_model if ffn is None else _check_int(ffn, "ffn")


def transformer_param_breakdown(
    n_layer: int,
    d_model: int,
    vocab_size: int,
    ffn: int | None = None,
    *,
    block_size: int = 0,
    bias: bool = True,
    tie_weights: bool = True,
) -> dict[str, int]:
    """Exact parameter count of a GPT-2-style decoder, by component.

    The architecture of ``course_lib.nn.tinygpt`` and of GPT-2: token and
    learned position embeddings, ``n_layer`` pre-norm blocks (LayerNorm,
    attention with a fused q/k/v projection and an output projection,
    LayerNorm, MLP d -> ffn -> d), a final LayerNorm and a bias-free head.

    Parameters
    ----------
    n_layer, d_model, vocab_size : L, d, V.
    ffn : hidden width of the MLP (default 4 d).
    block_size : rows of the learned position embedding (0: no position table).
    bias : biases in every Linear and LayerNorm (False: LayerNorms keep only their scale).
    tie_weights : the head reuses the token embedding (counted once).

    Returns
    -------
    dict[str, int]
        Keys ``token_embedding``, ``position_embedding``, ``attention``, ``mlp``,
        ``layernorm``, ``lm_head``; the values sum to the total.
    """
    L = _check_int(n_layer, "n_layer")
    d = _check_int(d_model, "d_model")
    V = _check_int(vocab_size, "vocab_size")
    f = _ffn_width(ffn, d)
    T = _check_int(block_size, "block_size", minimum=0)
    b = 1 if bias else 0
    ln = d * (1 + b)  # scale (+ shift)
    return {
        "token_embedding": V * d,
        "position_embedding": T * d,
        "attention": L * (4 * d * d + b * 4 * d),   # W_qkv (d x 3d) + W_o (d x d), biases 3d + d
        "mlp": L * (2 * d * f + b * (f + d)),       # W_fc (d x f) + W_proj (f x d), biases f + d
        "layernorm": (2 * L + 1) * ln,               # two per block + the final one
        "lm_head": 0 if tie_weights else V * d,      # Linear(d, V, bias=False)
    }


def transformer_params(
    n_layer: int,
    d_model: int,
    vocab_size: int,
    ffn: int | None = None,
    *,
    block_size: int = 0,
    bias: bool = True,
    tie_weights: bool = True,
    exact: bool = True,
) -> int:
    """Parameters of a GPT-2-style decoder: exact, or the 12 L d^2 + V d rule.

    ``exact=True`` sums :func:`transformer_param_breakdown` (equal to
    ``sum(p.numel() for p in model.parameters())`` of TinyGPT and of Hugging
    Face's ``GPT2LMHeadModel``).  ``exact=False`` keeps the weights that
    multiply every token: ``L (4 d^2 + 2 d ffn) + V d``, which is
    ``12 L d^2 + V d`` for ffn = 4d.  It drops biases, LayerNorms, the
    position table and, for an untied model, the second V x d matrix (the
    input embedding is a lookup, not a matmul), so ``2 x`` it is exactly the
    matmul FLOPs per token without attention.

    Returns
    -------
    int
        Number of parameters.
    """
    if exact:
        return sum(transformer_param_breakdown(
            n_layer, d_model, vocab_size, ffn, block_size=block_size, bias=bias, tie_weights=tie_weights
        ).values())
    L = _check_int(n_layer, "n_layer")
    d = _check_int(d_model, "d_model")
    V = _check_int(vocab_size, "vocab_size")
    f = _ffn_width(ffn, d)
    return L * (4 * d * d + 2 * d * f) + V * d


def bert_params(
    n_layer: int,
    d_model: int,
    vocab_size: int,
    ffn: int | None = None,
    *,
    max_position: int = 512,
    type_vocab_size: int = 2,
    pooler: bool = True,
) -> int:
    """Exact parameter count of a BERT encoder (Hugging Face ``BertModel``), e.g. MiniLM.

    Embeddings: word (V d) + position (max_position d) + token type
    (type_vocab_size d) + LayerNorm (2d).  Each of the ``n_layer`` post-norm
    layers: q, k, v, output projections (4 d^2 + 4 d), LayerNorm (2d),
    intermediate d -> ffn and output ffn -> d (2 d ffn + ffn + d), LayerNorm
    (2d).  Pooler: one d x d Linear with bias on the [CLS] token.
    """
    L = _check_int(n_layer, "n_layer")
    d = _check_int(d_model, "d_model")
    V = _check_int(vocab_size, "vocab_size")
    f = _ffn_width(ffn, d)
    P = _check_int(max_position, "max_position", minimum=0)
    S = _check_int(type_vocab_size, "type_vocab_size", minimum=0)
    embeddings = (V + P + S) * d + 2 * d
    layer = (4 * d * d + 4 * d) + 2 * d + (2 * d * f + f + d) + 2 * d
    return embeddings + L * layer + ((d * d + d) if pooler else 0)


# --------------------------------------------------------------------------- #
# Compute
# --------------------------------------------------------------------------- #
def _attention_terms(n_layer: int, d_model: int, context: int) -> tuple[int, int, int]:
    L = _check_int(n_layer, "n_layer", minimum=0)
    d = _check_int(d_model, "d_model", minimum=0)
    T = _check_int(context, "context", minimum=0)
    return L, d, T


def inference_flops(
    P: float, n_tokens: float = 1, *, n_layer: int = 0, d_model: int = 0, context: int = 0
) -> float:
    """Forward-pass FLOPs for ``n_tokens`` tokens: ``2 P`` each, plus attention.

    Every weight is used in one multiply-add (2 FLOPs) per token.  Attention
    adds two matmuls per layer that have no weights: q k^T and A v, each
    ``2 T d`` FLOPs for a token that attends to ``T = context`` positions, so
    ``4 L T d`` per token.  (A causal kernel skips the masked half; matmul
    counters and this formula count the full T x T product.)

    Parameters
    ----------
    P : weights that multiply every token (``transformer_params(..., exact=False)``).
    n_tokens : tokens processed.
    n_layer, d_model, context : L, d and the attention length T (any 0: no attention term).

    Returns
    -------
    float
        FLOPs (2 per multiply-add).
    """
    P = _check_positive(P, "P", allow_zero=True)
    n_tokens = _check_positive(n_tokens, "n_tokens", allow_zero=True)
    L, d, T = _attention_terms(n_layer, d_model, context)
    return (2.0 * P + 4.0 * L * T * d) * n_tokens


def train_flops(P: float, D: float, *, n_layer: int = 0, d_model: int = 0, seq_len: int = 0) -> float:
    """Training FLOPs ``C = 6 P D`` (Kaplan et al. 2020), plus ``12 L T d`` per token for attention.

    Forward: 2 FLOPs per weight per token.  Backward: twice the forward (one
    matmul for the gradient of the activations, one for the gradient of the
    weights), so 6 P per token.  The attention matmuls (q k^T, A v) add
    ``4 L T d`` forward, ``12 L T d`` forward + backward, per token (Hoffmann
    et al. 2022, App. F; Kaplan's Table 1 counts only q k^T).  Their share is
    ``T / (6 d)`` of the 6 P term when P = 12 L d^2: small for GPT-3
    (T = 2048, d = 12288), large for a small model with a long context.

    Parameters
    ----------
    P : parameters (weights that multiply every token).
    D : training tokens.
    n_layer, d_model, seq_len : L, d, T for the attention term (any 0: 6 P D only).

    Returns
    -------
    float
        FLOPs.
    """
    P = _check_positive(P, "P", allow_zero=True)
    D = _check_positive(D, "D", allow_zero=True)
    L, d, T = _attention_terms(n_layer, d_model, seq_len)
    return 6.0 * P * D + 12.0 * L * T * d * D


def transformer_forward_flops(
    n_layer: int,
    d_model: int,
    seq_len: int,
    *,
    batch: int = 1,
    vocab_size: int = 0,
    ffn: int | None = None,
    attention: bool = True,
) -> int:
    """Matmul FLOPs of one forward pass over ``batch`` sequences of ``seq_len`` tokens.

    ``batch * seq_len * (2 [L (4 d^2 + 2 d ffn) + V d] + 4 L T d)``: exactly
    what ``FlopCounterMode`` counts for TinyGPT (``vocab_size`` = V) or for
    a BERT encoder without its pooler (``vocab_size=0``: no output head).
    ``attention=False`` drops the q k^T and A v products, which a fused
    attention kernel may hide from a counter.
    """
    L = _check_int(n_layer, "n_layer")
    d = _check_int(d_model, "d_model")
    T = _check_int(seq_len, "seq_len")
    B = _check_int(batch, "batch")
    V = _check_int(vocab_size, "vocab_size", minimum=0)
    f = _ffn_width(ffn, d)
    weights = L * (4 * d * d + 2 * d * f) + V * d
    per_token = 2 * weights + (4 * L * T * d if attention else 0)
    return B * T * per_token


# --------------------------------------------------------------------------- #
# Memory
# --------------------------------------------------------------------------- #
def weight_bytes(P: float, bytes_per_param: float = 2) -> float:
    """Bytes to hold ``P`` weights: 4 in float32, 2 in bf16/fp16, 1 in int8, 0.5 in 4-bit."""
    return _check_positive(P, "P", allow_zero=True) * _check_positive(bytes_per_param, "bytes_per_param")


def kv_cache_bytes(
    n_layer: int, d_kv: int, seq_len: int, *, batch: int = 1, bytes_per_value: float = 2
) -> float:
    """Bytes of the key/value cache: ``2 (K and V) * L * d_kv * T * batch * bytes``.

    ``d_kv`` = n_kv_heads * head_dim: d_model for multi-head attention,
    smaller with grouped-query attention (e.g. 8 * 128 = 1024 for Llama-3-70B).
    """
    L = _check_int(n_layer, "n_layer")
    d_kv = _check_int(d_kv, "d_kv")
    T = _check_int(seq_len, "seq_len", minimum=0)
    B = _check_int(batch, "batch")
    return 2.0 * L * d_kv * T * B * _check_positive(bytes_per_value, "bytes_per_value")


def training_state_bytes(
    P: float, *, weight_bytes: float = 4, grad_bytes: float = 4, optimizer_bytes: float = 8
) -> float:
    """Bytes of weights + gradients + optimizer state for ``P`` parameters (activations excluded).

    Defaults: Adam in float32, 4 + 4 + 8 (two moments) = 16 bytes per
    parameter.  Mixed precision (Rajbhandari et al. 2020, ZeRO) is 2 + 2 + 12
    (fp32 master copy and two moments): also 16.
    """
    P = _check_positive(P, "P", allow_zero=True)
    per_param = sum(
        _check_positive(v, n, allow_zero=True)
        for v, n in ((weight_bytes, "weight_bytes"), (grad_bytes, "grad_bytes"), (optimizer_bytes, "optimizer_bytes"))
    )
    return P * per_param


# --------------------------------------------------------------------------- #
# Compute-optimal sizing
# --------------------------------------------------------------------------- #
def chinchilla_optimal(C: float, *, tokens_per_param: float = 20.0) -> tuple[float, float]:
    """Compute-optimal (P, D) for a budget of ``C`` training FLOPs.

    Hoffmann et al. (2022) found that P and D should grow in equal proportion,
    about 20 tokens per parameter.  With C = 6 P D and D = r P:
    ``P = sqrt(C / (6 r))`` and ``D = r P``.
    """
    C = _check_positive(C, "C")
    r = _check_positive(tokens_per_param, "tokens_per_param")
    P = math.sqrt(C / (6.0 * r))
    return P, r * P


def compute_optimal_table(
    budgets: list[float], *, tokens_per_param: float = 20.0, flops_per_s: float | None = None
) -> list[dict[str, float]]:
    """One row per FLOP budget: compute-optimal P and D, and days at ``flops_per_s`` if given."""
    if len(budgets) == 0:
        raise ValueError("budgets is empty: give at least one FLOP budget")
    rows = []
    for C in budgets:
        P, D = chinchilla_optimal(C, tokens_per_param=tokens_per_param)
        row = {"train_flops": float(C), "params": P, "tokens": D}
        if flops_per_s is not None:
            row["days"] = float(C) / _check_positive(flops_per_s, "flops_per_s") / 86_400
        rows.append(row)
    return rows
