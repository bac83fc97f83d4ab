"""Batching for generation: static batches against iteration-level (continuous) batching.

A generation request is not one forward pass but ``max_new_tokens`` of them,
and requests differ wildly in length.  Batch B requests the classic way
(``model.generate`` on a padded batch, FasterTransformer before 2022) and the
batch keeps all B rows until its *longest* request is done: a row that
finished early is still computed, its output thrown away, and its answer
cannot even be returned before the batch ends.  For i.i.d. exponential
output lengths the fraction of useful slot-steps tends to 1/H_B (H_B the
B-th harmonic number: B = 8 -> 0.37, B = 32 -> 0.25).

Orca (Yu et al., OSDI'22) schedules at the granularity of one *iteration*
(one decode step) instead: before every step the scheduler admits waiting
requests into free slots, and a sequence that finishes frees its slot at
once.  Slots stay busy whenever there is work waiting.  vLLM's scheduler
(Kwon et al., SOSP'23) does the same, capped by ``max_num_seqs`` (our
``max_slots``) and a per-step token budget (``max_num_batched_tokens``, our
``max_prefills_per_step`` is the crude version).  What makes it possible is
the KV cache: each row carries its own past keys and values, so rows at
different positions share the batched matrix multiplies of a step and only
the attention is per row.

This module has:

1. :class:`KVDecoder`: greedy decoding of a :class:`~course_lib.nn.tinygpt.TinyGPT`
   with a contiguous, preallocated per-slot KV cache (no paging: chapter 10
   builds PagedAttention on top), and :func:`greedy_reference`, the
   definition of a correct answer (one request alone, full recomputation).
2. :func:`run_static` and :func:`run_continuous`: the two schedulers on the
   real model, timed with the wall clock.
3. :func:`simulate_generation`: the same policies (plus "dynamic" batching)
   in virtual time on :class:`~course_lib.serving.des.Simulator`, driven by a
   cost model ``step_time(b)``, ``prefill_time(n_tokens)`` calibrated on the
   real model.
4. Closed forms: :func:`harmonic`, :func:`expected_static_utilisation`,
   :func:`static_utilisation_exponential`, :func:`output_length_pmf`.

"Slot utilisation" is useful decode slot-steps / (slots x decode
iterations).  It is not GPU utilisation: it counts rows that produce a token
a client wants, whatever the hardware does with them.

Units: seconds, tokens.  Shapes: ``b`` rows in a step, ``C`` = n_embd,
``V`` = vocab_size, ``T`` prompt length.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from ..data.synthetic import LENGTH_DISTS, LLMRequest
from .batching import DynamicBatcher, static_batching
from ..nn.tinygpt import TinyGPT
from ..validate import check_int, check_number
from . import des

POLICIES: tuple[str, ...] = ("static", "dynamic", "continuous")


# --------------------------------------------------------------------------
# 1. Greedy decoding with a KV cache, and the reference it must match
# --------------------------------------------------------------------------
@contextmanager
def _eval(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and inference mode for the duration, the model's training flag restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _check_prompt(prompt: Any, vocab_size: int, max_len: int) -> np.ndarray:
    arr = np.asarray(prompt)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"prompt must be a non-empty 1-d array of token ids (T,), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"prompt must hold integer token ids, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise ValueError(f"prompt token ids must be in [0, {vocab_size}), got range [{arr.min()}, {arr.max()}]")
    if arr.size > max_len:
        raise ValueError(f"prompt of {arr.size} tokens does not fit max_len={max_len}")
    return arr.astype(np.int64)


def greedy_reference(model: TinyGPT, prompt: Any, n_new: int) -> np.ndarray:
    """The definition of correct: ``n_new`` greedy tokens for one request alone, no cache.

    Every step runs the whole sequence through ``model(idx)`` (1, t) and takes
    the argmax of the last position's logits (ties: the lowest id, as
    ``torch.argmax``).  O(t) work per token, which is why nobody serves this
    way, and why it is the right yardstick: no cache, no batch, no scheduler.

    Parameters
    ----------
    model : a TinyGPT (put in eval mode for the call, then restored).
    prompt : int array (T,), token ids in [0, vocab_size).
    n_new : tokens to generate, >= 1; T + n_new - 1 <= block_size.

    Returns
    -------
    int64 array (n_new,): the generated tokens (the prompt excluded).
    """
    if not isinstance(model, TinyGPT):
        raise ValueError(f"model must be a TinyGPT, got {type(model).__name__}")
    block = model.config.block_size
    p = _check_prompt(prompt, model.config.vocab_size, block)
    n_new = check_int(n_new, "n_new", low=1)
    if p.size + n_new - 1 > block:
        raise ValueError(f"prompt ({p.size}) + n_new ({n_new}) - 1 tokens exceed block_size={block}")
    device = next(model.parameters()).device
    with _eval(model):
        idx = torch.as_tensor(p, device=device)[None, :]
        out = []
        for _ in range(n_new):
            logits, _ = model(idx)
            nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
            out.append(int(nxt))
            idx = torch.cat((idx, nxt), dim=1)
    return np.asarray(out, dtype=np.int64)


@dataclass
class GreedyCheck:
    """Result of :func:`check_greedy` for one request.

    Attributes
    ----------
    first_mismatch : index of the first generated token that is not the argmax of the
        no-cache logits given everything before it; -1 when every token is.
    min_margin : smallest (top-1 minus top-2) logit gap over the generated positions: how far
        the decode was from a tie that float rounding could flip.
    """

    first_mismatch: int
    min_margin: float

    @property
    def ok(self) -> bool:
        return self.first_mismatch < 0


def check_greedy(model: TinyGPT, prompt: Any, tokens: Any) -> GreedyCheck:
    """Verify a greedy decode in ONE forward pass: is each token the argmax given its prefix?

    Greedy decoding alone produces tokens with ``y_t = argmax f(prompt, y_<t)``,
    and it is deterministic, so a sequence that satisfies this at every ``t``
    *is* the decode of the request alone (by induction on ``t``).  With a
    causal model all the ``f(prompt, y_<t)`` come out of a single
    full-recompute pass over ``prompt + tokens[:-1]``: position ``T - 1 + t``
    sees exactly the prefix ``prompt, y_<t``.  That is O(1) passes instead of
    :func:`greedy_reference`'s O(n) growing ones (the same trick lets
    speculative decoding verify k draft tokens at once, chapter 10).  The
    pass is the no-cache path (``model(idx)``), independent of the KV cache
    and of any batching.

    Parameters
    ----------
    model : a TinyGPT.
    prompt : int array (T,).  tokens : int array (n,), the generated tokens, n >= 1.
    """
    if not isinstance(model, TinyGPT):
        raise ValueError(f"model must be a TinyGPT, got {type(model).__name__}")
    p = _check_prompt(prompt, model.config.vocab_size, model.config.block_size)
    y = np.asarray(tokens)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"tokens must be a non-empty 1-D int array, got {y.dtype} {y.shape}")
    if np.any((y < 0) | (y >= model.config.vocab_size)):
        raise ValueError(f"token ids must be in [0, {model.config.vocab_size})")
    if p.size + y.size - 1 > model.config.block_size:
        raise ValueError(f"prompt ({p.size}) + tokens ({y.size}) - 1 exceed block_size={model.config.block_size}")
    device = next(model.parameters()).device
    seq = torch.as_tensor(np.concatenate([p, y[:-1]]).astype(np.int64), device=device)[None, :]
    with _eval(model):
        logits, _ = model(seq)
    gen = logits[0, p.size - 1:, :]  # (n, V): the logits that chose each generated token
    top2 = torch.topk(gen, 2, dim=-1).values
    wrong = np.flatnonzero(gen.argmax(dim=-1).cpu().numpy() != y)
    return GreedyCheck(int(wrong[0]) if wrong.size else -1, float((top2[:, 0] - top2[:, 1]).min()))


class KVDecoder:
    """Greedy decoding over a TinyGPT's weights with a preallocated KV cache of ``max_slots`` rows.

    A *slot* is one row of the cache: a request owns a slot from its prefill
    until :meth:`free`.  The caches are

    * ``k``, ``v``: float tensors (n_layer, max_slots, n_head, max_len, head_size),
    * ``lengths``: int64 (max_slots,), positions filled per slot,

    and nothing is ever reallocated (the contiguous layout vLLM's paging
    replaces: every slot reserves ``max_len`` positions whether it uses them or not).

    The model is only read (``transformer.wte/wpe/h[i]/ln_f``, ``lm_head``);
    the decoder re-implements the forward pass of ``TinyGPT`` block by block
    so it can write and read the cache.  It works under ``torch.inference_mode``.

    Parameters
    ----------
    model : the TinyGPT whose weights are used (not modified).
    max_slots : rows of the cache (the most sequences decoded at once), >= 1.
    max_len : positions per slot, <= block_size (default block_size).
    batch_invariant : True (default): a row's arithmetic in :meth:`decode` does not
        depend on the other rows of the step, so batched logits equal the logits of
        the same request decoded alone *bit for bit*.  False: faster, equal to ~1e-6.
        See :meth:`decode` for why and how.
    gemm_rows : rows per matrix multiply in batch-invariant mode (>= 1).
    """

    def __init__(self, model: TinyGPT, max_slots: int, max_len: int | None = None, *,
                 batch_invariant: bool = True, gemm_rows: int = 8) -> None:
        if not isinstance(model, TinyGPT):
            raise ValueError(f"model must be a TinyGPT, got {type(model).__name__}")
        if not isinstance(batch_invariant, bool):
            raise ValueError(f"batch_invariant must be a bool, got {batch_invariant!r}")
        cfg = model.config
        self.model = model
        self.batch_invariant = batch_invariant
        self.gemm_rows = check_int(gemm_rows, "gemm_rows", low=1)
        self.max_slots = check_int(max_slots, "max_slots", low=1)
        self.max_len = cfg.block_size if max_len is None else check_int(max_len, "max_len", low=1, high=cfg.block_size)
        self.n_layer, self.n_head, self.n_embd = cfg.n_layer, cfg.n_head, cfg.n_embd
        self.head_size = cfg.n_embd // cfg.n_head
        self.vocab_size = cfg.vocab_size
        w = model.transformer.wte.weight
        shape = (self.n_layer, self.max_slots, self.n_head, self.max_len, self.head_size)
        self.k = torch.zeros(shape, dtype=w.dtype, device=w.device)
        self.v = torch.zeros(shape, dtype=w.dtype, device=w.device)
        self.lengths = np.zeros(self.max_slots, dtype=np.int64)
        self.active = np.zeros(self.max_slots, dtype=bool)

    # ---- slot bookkeeping -------------------------------------------------
    @property
    def n_free(self) -> int:
        """Slots not owned by a sequence."""
        return int(self.max_slots - self.active.sum())

    @property
    def cache_bytes(self) -> int:
        """Bytes of the K and V caches together (reserved up front, used or not)."""
        return 2 * self.k.numel() * self.k.element_size()

    def allocate(self) -> int:
        """The lowest free slot id (it becomes owned at :meth:`prefill`); ValueError when none is free."""
        free = np.flatnonzero(~self.active)
        if free.size == 0:
            raise ValueError(f"all {self.max_slots} slots are in use: free one first")
        return int(free[0])

    def free(self, slot: int) -> None:
        """Release ``slot`` (its cache rows are simply overwritten by the next prefill)."""
        slot = self._check_slot(slot)
        if not self.active[slot]:
            raise ValueError(f"slot {slot} is already free")
        self.active[slot] = False
        self.lengths[slot] = 0

    def reset(self) -> None:
        """Free every slot."""
        self.active[:] = False
        self.lengths[:] = 0

    def _check_slot(self, slot: Any) -> int:
        return check_int(slot, "slot", low=0, high=self.max_slots - 1)

    # ---- the forward pass, block by block ---------------------------------
    def _linear(self, layer: torch.nn.Linear, x: torch.Tensor, fixed: bool) -> torch.Tensor:
        """``layer(x)`` for rows x (N, C_in); with ``fixed``, as GEMMs of exactly ``gemm_rows`` rows.

        torch's CPU GEMM chooses its kernel (blocking, hence the order of the
        additions) from the matrix sizes, so the same row can round differently
        in a 1-row, a 3-row and a 16-row product.  Cutting the rows into chunks
        of a fixed size (the last one zero-padded) gives every row the same
        GEMM call whatever the batch: "batch-invariant" kernels the cheap way.
        """
        R = self.gemm_rows
        if not fixed or x.shape[0] == R:
            return layer(x)
        n = x.shape[0]
        pad = -n % R
        if pad:
            x = torch.cat((x, x.new_zeros(pad, x.shape[1])))
        return torch.cat([layer(x[j:j + R]) for j in range(0, n + pad, R)])[:n]

    def _block_pre(self, i: int, x: torch.Tensor, fixed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of block ``i`` for rows x (N, C), each (N, n_head, head_size)."""
        block = self.model.transformer.h[i]
        q, k, v = self._linear(block.attn.c_attn, block.ln_1(x), fixed).split(self.n_embd, dim=-1)
        shape = (x.shape[0], self.n_head, self.head_size)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def _block_post(self, i: int, x: torch.Tensor, y: torch.Tensor, fixed: bool) -> torch.Tensor:
        """Rest of block ``i``: attention output y (N, C) -> projection, residual, MLP, residual."""
        block = self.model.transformer.h[i]
        x = x + self._linear(block.attn.c_proj, y, fixed)
        mlp = block.mlp  # its dropout is skipped: inference
        h = mlp.gelu(self._linear(mlp.c_fc, block.ln_2(x), fixed))
        return x + self._linear(mlp.c_proj, h, fixed)

    def _logits(self, x: torch.Tensor, fixed: bool) -> torch.Tensor:
        return self._linear(self.model.lm_head, self.model.transformer.ln_f(x), fixed)

    def prefill(self, slot: int, prompt: Any, *, return_logits: bool = False) -> int | tuple[int, torch.Tensor]:
        """Run ``prompt`` (T,) through the model as a (1, T) sequence, filling ``slot``'s cache rows 0..T-1.

        The slot becomes owned.  Returns the greedy next token: the argmax of
        the last position's logits (with ``return_logits``, also those logits (V,)).
        That token is not in the cache yet: :meth:`decode` feeds it.
        """
        slot = self._check_slot(slot)
        if self.active[slot]:
            raise ValueError(f"slot {slot} is in use: free it before a new prefill")
        p = _check_prompt(prompt, self.vocab_size, self.max_len)
        T = p.size
        tr = self.model.transformer
        with torch.inference_mode():
            idx = torch.as_tensor(p, device=self.k.device)
            x = tr.wte(idx) + tr.wpe(torch.arange(T, device=idx.device))  # (T, C)
            for i in range(self.n_layer):
                q, k, v = (t.transpose(0, 1) for t in self._block_pre(i, x, False))  # (n_head, T, hs)
                self.k[i, slot, :, :T] = k
                self.v[i, slot, :, :T] = v
                y = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)  # (1, nh, T, hs)
                x = self._block_post(i, x, y[0].transpose(0, 1).reshape(T, self.n_embd), False)
            logits = self._logits(x[-1:], False)[0]  # (V,)
        self.lengths[slot] = T
        self.active[slot] = True
        token = int(logits.argmax())
        return (token, logits) if return_logits else token

    def decode(self, slots: Sequence[int], tokens: Sequence[int], *, live: Sequence[bool] | None = None,
               return_logits: bool = False) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
        """ONE decode iteration for ``b`` slots, each at its own position; the greedy next tokens (b,).

        Row j embeds ``tokens[j]`` at position ``lengths[slots[j]]``, runs the
        block stack with every Linear layer batched over the (b, C) rows (the
        weights are read once for all b rows: this is where batching pays),
        appends its K/V to its cache row and advances its length.

        Exactness.  A request decoded in a batch must get the tokens it gets
        alone.  Two things can make a row's floats depend on its batch-mates:

        * attention padded to the longest row with a mask: the softmax and the
          weighted sum then run over a length set by the other rows (masked keys
          add exact zeros, but the reduction order and blocking follow the
          padded length, and the result changes in the last bits);
        * the GEMM kernel: torch on CPU picks its blocking from the number of
          rows, so a row rounds differently in a 1-, 3- or 16-row product
          (measured here: ~1e-6 relative).

        With ``batch_invariant=True`` (default) attention is one call per row
        on exactly its own ``length + 1`` keys, and every Linear runs as GEMMs
        of exactly ``gemm_rows`` rows (:meth:`_linear`): the logits of a row are
        then bit-identical to decoding it alone, so the tokens are identical by
        construction, not by luck of the margins.  It costs a few extra small
        calls per step.  ``batch_invariant=False`` pads and masks the attention
        and runs each Linear as one GEMM: faster, equal to ~1e-6, and the
        tokens agree unless a step's top two logits are that close.

        Parameters
        ----------
        slots : (b,) distinct owned slot ids.
        tokens : (b,) token ids in [0, vocab_size), the last token of each row.
        live : optional (b,) bools; a row with False is a *padding row* (static
            batching: a finished sequence that ``model.generate`` keeps computing).
            It costs the same work, but its K/V overwrite its last cache
            position, its length does not advance and its output is meaningless.
        return_logits : also return the logits (b, V).

        Returns
        -------
        int64 array (b,) of next tokens (and the (b, V) logits with ``return_logits``).
        """
        s = np.asarray(slots)
        tok = np.asarray(tokens)
        if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"slots must be a non-empty 1-d sequence of ints, got {slots!r}")
        if tok.shape != s.shape or not np.issubdtype(tok.dtype, np.integer):
            raise ValueError(f"tokens must be {s.size} ints (one per slot), got {tokens!r}")
        if s.min() < 0 or s.max() >= self.max_slots:
            raise ValueError(f"slot ids must be in [0, {self.max_slots}), got {s.tolist()}")
        if np.unique(s).size != s.size:
            raise ValueError(f"duplicate slots in one step: {s.tolist()}")
        if not self.active[s].all():
            raise ValueError(f"slots {s[~self.active[s]].tolist()} are free: prefill them first")
        if tok.min() < 0 or tok.max() >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {tok.tolist()}")
        alive = np.ones(s.size, dtype=bool) if live is None else np.asarray(live, dtype=bool)
        if alive.shape != s.shape:
            raise ValueError(f"live must have one bool per slot ({s.size}), got shape {alive.shape}")
        pos = self.lengths[s] - (~alive)  # a padding row rewrites its last position
        if np.any(pos[alive] >= self.max_len):
            full = s[alive & (pos >= self.max_len)].tolist()
            raise ValueError(f"slots {full} are full: their sequences would exceed max_len={self.max_len}")
        b, tr, fixed = s.size, self.model.transformer, self.batch_invariant
        with torch.inference_mode():
            s_t = torch.as_tensor(s, device=self.k.device)
            p_t = torch.as_tensor(pos, device=self.k.device)
            x = tr.wte(torch.as_tensor(tok, device=self.k.device)) + tr.wpe(p_t)  # (b, C)
            for i in range(self.n_layer):
                q, k, v = self._block_pre(i, x, fixed)  # each (b, nh, hs)
                self.k[i, s_t, :, p_t] = k
                self.v[i, s_t, :, p_t] = v
                y = self._attend(i, s, pos, q)  # (b, nh, hs)
                x = self._block_post(i, x, y.reshape(b, self.n_embd), fixed)
            logits = self._logits(x, fixed)  # (b, V)
        self.lengths[s] = pos + 1
        out = logits.argmax(dim=-1).cpu().numpy().astype(np.int64)
        return (out, logits) if return_logits else out

    def _attend(self, i: int, s: np.ndarray, pos: np.ndarray, q: torch.Tensor) -> torch.Tensor:
        """Attention of each row's query (b, nh, hs) over its cache positions 0..pos: (b, nh, hs)."""
        if self.batch_invariant:
            rows = []
            for j in range(s.size):
                n = int(pos[j]) + 1
                kj = self.k[i, int(s[j]), :, :n]  # (nh, n, hs)
                vj = self.v[i, int(s[j]), :, :n]
                rows.append(F.scaled_dot_product_attention(q[j][:, None, :], kj, vj))  # (nh, 1, hs)
            return torch.cat(rows, dim=1).transpose(0, 1)
        n = int(pos.max()) + 1
        s_t = torch.as_tensor(s, device=q.device)
        K, V = self.k[i, s_t, :, :n], self.v[i, s_t, :, :n]  # (b, nh, n, hs)
        mask = torch.arange(n, device=q.device)[None, :] <= torch.as_tensor(pos, device=q.device)[:, None]
        y = F.scaled_dot_product_attention(q[:, :, None, :], K, V, attn_mask=mask[:, None, None, :])
        return y[:, :, 0, :]


