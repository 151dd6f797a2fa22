"""The fast engine writes into Feast's SQLite online store exactly what Feast's own engine writes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from platform_common.settings import FEATURE_REPO_DIR

ENGINE = "platform_common.feast_fast_engine.FastComputeEngine"
COLUMNS = "entity_key, feature_name, value, value_text, event_ts, created_ts"


def materialize(folder: Path, engine: str | None, chunk_rows: int | None = None):
    from feast import FeatureStore

    folder.mkdir()
    config = {
        "project": "parity",
        "provider": "local",
        "registry": {"registry_type": "file", "path": str(folder / "registry.db")},
        "offline_store": {"type": "duckdb"},
        "online_store": {"type": "sqlite", "path": str(folder / "online.db")},
        "entity_key_serialization_version": 3,
        "auth": {"type": "no_auth"},
    }
    if engine:
        config["batch_engine"] = {"type": engine} | ({"chunk_rows": chunk_rows} if chunk_rows else {})
    (folder / "feature_store.yaml").write_text(yaml.safe_dump(config))
    env = os.environ | {"FEAST_FS_YAML_FILE_PATH": str(folder / "feature_store.yaml"), "FEAST_USAGE": "False"}
    feast = str(Path(sys.executable).with_name("feast"))  # the real CLI, as `make apply` runs it
    subprocess.run([feast, "apply"], cwd=FEATURE_REPO_DIR, env=env, check=True, capture_output=True)
    store = FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=folder / "feature_store.yaml")
    views = [v.name for v in store.list_feature_views() if Path(v.batch_source.path).is_file()]
    end = datetime.now(UTC)
    store.materialize(end - timedelta(days=400), end, feature_views=views)
    return folder / "online.db"


def tables(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as con:
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        return {n: con.execute(f'select {COLUMNS} from "{n}" order by 1, 2').fetchall() for n in sorted(names)}


@pytest.mark.parametrize("chunk_rows", [None, 7])  # one chunk per view, and many chunks with a short last one
def test_fast_sqlite_writes_feasts_bytes(tiny_platform, tmp_path, chunk_rows):  # tiny_platform: marts, env
    reference = tables(materialize(tmp_path / "feast", None))
    fast = tables(materialize(tmp_path / "fast", ENGINE, chunk_rows))
    assert set(fast) == set(reference)
    assert sum(len(rows) for rows in reference.values()) > 1000
    for name, rows in reference.items():
        assert fast[name] == rows, name


def test_a_view_whose_read_fails_mid_stream_is_rolled_back_and_reported(tiny_platform, tmp_path, monkeypatch):
    """The reading thread fails after the writer has started on a view (its second chunk): that view's
    transaction rolls back and the run fails naming the cause, while the views around it are written whole."""
    from platform_common.feast_fast_engine import encode

    reference = tables(materialize(tmp_path / "feast", None))
    broken, calls = "user_features", {"n": 0}
    build = encode.EncodedRows.build.__func__

    def failing_build(cls, table, layout, entity_keys):
        if layout.fv.name == broken:
            calls["n"] += 1
            if calls["n"] == 3:  # the verification sample, the first chunk, then this
                raise OSError("disk gone while reading user_features")
        return build(cls, table, layout, entity_keys)

    monkeypatch.setattr(encode.EncodedRows, "build", classmethod(failing_build))
    with pytest.raises(OSError, match="disk gone"):
        materialize(tmp_path / "fast", ENGINE, chunk_rows=7)
    assert calls["n"] == 3
    fast = tables(tmp_path / "fast" / "online.db")
    assert fast[f"parity_{broken}"] == []
    written = [name for name in reference if name != f"parity_{broken}"]
    assert written and all(fast[name] == reference[name] for name in written)


def test_a_view_the_engine_hands_back_is_written_by_feasts_engine(tiny_platform, tmp_path, monkeypatch, caplog):
    """A view whose sample does not encode exactly like Feast's goes to Feast's own engine, in the middle of a
    run whose other views the fast engine writes: the store ends up the same as Feast's engine alone makes it."""
    from platform_common.feast_fast_engine import FallBackToFeast, encode

    reference = tables(materialize(tmp_path / "feast", None))
    verify = encode.EncodedRows.verify_against_feast

    def differs_for_product_features(self, fv, timestamp_kind):
        if fv.name == "product_features":
            raise FallBackToFeast("made to differ by the test")
        return verify(self, fv, timestamp_kind)

    monkeypatch.setattr(encode.EncodedRows, "verify_against_feast", differs_for_product_features)
    with caplog.at_level("WARNING", logger="shoprank.feast_fast_engine"):
        fast = tables(materialize(tmp_path / "fast", ENGINE, chunk_rows=7))
    assert "product_features: Feast's local engine takes this view (made to differ by the test)" in caplog.text
    assert fast == reference


