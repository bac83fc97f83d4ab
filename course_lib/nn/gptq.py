"""GPTQ and AWQ from scratch, and the calibration activations they learn from.

Round-to-nearest (RTN, :func:`course_lib.nn.quant.rtn_quantize`) treats every
weight alone.  What matters is the layer's *output* on real inputs ``X``::

    minimise  || X W^T - X W_hat^T ||^2   over W_hat on the quantization grid.

* **GPTQ** (Frantar et al. 2022, ``IST-DASLab/gptq``): quantize the columns of
  ``W`` one at a time and push each column's rounding error onto the columns
  not yet quantized, weighted by the inverse Hessian ``H^-1`` of that
  objective (``H = 2 X^T X / n``).  The Cholesky factor of ``H^-1`` makes each
  step a row of a triangular matrix; lazy blocks make it fast.
* **AWQ** (Lin et al. 2023, ``mit-han-lab/llm-awq``): scale the input channels
  that carry large activations up before rounding (and the activations down),
  so their weights get finer steps; search one exponent ``alpha`` of the
  per-channel activation scale on calibration data.

Both need calibration activations: :func:`record_linear_inputs` collects them
from MiniLM with forward hooks (the Gram matrix for GPTQ, mean |x| and a row
sample for AWQ and for measuring the error on held-out text).

Conventions: ``W`` is (rows, cols) = (out_features, in_features) as in
``nn.Linear.weight``; ``X`` is (n_tokens, in_features); GPTQ works in float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg.blas import ssyrk

from .quant import GroupQuantized, _check_group, grid_params, quantize_to_grid, rtn_quantize

# --------------------------------------------------------------------------
# 1. GPTQ
# --------------------------------------------------------------------------


def hessian(X: Any) -> np.ndarray:
    """``H = 2 X^T X / n`` (float64, (d, d)): the Hessian of the squared output error in each row of W."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (n_tokens, d) matrix, got shape {X.shape}")
    return 2.0 * (X.T @ X) / X.shape[0]


def inverse_cholesky_upper(H: np.ndarray) -> np.ndarray:
    """Upper-triangular ``U`` with ``U^T U = H^-1``, by the reference's three calls.

    ``IST-DASLab/gptq`` (``gptq.py``): ``torch.linalg.cholesky`` (H = L L^T),
    ``torch.cholesky_inverse`` (H^-1 from L), ``torch.linalg.cholesky(upper=True)``.
    Row i of ``U``, divided by ``U[i, i]``, is how column i's rounding error is
    spread over columns i+1.. once columns <i are fixed: the Cholesky factor does
    all of OBQ's sequential inverse-Hessian updates at once.
    """
    Ht = torch.from_numpy(np.ascontiguousarray(H, dtype=np.float64))
    L = torch.linalg.cholesky(Ht)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).numpy()


def _check_hessian(H: Any, cols: int) -> np.ndarray:
    H = np.array(H, dtype=np.float64)  # a copy: damping edits it
    if H.shape != (cols, cols) or not np.isfinite(H).all():
        raise ValueError(f"H must be a finite ({cols}, {cols}) matrix (W has {cols} columns), got shape {H.shape}")
    if np.abs(H - H.T).max() > 1e-6 * max(float(np.abs(H).max()), 1e-300):
        raise ValueError("H must be symmetric (H = 2 X^T X / n)")
    if (np.diag(H) < 0).any():
        raise ValueError("H has a negative diagonal entry: not a Gram matrix")
    return H