# --------------------------------------------------------------------------
# 2. The two schedulers on the real model
# --------------------------------------------------------------------------
@dataclass
class GenRun:
    """What one scheduler run did, request by request and iteration by iteration.

    Request arrays are in the order of the ``requests`` argument; times are
    seconds since the start of the run (wall clock for ``run_*``, virtual
    time for :func:`simulate_generation`).

    Attributes
    ----------
    policy : "static", "dynamic" or "continuous".
    slots : batch size B / max_slots: the denominator of slot utilisation.
    tokens : list of int64 arrays (max_new_tokens_i,), the generated tokens (empty in simulation).
    arrival_s, first_token_s, last_token_s, done_s : (n,) arrival, first token out (end of
        its prefill), last token out, answer returned (continuous: its last token;
        static: the end of its batch, since a padded ``generate`` returns all rows at once).
    step_t : (iters,) start time of each decode iteration.
    step_s : (iters,) its duration (the wall clock also counts Python overhead).
    step_rows : (iters,) rows computed in it (padding rows included).
    step_useful : (iters,) rows that produced a token a client wants.
    prefill_s : seconds spent in prefills; total_s : the whole run.
    """

    policy: str
    slots: int
    tokens: list[np.ndarray]
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    last_token_s: np.ndarray
    done_s: np.ndarray
    step_t: np.ndarray
    step_s: np.ndarray
    step_rows: np.ndarray
    step_useful: np.ndarray
    prefill_s: float
    total_s: float
    n_tokens: int

    @property
    def n_steps(self) -> int:
        """Decode iterations."""
        return int(self.step_rows.size)

    @property
    def tokens_per_s(self) -> float:
        """Useful generated tokens per second of the whole run."""
        return self.n_tokens / self.total_s if self.total_s > 0 else math.inf

    @property
    def slot_utilisation(self) -> float:
        """Useful decode slot-steps / (slots x decode iterations), in [0, 1]."""
        return float(self.step_useful.sum() / (self.slots * self.n_steps)) if self.n_steps else 0.0

    @property
    def latency_s(self) -> np.ndarray:
        """(n,) arrival -> answer returned, s."""
        return self.done_s - self.arrival_s

    @property
    def ttft_s(self) -> np.ndarray:
        """(n,) time to first token (arrival -> end of its prefill), s."""
        return self.first_token_s - self.arrival_s

    def summary(self) -> dict[str, float]:
        """The headline numbers as a flat dict (for a table): throughput, utilisation, latency percentiles."""
        lat, ttft = self.latency_s, self.ttft_s
        return dict(policy=self.policy, slots=self.slots, requests=len(self.tokens), tokens=self.n_tokens,
                    steps=self.n_steps, total_s=self.total_s, tokens_per_s=self.tokens_per_s,
                    slot_utilisation=self.slot_utilisation,
                    mean_batch=float(self.step_rows.mean()) if self.n_steps else 0.0,
                    p50_latency_s=float(np.median(lat)), p99_latency_s=float(np.quantile(lat, 0.99)),
                    p50_ttft_s=float(np.median(ttft)))