def test_duckdb_sorts_rows_as_feasts_serialised_entity_keys_sort():
    """The SQLite writer fills Feast's indexes in key order; DuckDB sorts the rows by (byte length, bytes) of
    each string join key, which must be the order of the serialised keys (lengths below 256 bytes)."""
    import duckdb
    import pyarrow as pa
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    from platform_common.feast_fast_engine.encode import encode_entity_keys
    from platform_common.feast_fast_engine.layout import ViewLayout
    from platform_common.feast_fast_engine.query import key_order_sql

    fv = FeatureView(
        name="v",
        entities=[
            Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING),
            Entity(name="category", join_keys=["category"], value_type=ValueType.STRING),
        ],
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="category", dtype=String),
            Field(name="x", dtype=Float64),
        ],
        source=FileSource(name="s", path="/nonexistent.parquet", timestamp_field="ts"),
    )
    users = ["u9", "u10", "u1", "", "ü", "z", "u0000001", "Ü", "a" * 200, "b" * 17]
    categories = ["beauty", "é", "", "Books", "toys"]
    rows = pa.table(
        {
            "user_id": [u for u in users for _ in categories],
            "category": [c for _ in users for c in categories],
            "x": [float(i) for i in range(len(users) * len(categories))],
        }
    )
    layout = ViewLayout(fv)
    ordered = duckdb.sql(f"select * from rows order by {key_order_sql(layout)}").to_arrow_table()
    keys = encode_entity_keys(ordered, layout)
    assert keys == sorted(keys)
    assert sorted(keys) == sorted(encode_entity_keys(rows, layout))


def _view_over(path: Path):
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Int64, String

    return FeatureView(
        name="v",
        entities=[Entity(name="thing", join_keys=["thing_id"], value_type=ValueType.STRING)],
        schema=[Field(name="thing_id", dtype=String), Field(name="x", dtype=Int64)],
        source=FileSource(name="s", path=str(path), timestamp_field="ts", created_timestamp_column="created"),
    )


def _latest(path: Path, start: datetime, end: datetime) -> dict[str, int]:
    import duckdb

    from platform_common.feast_fast_engine.layout import ViewLayout
    from platform_common.feast_fast_engine.query import latest_rows

    # Only the query: local parquet needs neither the offline store nor the repo config.
    table = latest_rows(duckdb.connect(), None, None, ViewLayout(_view_over(path)), start, end)
    return dict(zip(table.column("thing_id").to_pylist(), table.column("x").to_pylist(), strict=True))


def _source(tmp_path: Path, precision: str, rows: list[tuple]) -> Path:
    import duckdb

    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"create table t (thing_id varchar, x bigint, ts {precision}, created {precision})")
    con.executemany("insert into t values (?, ?, ?, ?)", rows)
    path = tmp_path / f"{precision}.parquet"
    con.execute(f"copy t to '{path}' (format parquet)")
    return path


WINDOW = (datetime(2026, 9, 30, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


@pytest.mark.parametrize("precision", ["timestamptz", "timestamp"])
def test_latest_row_per_entity_breaks_ties_as_feast_does(tmp_path, precision):
    """Feast keeps, per entity, the row with the latest event time, then the latest created time, a null created
    time ranking last. The query ranks the pair as one 128-bit integer: every corner of that encoding."""
    rows = [  # thing, x, event, created
        ("later_created", 1, "2026-10-01 10:00:00", "2026-10-01 11:00:00"),
        ("later_created", 2, "2026-10-01 10:00:00", "2026-10-01 12:00:00"),
        ("null_created_last", 3, "2026-10-01 10:00:00", None),
        ("null_created_last", 4, "2026-10-01 10:00:00", "1970-01-01 00:00:00"),
        ("before_1970_beats_null", 5, "2026-10-01 10:00:00", "1900-01-01 00:00:00"),
        ("before_1970_beats_null", 6, "2026-10-01 10:00:00", None),
        ("infinite_created_first", 7, "2026-10-01 10:00:00", "infinity"),
        ("infinite_created_first", 8, "2026-10-01 10:00:00", "294246-12-31 00:00:00"),
        ("one_microsecond_later_event_wins", 9, "2026-10-01 10:00:00.000001", None),
        ("one_microsecond_later_event_wins", 10, "2026-10-01 10:00:00", "294246-12-31 00:00:00"),
        ("window_bounds", 11, "2026-11-01 00:00:00.000001", "2026-11-02 00:00:00"),  # after the end: not read
        ("window_bounds", 12, "2026-09-30 00:00:00", "2026-09-30 00:00:00"),  # the first instant: read
    ]
    expected = {
        "later_created": 2,
        "null_created_last": 4,
        "before_1970_beats_null": 5,
        "infinite_created_first": 7,
        "one_microsecond_later_event_wins": 9,
        "window_bounds": 12,
    }
    assert _latest(_source(tmp_path, precision, rows), *WINDOW) == expected


def test_nanosecond_timestamps_go_to_feasts_engine(tmp_path):
    """Microseconds would tie two events Feast tells apart by a nanosecond: such a view is handed back."""
    from platform_common.feast_fast_engine import FallBackToFeast

    rows = [
        ("nanoseconds", 1, "2026-10-01 10:00:00.000000002", None),
        ("nanoseconds", 2, "2026-10-01 10:00:00.000000001", "2026-10-02 00:00:00"),
    ]
    with pytest.raises(FallBackToFeast, match="TIMESTAMP_NS"):
        _latest(_source(tmp_path, "timestamp_ns", rows), *WINDOW)
