"""Data quality at the door: landing freshness, quarantine share, row counts against the norm, category prices.

Everything is judged as of the window end: a row whose `_ingested_at` is later had not landed when the window
closed, which is exactly what a late batch looks like to a monitor that runs at the end of the day. The
landing-freshness check is what `dbt source freshness` would compute on `_ingested_at` (the loaded_at field),
done here in DuckDB so one run needs no dbt invocation and can be judged at any past window end.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from serving.monitoring.alerts import CheckResult, Window
from serving.monitoring.config import DataQuality

SURFACES = ("home_feed", "short_video", "live_stream", "search")
COUNTED_TABLES = ("impressions", "clicks", "orders")


def _raw(raw_dir: Path, table: str) -> str:
    return f"read_parquet('{raw_dir / table}/*/*.parquet', hive_partitioning = true, union_by_name = true)"


def _has(raw_dir: Path, table: str) -> bool:
    return any((raw_dir / table).glob("*/*.parquet"))


def landing_freshness(con: duckdb.DuckDBPyConnection, raw_dir: Path, window: Window, th: DataQuality) -> CheckResult:
    out = CheckResult()
    for table, sla in th.landing_lag_hours.items():
        if not _has(raw_dir, table):
            out.measure("data_quality.landing_freshness", table, float("inf"), sla, window, True, "no rows ever landed")
            continue
        newest = con.execute(
            f"select max(_ingested_at) from {_raw(raw_dir, table)} where _ingested_at < ?", [window.end]
        ).fetchone()
        lag = (window.end - newest[0]).total_seconds() / 3600 if newest and newest[0] else float("inf")
        out.measure(
            "data_quality.landing_freshness",
            table,
            lag,
            sla,
            window,
            lag > sla,
            f"newest {table} row landed {lag:.1f} h before the window end (SLA {sla:g} h): a late or missing batch",
        )
    return out


def daily_counts(con: duckdb.DuckDBPyConnection, raw_dir: Path, window: Window, days: int) -> pd.DataFrame:
    """Rows landed per window-aligned day (by `_ingested_at`), per table and, for impressions, per surface."""
    start = window.start - timedelta(days=days)
    frames = []
    for table in COUNTED_TABLES:
        if not _has(raw_dir, table):
            continue
        surface = "surface" if table == "impressions" else "null"
        frames.append(
            con.execute(
                f"""select '{table}' as tbl, {surface} as surface,
                    floor(epoch(_ingested_at - ?::timestamptz) / 86400)::int as day, count(*) as n
                from {_raw(raw_dir, table)} where _ingested_at >= ? and _ingested_at < ? group by all""",
                [window.start, start, window.end],
            ).df()
        )
    if not frames:
        return pd.DataFrame(columns=["tbl", "surface", "day", "n"])
    return pd.concat(frames, ignore_index=True)


def row_counts(counts: pd.DataFrame, window: Window, th: DataQuality) -> CheckResult:
    """Window rows vs the median day of the baseline, per table and per impression surface."""
    out = CheckResult()
    series = {}
    groups: list[tuple[str, pd.DataFrame]] = []
    for table, frame in counts.groupby("tbl"):
        groups.append((str(table), frame.groupby("day")["n"].sum().reset_index()))
    imps = counts[(counts["tbl"] == "impressions") & counts["surface"].isin(SURFACES)]
    for surface, frame in imps.groupby("surface"):
        groups.append((f"impressions[surface={surface}]", frame[["day", "n"]]))
    for target, frame in groups:
        per_day = frame.set_index("day")["n"].reindex(range(-th.baseline_days, 1), fill_value=0)
        series[target] = per_day
        baseline = float(np.median(per_day.loc[:-1].to_numpy()))
        if baseline < th.min_rows:
            out.notes.append(f"row count of {target}: baseline median {baseline:g} < {th.min_rows} rows, not judged")
            continue
        ratio = float(per_day.loc[0]) / baseline
        low, high = ratio < th.row_count_min_ratio, ratio > th.row_count_max_ratio
        out.measure(
            "data_quality.row_count",
            target,
            ratio,
            th.row_count_min_ratio if not high else th.row_count_max_ratio,
            window,
            low or high,
            f"{target}: {int(per_day.loc[0])} rows landed vs a median of {baseline:g} over the last "
            f"{th.baseline_days} days ({ratio:.2f}x)",
        )
    out.series["row_counts"] = series
    return out


def quarantine(
    con: duckdb.DuckDBPyConnection, warehouse: Path, counts: pd.DataFrame, window: Window, th: DataQuality
) -> CheckResult:
    """Quarantined share per table and reason among the rows landed in the window (dbt's quarantine_events)."""
    out = CheckResult()
    if not warehouse.exists():
        out.notes.append(f"no warehouse at {warehouse}: quarantine not judged (run `make features`)")
        return out
    con.execute(f"attach '{warehouse}' as wh (read_only)")
    try:
        rejected = con.execute(
            """select source_table, reason,
                floor(epoch(_ingested_at - ?::timestamptz) / 86400)::int as day, count(*) as n
            from wh.quarantine_events where _ingested_at >= ? and _ingested_at < ? group by all""",
            [window.start, window.start - timedelta(days=th.baseline_days), window.end],
        ).df()
    finally:
        con.execute("detach wh")
    landed = counts.groupby(["tbl", "day"])["n"].sum()
    trend = rejected.groupby(["source_table", "day"])["n"].sum()
    out.series["quarantine_trend"] = (trend / landed.rename_axis(["source_table", "day"])).dropna()
    today = rejected[rejected["day"] == 0]
    for (table, reason), n in today.groupby(["source_table", "reason"])["n"].sum().items():
        total = float(landed.get((table, 0), 0))
        if total < th.min_rows:
            out.notes.append(f"quarantine of {table}: {total:g} rows landed < {th.min_rows}, not judged")
            continue
        share = n / total
        out.measure(
            "data_quality.quarantine_share",
            f"{table}[reason={reason}]",
            share,
            th.quarantine_share,
            window,
            share > th.quarantine_share,
            f"{n} of {int(total)} {table} rows quarantined for {reason} ({share:.1%})",
        )
    return out


def category_prices(con: duckdb.DuckDBPyConnection, raw_dir: Path, window: Window, th: DataQuality) -> CheckResult:
    """Median shown price per category in the window vs the median of the baseline days' medians."""
    out = CheckResult()
    if not (_has(raw_dir, "product_prices") and _has(raw_dir, "products")):
        out.notes.append("no product_prices or products landed: category prices not judged")
        return out
    # The catalogue is a dimension: a product's category as last landed, even if the snapshot landed after the
    # window (the simulator lands the products table once, at the end of its period).
    frame = con.execute(
        f"""with products as (
                select product_id, arg_max(category_l1, _ingested_at) as category
                from {_raw(raw_dir, "products")} group by 1)
            select category, floor(epoch(_ingested_at - ?::timestamptz) / 86400)::int as day,
                median(price) as price, count(*) as n
            from {_raw(raw_dir, "product_prices")} join products using (product_id)
            where price > 0 and _ingested_at >= ? and _ingested_at < ? group by all""",
        [window.start, window.start - timedelta(days=th.baseline_days), window.end],
    ).df()
    out.series["category_prices"] = frame
    for category, g in frame.groupby("category"):
        g = g.set_index("day")
        base = g.loc[g.index < 0, "price"]
        if 0 not in g.index or len(base) < 2 or g.loc[0, "n"] < 10:
            out.notes.append(f"price of category {category}: too few days or rows, not judged")
            continue
        shift = float(np.log(g.loc[0, "price"] / base.median()))
        out.measure(
            "data_quality.category_price",
            f"product_prices[category={category}]",
            shift,
            th.price_shift,
            window,
            abs(shift) > th.price_shift,
            f"median price of {category} moved {np.expm1(shift):+.0%} vs its last {len(base)} days",
        )
    return out


def run(raw_dir: Path, warehouse: Path, window: Window, th: DataQuality) -> CheckResult:
    con = duckdb.connect()
    out = landing_freshness(con, raw_dir, window, th)
    counts = daily_counts(con, raw_dir, window, th.baseline_days)
    out.extend(row_counts(counts, window, th))
    out.extend(quarantine(con, warehouse, counts, window, th))
    out.extend(category_prices(con, raw_dir, window, th))
    return out