def _check_requests(requests: Any, vocab_size: int | None = None, max_len: int | None = None) -> list[LLMRequest]:
    if not isinstance(requests, (list, tuple)) or len(requests) == 0:
        raise ValueError("requests must be a non-empty list of LLMRequest (see make_llm_requests)")
    for r in requests:
        if not isinstance(r, LLMRequest):
            raise ValueError(f"requests must hold LLMRequest objects, got {type(r).__name__}")
        check_int(r.max_new_tokens, f"request {r.rid}: max_new_tokens", low=1)
        check_number(r.arrival_s, f"request {r.rid}: arrival_s", low=0.0)
        if vocab_size is not None:
            p = _check_prompt(r.prompt, vocab_size, max_len)
            if p.size + r.max_new_tokens - 1 > max_len:
                raise ValueError(f"request {r.rid}: prompt ({p.size}) + max_new_tokens ({r.max_new_tokens}) - 1 "
                                 f"exceeds the decoder's max_len={max_len}")
    return list(requests)


def _arrival_order(requests: list[LLMRequest]) -> list[int]:
    return sorted(range(len(requests)), key=lambda i: (requests[i].arrival_s, i))  # FIFO, stable


class _Clock:
    """Wall clock since the start of a run, with sleeping until an arrival and a hard limit ``max_s``."""

    def __init__(self, max_s: float | None) -> None:
        self.max_s = None if max_s is None else check_number(max_s, "max_s", low=0.0, low_open=True)
        self.t0 = time.perf_counter()

    def now(self) -> float:
        t = time.perf_counter() - self.t0
        if self.max_s is not None and t > self.max_s:
            raise TimeoutError(f"the run took longer than max_s={self.max_s} s")
        return t

    def sleep_until(self, t: float) -> None:
        if self.max_s is not None and t > self.max_s:
            raise TimeoutError(f"the next arrival (t={t:.3f} s) is after max_s={self.max_s} s")
        delay = t - self.now()
        if delay > 0:
            time.sleep(delay)


