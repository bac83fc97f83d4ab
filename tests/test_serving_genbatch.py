"""Generation batching (course_lib.serving.genbatch): KV-cache decoding against full recomputation,
static and continuous schedulers token-identical to decoding alone, the virtual-time simulation
against the real runs, and the closed forms of static-batch slot utilisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.data import LLMRequest, make_llm_requests
from course_lib.nn.tinygpt import GPTConfig, TinyGPT
from course_lib.serving import genbatch as G

SMALL = dict(block_size=64, vocab_size=128, n_layer=2, n_head=2, n_embd=32)
COST = dict(step_time=lambda b: 1e-3 + 1e-4 * b, prefill_time=lambda n: 1e-4 * n)


@pytest.fixture(scope="module")
def model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(**SMALL)).eval()


@pytest.fixture(scope="module")
def requests() -> list[LLMRequest]:
    # lengths 1..20, skewed (mean 7); prompts 4..16 tokens
    return make_llm_requests(30, seed=1, vocab_size=128, mean_new_tokens=7.0, max_new_tokens=20)


@pytest.fixture(scope="module")
def reference(model, requests) -> list[np.ndarray]:
    return [G.greedy_reference(model, r.prompt, r.max_new_tokens) for r in requests]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- requests
def test_make_llm_requests_shapes_seed_and_ranges():
    a = make_llm_requests(50, seed=3, vocab_size=100, prompt_len=(2, 5), mean_new_tokens=10, max_new_tokens=30)
    b = make_llm_requests(50, seed=3, vocab_size=100, prompt_len=(2, 5), mean_new_tokens=10, max_new_tokens=30)
    assert [r.rid for r in a] == list(range(50))
    for r, s in zip(a, b):
        assert np.array_equal(r.prompt, s.prompt) and r.max_new_tokens == s.max_new_tokens
        assert r.prompt.dtype == np.int64 and 2 <= r.prompt.size <= 5
        assert r.prompt.min() >= 0 and r.prompt.max() < 100
        assert 1 <= r.max_new_tokens <= 30 and r.arrival_s == 0.0
    assert {r.prompt.size for r in a} == {2, 3, 4, 5}  # both ends of the inclusive range


def test_make_llm_requests_arrivals_do_not_change_prompts_or_lengths():
    a = make_llm_requests(2000, seed=4)
    b = make_llm_requests(2000, seed=4, arrival_rate=50.0)
    assert all(np.array_equal(r.prompt, s.prompt) and r.max_new_tokens == s.max_new_tokens for r, s in zip(a, b))
    t = np.array([r.arrival_s for r in b])
    assert np.all(np.diff(t) > 0) and t[0] > 0
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert abs(gaps.mean() * 50.0 - 1.0) < 0.06 and abs(gaps.std() / gaps.mean() - 1.0) < 0.08  # exponential: cv 1


@pytest.mark.parametrize("dist,cap", [("exponential", None), ("exponential", 40), ("lognormal", 200), ("fixed", None)])
def test_output_lengths_follow_the_stated_law(dist, cap):
    reqs = make_llm_requests(40_000, seed=5, mean_new_tokens=12.0, length_dist=dist, max_new_tokens=cap)
    L = np.array([r.max_new_tokens for r in reqs])
    pmf = G.output_length_pmf(12.0, dist, max_new_tokens=cap)
    emp = np.bincount(L, minlength=pmf.size + 1)[1:]
    assert emp.size == pmf.size  # nothing outside the support
    assert np.abs(emp / L.size - pmf).max() < 0.006
    mean = float(np.dot(np.arange(1, pmf.size + 1), pmf))
    assert abs(L.mean() - mean) < 0.03 * mean
    if cap is None:
        assert abs(mean - 12.0) < 0.01  # the mean is preserved (lognormal: up to rounding)


def test_exponential_lengths_are_geometric_with_the_given_mean():
    pmf = G.output_length_pmf(24.0)
    k = np.arange(1, 51)
    assert np.allclose(pmf[:50], (1 / 24) * (1 - 1 / 24) ** (k - 1), rtol=1e-12)
    assert abs(np.dot(np.arange(1, pmf.size + 1), pmf) - 24.0) < 1e-9


@pytest.mark.parametrize("kwargs", [
    dict(n=0), dict(n=5, prompt_len=(0, 3)), dict(n=5, prompt_len=(6, 3)), dict(n=5, mean_new_tokens=0.5),
    dict(n=5, length_dist="pareto"), dict(n=5, max_new_tokens=0), dict(n=5, arrival_rate=0.0),
    dict(n=5, vocab_size=0), dict(n=5, sigma=-1.0), dict(n=True),
])
def test_make_llm_requests_rejects_bad_arguments(kwargs):
    n = kwargs.pop("n")
    with pytest.raises(ValueError):
        make_llm_requests(n, **kwargs)


# ---------------------------------------------------------------- KV-cache decoding
def test_kv_logits_match_full_recomputation(model):
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 128, size=9)
    dec = G.KVDecoder(model, 4)
    token, logits = dec.prefill(2, prompt, return_logits=True)
    idx = torch.as_tensor(prompt)[None]
    with torch.no_grad():
        full, _ = model(idx)
    assert (logits - full[0, -1]).abs().max() < 1e-4 and token == int(full[0, -1].argmax())
    for _ in range(30):  # positions 9..38: every decode step against model(idx)
        idx = torch.cat([idx, torch.tensor([[token]])], dim=1)
        out, logits = dec.decode([2], [token], return_logits=True)
        with torch.no_grad():
            full, _ = model(idx)
        assert (logits[0] - full[0, -1]).abs().max() < 1e-4
        token = int(out[0])
        assert token == int(full[0, -1].argmax())
    assert dec.lengths[2] == 9 + 30


def test_greedy_reference_equals_model_generate(model):
    prompt = np.arange(5) * 7
    out = model.generate(torch.as_tensor(prompt)[None], 12, temperature=0.0)
    assert np.array_equal(G.greedy_reference(model, prompt, 12), out[0, 5:].numpy())


@pytest.mark.parametrize("batch_invariant", [True, False])
def test_batched_rows_against_the_same_rows_alone(model, batch_invariant):
    """Batch-invariant mode: bit-identical logits; fast mode: equal to float rounding (~1e-6)."""
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, 128, size=int(rng.integers(3, 30))) for _ in range(11)]
    dec = G.KVDecoder(model, 11, batch_invariant=batch_invariant)
    alone = []
    for s, p in enumerate(prompts):
        dec.reset()
        t = dec.prefill(s, p)
        alone.append(dec.decode([s], [t], return_logits=True)[1][0].clone())
    for b in (2, 3, 5, 8, 11):
        dec.reset()
        first = [dec.prefill(s, prompts[s]) for s in range(b)]
        order = list(range(b))[::-1]  # row order must not matter either
        _, logits = dec.decode(order, [first[s] for s in order], return_logits=True)
        for row, s in enumerate(order):
            if batch_invariant:
                assert torch.equal(logits[row], alone[s])
            else:
                assert (logits[row] - alone[s]).abs().max() < 1e-5


def test_decoder_rejects_bad_calls(model):
    dec = G.KVDecoder(model, 3, max_len=12)
    t = dec.prefill(0, np.arange(10))
    with pytest.raises(ValueError, match="free"):
        dec.decode([1], [t])
    with pytest.raises(ValueError, match="duplicate"):
        dec.decode([0, 0], [t, t])
    with pytest.raises(ValueError, match="token ids"):
        dec.decode([0], [128])
    with pytest.raises(ValueError, match="slot ids"):
        dec.decode([3], [t])
    with pytest.raises(ValueError, match="one per slot"):
        dec.decode([0], [t, t])
    with pytest.raises(ValueError, match="in use"):
        dec.prefill(0, np.arange(3))
    dec.decode([0], [t])
    dec.decode([0], [t])  # length 12 = max_len
    with pytest.raises(ValueError, match="max_len"):
        dec.decode([0], [t])
    with pytest.raises(ValueError, match="max_len"):
        dec.prefill(1, np.arange(13))
    for bad in (np.array([1.0, 2.0]), np.zeros((2, 2), dtype=np.int64), np.array([], dtype=np.int64), np.array([-1])):
        with pytest.raises(ValueError):
            dec.prefill(1, bad)
    with pytest.raises(ValueError):
        G.KVDecoder(model, 0)
    with pytest.raises(ValueError):
        G.KVDecoder(model, 2, max_len=65)  # > block_size
    with pytest.raises(ValueError):
        G.KVDecoder(torch.nn.Linear(2, 2), 2)
    dec.free(0)
    with pytest.raises(ValueError, match="already free"):
        dec.free(0)
    for s in range(3):
        dec.prefill(dec.allocate(), np.arange(2))
    with pytest.raises(ValueError, match="in use"):
        dec.allocate()
    with pytest.raises(ValueError):
        G.greedy_reference(model, np.arange(60), 6)  # 60 + 6 - 1 > 64


# ---------------------------------------------------------------- schedulers on the real model
@pytest.mark.parametrize("slots", [1, 3, 8])
def test_both_schedulers_are_token_identical_to_decoding_alone(model, requests, reference, slots):
    dec = G.KVDecoder(model, 8)
    for run in (G.run_static(dec, requests, slots), G.run_continuous(dec, requests, slots)):
        assert all(np.array_equal(a, b) for a, b in zip(run.tokens, reference)), run.policy
        assert run.n_tokens == sum(r.max_new_tokens for r in requests)
        assert dec.n_free == 8  # every slot handed back
        assert np.all(run.first_token_s <= run.done_s) and np.all(run.step_useful <= run.step_rows)


def test_fast_decoder_tokens_and_prefill_cap(model, requests, reference):
    dec = G.KVDecoder(model, 5, batch_invariant=False)
    run = G.run_continuous(dec, requests, 5, max_prefills_per_step=1)
    assert all(np.array_equal(a, b) for a, b in zip(run.tokens, reference))


def test_static_and_continuous_bookkeeping(model, requests):
    dec = G.KVDecoder(model, 4)
    st = G.run_static(dec, requests, 4)
    need = np.array([r.max_new_tokens for r in requests])
    groups = [need[g:g + 4] for g in range(0, need.size, 4)]
    assert st.n_steps == sum(int(g.max()) - 1 for g in groups)
    assert st.step_useful.sum() == (need - 1).sum()
    assert np.all(st.step_rows == np.concatenate([[g.size] * (int(g.max()) - 1) for g in groups]))
    assert st.slot_utilisation == pytest.approx((need - 1).sum() / (4 * st.n_steps))
    for g in range(0, need.size, 4):  # a static group returns all its answers at once
        assert np.all(st.done_s[g:g + 4] == st.done_s[g])
        assert st.last_token_s[g:g + 4].max() <= st.done_s[g]
    assert np.all(st.first_token_s <= st.last_token_s)
    ct = G.run_continuous(dec, requests, 4)
    assert np.all(ct.step_rows == ct.step_useful) and ct.step_useful.sum() == (need - 1).sum()
    assert ct.n_steps < st.n_steps and ct.slot_utilisation > st.slot_utilisation
    assert ct.tokens_per_s > 0 and np.all(ct.latency_s > 0) and np.all(ct.ttft_s > 0)


def test_schedulers_honour_arrival_times(model):
    reqs = make_llm_requests(8, seed=2, vocab_size=128, mean_new_tokens=3, max_new_tokens=6, arrival_rate=400.0)
    dec = G.KVDecoder(model, 4)
    for run in (G.run_static(dec, reqs, 4), G.run_continuous(dec, reqs, 4)):
        assert np.all(run.first_token_s > run.arrival_s)
    st = G.run_static(dec, reqs, 4)
    assert np.all(st.first_token_s[:4] > reqs[3].arrival_s)  # a static group waits for its last member
    late = [LLMRequest(0, np.arange(3), 2, 0.0), LLMRequest(1, np.arange(3), 2, 30.0)]
    with pytest.raises(TimeoutError):
        G.run_continuous(dec, late, 2, max_s=0.5)
    assert dec.n_free == 4  # the decoder is reset even after a failed run


def test_schedulers_reject_bad_input(model, requests):
    dec = G.KVDecoder(model, 4, max_len=20)
    with pytest.raises(ValueError, match="non-empty"):
        G.run_continuous(dec, [], 2)
    with pytest.raises(ValueError, match="batch_size"):
        G.run_static(dec, requests[:2], 0)
    with pytest.raises(ValueError, match="batch_size"):
        G.run_static(dec, requests[:2], 5)  # more than the decoder's slots
    with pytest.raises(ValueError, match="max_len"):
        G.run_continuous(dec, [LLMRequest(0, np.arange(15), 8, 0.0)], 2)
    with pytest.raises(ValueError, match="LLMRequest"):
        G.run_continuous(dec, [np.arange(3)], 2)
    dec.prefill(0, np.arange(3))
    with pytest.raises(ValueError, match="reset"):
        G.run_continuous(dec, requests[:2], 2)


# ---------------------------------------------------------------- simulation
@pytest.mark.parametrize("slots,cap", [(1, None), (3, None), (8, None), (8, 2)])
def test_simulation_reproduces_the_real_iterations(model, requests, slots, cap):
    dec = G.KVDecoder(model, 8)
    real_c = G.run_continuous(dec, requests, slots, max_prefills_per_step=cap)
    sim_c = G.simulate_generation(requests, "continuous", slots=slots, max_prefills_per_step=cap, **COST)
    assert np.array_equal(real_c.step_rows, sim_c.step_rows)
    if cap is None:
        real_s = G.run_static(dec, requests, slots)
        sim_s = G.simulate_generation(requests, "static", slots=slots, **COST)
        assert np.array_equal(real_s.step_rows, sim_s.step_rows)
        assert np.array_equal(real_s.step_useful, sim_s.step_useful)
        assert sim_s.slot_utilisation == pytest.approx(real_s.slot_utilisation)


def test_simulated_static_utilisation_matches_the_exact_value():
    for B, mean in [(4, 24.0), (16, 24.0), (8, 400.0)]:
        reqs = make_llm_requests(B * 1500, seed=6, mean_new_tokens=mean)
        run = G.simulate_generation(reqs, "static", slots=B, step_time=lambda b: 1.0, prefill_time=lambda n: 0.0)
        exact = G.expected_static_utilisation(G.output_length_pmf(mean), B, start=0)  # L - 1 decode steps
        assert abs(run.slot_utilisation - exact) < 0.02 * exact
        if mean > 100:
            assert abs(exact - G.static_utilisation_exponential(B)) < 0.01  # -> 1/H_B


def test_virtual_time_of_a_hand_checked_schedule():
    reqs = [LLMRequest(0, np.arange(2), 3, 0.0), LLMRequest(1, np.arange(4), 1, 0.0),
            LLMRequest(2, np.arange(2), 2, 0.1)]
    cost = dict(step_time=lambda b: 0.01 * b, prefill_time=lambda n: 0.001 * n)
    c = G.simulate_generation(reqs, "continuous", slots=2, **cost)
    # t=0: prefill r0 (0.002), r1 (0.004, done: 1 token); step [r0] 0.004->0.014; step [r0] ->0.024 done
    # t=0.1: prefill r2 -> 0.102, step -> 0.112 done
    assert np.allclose(c.first_token_s, [0.002, 0.006, 0.102])
    assert np.allclose(c.done_s, [0.026, 0.006, 0.112])
    assert np.array_equal(c.step_rows, [1, 1, 1])
    s = G.simulate_generation(reqs, "static", slots=2, **cost)
    # group {r0, r1}: prefills to 0.006, 2 steps of b=2 (0.02 each) -> 0.046; r2 alone from 0.1
    assert np.allclose(s.done_s, [0.046, 0.046, 0.112]) and s.step_useful.tolist() == [1, 1, 1]
    assert np.allclose(s.last_token_s, [0.046, 0.006, 0.112]) and np.array_equal(c.last_token_s, c.done_s)
    d = G.simulate_generation(reqs, "dynamic", slots=4, max_wait_s=0.05, **cost)
    # 2 waiting < 4: start at the deadline 0.05; r2 arrives during that batch, waits for its own deadline 0.15
    assert np.allclose(d.first_token_s[:2], [0.052, 0.056]) and d.first_token_s[2] == pytest.approx(0.152)
    d0 = G.simulate_generation(reqs, "dynamic", slots=4, max_wait_s=0.0, **cost)
    assert d0.first_token_s[0] == pytest.approx(0.002)


@pytest.mark.parametrize("c,p", [(2e-5, 2e-5), (2.8e-4, 2e-4)])  # flat t(b) (GPU-like decode), steep (this CPU)
def test_continuous_near_saturation(c, p):
    """Poisson arrivals at 90% of the full-batch capacity of continuous batching."""
    a, S, mean = 2e-3, 16, 24.0
    per_request = (mean - 1) * (a + c * S) / S + p * 10  # server seconds per request at a full batch
    rate = 0.9 / per_request
    reqs = make_llm_requests(3000, seed=8, mean_new_tokens=mean, arrival_rate=rate)
    cost = dict(step_time=lambda b: a + c * b, prefill_time=lambda n: p * n)
    runs = {pol: G.simulate_generation(reqs, pol, slots=S, max_wait_s=0.02, **cost) for pol in G.POLICIES}
    p50 = {k: float(np.median(r.latency_s)) for k, r in runs.items()}
    cont = runs["continuous"]
    assert p50["continuous"] <= p50["static"] and p50["continuous"] <= p50["dynamic"]
    assert cont.slot_utilisation > 2 * runs["static"].slot_utilisation
    # the fluid approximation predicts the mean batch size to ~10%
    L = np.mean([r.max_new_tokens for r in reqs])
    T = np.mean([r.prompt.size for r in reqs])
    b_star = G.fluid_batch_size(rate, L, a, c, prefill_s=p * T)
    assert abs(cont.step_rows.mean() - b_star) < 0.1 * b_star
    if c < 1e-4:
        assert cont.slot_utilisation > 0.85  # flat step time: the batch stays nearly full
    else:
        assert cont.slot_utilisation < 0.8  # steep step time: smaller batches step faster and keep up


def test_simulation_rejects_bad_input(requests):
    with pytest.raises(ValueError, match="policy"):
        G.simulate_generation(requests, "greedy", slots=2, **COST)
    with pytest.raises(ValueError, match="callable"):
        G.simulate_generation(requests, "static", slots=2, step_time=0.01, prefill_time=COST["prefill_time"])
    with pytest.raises(ValueError, match="slots"):
        G.simulate_generation(requests, "static", slots=0, **COST)
    with pytest.raises(ValueError, match="max_wait_s"):
        G.simulate_generation(requests, "dynamic", slots=2, **COST)
    with pytest.raises(ValueError, match="non-empty"):
        G.simulate_generation([], "continuous", slots=2, **COST)
    with pytest.raises(ValueError, match="step_time"):
        G.simulate_generation(requests, "continuous", slots=2, step_time=lambda b: -1.0,
                              prefill_time=COST["prefill_time"])


# ---------------------------------------------------------------- closed forms
def test_closed_forms():
    assert G.harmonic(1) == 1.0 and G.harmonic(4) == pytest.approx(25 / 12)
    assert G.static_utilisation_exponential(8) == pytest.approx(0.3679, abs=1e-4)
    assert G.static_utilisation_exponential(32) == pytest.approx(0.2464, abs=1e-4)
    assert G.expected_static_utilisation([0.0, 0.0, 1.0], 8) == 1.0  # equal lengths: no waste
    assert G.expected_static_utilisation([0.5, 0.5], 1) == 1.0
    # two requests, lengths 1 or 2 with probability 1/2: E[X] = 1.5, E[max] = 1 + 3/4
    assert G.expected_static_utilisation([0.5, 0.5], 2) == pytest.approx(1.5 / 1.75)
    assert G.expected_static_utilisation([0.5, 0.5], 2, start=0) == pytest.approx(0.5 / 0.75)
    big = G.expected_static_utilisation(G.output_length_pmf(2000.0), 16, start=0)
    assert big == pytest.approx(1 / G.harmonic(16), rel=2e-3)
    for bad in ([0.5, 0.6], [-0.5, 1.5], [], [[0.5, 0.5]], [math.nan, 1.0]):
        with pytest.raises(ValueError):
            G.expected_static_utilisation(bad, 2)
    with pytest.raises(ValueError):
        G.harmonic(0)
    assert G.fluid_batch_size(10.0, 11.0, 0.01, 0.0) == pytest.approx(1.0)  # 100 steps/s of 10 ms, one row each
    assert G.fluid_batch_size(100.0, 11.0, 0.01, 0.001) == math.inf  # the c b part alone needs > 1 s per s


def test_measurements_and_summary(model, requests):
    dec = G.KVDecoder(model, 4)
    t = G.measure_step_time(dec, [1, 4], prompt_len=5, n_steps=3)
    assert t.shape == (2,) and np.all(t > 0) and dec.n_free == 4
    p = G.measure_prefill_time(dec, [3, 9], reps=2)
    assert p.shape == (2,) and np.all(p > 0) and dec.n_free == 4
    with pytest.raises(ValueError):
        G.measure_step_time(dec, [5])  # more rows than slots
    with pytest.raises(ValueError):
        G.measure_step_time(dec, [1], prompt_len=60, n_steps=10)  # past max_len
    run = G.run_continuous(dec, requests[:6], 4)
    s = run.summary()
    assert s["policy"] == "continuous" and s["requests"] == 6 and s["tokens"] == run.n_tokens
    assert 0 < s["slot_utilisation"] <= 1 and s["p50_latency_s"] <= s["p99_latency_s"]


def test_check_greedy_agrees_with_the_step_by_step_reference(model, requests):
    for r in requests[:6]:
        ref = G.greedy_reference(model, r.prompt, r.max_new_tokens)
        res = G.check_greedy(model, r.prompt, ref)
        assert res.ok and res.min_margin > 0
        if ref.size > 1:  # change one token: the check must find exactly that position (or an earlier tie)
            bad = ref.copy()
            k = ref.size // 2
            bad[k] = (bad[k] + 1) % model.config.vocab_size
            assert G.check_greedy(model, r.prompt, bad).first_mismatch == k
    with pytest.raises(ValueError):
        G.check_greedy(model, requests[0].prompt, np.array([], dtype=np.int64))
    with pytest.raises(ValueError):
        G.check_greedy(model, requests[0].prompt, np.array([10_000]))
