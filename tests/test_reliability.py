"""course_lib.reliability: availability closed forms against brute-force enumeration and
Monte Carlo; fan-out quantiles and hedging against simulation; bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binom

from course_lib import reliability as rel


def brute_force_availability(spec) -> float:
    """Enumerate every up/down state of the leaves: an independent route to the closed form."""
    leaves: list[float] = []

    def index(s):  # replace each leaf by its position in `leaves`
        if isinstance(s, dict):
            if "quorum" in s:
                return {"quorum": s["quorum"], "of": [index(c) for c in s["of"]]}
            (key,) = s
            return {key: [index(c) for c in s[key]]}
        leaves.append(float(s))
        return len(leaves) - 1

    def up(s, state):
        if isinstance(s, int):
            return state[s]
        if "quorum" in s:
            return sum(up(c, state) for c in s["of"]) >= s["quorum"]
        (key,) = s
        return (all if key == "series" else any)(up(c, state) for c in s[key])

    tree = index(spec)
    total = 0.0
    for state in itertools.product((False, True), repeat=len(leaves)):
        if up(tree, state):
            total += math.prod(a if s else 1 - a for a, s in zip(leaves, state))
    return total


NESTED = {
    "series": [
        {"parallel": [0.999, 0.999]},                          # load-balancer pair
        {"parallel": [0.99, 0.98, 0.97]},                      # three app replicas
        {"quorum": 2, "of": [0.995, 0.99, {"series": [0.99, 0.999]}]},  # 2-of-3 store, one behind a switch
        0.9995,                                                # single database
    ]
}


def test_series_parallel_closed_forms():
    assert rel.compose_availability(0.9) == 0.9
    assert rel.compose_availability({"series": [0.9, 0.8]}) == pytest.approx(0.72, abs=1e-15)
    assert rel.compose_availability({"parallel": [0.9, 0.8]}) == pytest.approx(0.98, abs=1e-15)
    assert rel.compose_availability({"series": [{"parallel": [0.9]}]}) == pytest.approx(0.9)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_quorum_equal_availabilities_is_binomial(k):
    got = rel.compose_availability({"quorum": k, "of": [0.93] * 5})
    assert got == pytest.approx(binom.sf(k - 1, 5, 0.93), abs=1e-14)


def test_quorum_extremes_are_parallel_and_series():
    kids = [0.9, 0.7, 0.99, 0.5]
    assert rel.compose_availability({"quorum": 1, "of": kids}) == pytest.approx(rel.compose_availability({"parallel": kids}), abs=1e-14)
    assert rel.compose_availability({"quorum": 4, "of": kids}) == pytest.approx(rel.compose_availability({"series": kids}), abs=1e-14)


@pytest.mark.parametrize("spec", [
    {"quorum": 2, "of": [0.9, 0.6, 0.99]},
    {"quorum": 3, "of": [0.5, 0.7, 0.8, 0.95, 0.999]},
    NESTED,
    {"parallel": [{"series": [0.9, {"quorum": 1, "of": [0.3, 0.4]}]}, {"quorum": 2, "of": [0.8, 0.8, 0.1]}]},
])
def test_matches_brute_force_enumeration(spec):
    assert rel.compose_availability(spec) == pytest.approx(brute_force_availability(spec), abs=1e-13)


def test_unequal_quorum_is_not_the_binomial_of_the_mean():
    kids = [0.999, 0.999, 0.5]
    exact = rel.compose_availability({"quorum": 2, "of": kids})
    # by hand: both good nodes up, or exactly one of them up and the weak one up
    assert exact == pytest.approx(0.999**2 + 2 * 0.999 * 0.001 * 0.5, abs=1e-14)
    assert abs(exact - binom.sf(1, 3, np.mean(kids))) > 0.05


def test_poisson_binomial_matches_enumeration_property(rng):
    for _ in range(20):
        n = int(rng.integers(1, 9))
        p = rng.random(n)
        k = int(rng.integers(0, n + 1))
        want = sum(math.prod(p[i] if s else 1 - p[i] for i, s in enumerate(st))
                   for st in itertools.product((0, 1), repeat=n) if sum(st) >= k)
        assert rel.at_least_k_of(p, k) == pytest.approx(want, abs=1e-13)


def test_retry_and_nines_and_downtime():
    assert rel.retry_availability(0.9, 3) == pytest.approx(0.999, abs=1e-15)
    assert rel.retry_availability(0.9, 1) == pytest.approx(0.9)
    assert rel.nines(0.999) == pytest.approx(3.0)
    assert rel.nines(1.0) == math.inf
    assert rel.downtime_s(0.999, "30-day month") / 60 == pytest.approx(43.2)
    assert rel.downtime_s(0.9999, "year") / 60 == pytest.approx(52.596)


@pytest.mark.parametrize("spec", [0.97, {"series": [0.9, 0.95]}, {"parallel": [0.6, 0.7]},
                                  {"quorum": 2, "of": [0.9, 0.6, 0.8]}, NESTED, 1.0, 0.0])
def test_simulation_within_four_sigma(spec):
    n = 200_000
    est = rel.simulate_availability(spec, n, np.random.default_rng(1))
    a = rel.compose_availability(spec)
    sigma = math.sqrt(a * (1 - a) / n)
    assert abs(est.mean - a) <= 4 * sigma + 1e-12
    assert est.stderr == pytest.approx(math.sqrt(est.mean * (1 - est.mean) / n))


BAD_SPECS = [
    ({"serial": [0.9]}, "unknown key"),
    ({"series": []}, "empty"),
    ({"parallel": 0.9}, "list"),
    ({"quorum": 0, "of": [0.9, 0.9]}, "1..2"),
    ({"quorum": 3, "of": [0.9, 0.9]}, "1..2"),
    ({"quorum": 1.5, "of": [0.9, 0.9]}, "int"),
    ({"of": [0.9]}, "malformed"),
    ({"series": [0.9], "parallel": [0.9]}, "malformed"),
    (1.2, r"\[0, 1\]"),
    (-0.1, r"\[0, 1\]"),
    (float("nan"), r"\[0, 1\]"),
    ("0.9", "number"),
    (None, "number"),
    (True, "number"),
    ([0.9, 0.9], "dict"),
    ({"series": [0.9, {"parallel": [0.9, "x"]}]}, r"spec\.series\[1\]\.parallel\[1\]"),
]


@pytest.mark.parametrize("spec,match", BAD_SPECS)
def test_bad_specs_raise_clear_value_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        rel.compose_availability(spec)
    with pytest.raises(ValueError):
        rel.simulate_availability(spec, 10, np.random.default_rng(0))


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="k must be"):
        rel.at_least_k_of([0.9, 0.9], 3)
    with pytest.raises(ValueError, match=r"probs\[1\]"):
        rel.at_least_k_of([0.9, 1.1], 1)
    with pytest.raises(ValueError, match="attempts"):
        rel.retry_availability(0.9, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rel.retry_availability(1.5, 2)
    with pytest.raises(ValueError, match="n_trials"):
        rel.simulate_availability(0.9, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Generator"):
        rel.simulate_availability(0.9, 10, 0)
    with pytest.raises(ValueError, match="period"):
        rel.downtime_s(0.99, "fortnight")
    with pytest.raises(ValueError, match="n must be"):
        rel.p_any_slow(0.01, 0)
    with pytest.raises(ValueError):
        rel.LogNormal(0.0, 0.5)
    with pytest.raises(ValueError):
        rel.Pareto(1.0, -2.0)
    with pytest.raises(ValueError, match="quantile"):
        rel.fanout_quantile(rel.Pareto(1.0, 2.0), 1.0, 10)
    with pytest.raises(ValueError, match="n_leaves"):
        rel.simulate_fanout(rel.Pareto(1.0, 2.0), 0, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="hedge_at_ms"):
        rel.simulate_fanout(rel.Pareto(1.0, 2.0), 3, 10, np.random.default_rng(0), hedge_at_ms=-1.0)


@pytest.mark.parametrize("leaf", [rel.LogNormal(10.0, 0.5), rel.Pareto(7.0, 2.0)])
def test_leaf_quantile_inverts_cdf_and_sampling_matches(leaf):
    q = np.array([0.01, 0.5, 0.9, 0.99, 0.9999])
    np.testing.assert_allclose(leaf.cdf(leaf.quantile(q)), q, rtol=1e-12)
    x = leaf.sample(np.random.default_rng(2), 200_000)
    n = len(x)
    for level in (0.5, 0.99):
        frac = np.mean(x <= leaf.quantile(level))
        assert abs(frac - level) <= 4 * math.sqrt(level * (1 - level) / n)


def test_p_any_slow_closed_form():
    assert rel.p_any_slow(0.01, 1) == pytest.approx(0.01)
    assert rel.p_any_slow(0.01, 100) == pytest.approx(0.634, abs=1e-3)  # Dean & Barroso's 63 %


@pytest.mark.parametrize("leaf", [rel.LogNormal(10.0, 0.5), rel.Pareto(7.0, 2.0)])
@pytest.mark.parametrize("hedged", [False, True])
def test_fanout_quantile_matches_simulation(leaf, hedged):
    n_leaves, n_req = 20, 50_000
    t = float(leaf.quantile(0.95)) if hedged else None
    run = rel.simulate_fanout(leaf, n_leaves, n_req, np.random.default_rng(3), hedge_at_ms=t, block_elems=10_000)
    assert run.latency_ms.shape == (n_req,)
    p99 = rel.hedged_fanout_quantile(leaf, 0.99, n_leaves, t) if hedged else rel.fanout_quantile(leaf, 0.99, n_leaves)
    frac = np.mean(run.latency_ms <= p99)
    assert abs(frac - 0.99) <= 4 * math.sqrt(0.99 * 0.01 / n_req)
    if hedged:
        assert np.all(run.latency_ms <= run.unhedged_ms) and np.any(run.latency_ms < run.unhedged_ms)
        frac_plain = np.mean(run.unhedged_ms <= rel.fanout_quantile(leaf, 0.99, n_leaves))
        assert abs(frac_plain - 0.99) <= 4 * math.sqrt(0.99 * 0.01 / n_req)
        load = run.n_backups / (n_req * n_leaves)
        assert abs(load - 0.05) <= 4 * math.sqrt(0.05 * 0.95 / (n_req * n_leaves))
        assert p99 < rel.fanout_quantile(leaf, 0.99, n_leaves)
    else:
        assert run.n_backups == 0 and run.unhedged_ms is run.latency_ms


def test_hedged_cdf_below_hedge_point_is_the_leaf_cdf():
    leaf = rel.Pareto(7.0, 2.0)
    t = float(leaf.quantile(0.95))
    x = np.linspace(7.0, t, 7)
    np.testing.assert_allclose(rel.hedged_cdf(leaf, x, t), leaf.cdf(x))
    assert np.all(rel.hedged_cdf(leaf, x + t, t) >= leaf.cdf(x + t))