def gptq_quantize(
    W: Any, H: Any, bits: int = 4, group_size: int | None = 128, *, block_size: int = 128, percdamp: float = 0.01
) -> GroupQuantized:
    """GPTQ: quantize ``W`` column by column, feeding each rounding error forward through ``H^-1``.

    Parameters
    ----------
    W : (rows, cols) weights (``nn.Linear.weight``).
    H : (cols, cols) ``2 X^T X / n`` of the layer's calibration inputs.
    bits, group_size : the grid, as in :func:`~course_lib.nn.quant.rtn_quantize`
        (asymmetric min-max per row and group; a group's grid is set from the
        *updated* weights when its first column is reached).
    block_size : columns per lazy block; the result does not depend on it.
    percdamp : damping ``percdamp * mean(diag H)`` added to the diagonal.

    Returns
    -------
    :class:`~course_lib.nn.quant.GroupQuantized`. With ``H = I`` it equals
    :func:`~course_lib.nn.quant.rtn_quantize` exactly (no error is fed forward).

    Notes
    -----
    One departure from ``IST-DASLab/gptq``: when a group starts inside a block,
    the reference sets its grid from weights that lack the updates of that
    block's earlier columns; here those (pending) updates are applied first,
    so any ``block_size`` gives the same codes as the unblocked algorithm.
    """
    W, g = _check_group(W, bits, group_size)
    W = W.copy()
    rows, cols = W.shape
    H = _check_hessian(H, cols)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    if not 0 <= percdamp < 1:
        raise ValueError(f"percdamp must be in [0, 1), got {percdamp}")

    dead = np.diag(H) == 0  # an input that was always 0: its weights never matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(cols)] += percdamp * np.mean(np.diag(H))
    U = inverse_cholesky_upper(H)

    codes = np.zeros((rows, cols), dtype=np.uint8)
    n_groups = -(-cols // g)
    scale, zero = np.empty((rows, n_groups)), np.empty((rows, n_groups))
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].copy()  # this block, kept fully up to date
        Err = np.zeros_like(W1)  # scaled errors of this block's columns, for the lazy update
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            if j % g == 0:  # a new group: its grid comes from the current (updated) weights
                group = W1[:, i : i + g]
                if j + g > i2:  # the group runs past this block: apply the pending updates to those columns
                    group = np.hstack([group, W[:, i2 : j + g] - Err[:, :i] @ U[i1:j, i2 : j + g]])
                s, z = grid_params(group, bits)
                scale[:, j // g], zero[:, j // g] = s, z
            w = W1[:, i]
            q = quantize_to_grid(w, s, z, bits)
            codes[:, j] = q
            err = (w - s * (q - z)) / U1[i, i]
            W1[:, i + 1 :] -= np.outer(err, U1[i, i + 1 :])  # feed the error forward inside the block
            Err[:, i] = err
        W[:, i2:] -= Err @ U[i1:i2, i2:]  # ... and, once per block, to every later column
    return GroupQuantized(codes, scale, zero, int(bits), g)


# --------------------------------------------------------------------------
# 2. AWQ: activation-aware scale search
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AWQResult:
    """The chosen per-input-channel scales and the weights quantized with them.

    Attributes
    ----------
    alpha : the chosen exponent; ``scales = s_x ** alpha`` (normalised).
    scales : (cols,) float64 multipliers applied to W's columns before rounding.
    quantized : the group quantization of ``W * scales``.
    alphas, losses : the grid searched and the output MSE at each point.
    """

    alpha: float
    scales: np.ndarray
    quantized: GroupQuantized
    alphas: np.ndarray
    losses: np.ndarray

    def dequantize(self) -> np.ndarray:
        """The effective weights ``Q(W * s) / s`` (float64 (rows, cols)).

        At inference the ``1 / s`` is folded into the previous operation
        (LayerNorm weights or the previous linear layer), so it costs nothing.
        """
        return self.quantized.dequantize() / self.scales


def awq_scales(act_scale: np.ndarray, alpha: float) -> np.ndarray:
    """``s = s_x ** alpha``, clamped at 1e-4 and normalised by ``sqrt(max(s) * min(s))`` (llm-awq's ``auto_scale``)."""
    s = np.maximum(np.asarray(act_scale, dtype=np.float64) ** alpha, 1e-4)
    return s / np.sqrt(s.max() * s.min())


def awq_search(W: Any, X: Any, bits: int = 4, group_size: int | None = 128, n_grid: int = 20) -> AWQResult:
    """Search ``alpha`` in {0, 1/n_grid, ..., (n_grid - 1)/n_grid} minimising the layer's output MSE on ``X``.

    ``s_x`` is the mean |activation| of each input channel over ``X``
    (llm-awq's ``get_act_scale``).  ``alpha = 0`` gives ``s = 1``, i.e. plain
    round-to-nearest, so the search can never do worse than RTN on ``X``.

    Parameters
    ----------
    W : (rows, cols) weights.
    X : (n_tokens, cols) calibration inputs of the layer.
    """
    W, g = _check_group(W, bits, group_size)
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != W.shape[1] or X.shape[0] == 0:
        raise ValueError(f"X must be (n_tokens, {W.shape[1]}), got shape {X.shape}")
    act_scale = np.abs(X).mean(axis=0, dtype=np.float64)
    alphas = np.arange(n_grid) / n_grid
    losses, results = [], []
    for alpha in alphas:
        s = awq_scales(act_scale, alpha)
        quantized = rtn_quantize(W * s, bits, g)
        delta = (quantized.dequantize() / s - W).astype(np.float32)
        losses.append(float(np.mean((X @ delta.T) ** 2, dtype=np.float64)))
        results.append((s, quantized))
    best = int(np.argmin(losses))
    return AWQResult(float(alphas[best]), results[best][0], results[best][1], alphas, np.array(losses))


def output_error(W: Any, W_hat: Any, X: Any, *, energy: float | None = None) -> float:
    """Relative layer-output error ``||X (W_hat - W)^T||^2 / ||X W^T||^2`` (the bias cancels).

    ``energy`` is ``||X W^T||^2`` when already known (it does not depend on ``W_hat``).
    """
    W = np.asarray(W, dtype=np.float64)
    W_hat = np.asarray(W_hat, dtype=np.float64)
    X = np.asarray(X, dtype=np.float32)
    if W.shape != W_hat.shape or X.ndim != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"need W, W_hat of one shape (rows, cols) and X (n, cols); got {W.shape}, {W_hat.shape}, {X.shape}")
    num = np.sum((X @ (W_hat - W).astype(np.float32).T) ** 2, dtype=np.float64)
    den = np.sum((X @ W.astype(np.float32).T) ** 2, dtype=np.float64) if energy is None else energy
    return float(num / max(den, 1e-300))