def _new_run(policy: str, slots: int, requests: list[LLMRequest]) -> dict:
    n = len(requests)
    return dict(policy=policy, slots=slots, tokens=[[] for _ in range(n)],
                arrival_s=np.array([r.arrival_s for r in requests], dtype=np.float64),
                first_token_s=np.full(n, np.nan), last_token_s=np.full(n, np.nan), done_s=np.full(n, np.nan),
                step_t=[], step_s=[], step_rows=[], step_useful=[], prefill_s=0.0)


def _finish_run(rec: dict, total_s: float) -> GenRun:
    if rec["policy"] == "continuous":  # an answer goes out with its last token
        rec["last_token_s"] = rec["done_s"].copy()
    tokens = [np.asarray(t, dtype=np.int64) for t in rec.pop("tokens")]
    arrays = {k: np.asarray(rec.pop(k), dtype=np.int64 if k in ("step_rows", "step_useful") else np.float64)
              for k in ("step_t", "step_s", "step_rows", "step_useful")}
    return GenRun(tokens=tokens, total_s=total_s, n_tokens=int(sum(t.size for t in tokens)), **arrays, **rec)


def _check_decoder(decoder: Any) -> KVDecoder:
    if not isinstance(decoder, KVDecoder):
        raise ValueError(f"decoder must be a KVDecoder, got {type(decoder).__name__}")
    if decoder.n_free != decoder.max_slots:
        raise ValueError("the decoder has slots in use: call decoder.reset() before a run")
    return decoder


