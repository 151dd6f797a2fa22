"""Feast's Spark offline store and Spark compute engine against the DuckDB engine's, on the same marts.

`spark_platform` ran `make apply materialize train` with SHOPRANK_OFFLINE_ENGINE=spark: SparkSources, Feast's
Spark offline store for the point-in-time join and its Spark compute engine for materialization.
`duckdb_on_spark_marts` ran the same targets on a copy of the same marts with the DuckDB engine. The training set
must be the same rows with the same values, and the online store the same bytes.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from mlflow.entities.model_registry import ModelVersion

from platform_common.feast_config import get_feature_store, rendered_yaml_path
from platform_common.mart_parity import compare_frames
from platform_common.registry import connect
from platform_common.settings import Settings
from tests.conftest import run_make

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


def trained(settings: Settings) -> ModelVersion:
    """The version `make train` registered on this platform (the first: the gate test registers another)."""
    client = connect(settings)
    return min(client.search_model_versions(f"name = '{settings.model_name}'"), key=lambda mv: int(mv.version))


def mlflow_artifact_text(settings: Settings, mv: ModelVersion, name: str) -> str:
    connect(settings)
    return Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=name)).read_text()


def test_training_set_equals_duckdbs_row_for_row(spark_platform: Settings, duckdb_on_spark_marts: Settings) -> None:
    """`make train`'s point-in-time training set, joined by Feast's Spark store vs the DuckDB engine's store on the
    same marts. The fingerprint (training/fingerprint.py) hashes every row's values in file order, with the column
    names and types: equal fingerprints are the same rows, in the same order, with the same values. No float
    tolerance is needed (tolerance 0): both joins copy values out of the same mart files, nothing is computed."""
    on_spark, on_duckdb = trained(spark_platform), trained(duckdb_on_spark_marts)
    # the frozen test rows (the last days of the set), compared value by value: a readable diff if they differ
    spark_rows = pd.read_parquet(on_spark.tags["test_set_path"])
    duckdb_rows = pd.read_parquet(on_duckdb.tags["test_set_path"])
    assert len(duckdb_rows) > 1_000  # parity of a handful of rows would prove little
    assert list(spark_rows.columns) == list(duckdb_rows.columns)
    diff = compare_frames("frozen test rows", duckdb_rows, spark_rows)
    assert not diff.problems, diff.problems
    assert diff.max_relative_gap == 0.0
    features = json.loads(mlflow_artifact_text(duckdb_on_spark_marts, on_duckdb, "features.json"))["features"]
    found = duckdb_rows[[c for c in features if c in duckdb_rows.columns]].notna().mean()
    assert (found > 0.5).sum() >= 20, found  # most features were found: a join that finds nothing proves nothing
    schema = pq.read_schema(on_spark.tags["test_set_path"]), pq.read_schema(on_duckdb.tags["test_set_path"])
    assert [(f.name, f.type) for f in schema[0]] == [(f.name, f.type) for f in schema[1]]
    # and the whole training set: train, valid and test days
    assert on_spark.tags["data_fingerprint"] == on_duckdb.tags["data_fingerprint"]
    split = ("train_start", "train_end", "valid_start", "valid_end", "test_start", "test_end")
    spark_params = connect(spark_platform).get_run(on_spark.run_id).data.params
    duckdb_params = connect(duckdb_on_spark_marts).get_run(on_duckdb.run_id).data.params
    assert {k: spark_params[k] for k in split} == {k: duckdb_params[k] for k in split}


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
