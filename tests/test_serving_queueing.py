"""Closed forms of course_lib.serving.queueing against independent routes (exact fractions, scipy.stats.poisson)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate, stats

from course_lib.serving import queueing as Q


def erlang_c_fraction(a: Fraction, c: int) -> Fraction:
    """Textbook formula with factorials, in exact rational arithmetic."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("c", [1, 2, 3, 7, 20])
@pytest.mark.parametrize("rho", [Fraction(1, 10), Fraction(1, 2), Fraction(4, 5), Fraction(99, 100)])
def test_erlang_c_matches_factorial_formula(c, rho):
    a = rho * c
    assert Q.erlang_c(float(a), 1.0, c) == pytest.approx(float(erlang_c_fraction(a, c)), rel=1e-12)


def test_erlang_c_textbook_values():
    assert Q.erlang_c(0.7, 1.0, 1) == pytest.approx(0.7, rel=1e-14)  # c = 1: P(wait) = rho
    assert Q.erlang_c(1.0, 1.0, 2) == pytest.approx(1 / 3, rel=1e-14)  # M/M/2 at rho = 1/2: 2 rho^2 / (1 + rho)
    assert Q.erlang_c(10.0, 1.0, 11) == pytest.approx(0.6821, abs=5e-5)  # 10 Erlangs on 11 agents (call-centre tables)
    assert Q.erlang_c(16.0, 5.0, 4) == pytest.approx(Q.erlang_c(3.2, 1.0, 4), rel=1e-14)  # only a = lam / mu and c matter


@pytest.mark.parametrize("c, a", [(1000, 950.0), (1000, 999.0), (500, 10.0), (2000, 1900.5)])
def test_erlang_b_and_c_stable_for_large_c(c, a):
    b_ref = stats.poisson.pmf(c, a) / stats.poisson.cdf(c, a)  # Erlang B = truncated Poisson at c
    assert Q.erlang_b(c, a) == pytest.approx(b_ref, rel=1e-9)
    cc = Q.erlang_c(a, 1.0, c)
    assert 0 <= cc < 1 and cc == pytest.approx(c * b_ref / (c - a * (1 - b_ref)), rel=1e-9)


def test_erlang_c_monotone():
    cs = [Q.erlang_c(lam, 1.0, 8) for lam in np.linspace(0.5, 7.9, 30)]
    assert np.all(np.diff(cs) > 0)  # more load, more waiting
    more_servers = [Q.erlang_c(5.0, 1.0, c) for c in range(6, 30)]
    assert np.all(np.diff(more_servers) < 0)


@pytest.mark.parametrize("lam, mu, c", [(1.0, 1.0, 1), (4.0, 1.0, 4), (5.0, 1.0, 4), (8.0, 0.5, 16)])
def test_unstable_raises(lam, mu, c):
    with pytest.raises(ValueError, match="unstable"):
        Q.erlang_c(lam, mu, c)


@pytest.mark.parametrize("args", [(1.0, 1.0, 2.5), (1.0, 1.0, 0), (-1.0, 1.0, 2), (1.0, 0.0, 2), (1.0, float("nan"), 2), (1.0, 1.0, True), ("1", 1.0, 2)])
def test_bad_input_raises(args):
    with pytest.raises(ValueError):
        Q.erlang_c(*args)


def test_mmc_wait_tail_and_quantile():
    lam, mu, c = 3.2, 1.0, 4
    cc = Q.erlang_c(lam, mu, c)
    assert float(Q.mmc_wait_tail(0.0, lam, mu, c)) == pytest.approx(cc)
    # mean = integral of the tail
    mean, _ = integrate.quad(lambda t: float(Q.mmc_wait_tail(t, lam, mu, c)), 0, np.inf)
    assert mean == pytest.approx(Q.mmc_mean_wait(lam, mu, c), rel=1e-8)
    t99 = Q.mmc_wait_quantile(0.99, lam, mu, c)
    assert float(Q.mmc_wait_tail(t99, lam, mu, c)) == pytest.approx(0.01, rel=1e-10)
    assert Q.mmc_wait_quantile(1 - cc - 0.01, lam, mu, c) == 0.0  # below 1 - C the wait is 0


def test_response_tail_integrates_to_mean_and_matches_mm1():
    lam, mu, c = 3.0, 1.0, 4
    mean, _ = integrate.quad(lambda t: float(Q.mmc_response_tail(t, lam, mu, c)), 0, np.inf)
    assert mean == pytest.approx(Q.mmc_mean_response(lam, mu, c), rel=1e-8)
    # M/M/1: time in system ~ Exponential(mu - lam)
    assert Q.mmc_response_quantile(0.99, 0.8, 1.0, 1) == pytest.approx(Q.mm1_response_quantile(0.99, 0.8, 1.0), rel=1e-9)
    # theta == mu (c mu - lam = mu): the limit form
    assert float(Q.mmc_response_tail(2.0, 3.0, 1.0, 4)) == pytest.approx(float(Q.mmc_response_tail(2.0, 3.0 + 1e-7, 1.0, 4)), rel=1e-5)


def test_mm1_pk_kingman_allen_cunneen_agree_where_exact():
    lam, mu = 0.8, 1.0
    assert Q.mm1_mean_wait(lam, mu) == pytest.approx(Q.mmc_mean_wait(lam, mu, 1))
    assert Q.pollaczek_khinchine_wait(lam, 1 / mu, 1.0) == pytest.approx(Q.mm1_mean_wait(lam, mu))
    assert Q.pollaczek_khinchine_wait(lam, 1.0, 0.0) == pytest.approx(Q.mm1_mean_wait(lam, mu) / 2)  # M/D/1 waits half as long
    assert Q.kingman_wait(lam, 1.0, 1.0, 2.0) == pytest.approx(Q.pollaczek_khinchine_wait(lam, 1.0, 2.0))
    assert Q.allen_cunneen_wait(3.2, 1.0, 4, 1.0, 1.0) == pytest.approx(Q.mmc_mean_wait(3.2, 1.0, 4))
    with pytest.raises(ValueError, match="unstable"):
        Q.pollaczek_khinchine_wait(2.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="squared coefficient"):
        Q.kingman_wait(0.5, 1.0, -1.0, 1.0)


def test_sizing_and_littles_law():
    lam, mu = 1000.0, 50.0  # 1,000 QPS, 20 ms service
    c = Q.servers_for_wait_quantile(lam, mu, 0.99, 0.010)
    assert float(Q.mmc_wait_tail(0.010, lam, mu, c)) <= 0.01 < float(Q.mmc_wait_tail(0.010, lam, mu, c - 1))
    assert Q.in_flight(1_000_000, 0.010) == pytest.approx(10_000)
    with pytest.raises(ValueError):
        Q.in_flight(100, 0)
