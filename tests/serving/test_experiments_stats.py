"""The analysis statistics on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serving.experiments import stats


def _users(rng: np.random.Generator, m: int, rate: float, lift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """m users, each with a heavy-tailed number of requests and a user effect: GMV per request clusters by user."""
    requests = rng.geometric(0.15, m).astype(float)
    user_effect = rng.lognormal(-0.5, 1.0, m)  # mean 1
    orders = rng.poisson(requests * rate * user_effect * (1 + lift))
    gmv = np.array([rng.lognormal(2.5, 0.8, k).sum() for k in orders])
    return gmv, requests


def test_ratio_is_sum_over_sum_with_the_delta_method_variance() -> None:
    y, n = np.array([1.0, 3.0, 0.0, 4.0]), np.array([1.0, 2.0, 1.0, 4.0])
    r = stats.ratio(y, n)
    assert r.value == pytest.approx(8 / 8)
    resid = y - 1.0 * n
    assert r.variance == pytest.approx(float(resid @ resid) / 64 * 4 / 3)


def test_delta_method_interval_covers_the_true_lift_at_its_level() -> None:
    """Simulated experiments with a known lift: the 95% interval by user covers it about 95% of the time, where
    an interval that treated requests as independent would not (requests cluster by user here)."""
    rng = np.random.default_rng(11)
    true_lift = 0.10
    covered, naive_covered, runs = 0, 0, 300
    for _ in range(runs):
        yc, nc = _users(rng, 400, 0.05)
        yt, nt = _users(rng, 400, 0.05, true_lift)
        est = stats.lift(stats.ratio(yt, nt), stats.ratio(yc, nc))
        covered += est.ci_low <= true_lift <= est.ci_high
        # the same lift with per-request variance (users' requests as if independent): too narrow
        per_req_t = np.repeat(yt / nt, nt.astype(int)), np.ones(int(nt.sum()))
        per_req_c = np.repeat(yc / nc, nc.astype(int)), np.ones(int(nc.sum()))
        naive = stats.lift(stats.ratio(*per_req_t), stats.ratio(*per_req_c))
        naive_covered += naive.ci_low <= true_lift <= naive.ci_high
    assert 0.91 <= covered / runs <= 0.985
    assert naive_covered / runs < covered / runs - 0.1


def test_lift_p_value_and_interval_agree() -> None:
    rng = np.random.default_rng(3)
    yc, nc = _users(rng, 2000, 0.05)
    yt, nt = _users(rng, 2000, 0.05, 0.5)
    est = stats.lift(stats.ratio(yt, nt), stats.ratio(yc, nc))
    assert est.ci_low > 0 and est.p_value < 0.05
    assert est.ci_low < est.lift < est.ci_high
    same = stats.lift(stats.ratio(yc, nc), stats.ratio(yc, nc))
    assert same.lift == 0 and same.p_value == pytest.approx(1.0)


def test_lift_without_outcomes_is_undefined_not_a_crash() -> None:
    zero = stats.ratio(np.zeros(5), np.ones(5))
    est = stats.lift(zero, zero)
    assert math.isnan(est.lift) and est.p_value == 1.0


def test_srm_flags_a_45_55_split_and_passes_a_fair_one() -> None:
    shares = {"control": 0.5, "treatment": 0.5}
    assert stats.srm_p_value({"control": 4500, "treatment": 5500}, shares) < 1e-6
    assert stats.srm_p_value({"control": 5030, "treatment": 4970}, shares) > 0.05
    assert stats.srm_p_value({"a": 900, "b": 100}, {"a": 0.9, "b": 0.1}) == pytest.approx(1.0)


def test_cuped_reduces_variance_when_the_pre_period_predicts_and_keeps_the_estimate_unbiased() -> None:
    rng = np.random.default_rng(5)
    m = 3000
    taste = rng.lognormal(0, 1, 2 * m)  # a user's spending level, the same before and during the experiment
    pre = rng.poisson(taste * 3.0) * 10.0
    requests = np.full(2 * m, 10.0)
    during = rng.poisson(taste * 3.0) * 10.0
    t = slice(0, m)
    c = slice(m, 2 * m)
    during[t] *= 1.05
    adjusted, reduction = stats.cuped_lift(during[t], requests[t], pre[t], during[c], requests[c], pre[c])
    plain = stats.lift(stats.ratio(during[t], requests[t]), stats.ratio(during[c], requests[c]))
    assert reduction > 0.4
    assert adjusted.se_log < plain.se_log
    assert adjusted.ci_low <= 0.05 <= adjusted.ci_high
    # an uncorrelated covariate buys (about) nothing
    noise = rng.normal(0, 1, 2 * m)
    _, none = stats.cuped_lift(during[t], requests[t], noise[t], during[c], requests[c], noise[c])
    assert abs(none) < 0.02


def test_cuped_interval_covers_the_true_lift() -> None:
    rng = np.random.default_rng(8)
    covered = 0
    for _ in range(200):
        taste = rng.lognormal(0, 1, 1000)
        pre = rng.poisson(taste) * 10.0
        during = rng.poisson(taste * np.r_[np.full(500, 1.1), np.ones(500)]) * 10.0
        n = np.ones(1000)
        est, _ = stats.cuped_lift(during[:500], n[:500], pre[:500], during[500:], n[500:], pre[500:])
        covered += est.ci_low <= 0.1 <= est.ci_high
    assert covered / 200 >= 0.9


def test_paired_lift_uses_the_covariance_of_both_arms_on_the_same_users() -> None:
    rng = np.random.default_rng(2)
    m = 1000
    base = rng.lognormal(0, 1, m)
    y_c = rng.poisson(base * 2).astype(float)
    y_t = rng.poisson(base * 2.4).astype(float)
    n = np.full(m, 10.0)
    paired = stats.paired_lift(y_t, n, y_c, n)
    independent = stats.lift(stats.ratio(y_t, n), stats.ratio(y_c, n))
    assert paired.lift == pytest.approx(independent.lift)
    assert paired.se_log < independent.se_log  # positively correlated arms: the difference is tighter
    assert paired.ci_low <= 0.2 <= paired.ci_high


def test_interleaving_share_interval_and_p_value() -> None:
    rng = np.random.default_rng(4)
    total = rng.poisson(5, 2000).astype(float) + 1
    won = rng.binomial(total.astype(int), 0.6).astype(float)
    share, lo, hi, p = stats.share(won, total)
    assert lo < 0.6 < hi and share == pytest.approx(won.sum() / total.sum())
    assert p == pytest.approx(1 / (stats.SIGN_FLIPS + 1))  # no flip reaches it: the test's smallest p-value
    even = rng.binomial(total.astype(int), 0.5).astype(float)
    assert stats.share(even, total)[3] > 0.01


def test_mde_shrinks_with_the_square_root_of_the_sample() -> None:
    a = stats.mde(1.0, 0.1, 10_000, 0.05, 0.8)
    b = stats.mde(1.0, 0.1, 40_000, 0.05, 0.8)
    assert a == pytest.approx(2 * b)
    assert a == pytest.approx((1.959964 + 0.841621) * math.sqrt(2 / 10_000) / 0.1, rel=1e-4)


def test_interleaving_share_of_a_handful_of_outcomes_all_to_one_arm_is_not_read_as_certain() -> None:
    share, lo, hi, p = stats.share(np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0]))
    assert math.isnan(share) and p == 1.0


def test_interleaving_share_test_keeps_its_level_on_a_few_heavy_tailed_orders() -> None:
    """A/A: each order goes to either arm by a fair coin, a few users order, order values are heavy-tailed.
    The sign-flip test rejects at about its 5% level; the normal approximation it replaced did not."""
    rng = np.random.default_rng(11)
    rejected, normal_rejected, read, runs = 0, 0, 0, 400
    for _ in range(runs):
        orders = rng.poisson(0.04, 300)  # a dozen orders among 300 users, as a short interleaving run lands
        values = [rng.lognormal(3.0, 1.5, k) for k in orders]
        total = np.array([v.sum() for v in values])
        won = np.array([v @ (rng.random(len(v)) < 0.5) for v in values])
        share, _, _, p = stats.share(won, total)
        if math.isnan(share):
            continue
        read += 1
        rejected += p < 0.05
        r = stats.ratio(won, total)
        normal_rejected += 2 * stats.stats.norm.sf(abs(r.value - 0.5) / math.sqrt(r.variance)) < 0.05
    assert read > 300
    assert rejected / read <= 0.07
    assert normal_rejected > rejected
