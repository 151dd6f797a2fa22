"""Feast's Spark offline store and Spark compute engine against the DuckDB engine's, on the same marts.

`spark_platform` ran `make apply materialize train` with SHOPRANK_OFFLINE_ENGINE=spark: SparkSources, Feast's
Spark offline store for the point-in-time join and its Spark compute engine for materialization.
`duckdb_on_spark_marts` ran the same targets on a copy of the same marts with the DuckDB engine. The training set
must be the same rows with the same values, and the online store the same bytes.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

from platform_common.feast_config import get_feature_store, rendered_yaml_path
from platform_common.mart_parity import compare_frames
from platform_common.settings import Settings
from tests.conftest import run_make
from training.config import TrainConfig
from training.trainset import ParquetTrainingSet, build_parquet_training_set

VIEWS = ("user_features", "user_category_features", "product_features", "merchant_features")
ONLINE_VIEWS = (*VIEWS, "merchant_forecast_features")


def test_the_spark_platform_runs_feasts_spark_store_and_engine(spark_platform: Settings) -> None:
    config = yaml.safe_load(rendered_yaml_path(spark_platform).read_text())
    assert config["offline_store"]["type"] == "spark"
    assert config["offline_store"]["spark_conf"]["spark.sql.session.timeZone"] == "UTC"
    assert config["batch_engine"]["type"] == "platform_common.feast_spark_engine.SparkEngine"
    assert config["batch_engine"]["spark_conf"] == config["offline_store"]["spark_conf"]
    store = get_feature_store(spark_platform)
    for name in ONLINE_VIEWS:
        source = store.get_feature_view(name).batch_source
        assert isinstance(source, SparkSource), (name, type(source))
        assert Path(source.path).is_file(), source.path  # the exported mart, read by Spark itself


@pytest.fixture(scope="module")
def training_sets(
    spark_platform: Settings, duckdb_on_spark_marts: Settings
) -> tuple[ParquetTrainingSet, ParquetTrainingSet]:
    """The point-in-time training set of `make train`, built once per engine on the same marts."""
    cfg = TrainConfig()
    on_spark = build_parquet_training_set(get_feature_store(spark_platform), spark_platform, cfg)
    on_duckdb = build_parquet_training_set(get_feature_store(duckdb_on_spark_marts), duckdb_on_spark_marts, cfg)
    return on_spark, on_duckdb


def test_training_set_equals_duckdbs_row_for_row(training_sets: tuple[ParquetTrainingSet, ParquetTrainingSet]) -> None:
    on_spark, on_duckdb = training_sets
    spark_rows, duckdb_rows = pd.read_parquet(on_spark.path), pd.read_parquet(on_duckdb.path)
    assert len(duckdb_rows) > 10_000  # parity of a handful of rows would prove little
    assert sorted(spark_rows.columns) == sorted(duckdb_rows.columns)
    diff = compare_frames("training set", duckdb_rows, spark_rows[list(duckdb_rows.columns)])
    assert not diff.problems, diff.problems
    # Both joins pick the same mart rows of the same file: nothing is computed, so the doubles are equal too.
    assert diff.max_relative_gap == 0.0
    features = [ref.split(":")[1] for ref in on_duckdb.columns.feature_refs]
    assert duckdb_rows[features].notna().any(axis=None), "a join that found no feature at all proves nothing"


def test_training_set_is_the_same_file(training_sets: tuple[ParquetTrainingSet, ParquetTrainingSet]) -> None:
    """Same columns in the same order and types, same rows in the same order: the same fingerprint, so the frozen
    test rows of a Spark-trained and a DuckDB-trained model are one and the same file's content."""
    on_spark, on_duckdb = training_sets
    spark_schema, duckdb_schema = pq.read_schema(on_spark.path), pq.read_schema(on_duckdb.path)
    assert [(f.name, f.type) for f in spark_schema] == [(f.name, f.type) for f in duckdb_schema]
    assert on_spark.fingerprint == on_duckdb.fingerprint
    assert on_spark.split == on_duckdb.split


def online_rows(settings: Settings, view: str) -> pd.DataFrame:
    """Every stored value of a view in the SQLite online store: Feast's serialized key, feature, value, event time."""
    with sqlite3.connect(settings.feast_dir / "online_store.db") as con:
        frame = pd.read_sql(f"select entity_key, feature_name, value, event_ts from shoprank_{view}", con)
    return frame.sort_values(["entity_key", "feature_name"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("view", ONLINE_VIEWS)
def test_spark_engine_materializes_the_same_online_values(
    spark_platform: Settings, duckdb_on_spark_marts: Settings, view: str
) -> None:
    on_spark, on_duckdb = online_rows(spark_platform, view), online_rows(duckdb_on_spark_marts, view)
    assert len(on_duckdb) > 0
    assert len(on_spark) == len(on_duckdb)
    pd.testing.assert_frame_equal(on_spark, on_duckdb)


def test_skew_check_passes_on_spark(spark_platform: Settings) -> None:
    """Online (written by Spark's engine) vs offline (joined by Spark's store), and served vs offline scores."""
    proc = run_make(spark_platform.home_dir, "skew-check", extra_env={"SHOPRANK_OFFLINE_ENGINE": "spark"})
    output = proc.stdout + proc.stderr
    found = re.search(r"compared ([\d,]+) feature values and ([\d,]+) scores: (\d+) mismatches", output)
    assert found, output[-3000:]
    values, scores, mismatches = (int(g.replace(",", "")) for g in found.groups())
    assert values > 0 and scores > 0 and mismatches == 0, found.group(0)
