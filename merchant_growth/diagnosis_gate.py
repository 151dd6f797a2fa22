"""The diagnosis's noise gate: a merchant cause is named only when the funnel part it moves moved beyond noise.

`channel_intervals` measures, over the same resampled days as the decomposition's intervals, how the merchant's
conversion and live_stream traffic moved against the market; `gate_findings` keeps a lever finding as the cause
only when its channel moved the predicted way (see merchant_growth.diagnosis for the rules that raise findings).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from merchant_growth import data
from merchant_growth.schemas import Decomposition, Finding, Interval, Period
from merchant_growth.uncertainty import DayBootstrap, conversion_vs_market, mean_shift, seed_for, share_of_market
from platform_common.settings import Settings

# The funnel part each merchant cause moves, and the sign it moves it with.
CHANNELS: dict[str, tuple[str, int]] = {
    "price_increase": ("conversion", -1),
    "price_decrease": ("conversion", +1),
    "rating_drop": ("conversion", -1),
    "rating_rise": ("conversion", +1),
    "discount_up": ("conversion", +1),
    "discount_down": ("conversion", -1),
    "started_live": ("live_stream traffic", +1),
    "stopped_live": ("live_stream traffic", -1),
}


def channel_intervals(
    settings: Settings,
    merchant_id: str,
    period_a: Period,
    period_b: Period,
    source: data.FunnelSource,
    n_boot: int,
) -> dict[str, Interval]:
    """Market-adjusted intervals of the two channels the merchant causes act through (see CHANNELS): the shift of
    the mean over days of a per-day log ratio to the market (conversion, mix held fixed; live_stream impressions),
    over the same resampled days as the decomposition's intervals. Per-day ratios weigh every day alike, so one
    campaign day does not swamp a week."""
    boot = DayBootstrap(period_a.days, period_b.days, seed_for(merchant_id, period_a, period_b), n_boot)
    rows = data.product_funnel_rows(settings, merchant_id, period_a.start, period_b.end, source)
    market = data.market_daily(settings, merchant_id, period_a.start, period_b.end, source)
    cells = sorted(set(zip(rows["product_id"], rows["surface"], strict=True)))
    cell_index = {c: i for i, c in enumerate(cells)}

    def cell_matrix(period: Period, column: str) -> np.ndarray:
        out = np.zeros((period.days, max(1, len(cells))))
        sub = rows[rows["activity_date"].between(period.start, period.end)]
        day = [(d - period.start).days for d in sub["activity_date"]]
        col = [cell_index[c] for c in zip(sub["product_id"], sub["surface"], strict=True)]
        np.add.at(out, (day, col), sub[column].to_numpy(dtype=np.float64))
        return out

    def daily(frame: pd.DataFrame, period: Period, num: str, den: str | None) -> np.ndarray:
        frame = frame[frame["activity_date"].between(period.start, period.end)]
        per_day = frame.groupby("activity_date")[[num] + ([den] if den else [])].sum()
        per_day = per_day.reindex(period.dates(), fill_value=0)
        values = per_day[num].to_numpy(dtype=np.float64)
        return np.column_stack([values, per_day[den].to_numpy(dtype=np.float64) if den else np.ones(len(values))])

    days_a = period_a.days

    def both(column: str) -> np.ndarray:
        return np.vstack([cell_matrix(period_a, column), cell_matrix(period_b, column)])

    def market_rate(num: str, den: str) -> np.ndarray:
        return np.vstack([daily(market, period_a, num, den), daily(market, period_b, num, den)])

    ctr = conversion_vs_market(both("impressions"), both("clicks"), market_rate("clicks", "impressions"), days_a)
    cvr = conversion_vs_market(both("clicks"), both("orders"), market_rate("orders", "clicks"), days_a)
    own_live, market_live = rows[rows["surface"] == "live_stream"], market[market["surface"] == "live_stream"]
    live = share_of_market(
        np.concatenate([daily(own_live, p, "impressions", None)[:, 0] for p in (period_a, period_b)]),
        np.concatenate([daily(market_live, p, "impressions", None)[:, 0] for p in (period_a, period_b)]),
    )
    # two looks at conversion (Bonferroni: each at half the error rate)
    level = 1 - (1 - boot.level) / 2
    return {
        "ctr": mean_shift(boot, ctr[:days_a], ctr[days_a:], level),
        "cvr": mean_shift(boot, cvr[:days_a], cvr[days_a:], level),
        "live_stream traffic": mean_shift(boot, live[:days_a], live[days_a:]),
    }


# The market-adjusted intervals each channel is judged on (channel_intervals).
CHANNEL_LOOKS: dict[str, tuple[str, ...]] = {
    "conversion": ("ctr", "cvr"),
    "live_stream traffic": ("live_stream traffic",),
}


def gate_findings(
    findings: list[Finding], dec: Decomposition, channels: dict[str, Interval]
) -> tuple[list[Finding], str]:
    """The decision rule: a merchant finding names the cause only when the funnel part it moves moved the
    predicted way beyond its bootstrap interval, judged against its peers over the same resampled days (a campaign
    in one period moves every merchant's conversion; `channels`). Returns the findings (marked) and the primary:

    * the strongest merchant finding whose part is distinguishable from noise;
    * else `within_noise` when a lever moved but its part did not, or when the change of GMV per day itself is
      within noise (a market finding, if any, stays as context);
    * else the strongest market finding, else `no_clear_cause` (a real change no observed lever explains).
    """
    marked: list[Finding] = []
    for f in findings:
        if f.kind == "merchant" and f.cause in CHANNELS:
            channel, sign = CHANNELS[f.cause]
            looks = [channels[k] for k in CHANNEL_LOOKS[channel] if k in channels]
            # named when one look moved the predicted way beyond noise and none moved the other way
            supported = any(i.sign() == sign for i in looks) and not any(i.sign() == -sign for i in looks)
            interval = next((i for i in looks if i.sign() == sign), looks[0] if looks else None)
            f = f.model_copy(
                update={
                    "funnel_channel": channel,
                    "channel_vs_peers": interval,
                    "distinguishable_from_noise": supported,
                }
            )
        marked.append(f)
    merchant = [f for f in marked if f.kind == "merchant"]
    named = [f for f in merchant if f.distinguishable_from_noise]
    if named:
        return marked, named[0].cause
    delta_noise = dec.intervals is not None and not dec.intervals.delta.excludes_zero()
    if merchant or delta_noise:
        return marked, "within_noise"
    market = [f for f in marked if f.kind == "market"]
    return marked, market[0].cause if market else "no_clear_cause"