def synthetic_layer(
    rows: int = 96, cols: int = 256, n_tokens: int = 2048, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A linear layer with a transformer's statistics, for tests and exercises: ``(W, X_cal, X_test)``.

    Inputs are correlated (a low-rank mixture plus noise), channel scales are
    log-normal, and 2% of the channels are outliers 10x larger than the rest, as
    in LLM activations; weights are heavy-tailed (Student t, 5 degrees of
    freedom).  ``X_cal`` and ``X_test`` are independent draws of ``n_tokens``
    rows each: calibrate on one, measure on the other.

    Returns float32 arrays of shapes (rows, cols), (n_tokens, cols), (n_tokens, cols).
    """
    rng = np.random.default_rng(seed)
    k = max(1, cols // 8)
    mix = rng.standard_normal((k, cols)) / np.sqrt(k)
    scale = np.exp(rng.normal(0.0, 0.5, cols))
    scale[rng.choice(cols, max(1, cols // 50), replace=False)] *= 10.0

    def draw(n: int) -> np.ndarray:
        return ((rng.standard_normal((n, k)) @ mix + 0.3 * rng.standard_normal((n, cols))) * scale).astype(np.float32)

    W = (0.02 * rng.standard_t(5, size=(rows, cols))).astype(np.float32)
    return W, draw(n_tokens), draw(n_tokens)


# --------------------------------------------------------------------------
# 3. Calibration activations from MiniLM (forward hooks)
# --------------------------------------------------------------------------


@dataclass
class LayerInputs:
    """What one linear layer saw during a pass over some texts (padding tokens excluded).

    Attributes
    ----------
    n_tokens : number of real tokens seen.
    gram : (d, d) float64 ``sum x x^T`` (None when not collected).
    abs_sum : (d,) float64 ``sum |x|`` per input channel.
    sample : (m, d) float32, every ``sample_every``-th token's input.
    """

    n_tokens: int
    gram: np.ndarray | None
    abs_sum: np.ndarray
    sample: np.ndarray

    @property
    def hessian(self) -> np.ndarray:
        """``2 X^T X / n`` for GPTQ."""
        if self.gram is None:
            raise ValueError("the Gram matrix was not collected (record_linear_inputs(..., gram=True))")
        return 2.0 * self.gram / self.n_tokens

    @property
    def act_scale(self) -> np.ndarray:
        """Mean |x| per input channel (AWQ's ``s_x``)."""
        return self.abs_sum / self.n_tokens


def encoder_linears(model: Any) -> dict[str, torch.nn.Linear]:
    """The encoder's ``nn.Linear`` modules, named from ``"encoder."`` on (MiniLM: 36 of them)."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "encoder." in name:
            found[name[name.index("encoder.") :]] = module
    if not found:
        raise ValueError("no encoder linear layers found: expected a BERT-style model (e.g. corpus.load_model())")
    return found


def record_linear_inputs(
    model: Any, texts: Sequence[str], *, gram: bool = True, sample_every: int = 8, batch_size: int = 64
) -> tuple[np.ndarray, dict[str, LayerInputs]]:
    """Embed ``texts`` with a SentenceTransformer while recording every encoder linear layer's inputs.

    One forward pass does both jobs: the embeddings come back (as
    :func:`course_lib.data.corpus.embed_texts` returns them), and forward
    pre-hooks see each linear layer's input ``(batch, tokens, d)``; the attention
    mask (caught by a hook on the model's first module) drops padding tokens.

    Parameters
    ----------
    model : a SentenceTransformer (``course_lib.data.corpus.load_model``).
    texts : the texts to run.
    gram : accumulate ``X^T X`` per layer (for GPTQ; costs about as much as the forward pass).
    sample_every : keep every k-th real token's input as a row sample.

    Returns
    -------
    (embeddings float32 (len(texts), 384), {layer name: LayerInputs}).
    """
    from ..data.corpus import embed_texts

    if isinstance(sample_every, bool) or not isinstance(sample_every, int) or sample_every < 1:
        raise ValueError(f"sample_every must be a positive int, got {sample_every!r}")
    linears = encoder_linears(model)
    state: dict[str, Any] = {"mask": None}
    acc: dict[str, dict[str, Any]] = {n: {"n": 0, "gram": None, "abs": None, "rows": []} for n in linears}

    def catch_mask(module: Any, args: tuple) -> None:
        state["mask"] = args[0]["attention_mask"].bool()

    def make_hook(name: str) -> Any:
        def hook(module: Any, args: tuple) -> None:
            X = args[0][state["mask"]].detach().float()  # (real tokens, d)
            a = acc[name]
            if gram:  # upper triangle of X^T X: BLAS syrk does half the work of a full X.T @ X
                G = ssyrk(1.0, X.numpy().T).astype(np.float64)
                a["gram"] = G if a["gram"] is None else a["gram"] + G
            s = X.abs().sum(0).double().numpy()
            a["abs"] = s if a["abs"] is None else a["abs"] + s
            first = (-a["n"]) % sample_every  # keep a global stride across batches
            a["rows"].append(X[first::sample_every].numpy().copy())
            a["n"] += X.shape[0]

        return hook

    handles = [model[0].register_forward_pre_hook(catch_mask)]
    handles += [m.register_forward_pre_hook(make_hook(n)) for n, m in linears.items()]
    try:
        embeddings = embed_texts(model, list(texts), batch_size=batch_size)
    finally:
        for h in handles:
            h.remove()
    stats = {}
    for n, a in acc.items():
        G = a["gram"]
        if G is not None:  # mirror the upper triangle
            G = np.triu(G) + np.triu(G, 1).T
        stats[n] = LayerInputs(a["n"], G, a["abs"], np.concatenate(a["rows"]).astype(np.float32))
    return embeddings, stats


@contextlib.contextmanager
def swapped_weights(model: Any, weights: dict[str, Any]) -> Iterator[Any]:
    """Run ``model`` with some encoder linear weights replaced (e.g. dequantized), restoring them afterwards.

    This simulates the *numerics* of weight quantization (what a kernel that
    dequantizes on the fly computes, up to float32 rounding); it does not make
    anything faster or smaller in memory.
    """
    linears = encoder_linears(model)
    unknown = set(weights) - set(linears)
    if unknown:
        raise ValueError(f"unknown layer names: {sorted(unknown)[:3]}")
    saved = {n: linears[n].weight.data for n in weights}
    try:
        for n, W in weights.items():
            if tuple(np.shape(W)) != tuple(saved[n].shape):
                raise ValueError(f"{n}: expected shape {tuple(saved[n].shape)}, got {np.shape(W)}")
            linears[n].weight.data = torch.as_tensor(np.asarray(W), dtype=torch.float32)
        yield model
    finally:
        for n, W in saved.items():
            linears[n].weight.data = W
