"""The statistics of an experiment's analysis: pure functions of per-user arrays, no I/O.

Every metric is a ratio of sums (GMV per request, clicks per impression, orders per click), and users, not
requests, are randomised: requests of one user are correlated, so the variance comes from user-level sums
(the delta method for a ratio of means over independent users; Deng, Lu and Litz 2018, "Applying the delta
method in metric analytics"). A lift is treatment over control minus one, with its interval on the log scale
(`log R_t - log R_c`, whose variance is the sum of the two relative variances), so the interval and the
p-value agree and the interval never crosses -100%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Ratio:
    """A ratio of sums over users with its delta-method variance."""

    value: float
    variance: float
    users: int

    @property
    def relative_variance(self) -> float:
        return self.variance / self.value**2 if self.value else math.inf


def ratio(y: np.ndarray, n: np.ndarray) -> Ratio:
    """sum(y) / sum(n) over users and Var of it: sum((y_i - R n_i)^2) / sum(n)^2 (times m/(m-1))."""
    y, n = np.asarray(y, dtype=np.float64), np.asarray(n, dtype=np.float64)
    m = len(y)
    total = float(n.sum())
    if m < 2 or total <= 0:
        return Ratio(math.nan, math.nan, m)
    r = float(y.sum()) / total
    resid = y - r * n
    return Ratio(r, float(resid @ resid) / total**2 * m / (m - 1), m)


@dataclass(frozen=True)
class Lift:
    """Relative lift of treatment over control, its two-sided interval, p-value and z."""

    lift: float
    ci_low: float
    ci_high: float
    p_value: float
    z: float
    se_log: float
    control: float
    treatment: float


def lift(treatment: Ratio, control: Ratio, level: float = 0.95) -> Lift:
    """R_t / R_c - 1; the interval is exp(log ratio +- z se) - 1 with se^2 = relvar_t + relvar_c."""
    if not (treatment.value > 0 and control.value > 0) or not math.isfinite(treatment.variance + control.variance):
        return Lift(math.nan, math.nan, math.nan, 1.0, 0.0, math.nan, control.value, treatment.value)
    log_ratio = math.log(treatment.value / control.value)
    se = math.sqrt(treatment.relative_variance + control.relative_variance)
    z_crit = float(stats.norm.ppf(0.5 + level / 2))
    z = log_ratio / se if se > 0 else math.copysign(math.inf, log_ratio) if log_ratio else 0.0
    p = float(2 * stats.norm.sf(abs(z)))
    return Lift(
        math.expm1(log_ratio),
        math.expm1(log_ratio - z_crit * se),
        math.expm1(log_ratio + z_crit * se),
        p,
        z,
        se,
        control.value,
        treatment.value,
    )


def paired_lift(y_t: np.ndarray, n_t: np.ndarray, y_c: np.ndarray, n_c: np.ndarray, level: float = 0.95) -> Lift:
    """The lift when every user sees both arms (interleaving): arrays over the same users, the covariance of the
    two ratios kept by linearising log R_t - log R_c per user."""
    y_t, n_t, y_c, n_c = (np.asarray(a, dtype=np.float64) for a in (y_t, n_t, y_c, n_c))
    m = len(y_t)
    nt, nc = float(n_t.sum()), float(n_c.sum())
    if m < 2 or nt <= 0 or nc <= 0 or y_t.sum() <= 0 or y_c.sum() <= 0:
        return Lift(math.nan, math.nan, math.nan, 1.0, 0.0, math.nan, math.nan, math.nan)
    r_t, r_c = float(y_t.sum()) / nt, float(y_c.sum()) / nc
    u = (y_t - r_t * n_t) / (r_t * nt) - (y_c - r_c * n_c) / (r_c * nc)
    se = math.sqrt(float(u @ u) * m / (m - 1))
    log_ratio = math.log(r_t / r_c)
    z_crit = float(stats.norm.ppf(0.5 + level / 2))
    z = log_ratio / se if se > 0 else 0.0
    return Lift(
        math.expm1(log_ratio),
        math.expm1(log_ratio - z_crit * se),
        math.expm1(log_ratio + z_crit * se),
        float(2 * stats.norm.sf(abs(z))),
        z,
        se,
        r_c,
        r_t,
    )


def cuped_theta(y: np.ndarray, n: np.ndarray, x: np.ndarray, r: float) -> float:
    """The coefficient that minimises the variance of the linearised ratio y - r n - theta x (Deng et al. 2013)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2 or float(np.var(x)) == 0.0:
        return 0.0
    resid = np.asarray(y, dtype=np.float64) - r * np.asarray(n, dtype=np.float64)
    return float(np.cov(resid, x)[0, 1] / np.var(x, ddof=1))


