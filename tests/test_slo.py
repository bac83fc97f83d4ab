"""course_lib.slo: traffic, error budgets, burn-rate alerts against a loop, Fenton-Wilkinson against closed forms; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from course_lib import slo


# --- traffic ---------------------------------------------------------------------------------


def test_traffic_spec_arithmetic():
    spec = slo.TrafficSpec(dau=1_000_000, requests_per_user_per_day=86.4, peak_factor=3.0, read_fraction=0.9)
    assert spec.requests_per_day == pytest.approx(86.4e6)
    assert spec.avg_qps == pytest.approx(1000.0)
    assert spec.peak_qps == pytest.approx(3000.0)
    assert spec.peak_read_qps + spec.peak_write_qps == pytest.approx(spec.peak_qps)
    assert spec.peak_write_qps == pytest.approx(300.0)
    assert spec.as_row()["peak QPS"] == 3000.0


@pytest.mark.parametrize("kwargs", [
    dict(dau=0, requests_per_user_per_day=1, peak_factor=2),
    dict(dau=10, requests_per_user_per_day=-1, peak_factor=2),
    dict(dau=10, requests_per_user_per_day=1, peak_factor=0.5),
    dict(dau=10, requests_per_user_per_day=1, peak_factor=2, read_fraction=1.5),
    dict(dau="many", requests_per_user_per_day=1, peak_factor=2),
])
def test_traffic_spec_rejects_bad_numbers(kwargs):
    with pytest.raises(ValueError):
        slo.TrafficSpec(**kwargs)


def test_diurnal_profile_has_mean_one_over_a_week_and_the_analytic_peak():
    t = np.arange(0, 7 * 86_400, 10.0)
    r = slo.diurnal_profile(t, amplitude=0.4, second_harmonic=0.1, weekend_factor=0.7)
    assert r.mean() == pytest.approx(1.0, abs=1e-9)
    assert r.max() == pytest.approx(slo.analytic_peak_factor(amplitude=0.4, second_harmonic=0.1, weekend_factor=0.7), rel=1e-6)
    assert r.min() > 0
    assert np.argmax(r[: 8640]) * 10 / 3600 == pytest.approx(20.0, abs=0.01)  # the peak hour of Monday
    with pytest.raises(ValueError):
        slo.diurnal_profile(t, amplitude=0.8, second_harmonic=0.3)


def test_sample_traffic_mean_and_bins(rng):
    counts = slo.sample_traffic(50.0, 7, rng, bin_s=60, burstiness=0.05)
    assert counts.shape == (7 * 1440,) and counts.dtype == np.int64
    assert counts.sum() / (7 * 86_400) == pytest.approx(50.0, rel=0.01)
    with pytest.raises(ValueError, match="divisor of 60"):
        slo.sample_traffic(50.0, 1, rng, bin_s=7)
    with pytest.raises(ValueError, match="days"):
        slo.sample_traffic(50.0, 0, rng)


def test_peak_factor_on_a_known_trace():
    counts = np.array([1, 1, 1, 5, 1, 1, 1, 1])  # mean 1.5 per bin
    assert slo.peak_factor(counts, bin_s=1, window_s=1) == pytest.approx(5 / 1.5)
    assert slo.peak_factor(counts, bin_s=1, window_s=4) == pytest.approx(8 / 6)
    assert slo.peak_factor(counts, bin_s=1, window_s=8) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="multiple"):
        slo.peak_factor(counts, bin_s=2, window_s=3)
    with pytest.raises(ValueError, match="longer"):
        slo.peak_factor(counts, bin_s=1, window_s=9)
    with pytest.raises(ValueError, match="no requests"):
        slo.peak_factor(np.zeros(4), bin_s=1, window_s=1)


# --- error budgets ---------------------------------------------------------------------------


def test_error_budgets_match_the_sre_workbook():
    assert slo.allowed_bad_minutes(0.999) == pytest.approx(43.2)
    assert slo.allowed_bad_minutes(0.9999, period_days=28) == pytest.approx(4.032)
    assert slo.allowed_bad_requests(0.999, 1_000_000) == pytest.approx(1000)
    # the Workbook's table: 2 % in 1 h at 14.4, 5 % in 6 h at 6, 10 % in 3 days at 1
    for (long_m, _, rate), share in zip(slo.SRE_PAGE + slo.SRE_TICKET, (0.02, 0.05, 0.10)):
        assert slo.budget_consumed(rate, long_m) == pytest.approx(share)
    for bad in (1.0, 0.0, 1.2, "0.9"):
        with pytest.raises(ValueError, match="fraction"):
            slo.allowed_bad_minutes(bad)


def test_time_to_detect_closed_form_matches_the_alert():
    # 1 h window at 14.4 x, an outage burning at 100 x from a clean baseline: 60 * 14.4 / 100 = 8.64 min
    assert slo.time_to_detect(100, 14.4, 60) == pytest.approx(8.64)
    assert slo.time_to_detect(3, 1, 4320, baseline_burn=0.2) == pytest.approx(4320 * 0.8 / 2.8)
    assert slo.time_to_detect(10, 14.4, 60) == math.inf
    assert slo.time_to_detect(10, 1, 60, baseline_burn=2) == 0.0
    events = np.zeros((200, 2), dtype=np.int64)
    events[:, 1] = 1000
    events[120:, 0] = 100  # 10 % errors: burn rate 100 at slo 0.999, after a full clean hour
    first = slo.burn_rate_alerts(events, 0.999, [(60, 5, 14.4)])[0]
    assert first - 120 + 1 == math.ceil(slo.time_to_detect(100, 14.4, 60))  # minutes of errors seen at detection


# --- burn-rate alerts ------------------------------------------------------------------------


def loop_alerts(events, target, windows):
    """The definition, one minute at a time."""
    events = np.asarray(events, dtype=np.float64)
    out = []
    for t in range(len(events)):
        for long_m, short_m, thr in windows:
            ok = True
            for w in (long_m, short_m):
                seg = events[max(0, t - w + 1) : t + 1]
                bad, total = seg[:, 0].sum(), seg[:, 1].sum()
                ok &= total > 0 and bad / total > thr * (1 - target)
            if ok:
                out.append(t)
                break
    return np.array(out, dtype=np.int64)


def random_events(rng, n, zero_share=0.1):
    total = rng.poisson(200, n)
    total[rng.random(n) < zero_share] = 0
    p = np.where(rng.random(n) < 0.05, rng.uniform(0.01, 0.5, n), 0.0005)
    return np.stack([rng.binomial(total, p), total], axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_burn_rate_alerts_match_a_loop(seed):
    rng = np.random.default_rng(seed)
    events = random_events(rng, 700)
    windows = [(60, 5, 14.4), (240, 20, 6.0), (500, 45, 1.0)]
    got = slo.burn_rate_alerts(events, 0.999, windows)
    assert got.dtype == np.int64 and np.all(np.diff(got) > 0)
    np.testing.assert_array_equal(got, loop_alerts(events, 0.999, windows))


def test_both_windows_must_exceed():
    events = np.zeros((200, 2), dtype=np.int64)
    events[:, 1] = 100
    events[100:103, 0] = 50  # a 3-minute blip at 50 %: the short window burns, the long one barely
    # limit 2 x (1 - 0.99) = 2 %: the 60-min window holds 150 / 6000 = 2.5 % from minute 102 to 159
    fired_long_only = slo.burn_rate_alerts(events, 0.99, [(60, 60, 2.0)])
    fired_short_only = slo.burn_rate_alerts(events, 0.99, [(5, 5, 2.0)])
    fired_both = slo.burn_rate_alerts(events, 0.99, [(60, 5, 2.0)])
    np.testing.assert_array_equal(fired_long_only, np.arange(102, 160))
    np.testing.assert_array_equal(fired_short_only, np.arange(100, 107))
    np.testing.assert_array_equal(fired_both, np.arange(102, 107))  # stops once the short window is past the blip


def test_windows_longer_than_the_data_and_zero_traffic():
    events = np.array([[0, 0], [5, 10], [0, 0], [0, 0], [0, 10]])
    got = slo.burn_rate_alerts(events, 0.9, [(1000, 1, 1.0)])
    # minute 0: no traffic at all -> quiet; minute 1: 50 % > 10 %; minutes 2, 3: the short window is empty
    # -> quiet; minute 4: the short window is clean -> quiet
    np.testing.assert_array_equal(got, [1])
    got = slo.burn_rate_alerts(events, 0.9, [(1000, 3, 1.0)])
    np.testing.assert_array_equal(got, [1, 2, 3])
    assert slo.burn_rate_alerts(np.zeros((5, 2)), 0.999, slo.SRE_PAGE).size == 0


def test_threshold_is_strict_and_the_rate_is_a_ratio_of_sums():
    # slo = 0.75: 1 - slo = 0.25 and threshold 2 -> limit 0.5, all exact in binary
    events = np.array([[1, 2], [1, 2], [3, 4]])
    np.testing.assert_array_equal(slo.burn_rate_alerts(events, 0.75, [(1, 1, 2.0)]), [2])
    # window of 2 at minute 2: (1 + 3) / (2 + 4) = 0.667 > 0.5, while minute 0..1 sit exactly at 0.5
    np.testing.assert_array_equal(slo.burn_rate_alerts(events, 0.75, [(2, 2, 2.0)]), [2])
    # ratio of sums, not mean of per-minute rates: (1 + 0) / (1 + 99) = 1 % while the rates average 50 %
    skewed = np.array([[1, 1], [0, 99]])
    np.testing.assert_array_equal(slo.burn_rate_alerts(skewed, 0.99, [(2, 2, 5.0)]), [0])


def test_burn_rate_and_error_rate_helpers(rng):
    events = random_events(rng, 300)
    rate = slo.window_error_rate(events, 30)
    assert rate.shape == (300,) and (rate >= 0).all() and (rate <= 1).all()
    np.testing.assert_allclose(slo.burn_rate(events, 0.99, 30), rate / 0.01)
    np.testing.assert_array_equal(slo.trailing_sum(np.arange(5), 2), [0, 1, 3, 5, 7])


@pytest.mark.parametrize("events, match", [
    (np.zeros((5, 3)), "shape"),
    (np.array([[2, 1]]), "more bad"),
    (np.array([[-1, 1]]), ">= 0"),
    (np.array([["a", "b"]]), "numeric"),
    (np.array([[np.nan, 1.0]]), "NaN"),
])
def test_burn_rate_alerts_rejects_bad_events(events, match):
    with pytest.raises(ValueError, match=match):
        slo.burn_rate_alerts(events, 0.999, slo.SRE_PAGE)


@pytest.mark.parametrize("windows", [[], [(60, 5)], [(0, 5, 14.4)], [(60, 5.5, 14.4)], [(60, 5, -1.0)], 3])
def test_burn_rate_alerts_rejects_bad_windows(windows):
    with pytest.raises(ValueError):
        slo.burn_rate_alerts(np.ones((10, 2)), 0.999, windows)


def test_alert_episodes_and_scoring():
    assert slo.alert_episodes([]) == []
    assert slo.alert_episodes([3, 4, 5, 9, 11, 12]) == [(3, 5), (9, 9), (11, 12)]
    events = np.zeros((100, 2), dtype=np.int64)
    events[:, 1] = 1000
    events[20:30, 0] = 100
    incidents = [slo.Incident("outage", 20, 30, 0.1, True), slo.Incident("blip", 60, 61, 0.1, False)]
    score = slo.score_alerts([5, 22, 23, 24, 60], incidents, events, 0.999)
    assert (score.episodes, score.true_episodes, score.false_episodes) == (3, 1, 2)
    assert score.precision == pytest.approx(1 / 3) and score.recall == 1.0
    assert score.delay_min == {"outage": 2}
    # 3 minutes x 100 bad over a 30-day budget of 0.001 x 1000 x 43,200
    assert score.budget_at_detection["outage"] == pytest.approx(300 / 43_200)
    missed = slo.score_alerts([], incidents, events, 0.999)
    assert missed.recall == 0.0 and missed.precision == 1.0 and missed.delay_min == {"outage": None}
    with pytest.raises(ValueError):
        slo.Incident("backwards", 10, 5, 0.1, True)


def test_sample_events_and_error_profile(rng):
    incidents = [slo.Incident("x", 10, 20, 1.0, True)]
    p = slo.error_rate_profile(50, 0.0, incidents)
    events = slo.sample_events(np.full(50, 7), p, rng)
    assert events.shape == (50, 2)
    assert events[10:20, 0].tolist() == [7] * 10 and events[:10, 0].sum() == 0
    with pytest.raises(ValueError, match="after the trace"):
        slo.error_rate_profile(15, 0.0, incidents)


# --- latency of a chain ----------------------------------------------------------------------


def test_lognormal_from_quantiles_round_trips():
    mu, sigma = slo.lognormal_from_quantiles([10, 20], [30, 100])
    np.testing.assert_allclose(slo.lognormal_quantile(mu, sigma, 0.5), [10, 20])
    np.testing.assert_allclose(slo.lognormal_quantile(mu, sigma, 0.99), [30, 100])
    with pytest.raises(ValueError):
        slo.lognormal_from_quantiles([10], [5])
    with pytest.raises(ValueError):
        slo.lognormal_quantile(0.0, 1.0, 1.0)


def test_fenton_wilkinson_is_exact_for_one_stage_and_for_comonotonic_identical_stages():
    assert slo.fenton_wilkinson([1.3], [0.7]) == pytest.approx((1.3, 0.7))
    # k identical, perfectly correlated stages: S = k X exactly, a lognormal with mu + ln k
    m, s = slo.fenton_wilkinson(np.full(4, 0.5), np.full(4, 0.6), corr=1.0)
    assert (m, s) == pytest.approx((0.5 + math.log(4), 0.6))


def test_fenton_wilkinson_matches_the_moments_of_the_sum(rng):
    mu, sigma = np.array([0.0, 1.0, 0.5]), np.array([0.3, 0.5, 0.4])
    C = np.array([[1, 0.3, 0.1], [0.3, 1, 0.5], [0.1, 0.5, 1]])
    S = slo.sample_stage_latencies(mu, sigma, C, 400_000, rng).sum(axis=1)
    m, s = slo.fenton_wilkinson(mu, sigma, C)
    assert math.exp(m + s**2 / 2) == pytest.approx(S.mean(), rel=3e-3)
    assert math.sqrt((math.exp(s**2) - 1) * math.exp(2 * m + s**2)) == pytest.approx(S.std(), rel=1e-2)


def test_sampler_marginals_and_correlation(rng):
    X = slo.sample_stage_latencies([0.0, 2.0], [0.5, 0.2], 0.6, 200_000, rng)
    L = np.log(X)
    np.testing.assert_allclose(L.mean(axis=0), [0.0, 2.0], atol=5e-3)
    np.testing.assert_allclose(L.std(axis=0), [0.5, 0.2], rtol=1e-2)
    assert np.corrcoef(L.T)[0, 1] == pytest.approx(0.6, abs=5e-3)
    Y = slo.sample_stage_latencies([0.0, 0.0, 0.0], [0.4, 0.4, 0.4], 1.0, 1000, rng)  # singular corr works
    np.testing.assert_allclose(Y[:, 0], Y[:, 2])
    with pytest.raises(ValueError, match="semi-definite"):
        slo.sample_stage_latencies([0, 0], [1, 1], np.array([[1, 2], [2, 1]]), 10, rng)
    with pytest.raises(ValueError, match="same length"):
        slo.sample_stage_latencies([0, 0], [1], 0.0, 10, rng)


def test_quantile_ci_covers_the_true_quantile(rng):
    x = rng.standard_normal(100_000)
    est, lo, hi = slo.quantile_ci(x, 0.99)
    assert lo < norm.ppf(0.99) < hi and lo <= est <= hi
    assert hi - lo < 0.1
    with pytest.raises(ValueError):
        slo.quantile_ci([1.0], 0.5)


def test_p99_of_a_sum_is_below_the_sum_of_p99s(rng):
    mu, sigma = slo.lognormal_from_quantiles([5, 10, 20], [15, 40, 50])
    for rho in (0.0, 0.5):
        S = slo.sample_stage_latencies(mu, sigma, rho, 100_000, rng).sum(axis=1)
        assert slo.quantile_ci(S, 0.99)[2] < slo.lognormal_quantile(mu, sigma, 0.99).sum()
