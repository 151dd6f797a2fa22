"""Data quality at the door: landing freshness, quarantine share, row counts against the norm, category prices.

Everything is judged as of the window end: a row whose `_ingested_at` is later had not landed when the window
closed, which is exactly what a late batch looks like to a monitor that runs at the end of the day. Landing
freshness is dbt's own: `dbt source freshness` on the sources' `loaded_at_field: _ingested_at` and their
warn/error thresholds (transforms/models/staging/_sources.yml), run as of the window end
(transforms/macros/source_freshness.sql reads var `freshness_as_of`), and its `sources.json` read back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


FRESHNESS_TIMEOUT_SECONDS = 600
TRANSFORMS = Path(__file__).resolve().parents[2] / "transforms"


def dbt_executable() -> str:
    """dbt of this environment (next to the interpreter), else the one on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def run_source_freshness(home: Path, as_of: datetime) -> tuple[dict[str, Any] | None, str]:
    """`dbt source freshness` on `home`'s landing zone as of `as_of`: (parsed sources.json, its path), or (None,
    why) when dbt produced none. A stale source makes dbt exit 1; that is a result, not a failure. Always on the
    DuckDB target: freshness reads the landing zone's parquet, whatever engine builds the marts."""
    target = home / "dbt" / "freshness"
    sources = target / "sources.json"
    sources.unlink(missing_ok=True)
    env = os.environ | {
        "SHOPRANK_HOME": str(home),
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(home / "dbt" / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    as_of_text = as_of.astimezone(UTC).isoformat()
    args = [dbt_executable(), "source", "freshness", "--profiles-dir", ".", "--target", "local", "--quiet"]
    args += ["--vars", json.dumps({"freshness_as_of": as_of_text})]
    try:
        proc = subprocess.run(
            args, cwd=TRANSFORMS, env=env, capture_output=True, text=True, timeout=FRESHNESS_TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"dbt source freshness could not run: {exc}"
    if not sources.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return None, f"dbt source freshness wrote no sources.json: {tail[0]}"
    payload = json.loads(sources.read_text())
    # A source dbt could not read (no file landed, say) is in its log, not in sources.json: the manifest says
    # which sources carry a freshness block, so a missing verdict is named rather than passed over.
    manifest = json.loads((target / "manifest.json").read_text())
    payload["expected"] = sorted(
        name
        for uid, node in manifest.get("sources", {}).items()
        if any(((node.get("freshness") or {}).get(k) or {}).get("count") for k in ("warn_after", "error_after"))
        for name in [uid.rsplit(".", 1)[-1]]
    )
    return payload, str(sources)


def landing_freshness(sources: dict[str, Any] | None, why: str, window: Window, th: DataQuality) -> CheckResult:
    """One measurement per source table with a freshness block: hours between its newest landed row and the
    window end, with dbt's verdict; alerts at `th.landing_freshness_alert` (warn, or only error) and above."""
    out = CheckResult()
    check = "data_quality.landing_freshness"
    if sources is None:
        out.measure(check, "dbt", float("inf"), 0.0, window, True, why)
        return out
    fires_on = {"warn", "error"} if th.landing_freshness_alert == "warn" else {"error"}
    judged: set[str] = set()
    for result in sources.get("results", []):
        table = str(result["unique_id"]).rsplit(".", 1)[-1]
        criteria = result.get("criteria") or {}
        cut = _hours(criteria.get(th.landing_freshness_alert + "_after")) or _hours(criteria.get("error_after"))
        status = str(result.get("status"))
        if status == "runtime error":
            message = f"dbt could not read {table}: {str(result.get('error') or '').splitlines()[:1]}"
            out.measure(check, table, float("inf"), cut or 0.0, window, True, message)
            continue
        judged.add(table)
        lag = float(result["max_loaded_at_time_ago_in_s"]) / 3600
        out.measure(
            check,
            table,
            lag,
            cut,
            window,
            status in fires_on,
            f"newest {table} row landed {lag:.1f} h before the window end (dbt source freshness: {status}, "
            f"warn after {_hours(criteria.get('warn_after')) or '-'} h, error after "
            f"{_hours(criteria.get('error_after')) or '-'} h): a late or missing batch",
            dbt_status=status,
        )
    for table in sorted(set(sources.get("expected", [])) - judged):
        message = f"dbt source freshness gave no verdict on {table} (nothing landed, or unreadable: see its log)"
        out.measure(check, table, float("inf"), 0.0, window, True, message)
    return out


def _hours(after: dict[str, Any] | None) -> float | None:
    if not after or after.get("count") is None:
        return None
    per = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}[str(after["period"])]
    return float(after["count"]) * per


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
        built = con.execute(
            "select count(*) from duckdb_tables() where database_name = 'wh' and table_name = 'quarantine_events'"
        ).fetchone()
        if not built or not built[0]:  # a warehouse dbt opened (source freshness) but never built
            out.notes.append(f"no quarantine_events in {warehouse}: quarantine not judged (run `make features`)")
            return out
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


def run(
    raw_dir: Path,
    warehouse: Path,
    window: Window,
    th: DataQuality,
    freshness: tuple[dict[str, Any] | None, str] | None = None,
) -> CheckResult:
    """`freshness`: what `run_source_freshness` returned for the window end; None runs it on raw_dir's home."""
    con = duckdb.connect()
    sources, where = freshness or run_source_freshness(raw_dir.parent, window.end)
    out = landing_freshness(sources, where, window, th)
    if sources is not None:
        out.notes.append(f"landing freshness: dbt source freshness as of {window.end.isoformat()} ({where})")
    counts = daily_counts(con, raw_dir, window, th.baseline_days)
    out.extend(row_counts(counts, window, th))
    out.extend(quarantine(con, warehouse, counts, window, th))
    out.extend(category_prices(con, raw_dir, window, th))
    return out