def run_static(decoder: KVDecoder, requests: list[LLMRequest], batch_size: int, *,
               max_s: float | None = None) -> GenRun:
    """Static batching on the real model: FIFO groups of ``batch_size``, each run to its longest request.

    Requests are taken in arrival order, ``batch_size`` at a time (the last
    group may be smaller); a group starts once the previous one is done and
    all its members have arrived (sleeping until then).  Its requests are
    prefilled one by one, then the group is decoded with a *fixed* batch
    shape until its longest request has all its tokens, as ``model.generate``
    on a padded batch does: a row that finished keeps being computed (a
    padding row, see :meth:`KVDecoder.decode`), its outputs discarded, and
    every answer is returned when the group ends.

    Parameters
    ----------
    decoder : a KVDecoder with at least ``batch_size`` slots, all free.
    requests : the requests (prompt + max_new_tokens - 1 <= decoder.max_len).
    batch_size : B >= 1.
    max_s : stop with TimeoutError if the run is not done after this many seconds.

    Returns
    -------
    GenRun with ``slots = batch_size``.
    """
    decoder = _check_decoder(decoder)
    reqs = _check_requests(requests, decoder.vocab_size, decoder.max_len)
    B = check_int(batch_size, "batch_size", low=1, high=decoder.max_slots)
    rec = _new_run("static", B, reqs)
    clock = _Clock(max_s)
    order = _arrival_order(reqs)
    try:
        for g in range(0, len(order), B):
            group = order[g:g + B]
            clock.sleep_until(max(reqs[i].arrival_s for i in group))
            slots, last = [], []
            t = clock.now()
            for i in group:
                slot = decoder.allocate()
                last.append(decoder.prefill(slot, reqs[i].prompt))
                slots.append(slot)
                rec["tokens"][i].append(last[-1])
                rec["first_token_s"][i] = rec["last_token_s"][i] = clock.now()
            rec["prefill_s"] += clock.now() - t
            need = np.array([reqs[i].max_new_tokens for i in group])
            for step in range(int(need.max()) - 1):
                live = need - 1 > step  # rows that still want tokens
                t = clock.now()
                out = decoder.decode(slots, last, live=live)
                dt = clock.now() - t
                for j in np.flatnonzero(live):
                    rec["tokens"][group[j]].append(int(out[j]))
                    rec["last_token_s"][group[j]] = t + dt
                    last[j] = int(out[j])
                rec["step_t"].append(t)
                rec["step_s"].append(dt)
                rec["step_rows"].append(len(group))
                rec["step_useful"].append(int(live.sum()))
            done = clock.now()
            for i, slot in zip(group, slots):
                rec["done_s"][i] = done
                decoder.free(slot)
    finally:
        decoder.reset()
    return _finish_run(rec, clock.now())


