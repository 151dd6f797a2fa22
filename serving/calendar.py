"""Campaign days for the is_campaign_day context feature, from the dbt export the labels were built from."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb


def load_campaign_days(marts_dir: Path) -> frozenset[date]:
    path = marts_dir / "campaign_calendar.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make features`")
    with duckdb.connect() as con:
        rows = con.execute("select calendar_date from read_parquet(?)", [str(path)]).fetchall()
    return frozenset(r[0] for r in rows)
