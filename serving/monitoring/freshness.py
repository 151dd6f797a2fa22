"""Freshness of the online store: age of the newest materialized row per feature view at the window end.

The newest materialized row of a view is the newest `event_timestamp` of its mart that the registry's
materialization intervals cover (the same answer for the SQLite and the Redis online store, without reading
either). A daily view's snapshot of day D is stamped D+1 00:00, so when the window [D, D+1) is judged its
newest row should be stamped at the window end; the SLA per view is in thresholds.yml. The ages are also
written as Prometheus gauges (`shoprank_view_freshness_seconds{view}`, node-exporter textfile format).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from serving.monitoring.alerts import CheckResult, Window
from serving.monitoring.config import Freshness


def materialized_until(settings) -> dict[str, datetime | None]:
    """{view: end of its newest materialization interval} from the Feast registry (None: never)."""
    from platform_common.feast_config import get_feature_store

    if settings.profile == "local" and not (settings.feast_dir / "registry.db").exists():
        return {}
    store = get_feature_store(settings)
    out: dict[str, datetime | None] = {}
    for fv in store.list_feature_views():
        intervals = fv.materialization_intervals
        out[fv.name] = max(end for _, end in intervals) if intervals else None
    return out


def newest_stream_rows(log_dir: Path, views: list[str], window_end: datetime) -> dict[str, datetime | None]:
    """{stream view: its newest row visible by the window end}: pushed rows are online when written, so their
    age is read from the view's log (timestamp = the time the row became visible), not from materializations."""
    import duckdb

    from platform_common.stream_log import VIEWS, source_path

    out: dict[str, datetime | None] = {}
    for view in views:
        if view not in VIEWS:
            continue
        parts = sorted(Path(source_path(log_dir, view)).parent.glob("*.parquet"))
        newest = None
        if parts:
            with duckdb.connect() as con:
                con.execute("set TimeZone = 'UTC'")
                row = con.execute(
                    "select max(cast(event_timestamp as timestamptz)) from read_parquet(?) "
                    "where cast(event_timestamp as timestamptz) <= ?",
                    [[str(p) for p in parts], window_end],
                ).fetchone()
            newest = row[0] if row else None
        if newest is None:
            out[view] = None
            continue
        ts = pd.Timestamp(newest)
        out[view] = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
    return out


def newest_rows(marts_dir: Path, until: dict[str, datetime | None]) -> dict[str, datetime | None]:
    out: dict[str, datetime | None] = {}
    for view, end in until.items():
        path = marts_dir / f"{view}.parquet"
        if end is None or not path.exists():
            out[view] = None
            continue
        ts = pd.to_datetime(pd.read_parquet(path, columns=["event_timestamp"])["event_timestamp"], utc=True)
        covered = ts[ts <= pd.Timestamp(end)]
        out[view] = covered.max().to_pydatetime() if len(covered) else None
    return out


def check(newest: dict[str, datetime | None], window: Window, th: Freshness) -> CheckResult:
    out = CheckResult()
    ages = {}
    for view, ts in sorted(newest.items()):
        sla = th.sla(view)
        age = (window.end - min(ts, window.end)).total_seconds() / 3600 if ts is not None else float("inf")
        ages[view] = age
        out.measure(
            "freshness.view",
            view,
            age,
            sla,
            window,
            age > sla,
            f"newest materialized {view} row is {age:.1f} h old at the window end (SLA {sla:g} h)"
            if ts is not None
            else f"{view} was never materialized",
        )
    out.series["freshness_hours"] = ages
    return out


def prometheus_text(ages_hours: dict[str, float]) -> str:
    lines = [
        "# HELP shoprank_view_freshness_seconds Age of the newest materialized row per feature view.",
        "# TYPE shoprank_view_freshness_seconds gauge",
    ]
    for view, hours in sorted(ages_hours.items()):
        value = "+Inf" if hours == float("inf") else f"{hours * 3600:.0f}"
        lines.append(f'shoprank_view_freshness_seconds{{view="{view}"}} {value}')
    return "\n".join(lines) + "\n"