def run_continuous(decoder: KVDecoder, requests: list[LLMRequest], max_slots: int, *,
                   max_prefills_per_step: int | None = None, max_s: float | None = None) -> GenRun:
    """Continuous (iteration-level, Orca-style) batching on the real model.

    Loop: admit arrived requests, FIFO, into free slots (prefill each; at most
    ``max_prefills_per_step`` per iteration, None = no cap), then run ONE
    decode step for all active rows.  A sequence that has its tokens frees its
    slot at once (a 1-token request right after its prefill, so the slot can be
    refilled in the same admission pass); its answer is returned then.  When
    nothing is active and the next request has not arrived, sleep until it does.

    Parameters
    ----------
    decoder : a KVDecoder with at least ``max_slots`` slots, all free.
    requests : the requests (prompt + max_new_tokens - 1 <= decoder.max_len).
    max_slots : most sequences decoded at once (vLLM's ``max_num_seqs``), >= 1.
    max_prefills_per_step : cap on admissions before one decode step, >= 1, or None.
    max_s : stop with TimeoutError if the run is not done after this many seconds.

    Returns
    -------
    GenRun with ``slots = max_slots``.
    """
    decoder = _check_decoder(decoder)
    reqs = _check_requests(requests, decoder.vocab_size, decoder.max_len)
    S = check_int(max_slots, "max_slots", low=1, high=decoder.max_slots)
    cap = None if max_prefills_per_step is None else check_int(max_prefills_per_step, "max_prefills_per_step", low=1)
    rec = _new_run("continuous", S, reqs)
    clock = _Clock(max_s)
    waiting = deque(_arrival_order(reqs))
    active: dict[int, int] = {}  # slot -> request index
    try:
        while waiting or active:
            admitted = 0
            t = t_admit = clock.now()
            while (waiting and reqs[waiting[0]].arrival_s <= t and len(active) < S
                   and (cap is None or admitted < cap)):
                i = waiting.popleft()
                slot = decoder.allocate()
                rec["tokens"][i].append(decoder.prefill(slot, reqs[i].prompt))
                t = clock.now()
                rec["first_token_s"][i] = t
                admitted += 1
                if reqs[i].max_new_tokens == 1:
                    rec["done_s"][i] = t
                    decoder.free(slot)
                else:
                    active[slot] = i
            rec["prefill_s"] += t - t_admit
            if not active:
                if waiting:
                    clock.sleep_until(reqs[waiting[0]].arrival_s)
                continue
            slots = sorted(active)
            t = clock.now()
            out = decoder.decode(slots, [rec["tokens"][active[s]][-1] for s in slots])
            t_end = clock.now()
            rec["step_t"].append(t)
            rec["step_s"].append(t_end - t)
            rec["step_rows"].append(len(slots))
            rec["step_useful"].append(len(slots))
            for slot, token in zip(slots, out):
                i = active[slot]
                rec["tokens"][i].append(int(token))
                if len(rec["tokens"][i]) == reqs[i].max_new_tokens:
                    rec["done_s"][i] = t_end
                    decoder.free(slot)
                    del active[slot]
    finally:
        decoder.reset()
    return _finish_run(rec, clock.now())


def measure_step_time(decoder: KVDecoder, batch_sizes: Sequence[int] = (1, 2, 4, 8, 16), *,
                      prompt_len: int = 10, n_steps: int = 24, seed: int = 0) -> np.ndarray:
    """Median wall-clock seconds of one decode step with b rows, for each b in ``batch_sizes``.

    For each b: prefill b random prompts of ``prompt_len`` tokens, then time
    ``n_steps`` decode steps (contexts prompt_len .. prompt_len + n_steps) and
    keep the median (robust to a noisy neighbour on a shared machine).  The
    decoder is reset before and after.  Fit ``t(b) = a + c b`` with :meth:`batching.ServiceCurve.fit`.

    Returns
    -------
    float64 array (len(batch_sizes),), seconds.
    """
    if not isinstance(decoder, KVDecoder):
        raise ValueError(f"decoder must be a KVDecoder, got {type(decoder).__name__}")
    bs = [check_int(b, "batch size", low=1, high=decoder.max_slots) for b in batch_sizes]
    if not bs:
        raise ValueError("batch_sizes is empty")
    prompt_len = check_int(prompt_len, "prompt_len", low=1)
    n_steps = check_int(n_steps, "n_steps", low=1)
    if prompt_len + n_steps > decoder.max_len:
        raise ValueError(f"prompt_len + n_steps = {prompt_len + n_steps} exceeds max_len={decoder.max_len}")
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    out = []
    try:
        for b in bs:
            decoder.reset()
            tokens = np.array([decoder.prefill(s, rng.integers(0, decoder.vocab_size, size=prompt_len))
                               for s in range(b)])
            slots, times = list(range(b)), []
            for _ in range(n_steps):
                t = time.perf_counter()
                tokens = decoder.decode(slots, tokens)
                times.append(time.perf_counter() - t)
            out.append(float(np.median(times)))
    finally:
        decoder.reset()
    return np.asarray(out)


def measure_prefill_time(decoder: KVDecoder, prompt_lens: Sequence[int] = (4, 8, 16), *,
                         reps: int = 10, seed: int = 0) -> np.ndarray:
    """Median wall-clock seconds of one prefill of T tokens, for each T in ``prompt_lens`` (decoder reset after)."""
    if not isinstance(decoder, KVDecoder):
        raise ValueError(f"decoder must be a KVDecoder, got {type(decoder).__name__}")
    Ts = [check_int(T, "prompt length", low=1, high=decoder.max_len) for T in prompt_lens]
    if not Ts:
        raise ValueError("prompt_lens is empty")
    reps = check_int(reps, "reps", low=1)
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    out = []
    try:
        for T in Ts:
            times = []
            for _ in range(reps):
                decoder.reset()
                prompt = rng.integers(0, decoder.vocab_size, size=T)
                t = time.perf_counter()
                decoder.prefill(0, prompt)
                times.append(time.perf_counter() - t)
            out.append(float(np.median(times)))
    finally:
        decoder.reset()
    return np.asarray(out)


# --------------------------------------------------------------------------
# 3. The same policies in virtual time (no model), on the DES kernel
# --------------------------------------------------------------------------
def _cost_fn(fn: Any, name: str) -> Callable[[int], float]:
    if not callable(fn):
        raise ValueError(f"{name} must be a callable returning seconds (e.g. lambda b: a + c * b), got {fn!r}")

    def checked(x: int) -> float:
        return check_number(fn(x), f"{name}({x})", low=0.0)

    return checked


