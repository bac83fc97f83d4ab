"""Unit tests of course_lib.recsys.ope (lesson 05.05): estimators, exposure metrics, policies, the closed loop."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.recsys import ope
from course_lib.recsys.sim import examination_probs, make_world


@pytest.fixture(scope="module")
def world():
    return make_world(300, 200, seed=3)


# ----------------------------------------------------------------------------- estimators
def test_hand_computed_ips_and_snips():
    r, pt, pl = np.array([1.0, 0, 1, 1]), np.array([0.5, 0.5, 0, 0.4]), np.array([0.25, 0.5, 0.25, 0.1])
    # w = (2, 1, 0, 4)
    assert ope.ips_estimate(r, pt, pl) == pytest.approx(6 / 4)
    assert ope.snips_estimate(r, pt, pl) == pytest.approx(6 / 7)
    assert ope.snips_estimate(r, pt, pl, clip=3) == pytest.approx(5 / 6)
    assert ope.ips_estimate(r, pt, pl, clip=3) == pytest.approx(5 / 4)
    assert np.allclose(ope.importance_weights(pt, pl, clip=3), [2, 1, 0, 3])


def test_snips_on_policy_and_scale_invariance():
    g = np.random.default_rng(0)
    r, pl = (g.random(100) < 0.3).astype(float), g.uniform(0.05, 1, 100)
    assert ope.snips_estimate(r, pl, pl) == pytest.approx(r.mean())
    assert ope.ips_estimate(r, pl, pl) == pytest.approx(r.mean())
    pt = g.uniform(0, 1, 100)
    assert ope.snips_estimate(r, 0.5 * pt, pl) == pytest.approx(ope.snips_estimate(r, pt, pl))
    assert ope.ips_estimate(r, 0.5 * pt, pl) == pytest.approx(0.5 * ope.ips_estimate(r, pt, pl))


@pytest.mark.parametrize("bad", [
    dict(r=[1, 0], pi_t=[0.5, 0.5, 0.5], pi_log=[0.5, 0.5, 0.5]),
    dict(r=[1, 0, 1], pi_t=[0.5, 0.5], pi_log=[0.5, 0.5, 0.5]),
    dict(r=[1, 0, 1], pi_t=[0.5, 0.5, 0.5], pi_log=[0.5, 0.0, 0.5]),
    dict(r=[1, 0, 1], pi_t=[0.5, 0.5, 0.5], pi_log=[0.5, 1.5, 0.5]),
    dict(r=[1, 0, 1], pi_t=[0.5, -0.1, 0.5], pi_log=[0.5, 0.5, 0.5]),
    dict(r=[1, np.nan, 1], pi_t=[0.5, 0.5, 0.5], pi_log=[0.5, 0.5, 0.5]),
    dict(r=[], pi_t=[], pi_log=[]),
])
def test_bad_input_raises(bad):
    for fn in (ope.ips_estimate, ope.snips_estimate, ope.ips_se, ope.snips_se):
        with pytest.raises(ValueError):
            fn(**bad)


def test_snips_all_zero_weights_is_undefined():
    with pytest.raises(ValueError, match="undefined"):
        ope.snips_estimate([1, 0, 1], [0, 0, 0], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="clip"):
        ope.ips_estimate([1.0], [0.5], [0.5], clip=0)


def test_standard_errors_match_their_formulas():
    g = np.random.default_rng(1)
    r, pt, pl = (g.random(50) < 0.4).astype(float), g.uniform(0, 1, 50), g.uniform(0.1, 1, 50)
    w = pt / pl
    assert ope.ips_se(r, pt, pl) == pytest.approx(np.std(w * r, ddof=1) / np.sqrt(50))
    v = np.sum(w * r) / np.sum(w)
    assert ope.snips_se(r, pt, pl) == pytest.approx(np.sqrt(np.sum(w**2 * (r - v) ** 2)) / np.sum(w))
    assert ope.effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert ope.effective_sample_size([1, 0, 0]) == pytest.approx(1)
    assert ope.naive_estimate(r) == pytest.approx(r.mean())


def test_ips_and_snips_unbiased_on_a_small_bandit():
    g = np.random.default_rng(5)
    rho = np.array([0.1, 0.4, 0.6, 0.2])
    p_log, p_t = np.full(4, 0.25), np.array([0.1, 0.2, 0.6, 0.1])
    truth = p_t @ rho
    ips, snips = [], []
    for _ in range(300):
        a = g.integers(0, 4, 300)
        r = (g.random(300) < rho[a]).astype(float)
        ips.append(ope.ips_estimate(r, p_t[a], p_log[a]))
        snips.append(ope.snips_estimate(r, p_t[a], p_log[a]))
    for x in (np.array(ips), np.array(snips)):
        assert abs(x.mean() - truth) < 4 * x.std(ddof=1) / np.sqrt(x.size)


def test_clipped_moments_match_the_estimator(world):
    g = np.random.default_rng(2)
    users = np.arange(50)
    rel = world.relevance_matrix(users)
    pl = ope.softmax_probs(g.standard_normal(rel.shape), 1.0)
    pt = ope.softmax_probs(g.standard_normal(rel.shape), 0.5)
    m1, var = ope.clipped_ips_moments(pt, pl, rel, None)
    assert m1 == pytest.approx(np.mean(np.sum(pt * rel, axis=1)))       # unclipped IPS is unbiased
    assert var > 0
    m1c, varc = ope.clipped_ips_moments(pt, pl, rel, 2.0)
    assert m1c <= m1 and varc <= var
    # Monte Carlo of the clipped estimator: mean within 4 se of the exact mean
    est = []
    for _ in range(200):
        rows = g.integers(0, 50, 400)
        a = ope.sample_actions(pl, rows, g)
        r = (g.random(400) < rel[rows, a]).astype(float)
        est.append(ope.ips_estimate(r, pt[rows, a], pl[rows, a], clip=2.0))
    est = np.array(est)
    assert abs(est.mean() - m1c) < 4 * np.sqrt(varc / 400 / est.size)
    assert est.var(ddof=1) == pytest.approx(varc / 400, rel=0.3)


# ----------------------------------------------------------------------------- exposure, policies
def test_gini_and_coverage():
    assert ope.exposure_gini(np.ones(10)) == pytest.approx(0.0)
    one_hot = np.zeros(10)
    one_hot[3] = 5
    assert ope.exposure_gini(one_hot) == pytest.approx(0.9)          # (n - 1) / n for one item taking everything
    x = np.array([1.0, 2, 3, 4])
    mean_abs_diff = np.abs(x[:, None] - x[None]).mean()
    assert ope.exposure_gini(x) == pytest.approx(mean_abs_diff / (2 * x.mean()))   # the textbook definition
    assert ope.exposure_gini(3 * x) == pytest.approx(ope.exposure_gini(x))
    assert ope.coverage([0, 1, 0, 2]) == 0.5
    with pytest.raises(ValueError):
        ope.exposure_gini(np.zeros(4))
    with pytest.raises(ValueError):
        ope.exposure_gini([1, -1, 2])


def test_policies_and_sampling():
    s = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    p = ope.softmax_probs(s, 1.0)
    assert np.allclose(p.sum(axis=1), 1) and np.allclose(p[0], np.exp(s[0]) / np.exp(s[0]).sum())
    eg = ope.epsilon_greedy_probs(s, 0.3)
    assert np.allclose(eg, [[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    with pytest.raises(ValueError):
        ope.softmax_probs(s, 0.0)
    with pytest.raises(ValueError):
        ope.epsilon_greedy_probs(s, 1.5)
    g = np.random.default_rng(0)
    probs = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    rows = np.repeat([0, 1, 2], 20_000)
    a = ope.sample_actions(probs, rows, g)
    assert a.dtype == np.int64 and np.all(a[rows == 1] == 0) and np.all(a[rows == 2] == 2)
    freq = np.bincount(a[rows == 0], minlength=3) / 20_000
    assert np.allclose(freq, probs[0], atol=0.015)


def test_true_value_is_exact(world):
    users = np.arange(40)
    rel = world.relevance_matrix(users)
    probs = ope.softmax_probs(world.affinity_matrix(users), 1.0)
    assert ope.true_value(world, users, probs) == pytest.approx(np.mean(np.sum(probs * rel, axis=1)))
    e3 = examination_probs(3, world.params["eta"])[-1]
    assert ope.true_value(world, users, probs, position=3) == pytest.approx(e3 * np.mean(np.sum(probs * rel, axis=1)))


# ----------------------------------------------------------------------------- the closed loop
def test_closed_loop_shapes_and_story(world):
    seg_rel = ope.segment_relevance(world)
    assert seg_rel.shape == (world.n_topics, world.n_items)
    launch = np.broadcast_to(world.item_pop, seg_rel.shape)
    res = {p: ope.closed_loop(world, p, rounds=8, users_per_round=200, slate_size=3, warm_start=launch,
                              seg_rel=seg_rel, seed=0) for p in ("greedy", "epsilon", "thompson")}
    for r in res.values():
        for arr in (r.value, r.model_value, r.clicks, r.gini, r.coverage):
            assert arr.shape == (8,) and np.all(np.isfinite(arr))
        assert r.exposure.sum() == 8 * 200 * 3
        assert np.all((0 <= r.gini) & (r.gini <= 1)) and np.all(np.diff(r.coverage) >= 0)
    assert res["greedy"].coverage[-1] < res["epsilon"].coverage[-1]
    assert res["greedy"].coverage[-1] < res["thompson"].coverage[-1]
    assert res["greedy"].gini[-1] > res["thompson"].gini[-1]
    again = ope.closed_loop(world, "thompson", rounds=8, users_per_round=200, slate_size=3, warm_start=launch,
                            seg_rel=seg_rel, seed=0)
    assert np.array_equal(again.value, res["thompson"].value)               # seeded
    with pytest.raises(ValueError):
        ope.closed_loop(world, "ucb")
