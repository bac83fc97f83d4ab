"""Size profiles, seeding, thread control and paths: the knobs every lesson shares.

A lesson never scatters size literals through its cells.  It reads one
:class:`Profile` (``profile(SIZE)``) so that ``small`` means the same thing in
every notebook, and a batch run at ``full`` scales every lesson at once.

Fair timing needs both sides of a comparison on the same number of threads:
:func:`single_thread` caps BLAS/OpenMP (threadpoolctl), faiss and torch for the
duration of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Iterator

import numpy as np

#: Root of the repository (the folder holding ``course_lib/``).
REPO_ROOT: Path = Path(__file__).resolve().parent.parent
#: Frozen datasets, their cards and checksums.
DATASETS_DIR: Path = REPO_ROOT / "datasets"


@dataclass(frozen=True)
class Profile:
    """What one size means, for every dataset in the course.

    Attributes
    ----------
    name : "small" or "full".
    n_vectors : database size of synthetic vector sets.
    n_queries : number of held-out queries.
    n_corpus : number of documents taken from the frozen CPython corpus.
    dims : dimensions swept by curse-of-dimensionality experiments.
    repeats : timing repeats (the median and p99 are reported).
    extra : lesson-specific sizes, read with :meth:`get`.
    """

    name: str
    n_vectors: int
    n_queries: int
    n_corpus: int
    dims: tuple[int, ...]
    repeats: int
    extra: dict[str, int] = field(default_factory=dict)

    def get(self, key: str, default: int | None = None) -> int:
        """A lesson-specific size, e.g. ``profile("small").get("n_train")``."""
        if key in self.extra:
            return self.extra[key]
        if default is None:
            raise KeyError(f"profile {self.name!r} has no size {key!r}; known: {sorted(self.extra)}")
        return default

    def scaled(self, **changes: object) -> Profile:
        """A copy with some fields changed (for a one-off experiment)."""
        return replace(self, **changes)  # type: ignore[arg-type]


PROFILES: dict[str, Profile] = {
    "small": Profile(
        name="small",
        n_vectors=20_000,
        n_queries=200,
        n_corpus=2_000,
        dims=(2, 4, 8, 16, 32, 64, 128, 256, 512),
        repeats=5,
        extra={
            # chapter 02 (ANN indexes): synthetic database size and dimension, graph-index sizes
            "ann_n": 20_000,
            "ann_d": 32,
            "hnsw_n": 5_000,
            "vamana_n": 3_000,
            "recsys_users": 5_000, "recsys_items": 2_000,  # chapter 05 simulated world (recsys.sim.make_world)
            # 05/01 two-tower:
            "tt_epochs": 3, "tt_eval_users": 1_000, "tt_ann_users": 300, "tt_hnsw_M": 8, "tt_hnsw_efc": 32,
            # 05/02 funnel:
            "funnel_train_users": 800, "funnel_eval_users": 250, "funnel_latency_requests": 10,  # 05/02: users the rankers learn from / are judged on; requests timed per config
            # 05/03 video capstone:
            "vc_impressions": 200_000, "vc_eval_users": 300, "vc_dpp_trials": 120,
            "vc_sess_items": 600, "vc_sessions": 1_200, "vc_gru_epochs": 4,
            # 05/04 multi-task:
            "mtl_n": 10_000, "mtl_d": 20, "mtl_steps": 300, "mtl_rhos": 5, "mtl_seeds": 1,  # 05/04: examples (80 % train), input dim, Adam steps, rho grid, training seeds
            # 05/05 feedback loops:
            "ope_population": 1_000, "ope_logs": 5_000, "ope_reps": 30,  # users whose truth is exact, logged rows per replication, replications
            "loop_rounds": 50, "loop_users": 1_000, "pos_users": 20_000,  # closed-loop rounds and users per round; position-bias impressions per arm
            "loop_items": 2_000, "loop_world_users": 5_000,  # the closed loop's own catalogue cap and users (at small: the lesson's world)
            # 07/01 queues:
            "q_check_n": 10_000, "q_reps": 400, "q_rep_n": 5_000, "q_ci_pct": 3, "q_max_batches": 12,  # requests (heap vs simpy), replications x requests per Erlang C batch, CI target %, batch cap
            "q_knee_reps": 120, "q_long_n": 200_000, "q_hedge_n": 20_000, "q_mg_batches": 3,  # knee replications, long single runs (Little, sizing, bursts), hedged requests per run, M/G/c batch cap
            # 07/02 batching:
            "bat_low_n": 64, "bat_high_n": 304, "bat_over_n": 100, "bat_cal_repeats": 4, "bat_max_s": 30.0,  # requests per light / heavy / overloaded (no batching at heavy load) run, t(b) repeats, client time limit (s)
            "bat_simpy_n": 2_000, "bat_sweep_n": 1_200, "bat_sweep_loads": (0.3, 0.6, 0.9, 1.3, 1.8, 2.4, 3.0),  # simpy check requests, requests per sweep point, sweep loads (x no batching's capacity)
            "gen_requests": 96, "gen_direct": 6, "gen_sim_n": 2_000, "gen_sim_static_n": 16_000, "gen_loads": (0.5, 0.8, 0.9, 0.95, 1.0),  # real generation requests, of them checked step by step, simulated requests per load, static-utilisation requests, loads (x continuous capacity)
            # 07/03 caching:
            # catalogue size of the Zipf workloads, measured requests (trace equality, hit-rate curves), warm-up requests,
            # requests replayed through W-TinyLFU (pure Python, slowest), feature-store entities and simulated feature
            # requests (TTL sweep), of which the first cache_redis_requests also run against the real Redis server
            "cache_items": 10_000, "cache_stream": 200_000, "cache_warmup": 50_000, "cache_tinylfu_stream": 60_000,
            "cache_entities": 2_000, "cache_feature_requests": 20_000, "cache_redis_requests": 4_000,
            # 07/04 protocols:
            "proto_requests": 200, "proto_max_s": 2,  # timed requests per protocol (MiniLM batch), and a loop's time cap in s
            "proto_large_batch": 128, "proto_large_requests": 20, "proto_stream_repeats": 3,  # larger payload rows and requests; streaming runs per mode
            # 07/05 low latency:
            "ll_samples": 5_000, "ll_ring_n": 20_000, "ll_gc_requests": 4_000, "ll_gc_live": 200_000,  # 07/05: latency samples per variant, ring items, GC-run requests, live objects kept
            # 07/06 budgets:
            "bud_traces": 8, "bud_trace_calls": 1_000, "bud_chain_n": 100_000, "bud_shed_s": 4.0, "bud_loads": 8,  # breaker traces x calls vs pybreaker, call-chain requests, simulated s per load level, load levels
            # 07/07 autoscaling:
            "as_days": 2,  # 07/07: independent one-day traces (seeds) per policy, averaged in the cost vs violations table
            # 07/08 many models:
            "mm_requests": 60_000, "mm_users": 100_000, "mm_canary_sims": 2_000, "mm_jobs": 4_000,  # 07/08: model-cache requests, users split, canary replays, jobs per tenant
            "cv_train": 2_000, "cv_test": 250, "cv_steps": 160,  # 08/06 detector: train/test images, Adam steps
            "cv_pool": 800, "cv_budget": 80, "cv_ft_steps": 40,  # 08/06 active learning: unlabelled pool, labels bought, fine-tune steps
            # 04/02 hybrid search: queries scored by rank-bm25 too (our BM25 must match it to 1e-9)
            "bm25_ref_queries": 50,
            # 08/04 quantization: MiniLM calibration passages (GPTQ Hessians), held-out passages re-embedded per scheme, tokens per passage
            "quant_cal_passages": 160,
            "quant_eval_passages": 48,
            "quant_max_tokens": 64,
            # 08/05 compilers and fusion: float32 elements of the elementwise-chain tensor (>> last-level cache), longest chain timed
            "fusion_n": 1 << 24,
            "fusion_k_max": 8,
            # 08/00, 08/01 (hardware numbers, roofline): bytes per bandwidth-probe array (far past the last-level cache),
            # side of the GEMV / weight matrix (float32), largest GEMM side of the peak sweep, bytes of the temporary file
            "hw_stream_bytes": 128 * 2**20,
            "hw_gemv_n": 8192,
            "hw_gemm_n": 1024,
            "hw_file_bytes": 64 * 2**20,
            # 08/02 systolic arrays: random shapes run through the cycle-level simulator, largest M, K, N drawn
            "systolic_shapes": 40,
            "systolic_max_dim": 12,
            # 04/03 learning to rank: LambdaRank epochs, random string pairs checked against rapidfuzz, typo draws per query
            "ltr_epochs": 10,
            "edit_pairs": 2_000,
            "typo_rounds": 1,
            # 04/04 (RAG): characters of long documents in the collection (documents holding a question, stable order)
            "rag_chars": 60_000,
            # 04/01 (embedding pipeline): passages run live through MiniLM (equivalence, batching timings), drift window
            "embed_equiv_n": 48,
            "embed_timing_n": 32,
            "drift_window": 200,
            # chapter 01 (foundations): Monte Carlo trials, simulated requests; one line per lesson below
            "mc_trials": 200_000,
            "sim_requests": 20_000,
            # 01/01: (none yet)
            # 01/02: design framework: rows of the out-of-cache scan matrix, timed encoder calls
            "design_scan_rows": 100_000,
            "design_embed_calls": 60,
            # 01/03: Monte Carlo draws for the far tail (p99.99) of a sum of stage latencies
            "slo_tail_trials": 1_000_000,
            # 01/04: batch and sequence length of the FLOP counts and timings
            "cap_batch": 2,
            "cap_seq": 128,
            # 01/05: (none yet)
        },
    ),
    "full": Profile(
        name="full",
        n_vectors=200_000,
        n_queries=1_000,
        n_corpus=6_000,  # the frozen corpus holds ~6.3k documents (datasets/cpython_docs/CARD.md)
        dims=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
        repeats=7,
        extra={
            "ann_n": 200_000,
            "ann_d": 64,
            "hnsw_n": 100_000,
            "vamana_n": 20_000,
            "recsys_users": 100_000, "recsys_items": 50_000,  # chapter 05 simulated world (recsys.sim.make_world)
            # 05/01 two-tower:
            "tt_epochs": 4, "tt_eval_users": 2_000, "tt_ann_users": 1_000, "tt_hnsw_M": 12, "tt_hnsw_efc": 48,
            # 05/02 funnel:
            "funnel_train_users": 4_000, "funnel_eval_users": 500, "funnel_latency_requests": 50,
            # 05/03 video capstone:
            "vc_impressions": 2_000_000, "vc_eval_users": 3_000, "vc_dpp_trials": 1_000,
            "vc_sess_items": 2_000, "vc_sessions": 20_000, "vc_gru_epochs": 6,
            # 05/04 multi-task:
            "mtl_n": 40_000, "mtl_d": 100, "mtl_steps": 1_000, "mtl_rhos": 6, "mtl_seeds": 2,
            # 05/05 feedback loops:
            "ope_population": 500, "ope_logs": 20_000, "ope_reps": 50,  # (population x 50k items matrices: kept small in memory)
            "loop_rounds": 60, "loop_users": 5_000, "pos_users": 100_000,
            "loop_items": 2_000, "loop_world_users": 20_000,  # a million (segment, item) arms at 50k items: too many for 60 rounds
            # 07/01 queues:
            "q_check_n": 100_000, "q_reps": 400, "q_rep_n": 5_000, "q_ci_pct": 1, "q_max_batches": 80,
            "q_knee_reps": 400, "q_long_n": 4_000_000, "q_hedge_n": 100_000, "q_mg_batches": 12,
            # 07/02 batching:
            "bat_low_n": 600, "bat_high_n": 960, "bat_over_n": 400, "bat_cal_repeats": 9, "bat_max_s": 120.0,
            "bat_simpy_n": 200_000, "bat_sweep_n": 40_000, "bat_sweep_loads": (0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.25, 2.5, 2.75, 3.0),
            "gen_requests": 192, "gen_direct": 24, "gen_sim_n": 10_000, "gen_sim_static_n": 64_000, "gen_loads": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0),
            # 07/03 caching:
            "cache_items": 10_000, "cache_stream": 1_000_000, "cache_warmup": 200_000, "cache_tinylfu_stream": 400_000,
            "cache_entities": 20_000, "cache_feature_requests": 200_000, "cache_redis_requests": 40_000,
            # 07/04 protocols:
            "proto_requests": 1_000, "proto_max_s": 10,
            "proto_large_batch": 512, "proto_large_requests": 100, "proto_stream_repeats": 10,
            # 07/05 low latency:
            "ll_samples": 50_000, "ll_ring_n": 200_000, "ll_gc_requests": 10_000, "ll_gc_live": 1_000_000,
            # 07/06 budgets:
            "bud_traces": 40, "bud_trace_calls": 5_000, "bud_chain_n": 1_000_000, "bud_shed_s": 30.0, "bud_loads": 12,
            # 07/07 autoscaling:
            "as_days": 8,
            # 07/08 many models:
            "mm_requests": 300_000, "mm_users": 1_000_000, "mm_canary_sims": 10_000, "mm_jobs": 20_000,  # 07/08: model-cache requests, users split, canary replays, jobs per tenant
            "cv_train": 6_000, "cv_test": 1_000, "cv_steps": 900,  # 08/06 detector: train/test images, Adam steps
            "cv_pool": 3_000, "cv_budget": 300, "cv_ft_steps": 300,  # 08/06 active learning: unlabelled pool, labels bought, fine-tune steps
            # 04/02 hybrid search: every benchmark query scored by rank-bm25 too
            "bm25_ref_queries": 1_475,
            # 08/04 quantization: MiniLM calibration passages, held-out passages, tokens per passage
            "quant_cal_passages": 256,
            "quant_eval_passages": 160,
            "quant_max_tokens": 128,
            # 08/05 compilers and fusion: float32 elements of the elementwise-chain tensor (>> last-level cache), longest chain timed
            "fusion_n": 1 << 26,
            "fusion_k_max": 16,
            # 08/00, 08/01 (hardware numbers, roofline)
            "hw_stream_bytes": 512 * 2**20,
            "hw_gemv_n": 12288,
            "hw_gemm_n": 2048,
            "hw_file_bytes": 512 * 2**20,
            # 08/02 systolic arrays: random shapes run through the cycle-level simulator, largest M, K, N drawn
            "systolic_shapes": 200,
            "systolic_max_dim": 24,
            # 04/03 learning to rank: LambdaRank epochs, random string pairs checked against rapidfuzz, typo draws per query
            "ltr_epochs": 25,
            "edit_pairs": 30_000,
            "typo_rounds": 5,
            # 04/04: every document holding a question (about 450k characters)
            "rag_chars": 1_000_000,
            # 04/01
            "embed_equiv_n": 500,
            "embed_timing_n": 128,
            "drift_window": 400,
            "mc_trials": 2_000_000,
            "sim_requests": 200_000,
            # 01/01: (none yet)
            # 01/02: design framework: rows of the out-of-cache scan matrix, timed encoder calls
            "design_scan_rows": 400_000,
            "design_embed_calls": 300,
            # 01/03: Monte Carlo draws for the far tail (p99.99) of a sum of stage latencies
            "slo_tail_trials": 4_000_000,
            # 01/04: batch and sequence length of the FLOP counts and timings
            "cap_batch": 8,
            "cap_seq": 256,
            # 01/05: (none yet)
        },
    ),
}


def profile(size: str = "small") -> Profile:
    """The :class:`Profile` named ``size`` ("small" or "full")."""
    if not isinstance(size, str) or size not in PROFILES:
        raise ValueError(f"unknown size {size!r}: expected one of {sorted(PROFILES)}")
    return PROFILES[size]


def seed_everything(seed: int = 0) -> np.random.Generator:
    """Seed Python, numpy's legacy global RNG and torch (if installed).

    Returns a fresh ``np.random.Generator(PCG64(seed))``: lessons draw from it
    explicitly rather than from hidden global state.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    try:
        import torch
    except ImportError:  # torch is optional for most lessons
        pass
    else:
        torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