def simulate_generation(requests: list[LLMRequest], policy: str, *, slots: int,
                        step_time: Callable[[int], float], prefill_time: Callable[[int], float],
                        max_wait_s: float | None = None, max_prefills_per_step: int | None = None) -> GenRun:
    """Static, dynamic or continuous batching of generation requests in virtual time, with no model.

    The scheduling logic is that of :func:`run_static` / :func:`run_continuous`
    line for line; only the clock differs: a prefill of T tokens takes
    ``prefill_time(T)`` seconds and a decode iteration of b rows
    ``step_time(b)`` (a cost model fitted on the real model, e.g. a + c b).
    Events on a :class:`~course_lib.serving.des.Simulator`: the end of each
    iteration (continuous) or batch (static, dynamic), and a wake-up at the
    next arrival or batching deadline when the server is idle.

    Policies (B = ``slots``):

    * ``"static"``: FIFO groups of B, a group starts when all B have arrived
      (the last group: the remainder) and runs to its longest request.
    * ``"dynamic"``: a batch of up to B starts when B requests wait or
      ``max_wait_s`` after the oldest waiting one arrived, whichever comes first
      (Triton's dynamic batcher, Ray Serve's ``@serve.batch``); then as static.
    * ``"continuous"``: iteration-level scheduling, as :func:`run_continuous`.

    Returns
    -------
    GenRun with virtual times (``tokens`` are empty arrays; ``n_tokens`` counts
    the tokens the requests asked for).  Latency = arrival -> answer returned
    (static/dynamic: the end of the batch).
    """
    reqs = _check_requests(requests)
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: expected one of {POLICIES}")
    S = check_int(slots, "slots", low=1)
    step_t, pre_t = _cost_fn(step_time, "step_time"), _cost_fn(prefill_time, "prefill_time")
    if policy == "dynamic":
        if max_wait_s is None:
            raise ValueError("policy 'dynamic' needs max_wait_s (seconds to wait for a full batch)")
        max_wait = check_number(max_wait_s, "max_wait_s", low=0.0)
    cap = None if max_prefills_per_step is None else check_int(max_prefills_per_step, "max_prefills_per_step", low=1)

    rec = _new_run(policy, S, reqs)
    order = _arrival_order(reqs)
    arr = rec["arrival_s"]
    need = np.array([r.max_new_tokens for r in reqs], dtype=np.int64)
    plen = np.array([np.asarray(r.prompt).size for r in reqs], dtype=np.int64)
    sim = des.Simulator()
    state = dict(next=0)  # index into `order` of the first request not yet admitted
    active: dict[int, int] = {}  # request index -> tokens produced (continuous)

    def prefill(i: int, t: float) -> float:
        t += pre_t(int(plen[i]))
        rec["first_token_s"][i] = t
        return t

    def continuous() -> None:
        t = t_admit = sim.now
        admitted = 0
        while (state["next"] < len(order) and arr[order[state["next"]]] <= t and len(active) < S
               and (cap is None or admitted < cap)):
            i = order[state["next"]]
            state["next"] += 1
            t = prefill(i, t)
            admitted += 1
            if need[i] == 1:
                rec["done_s"][i] = t
            else:
                active[i] = 1
        rec["prefill_s"] += t - t_admit
        if not active:
            if state["next"] < len(order):
                sim.schedule_at(max(t, arr[order[state["next"]]]), continuous)
            return
        dt = step_t(len(active))
        rec["step_t"].append(t)
        rec["step_s"].append(dt)
        rec["step_rows"].append(len(active))
        rec["step_useful"].append(len(active))
        sim.schedule_at(t + dt, end_step)

    def end_step() -> None:
        for i in list(active):
            active[i] += 1
            if active[i] == need[i]:
                rec["done_s"][i] = sim.now
                del active[i]
        continuous()

    batcher = static_batching(S) if policy == "static" else DynamicBatcher(S, max_wait) if policy == "dynamic" else None

    def batched() -> None:
        # the batching decision is lesson 07.02's DynamicBatcher, asked with the arrival times of the waiting requests
        t, k = sim.now, state["next"]
        if k == len(order):
            return
        pending = arr[order[k:]]
        n_arrived = int(np.searchsorted(pending, t, side="right"))
        size, wake = batcher.next_batch(pending[:n_arrived], t)
        if size == 0 and policy == "static" and n_arrived and k + n_arrived == len(order):
            size = n_arrived  # nobody else is coming: the last, partial group runs
        if size == 0:
            later = pending[n_arrived] if n_arrived < pending.size else math.inf
            sim.schedule_at(min(later, math.inf if wake is None else wake), batched)
            return
        group = order[k:k + size]
        state["next"] = k + len(group)
        t_pre = t
        for i in group:
            t = prefill(i, t)
        rec["prefill_s"] += t - t_pre
        g_need = need[group]
        n_steps = int(g_need.max()) - 1
        dt = step_t(len(group)) if n_steps else 0.0
        steps = np.arange(n_steps)
        rec["step_t"].extend((t + steps * dt).tolist())
        rec["step_s"].extend([dt] * n_steps)
        rec["step_rows"].extend([len(group)] * n_steps)
        rec["step_useful"].extend((g_need[None, :] - 1 > steps[:, None]).sum(axis=1).tolist())
        end = t + n_steps * dt
        rec["last_token_s"][group] = np.where(g_need > 1, t + (g_need - 1) * dt, rec["first_token_s"][group])
        rec["done_s"][group] = end
        sim.schedule_at(end, batched)

    sim.schedule_at(arr[order[0]], continuous if policy == "continuous" else batched)
    sim.run()
    run = _finish_run(rec, float(np.nanmax(rec["done_s"])))
    run.n_tokens = int(need.sum())
    run.tokens = [np.zeros(0, dtype=np.int64) for _ in reqs]
    return run


# --------------------------------------------------------------------------
# 4. Closed forms
# --------------------------------------------------------------------------
def harmonic(B: int) -> float:
    """H_B = 1 + 1/2 + ... + 1/B (about ln B + 0.5772)."""
    B = check_int(B, "B", low=1)
    return math.fsum(1.0 / k for k in range(1, B + 1))


