"""The stream features' offline log: what the processor pushed online, row for row, as parquet parts.

One folder per stream feature view under `$SHOPRANK_HOME/stream_log/<view>/`; the view's push source reads
the glob `<folder>/*.parquet` as its batch source, so training's point-in-time join and `feast materialize`
see every part. Parts are written whole under a temporary name and renamed (a reader never sees half a part).
An empty part with the schema is written when a folder has none, so the glob always matches (DuckDB refuses a
glob without files) and `make materialize` works before the first event.

Columns: the join key; `event_timestamp` = `created_timestamp` = the time the row became visible (pushed
online); `event_time` = the event time the row describes (the entity's newest event); `last_event_id`; then
the features. docs/streaming.md explains the choice of timestamps.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from platform_common.settings import Settings

USER_VIEW = "user_stream_features"
PRODUCT_VIEW = "product_stream_features"
VIEWS = (USER_VIEW, PRODUCT_VIEW)
KEYS = {USER_VIEW: "user_id", PRODUCT_VIEW: "product_id"}

# (name, arrow type, description); the Feast fields of feature_repo/stream_features.py are built from these.
FEATURES: dict[str, tuple[tuple[str, pa.DataType, str], ...]] = {
    USER_VIEW: (
        ("us_clicks_5m", pa.int64(), "The user's clicks with event time in (t - 5 min, t], t = their newest event."),
        ("us_clicks_30m", pa.int64(), "The user's clicks in (t - 30 min, t]."),
        ("us_impressions_30m", pa.int64(), "The user's impressions in (t - 30 min, t]."),
        ("us_session_impressions", pa.int64(), "Impressions in the current session (gaps <= 30 min, <= 4 h)."),
        ("us_session_clicks", pa.int64(), "Clicks in the current session."),
        ("us_seconds_since_click", pa.float64(), "t minus the user's newest click, seconds; null if none yet."),
        # issue 17, section 2: inputs of the derived per-candidate features (platform_common/category_stream.py)
        (
            "us_click_categories_30m",
            pa.string(),
            "category_l1 of each click in (t - 30 min, t], newest first, '|'-joined, at most 20; '' if none.",
        ),
        ("us_session_click_categories", pa.string(), "The same for the clicks of the current session."),
        ("us_last_click_categories", pa.string(), "Last 3 distinct categories clicked in (t - 4 h, t], newest first."),
    ),
    PRODUCT_VIEW: (
        ("ps_clicks_1h", pa.int64(), "The product's clicks in (t - 1 h, t], t = its newest event."),
        ("ps_impressions_1h", pa.int64(), "The product's impressions in (t - 1 h, t]."),
    ),
}
TS = pa.timestamp("us", tz="UTC")


def schema(view: str) -> pa.Schema:
    return pa.schema(
        [
            (KEYS[view], pa.string()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("event_time", TS),
            ("last_event_id", pa.string()),
            *[(name, dtype) for name, dtype, _ in FEATURES[view]],
        ]
    )


def view_dir(log_dir: Path, view: str) -> Path:
    return log_dir / view


def source_path(log_dir: Path, view: str) -> str:
    """The batch source's path: every part of the view."""
    return str(view_dir(log_dir, view) / "*.parquet")


def write_part(log_dir: Path, view: str, table: pa.Table, name: str) -> Path:
    """Write one part atomically; `name` without extension (the processor uses its batch's visible time)."""
    folder = view_dir(log_dir, view)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    tmp = folder / f".{name}.tmp"
    pq.write_table(table.cast(schema(view)), tmp, compression="zstd")
    tmp.replace(path)
    return path


def ensure_log(settings: Settings) -> None:
    """An empty part in every view folder that has none, so the sources' globs always match."""
    for view in VIEWS:
        folder = view_dir(settings.stream_log_dir, view)
        if not any(folder.glob("*.parquet")):
            write_part(settings.stream_log_dir, view, schema(view).empty_table(), "part-0000000000000000-empty")


def read_log(log_dir: Path, view: str) -> pa.Table:
    """Every row of a view's log (tests, parity checks)."""
    parts = sorted(view_dir(log_dir, view).glob("*.parquet"))
    tables = [pq.read_table(p).cast(schema(view)) for p in parts]
    return pa.concat_tables(tables) if tables else schema(view).empty_table()