@contextlib.contextmanager
def single_thread(n_threads: int = 1) -> Iterator[None]:
    """Run the block with BLAS/OpenMP, faiss and torch capped at ``n_threads``.

    Both sides of a timing comparison must run on the same number of threads,
    otherwise a ratio measures the core count, not the algorithm.
    """
    from threadpoolctl import threadpool_limits

    # Enter threadpoolctl first: it records the settings it restores on exit,
    # and they must be the ones from before this block, not our own.
    with threadpool_limits(limits=n_threads):
        try:
            import torch
        except ImportError:
            torch = None  # type: ignore[assignment]
        try:
            import faiss
        except ImportError:
            faiss = None  # type: ignore[assignment]
        old_torch = torch.get_num_threads() if torch is not None else None
        old_faiss = faiss.omp_get_max_threads() if faiss is not None else None
        if torch is not None:
            torch.set_num_threads(n_threads)
        if faiss is not None:
            faiss.omp_set_num_threads(n_threads)
        try:
            yield
        finally:
            if torch is not None and old_torch is not None:
                torch.set_num_threads(old_torch)
            if faiss is not None and old_faiss is not None:
                faiss.omp_set_num_threads(old_faiss)


def set_offline() -> None:
    """Tell Hugging Face libraries never to reach the network, in this process (idempotent)."""
    from .offline import HF_OFFLINE_VARS

    for name, value in HF_OFFLINE_VARS.items():
        os.environ.setdefault(name, value)
