"""The export of a Spark build's marts, on a hand-made warehouse (parquet written here, no Spark needed)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_common.settings import Settings
from platform_common.spark_marts import ExportError, export_marts, manifest_path, marts_of


def manifest(home: Path) -> dict:
    def node(name: str, materialized: str, location: str | None = None) -> dict:
        config = {"materialized": materialized} | ({"location": location} if location else {})
        return {"resource_type": "model", "name": name, "schema": "shoprank", "config": config}

    return {
        "nodes": {
            "model.shoprank.user_features": node("user_features", "external"),
            "model.shoprank.mg_plan": node("mg_plan", "external", str(home / "merchant_growth" / "mg_plan.parquet")),
            "model.shoprank.stg_users": node("stg_users", "table"),
            "test.shoprank.not_null": {"resource_type": "test", "name": "not_null", "config": {}},
        }
    }


def write_warehouse_table(settings: Settings, name: str, parts: list[pa.Table]) -> None:
    folder = settings.spark_dir / "warehouse" / "shoprank.db" / name
    folder.mkdir(parents=True)
    for i, part in enumerate(parts):
        pq.write_table(part, folder / f"part-{i:05d}-x.snappy.parquet")


def test_only_external_models_are_marts_and_land_where_duckdb_writes_them(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    marts = {mart.name: mart for mart in marts_of(manifest(tmp_path), settings)}
    assert set(marts) == {"user_features", "mg_plan"}
    assert marts["user_features"].target == settings.marts_dir / "user_features.parquet"
    assert marts["mg_plan"].target == tmp_path / "merchant_growth" / "mg_plan.parquet"
    assert marts["mg_plan"].table_dir == settings.spark_dir / "warehouse" / "shoprank.db" / "mg_plan"


def test_export_joins_the_parts_in_order_with_duckdbs_types(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    manifest_path(settings).parent.mkdir(parents=True)
    manifest_path(settings).write_text(json.dumps(manifest(tmp_path)))
    naive = pa.timestamp("ns")  # Spark's legacy INT96 instants read back naive, in UTC
    first = pa.table({"user_id": ["u1", "u2"], "ts": pa.array([datetime(2026, 10, 1), datetime(2026, 10, 2)], naive)})
    second = pa.table({"user_id": ["u3"], "ts": pa.array([datetime(2026, 10, 3)], naive)})
    write_warehouse_table(settings, "user_features", [first, second])
    write_warehouse_table(settings, "mg_plan", [pa.table({"plan_date": ["2026-10-01"]})])

    written = export_marts(settings)

    expected = [settings.marts_dir / "user_features.parquet", tmp_path / "merchant_growth" / "mg_plan.parquet"]
    assert sorted(written) == sorted(expected)
    table = pq.read_table(settings.marts_dir / "user_features.parquet")
    assert table.column("user_id").to_pylist() == ["u1", "u2", "u3"]
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.column("ts").to_pylist()[2].isoformat() == "2026-10-03T00:00:00+00:00"
    assert not list(settings.marts_dir.glob("*.partial"))


def test_a_missing_build_is_one_clear_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ExportError, match="no dbt manifest"):
        export_marts(settings)
    manifest_path(settings).parent.mkdir(parents=True)
    manifest_path(settings).write_text(json.dumps(manifest(tmp_path)))
    with pytest.raises(ExportError, match="no Spark table at .*/shoprank.db/mg_plan: run the Spark build first"):
        export_marts(settings)
