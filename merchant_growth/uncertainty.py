"""Intervals for the parts of a GMV decomposition: a bootstrap over days, with a deterministic seed.

The exact decomposition (decomposition.py) says where a change sits in the funnel, but not whether it is more
than noise: a merchant with 3 orders a week moves its CVR part by tens of percent from one week to the next by
chance alone. Each period's days are resampled with replacement (`n_boot` times, the same resampled days for
every segment, so a merchant's, its surfaces' and its products' intervals describe the same replicates), the
funnel counts of the replicate are summed and decomposed with the same Shapley formula (in floats, vectorised
over replicates), and the `level` percentile interval of each part is reported. A day's counts carry its
impression-level sampling noise (which impressions were clicked, which clicks ordered, how many units) as well
as the day-to-day variation of traffic, so resampling days covers both; with 7 days a period, the percentile
bootstrap is slightly narrow (its variance is (n - 1) / n of the plug-in one), which the decision rule offsets
by asking for the whole interval to lie on one side of zero.

A part is **distinguishable from noise** when its interval excludes 0.
"""

from __future__ import annotations

import math
import zlib
from itertools import combinations

import numpy as np
import pandas as pd

from merchant_growth.schemas import FACTORS, Interval, PartIntervals

N_BOOT = 1000
LEVEL = 0.95
COUNT_COLUMNS = ("impressions", "clicks", "orders", "gmv")