def cuped_ratio(y: np.ndarray, n: np.ndarray, x: np.ndarray, theta: float, x_mean: float) -> Ratio:
    """The ratio with y_i replaced by y_i - theta (x_i - mean x): same expectation (x is pre-experiment, so
    independent of the arm), smaller variance when x predicts y."""
    adjusted = np.asarray(y, dtype=np.float64) - theta * (np.asarray(x, dtype=np.float64) - x_mean)
    return ratio(adjusted, n)


def cuped_lift(
    y_t: np.ndarray,
    n_t: np.ndarray,
    x_t: np.ndarray,
    y_c: np.ndarray,
    n_c: np.ndarray,
    x_c: np.ndarray,
    level: float = 0.95,
) -> tuple[Lift, float]:
    """The CUPED-adjusted lift and the variance reduction it bought (1 - Var adjusted / Var plain, of the log
    ratio). One theta for both arms, from the pooled users."""
    y = np.concatenate([y_t, y_c])
    n = np.concatenate([n_t, n_c])
    x = np.concatenate([x_t, x_c])
    r = float(y.sum() / n.sum()) if n.sum() > 0 else 0.0
    theta = cuped_theta(y, n, x, r)
    x_mean = float(x.mean()) if len(x) else 0.0
    plain = lift(ratio(y_t, n_t), ratio(y_c, n_c), level)
    adjusted = lift(cuped_ratio(y_t, n_t, x_t, theta, x_mean), cuped_ratio(y_c, n_c, x_c, theta, x_mean), level)
    reduction = 1.0 - adjusted.se_log**2 / plain.se_log**2 if plain.se_log and math.isfinite(plain.se_log) else 0.0
    return adjusted, reduction


def srm_p_value(observed: dict[str, int], shares: dict[str, float]) -> float:
    """Chi-square goodness of fit of the users per arm to the designed shares (sample-ratio mismatch)."""
    total = sum(observed.values())
    if total == 0 or len(shares) < 2:
        return 1.0
    obs = np.array([observed.get(a, 0) for a in shares], dtype=np.float64)
    exp = np.array([shares[a] * total for a in shares], dtype=np.float64)
    return float(stats.chisquare(obs, exp).pvalue)


def share(won: np.ndarray, total: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Interleaving: the share of credited outcomes one arm won, its interval by user and the p-value of 0.5.

    The p-value is a sign-flip randomisation test by user, not the normal approximation: with no preference,
    team draft's fair coins make each user's margin (won - lost) as likely negative as positive, so flipping
    the users' signs gives the statistic's null distribution exactly, however few and heavy-tailed the
    outcomes (a handful of large orders decides a GMV share; the normal test called an A/A tie a win in
    12.5% of runs at 5%). The interval stays the delta method's, to be read with the p-value."""
    r = ratio(won, total)
    if not math.isfinite(r.value) or not r.variance > 0:  # no outcome, or too few to vary: nothing to read
        return math.nan, math.nan, math.nan, 1.0
    se = math.sqrt(r.variance)
    z_crit = float(stats.norm.ppf(0.5 + level / 2))
    margin = 2 * np.asarray(won, dtype=np.float64) - np.asarray(total, dtype=np.float64)
    return r.value, r.value - z_crit * se, r.value + z_crit * se, sign_flip_p_value(margin[margin != 0])


SIGN_FLIPS = 4_000


def sign_flip_p_value(margin: np.ndarray, flips: int = SIGN_FLIPS, seed: int = 20081026) -> float:
    """Two-sided p-value of sum(margin) = 0 against random sign flips of the margins (seeded: the same data
    give the same p-value). Counting the observed statistic among the flips keeps it above zero."""
    m = np.asarray(margin, dtype=np.float64)
    if len(m) == 0:
        return 1.0
    observed = abs(float(m.sum()))
    rng = np.random.default_rng(seed)
    extreme = 0
    for lo in range(0, flips, 500):
        signs = rng.integers(0, 2, size=(min(500, flips - lo), len(m)), dtype=np.int8) * 2 - 1
        extreme += int((np.abs(signs @ m) >= observed - 1e-9 * max(observed, 1.0)).sum())
    return (extreme + 1) / (flips + 1)


def mde(per_request_variance: float, mean: float, requests_per_arm: float, alpha: float, power: float) -> float:
    """Smallest relative lift of a ratio metric detected with `power` by a two-sided test at `alpha`, both arms
    with `requests_per_arm` and `per_request_variance` (the delta-method variance times requests)."""
    if requests_per_arm <= 0 or mean <= 0:
        return math.inf
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    return z * math.sqrt(2 * per_request_variance / requests_per_arm) / mean


def per_request_variance(y: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """(mean, variance per request) of a ratio metric from user-level sums: Var(R) x sum(n), which a run with N
    requests divides by N again. Users' requests cluster, so this holds for the history's requests per user."""
    r = ratio(y, n)
    return r.value, r.variance * float(np.sum(n))
