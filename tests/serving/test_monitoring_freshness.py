"""Freshness of the stream views: read from their log (pushed rows are online when written), judged by their SLA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from serving.monitoring import freshness
from serving.monitoring.alerts import Window
from serving.monitoring.config import Freshness

END = datetime(2026, 11, 30, tzinfo=UTC)
WINDOW = Window(END - timedelta(days=1), END)


def _log(log_dir: Path, view: str, stamps: list[datetime]) -> None:
    folder = log_dir / view
    folder.mkdir(parents=True)
    pd.DataFrame({"user_id": [f"u{i}" for i in range(len(stamps))], "event_timestamp": stamps}).to_parquet(
        folder / "part-1.parquet"
    )


def test_a_stream_views_age_is_its_newest_visible_row_and_rows_after_the_window_do_not_count(tmp_path: Path) -> None:
    _log(
        tmp_path,
        "user_stream_features",
        [END - timedelta(hours=3), END - timedelta(minutes=20), END + timedelta(hours=1)],
    )
    newest = freshness.newest_stream_rows(tmp_path, ["user_stream_features", "user_features"], END)
    assert newest == {"user_stream_features": END - timedelta(minutes=20)}  # daily views are read from the marts


def test_stream_views_are_judged_against_their_own_sla(tmp_path: Path) -> None:
    _log(tmp_path, "user_stream_features", [END - timedelta(hours=3)])
    _log(tmp_path, "product_stream_features", [END - timedelta(minutes=30)])
    newest = freshness.newest_stream_rows(tmp_path, ["user_stream_features", "product_stream_features"], END)
    th = Freshness(view_sla_hours={"default": 30, "user_stream_features": 1, "product_stream_features": 2})
    result = freshness.check(newest, WINDOW, th)
    fired = {a.target for a in result.alerts}
    assert fired == {"user_stream_features"}  # 3 h old against 1 h; the product view's 0.5 h is within 2 h