def shapley4(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shapley parts of prod(b) - prod(a) for each row of (replicates, n) factor arrays; the float twin of
    `decomposition.shapley_product`."""
    n = a.shape[1]
    out = np.zeros_like(a, dtype=np.float64)
    for k in range(n):
        others = [j for j in range(n) if j != k]
        phi = np.zeros(a.shape[0])
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in combinations(others, size):
                term = np.ones(a.shape[0])
                for j in others:
                    term = term * (b[:, j] if j in subset else a[:, j])
                phi += weight * term
        out[:, k] = phi * (b[:, k] - a[:, k])
    return out


def factors(counts: np.ndarray, days: int) -> np.ndarray:
    """(replicates, 4) counts [impressions, clicks, orders, gmv] -> traffic, CTR, CVR, AOV (NaN: undefined)."""
    imp, clk, orders, gmv = counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack(
            [
                imp / days,
                np.where(imp > 0, clk / np.where(imp > 0, imp, 1), np.nan),
                np.where(clk > 0, orders / np.where(clk > 0, clk, 1), np.nan),
                np.where(orders > 0, gmv / np.where(orders > 0, orders, 1), np.nan),
            ],
            axis=1,
        )


def decompose_replicates(counts_a: np.ndarray, counts_b: np.ndarray, days_a: int, days_b: int) -> np.ndarray:
    """(replicates, 5): the four Shapley parts and the change of GMV per day, per replicate. An undefined ratio
    takes the other period's value (0 if undefined in both), exactly as in the exact decomposition."""
    fa, fb = factors(counts_a, days_a), factors(counts_b, days_b)
    fa, fb = np.where(np.isnan(fa), fb, fa), np.where(np.isnan(fb), fa, fb)
    fa, fb = np.nan_to_num(fa), np.nan_to_num(fb)
    parts = shapley4(fa, fb)
    delta = counts_b[:, 3] / days_b - counts_a[:, 3] / days_a
    return np.column_stack([parts, delta])


def day_matrix(rows: pd.DataFrame, dates: list) -> np.ndarray:
    """(days, 4) counts of the rows per date of the period (a day without rows is zeros)."""
    if rows.empty:
        return np.zeros((len(dates), 4))
    per_day = rows.groupby("activity_date")[list(COUNT_COLUMNS)].sum()
    return per_day.reindex(dates, fill_value=0).to_numpy(dtype=np.float64)


def seed_for(*keys: object) -> int:
    """A deterministic seed from the request (same merchant and periods, same intervals)."""
    return zlib.crc32("|".join(str(k) for k in keys).encode())


class DayBootstrap:
    """The resampled days of both periods, shared by every segment of one diagnosis."""

    def __init__(self, days_a: int, days_b: int, seed: int, n_boot: int = N_BOOT, level: float = LEVEL) -> None:
        rng = np.random.default_rng(seed)
        self.days_a, self.days_b, self.level = days_a, days_b, level
        # multinomial weights: how many times each day is drawn in each replicate
        self.weights_a = rng.multinomial(days_a, np.full(days_a, 1 / days_a), size=n_boot).astype(np.float64)
        self.weights_b = rng.multinomial(days_b, np.full(days_b, 1 / days_b), size=n_boot).astype(np.float64)

    def replicates(self, daily_a: np.ndarray, daily_b: np.ndarray) -> np.ndarray:
        """(replicates, 5) parts and delta of one segment, from its (days, 4) daily counts in each period."""
        return decompose_replicates(self.weights_a @ daily_a, self.weights_b @ daily_b, self.days_a, self.days_b)

    def intervals(self, daily_a: np.ndarray, daily_b: np.ndarray) -> PartIntervals:
        return summarise(self.replicates(daily_a, daily_b), self.level)


def summarise(reps: np.ndarray, level: float = LEVEL) -> PartIntervals:
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2

    def interval(values: np.ndarray) -> Interval:
        low, high = np.quantile(values, [lo_q, hi_q])
        return Interval(low=float(low), high=float(high))

    named = {name: interval(reps[:, i]) for i, name in enumerate(FACTORS)}
    return PartIntervals(
        level=level,
        **named,
        conversion=interval(reps[:, 1] + reps[:, 2]),
        delta=interval(reps[:, 4]),
    )


def mean_shift(
    boot: DayBootstrap, per_day_a: np.ndarray, per_day_b: np.ndarray, level: float | None = None
) -> Interval:
    """Interval of mean(b) - mean(a) of a per-day statistic, over the bootstrap's resampled days."""
    reps = boot.weights_b @ per_day_b / boot.days_b - boot.weights_a @ per_day_a / boot.days_a
    level = boot.level if level is None else level
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    low, high = np.quantile(reps, [lo_q, hi_q])
    return Interval(low=float(low), high=float(high))


def conversion_vs_market(
    own_imp: np.ndarray, own_ord: np.ndarray, market: np.ndarray, baseline_days: int
) -> np.ndarray:
    """Per day, the log ratio of the merchant's rate (num / den: clicks per impression, orders per click),
    product mix held fixed, to the market's.

    `own_imp` / `own_ord`: (days, cells) denominators and numerators over the merchant's product x surface cells,
    the first `baseline_days` rows being period a; `market`: (days, 2) numerator and denominator of every other
    merchant. A day's merchant rate is its numerator over what its denominators would have made at each cell's
    rate of period a (indirect standardisation, one pseudo-event of prior per cell at the merchant's pooled
    rate), so a shift of traffic to cheap, high-converting products does not read as better conversion; dividing
    by the market's rate that day removes what every merchant shares (a campaign day lifts everyone).
    """
    imp_a, ord_a = own_imp[:baseline_days].sum(axis=0), own_ord[:baseline_days].sum(axis=0)
    pooled = (ord_a.sum() + 0.5) / (imp_a.sum() + 0.5)
    cell_rate = (ord_a + 1.0) / (imp_a + 1.0 / pooled)
    expected = own_imp @ cell_rate
    own = np.log((own_ord.sum(axis=1) + 0.5) / (expected + 0.5))
    return own - np.log((market[:, 0] + 0.5) / (market[:, 1] + 0.5))


def share_of_market(own: np.ndarray, market: np.ndarray) -> np.ndarray:
    """Per day, log of the merchant's count over the market's (e.g. live_stream impressions)."""
    return np.log((own + 0.5) / (market + 0.5))