def static_utilisation_exponential(B: int) -> float:
    """1 / H_B: static-batch slot utilisation for i.i.d. exponential work per request (continuous limit).

    E[max of B i.i.d. Exp(1)] = H_B (the gaps between order statistics are
    Exp(k) for k = B, ..., 1), and the mean is 1, so E[mean]/E[max] = 1/H_B.
    """
    return 1.0 / harmonic(B)


def expected_static_utilisation(pmf: Any, B: int, *, start: int = 1) -> float:
    """Exact long-run slot utilisation of static batches of ``B`` i.i.d. requests: E[X] / E[max of B].

    X is the work of a request in decode iterations, with ``pmf[j] = P(X = start + j)``.
    A batch runs max(X_1..X_B) iterations with B slots and uses sum X_i of them,
    so over many batches useful / (B x iterations) -> E[X] / E[max] (a ratio of
    expectations, not E[mean/max]), with E[max] = sum_{k>=1} P(max >= k)
    = sum_{k>=1} 1 - P(X <= k - 1)**B.

    For :func:`run_static` a request of L tokens takes L - 1 decode iterations
    (the first token comes from its prefill): pass the pmf of L with ``start=0``.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"pmf must be a non-empty 1-d array of probabilities, got shape {p.shape}")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"pmf must sum to 1, got {p.sum()!r}")
    B = check_int(B, "B", low=1)
    start = check_int(start, "start", low=0)
    p = p / p.sum()
    values = start + np.arange(p.size)
    mean = float(np.dot(values, p))
    cdf = np.cumsum(p)  # cdf[j] = P(X <= start + j)
    k = np.arange(1, values[-1] + 1)  # P(max >= k) for k = 1..max value
    below = np.where(k - 1 < start, 0.0, cdf[np.clip(k - 1 - start, 0, p.size - 1)])
    e_max = float(np.sum(1.0 - below**B))
    if e_max == 0:
        raise ValueError("every request has zero work (X = 0): utilisation is undefined")
    return mean / e_max


def output_length_pmf(mean_new_tokens: float, length_dist: str = "exponential", *, sigma: float = 1.0,
                      max_new_tokens: int | None = None, tail: float = 1e-13) -> np.ndarray:
    """The exact law of the output lengths :func:`~course_lib.data.make_llm_requests` draws.

    Returns ``pmf`` with ``pmf[j] = P(L = j + 1)``, j = 0..K-1: K = ``max_new_tokens``
    (the cap's mass P(L >= cap) on the last entry), or without a cap the first K
    with P(L > K) < ``tail`` (that tail added to the last entry).
    """
    m = check_number(mean_new_tokens, "mean_new_tokens", low=1.0)
    if length_dist not in LENGTH_DISTS:
        raise ValueError(f"unknown length_dist {length_dist!r}: expected one of {LENGTH_DISTS}")
    sigma = check_number(sigma, "sigma", low=0.0, low_open=True)
    cap = None if max_new_tokens is None else check_int(max_new_tokens, "max_new_tokens", low=1)
    tail = check_number(tail, "tail", low=0.0, high=1e-3, low_open=True)
    if length_dist == "fixed":
        L = int(round(m)) if cap is None else min(int(round(m)), cap)
        pmf = np.zeros(L)
        pmf[-1] = 1.0
        return pmf
    if length_dist == "exponential":
        q = 1.0 - 1.0 / m  # P(L > k) = q**k
        K = cap if cap is not None else (1 if q == 0 else max(1, math.ceil(math.log(tail) / math.log(q))))
        surv = q ** np.arange(0, K + 1, dtype=np.float64)  # P(L > k), k = 0..K
    else:
        mu = math.log(m) - sigma**2 / 2

        def sf(y: np.ndarray) -> np.ndarray:  # P(Y > y)
            return np.array([0.5 * math.erfc((math.log(v) - mu) / (sigma * math.sqrt(2))) for v in y])

        if cap is not None:
            K = cap
        else:
            z = math.sqrt(2) * _erfcinv(2 * tail)
            K = max(1, math.ceil(math.exp(mu + sigma * z)))
        # L = max(1, rint(Y)): P(L > k) = P(Y > k + 1/2) for k >= 1, and P(L > 0) = 1
        surv = np.concatenate([[1.0], sf(np.arange(1, K + 1) + 0.5)])
    pmf = surv[:-1] - surv[1:]
    pmf[-1] += surv[-1]  # the capped (or negligible) tail
    return pmf


def _erfcinv(y: float) -> float:
    """Inverse of erfc on (0, 2) by bisection (enough for choosing a truncation point)."""
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.erfc(mid) > y:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def fluid_batch_size(arrival_rate: float, mean_new_tokens: float, a: float, c: float, *,
                     prefill_s: float = 0.0) -> float:
    """Mean rows per decode step of continuous batching under load: the fluid (mean-value) approximation.

    Continuous batching runs a step whenever there is work, so under load the
    server is always busy and the batch size b settles where the work that
    arrives per second takes one second:

        lambda * prefill_s + lambda * (m - 1) * t(b) / b = 1,  t(b) = a + c b
        =>  b* = lambda (m - 1) a / (1 - lambda prefill_s - lambda (m - 1) c)

    (m - 1 decode steps per request of m tokens).  A steep t(b) (large c, a CPU)
    keeps b* well below the slot count at, say, 90% of full-batch capacity,
    because a smaller batch steps faster; a flat t(b) (c ~ 0, a memory-bound
    GPU decode) gives b* ~ load x slots.  Returns inf when the load exceeds
    what any batch size can serve (cap it at the slot count yourself).

    Parameters
    ----------
    arrival_rate : requests/s.  mean_new_tokens : m, tokens per request.
    a, c : step-time model t(b) = a + c b, seconds.  prefill_s : mean prefill seconds per request.
    """
    lam = check_number(arrival_rate, "arrival_rate", low=0.0, low_open=True)
    m = check_number(mean_new_tokens, "mean_new_tokens", low=1.0)
    a = check_number(a, "a", low=0.0)
    c = check_number(c, "c", low=0.0)
    prefill_s = check_number(prefill_s, "prefill_s", low=0.0)
    free = 1.0 - lam * prefill_s - lam * (m - 1) * c
    return math.inf if free <= 0 else lam * (m - 1) * a / free
