"""Tests for course_lib.design: latency budgets, the component DAG, checks, and the worked example."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from course_lib import capacity, design as D
from course_lib.ann import choose


# --------------------------------------------------------------------------- allocate_latency_budget
def test_budget_worked_example():
    out = D.allocate_latency_budget([("a", 10, 1), ("b", 30, 3)], 100)
    assert list(out) == ["a", "b"]
    assert out["a"] == pytest.approx(1 + 24) and out["b"] == pytest.approx(3 + 72)


def _exact(stages, slo):
    """Exact rational arithmetic: an independent route to the same budgets."""
    o = [Fraction(s[2]) for s in stages]
    p = [Fraction(s[1]) for s in stages]
    rest = Fraction(slo) - sum(o)
    share = [pi / sum(p) for pi in p] if sum(p) > 0 else [Fraction(1, len(p))] * len(p)
    return [float(oi + si * rest) for oi, si in zip(o, share)]


@pytest.mark.parametrize("seed", range(20))
def test_budget_matches_exact_arithmetic_and_sums_to_slo(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    stages = [D.Stage(f"s{i}", float(rng.uniform(0, 50)), float(rng.uniform(0, 5))) for i in range(n)]
    slo = float(sum(s.overhead_ms for s in stages) + rng.uniform(0, 300))
    out = D.allocate_latency_budget(stages, slo)
    assert abs(sum(out.values()) - slo) <= 1e-9
    assert np.allclose(list(out.values()), _exact(stages, slo), rtol=1e-12, atol=1e-12)
    # property: what is left after the overheads is proportional to the p99s
    extra = np.array([out[s.name] - s.overhead_ms for s in stages])
    p99 = np.array([s.p99_ms for s in stages])
    assert np.allclose(extra * p99.sum(), p99 * extra.sum(), atol=1e-9)


def test_budget_fits_exactly_when_the_path_fits():
    stages = [("embed", 40.0, 1.0), ("search", 5.0, 2.0), ("fetch", 8.0, 1.0)]
    fits = D.allocate_latency_budget(stages, 100)
    assert all(fits[n] >= p + o for n, p, o in stages)
    tight = D.allocate_latency_budget(stages, 50)  # total p99 + overhead = 57 > 50
    assert all(tight[n] < p + o for n, p, o in stages)


def test_budget_edge_cases():
    zero = D.allocate_latency_budget([("a", 0, 1), ("b", 0, 3)], 10)
    assert zero == pytest.approx({"a": 4.0, "b": 6.0})  # equal split of the remaining 6 ms
    exact = D.allocate_latency_budget([("a", 5, 4), ("b", 1, 6)], 10)  # overheads use the whole SLO
    assert exact == pytest.approx({"a": 4.0, "b": 6.0})
    assert D.allocate_latency_budget([["only", np.float64(3.0), np.int64(1)]], 7.5) == {"only": 7.5}


@pytest.mark.parametrize(
    "stages, slo",
    [
        ([], 100),
        ("abc", 100),
        ([("a", 1)], 100),
        ([("a", 1, 0, 0)], 100),
        ([("", 1, 0)], 100),
        ([(3, 1, 0)], 100),
        ([("a", 1, 0), ("a", 2, 0)], 100),
        ([("a", -1, 0)], 100),
        ([("a", 1, -0.5)], 100),
        ([("a", float("nan"), 0)], 100),
        ([("a", math.inf, 0)], 100),
        ([("a", True, 0)], 100),
        ([("a", "5", 0)], 100),
        ([("a", 1, 0)], 0),
        ([("a", 1, 0)], -5),
        ([("a", 1, 0)], float("nan")),
        ([("a", 1, 60), ("b", 1, 41)], 100),  # overheads alone exceed the SLO
    ],
)
def test_budget_rejects_bad_input(stages, slo):
    with pytest.raises(ValueError):
        D.allocate_latency_budget(stages, slo)


# --------------------------------------------------------------------------- the component DAG
def _random_dag(seed: int, n: int = 7) -> list[D.Component]:
    rng = np.random.default_rng(seed)
    comps = []
    for i in range(n):
        after = tuple(f"c{j}" for j in range(i) if rng.random() < 0.4)
        comps.append(D.Component(f"c{i}", float(rng.uniform(0, 20)), float(rng.uniform(0, 2)), after))
    return comps[::-1]  # listed in reverse: the order must come from the graph, not the list


def _all_paths(comps):
    by = {c.name: c for c in comps}
    children = {c.name: [d.name for d in comps if c.name in d.after] for c in comps}

    def walk(name):
        if not children[name]:
            yield [name]
        for child in children[name]:
            for rest in walk(child):
                yield [name, *rest]

    for c in comps:
        if not c.after:
            yield from walk(c.name)
    del by


@pytest.mark.parametrize("seed", range(15))
def test_critical_path_is_the_longest_of_all_paths(seed):
    comps = _random_dag(seed)
    by = {c.name: c for c in comps}
    longest = max(sum(by[n].total_ms for n in p) for p in _all_paths(comps))
    path, total = D.critical_path(comps)
    assert total == pytest.approx(longest, abs=1e-9)
    assert total == pytest.approx(sum(by[n].total_ms for n in path), abs=1e-9)
    assert all(a in by[b].after for a, b in itertools.pairwise(path))  # a real chain of edges
    order = D.topological_order(comps)
    assert all(order.index(a) < order.index(c.name) for c in comps for a in c.after)
    times = D.schedule(comps)
    for c in comps:
        start, finish = times[c.name]
        assert start == pytest.approx(max((times[a][1] for a in c.after), default=0.0))
        assert finish == pytest.approx(start + c.total_ms)
    assert max(f for _, f in times.values()) == pytest.approx(total)


def test_parallel_branch_is_off_the_critical_path():
    comps = [D.Component("gw", 2, 1), D.Component("embed", 30, 1, ("gw",)), D.Component("acl", 5, 1, ("gw",)),
             D.Component("search", 3, 2, ("embed", "acl"))]
    path, total = D.critical_path(comps)
    assert path == ["gw", "embed", "search"] and total == pytest.approx(3 + 31 + 5)


def test_dag_errors():
    with pytest.raises(ValueError, match="cycle"):
        D.topological_order([D.Component("a", 1, after=("b",)), D.Component("b", 1, after=("a",))])
    with pytest.raises(ValueError, match="unknown"):
        D.critical_path([D.Component("a", 1, after=("nope",))])
    with pytest.raises(ValueError, match="duplicate"):
        D.schedule([D.Component("a", 1), D.Component("a", 2)])
    with pytest.raises(ValueError):
        D.critical_path([])
    with pytest.raises(ValueError):
        D.Component("a", -1.0)
    with pytest.raises(ValueError):
        D.Component("a", 1.0, after="b")  # a string, not a tuple of names


# --------------------------------------------------------------------------- checks and tables
def test_check_verdicts_and_scorecard():
    ok = D.Check("mem", 40.0, 48.0, "GB")
    bad = D.Check("recall", 0.8, 0.9, kind="at_least")
    assert ok.passed and not bad.passed
    assert ok.margin == pytest.approx(8 / 48) and bad.margin == pytest.approx(-0.1 / 0.9)
    assert not D.Check("nan", float("nan"), 1.0).passed
    assert not D.Check("inf", math.inf, 1.0).passed
    rows = D.scorecard([ok, bad])
    assert [r["verdict"] for r in rows] == ["PASS", "FAIL"] and rows[1]["limit"] == ">= 0.9"
    table = D.compare_scenarios({"base": [ok, bad]})
    assert table == [{"scenario": "base", "mem": "PASS 40", "recall": "FAIL 0.8"}]


def test_fanout_via_empirical_latency_matches_closed_form():
    """p99 of the slowest of S exponential shards: -ln(1 - 0.99^(1/S)) (closed form)."""
    samples = np.random.default_rng(0).exponential(1.0, 400_000)
    leaf = D.EmpiricalLatency(samples)
    from course_lib.reliability import fanout_quantile

    for shards in (1, 4, 16):
        assert fanout_quantile(leaf, 0.99, shards) == pytest.approx(-math.log(1 - 0.99 ** (1 / shards)), rel=0.03)
    with pytest.raises(ValueError):
        D.EmpiricalLatency([])


# --------------------------------------------------------------------------- the worked example
def _measurements(embed_ms: float = 15.0) -> D.Measurements:
    rng = np.random.default_rng(0)
    return D.Measurements(
        sample_n=1_800, seq_ns_per_vector=120.0, rand_ns_per_vector=280.0,
        embed_ms=tuple(embed_ms + rng.exponential(2.0, 50)),
        hnsw_ndis={ef: tuple(rng.uniform(0.8, 1.2, 200) * 15 * ef) for ef in (16, 32, 64, 128)},
        hnsw_recall={16: 0.97, 32: 0.99, 64: 0.995, 128: 1.0},
    )


def _requirements(**changes) -> D.Requirements:
    base = dict(n_docs=100_000_000, dim=384, dau=10_000_000, queries_per_user_day=5, peak_factor=3,
                p99_slo_ms=200, recall_target=0.95, budget_usd_month=7_000)
    return D.Requirements(**(base | changes))


def test_requirements_arithmetic_and_validation():
    req = _requirements()
    assert req.avg_qps == pytest.approx(10_000_000 * 5 / 86_400)
    assert req.peak_qps == pytest.approx(3 * req.avg_qps)
    for bad in ({"n_docs": 0}, {"dim": 1.5}, {"dau": -1}, {"peak_factor": 0.5}, {"recall_target": 0.0},
                {"recall_target": 1.2}, {"p99_slo_ms": float("nan")}, {"budget_usd_month": True}):
        with pytest.raises(ValueError):
            _requirements(**bad)
    with pytest.raises(ValueError):
        D.Assumptions(ram_fill=1.5)
    with pytest.raises(ValueError):
        D.Decisions("IVF", 8, 1, 1, 1)
    with pytest.raises(ValueError):
        replace(_measurements(), hnsw_recall={16: 1.0})


def test_planned_design_passes_and_matches_hand_arithmetic():
    asm = D.Assumptions()
    design = D.SearchDesign.planned(_requirements(), asm, _measurements())
    assert all(c.passed for c in design.checks()), D.scorecard(design.checks())
    dec = design.dec
    assert (dec.index, dec.ef) == ("HNSW", choose.choose_ef(0.95))
    total = 100_000_000 * (4 * 384 + 8 * choose.HNSW_M + 16)  # bytes, by hand
    usable = 64 * 2**30 * 0.7
    assert design.index_bytes == pytest.approx(total)
    assert dec.n_shards == math.ceil(total / usable) and total / dec.n_shards <= usable
    assert dec.search_replicas == capacity.replicas_for_qps(design.req.peak_qps, design.search_qps_per_replica)
    cost = sum(design.cost_usd_month.values())
    by_hand = (dec.n_shards * dec.search_replicas * 0.504 + dec.embed_nodes * 0.34) * 730 + 153.6 * 0.023
    assert cost == pytest.approx(by_hand, rel=1e-12)
    budget = design.latency_budget()
    assert sum(budget.values()) == pytest.approx(200, abs=1e-9)
    assert list(budget) == design.path[0]
    names = {e.name for e in design.estimates()}
    assert {"peak QPS", "shards", "cost: total"} <= names


def test_changed_requirements_flip_the_right_checks():
    design = D.SearchDesign.planned(_requirements(), D.Assumptions(), _measurements())
    verdict = lambda d: {c.name: c.passed for c in d.checks()}  # noqa: E731
    more_docs = verdict(design.with_requirements(n_docs=1_000_000_000))
    assert not more_docs["index fits a node (per shard)"]
    more_qps = verdict(design.with_requirements(dau=100_000_000))
    assert not more_qps["encoder utilization at peak"] and more_qps["index fits a node (per shard)"]
    resized = design.replanned(dau=100_000_000)
    assert verdict(resized)["encoder utilization at peak"] and resized.dec.embed_nodes > design.dec.embed_nodes
    exact = design.replanned(recall_target=1.0)
    assert exact.dec.index == "Flat" and exact.recall == 1.0
    assert not verdict(exact)["p99 latency (critical path)"]  # a 25M-vector scan takes seconds


def test_fanout_makes_the_search_stage_slower_with_more_shards():
    design = D.SearchDesign.planned(_requirements(), D.Assumptions(), _measurements())
    one = design.shard_search_ms(n_shards=design.dec.n_shards)
    assert design.search_p99_ms >= np.quantile(one, 0.99)
    assert design.search_p99_ms <= one.max() + 1e-12


def test_plot_waterfall_draws_every_component():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    design = D.SearchDesign.planned(_requirements(), D.Assumptions(), _measurements())
    fig, ax = plt.subplots()
    D.plot_waterfall(ax, design.components(), design.latency_budget(), 200)
    assert len(ax.get_yticks()) == len(design.components())
    plt.close(fig)
