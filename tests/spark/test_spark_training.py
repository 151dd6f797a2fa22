"""Training with xgboost.spark under SHOPRANK_OFFLINE_ENGINE=spark: the same kind of MLflow model version as the
DuckDB path's, through the leakage guard, and judged by the gate against a DuckDB-trained one on the same frozen
rows."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from platform_common.registry import connect, ensure_experiment
from platform_common.settings import Settings
from training.bundle import RankerBundle
from training.promotion import promote
from training.train import PIP_REQUIREMENTS

COPIED_TAGS = (
    "data_fingerprint",
    "feature_service",
    "test_set_path",
    "leakage_guard",
    "leakage_guard_reason",
    "metrics",
)


def trained_version(settings: Settings, trainer_prefix: str | None) -> ModelVersion:
    """The one registered version whose run's `trainer` param starts with `trainer_prefix` (None: has none)."""
    client = connect(settings)
    found = []
    for mv in client.search_model_versions(f"name = '{settings.model_name}'"):
        trainer = client.get_run(mv.run_id).data.params.get("trainer")
        if trainer_prefix is None:
            matches = trainer is None
        else:
            matches = trainer is not None and trainer.startswith(trainer_prefix)
        if matches:
            found.append(mv)
    assert len(found) == 1, [(mv.version, mv.run_id) for mv in found]
    return found[0]


def mlmodel(settings: Settings, mv: ModelVersion) -> dict:
    connect(settings)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{settings.model_name}/{mv.version}"))
    return yaml.safe_load((path / "MLmodel").read_text()) | {"_dir": str(path)}


def test_spark_trains_with_xgboost_spark_and_passes_the_leakage_guard(spark_platform: Settings) -> None:
    mv = trained_version(spark_platform, "xgboost.spark")
    assert mv.tags["leakage_guard"] == "passed", mv.tags.get("leakage_guard_reason")
    metrics = json.loads(mv.tags["metrics"])
    assert metrics["test_auc"] > 0.6, metrics  # it learned the signal the simulator planted
    assert metrics["test_auc"] <= metrics["oracle_auc"] + 0.02, metrics


def test_same_kind_of_model_version_as_the_duckdb_path(
    spark_platform: Settings, duckdb_on_spark_marts: Settings
) -> None:
    """Same pyfunc flavour (the RankerBundle), same artifacts, same signature: the gate and the service take it."""
    on_spark = mlmodel(spark_platform, trained_version(spark_platform, "xgboost.spark"))
    on_duckdb = mlmodel(duckdb_on_spark_marts, trained_version(duckdb_on_spark_marts, None))
    assert set(on_spark["flavors"]) == set(on_duckdb["flavors"]) == {"python_function"}
    spark_pyfunc, duckdb_pyfunc = on_spark["flavors"]["python_function"], on_duckdb["flavors"]["python_function"]
    assert spark_pyfunc["loader_module"] == duckdb_pyfunc["loader_module"]
    assert set(spark_pyfunc["artifacts"]) == set(duckdb_pyfunc["artifacts"])
    assert on_spark["signature"] == on_duckdb["signature"]
    assert on_spark["metadata"]["heads"] == on_duckdb["metadata"]["heads"]
    # the same feature spec (vocabularies learned from the same train rows)
    spark_spec = Path(on_spark["_dir"], spark_pyfunc["artifacts"]["feature_spec"]["path"]).read_text()
    duckdb_spec = Path(on_duckdb["_dir"], duckdb_pyfunc["artifacts"]["feature_spec"]["path"]).read_text()
    assert spark_spec == duckdb_spec


def register_copy(source: Settings, mv: ModelVersion, target: Settings) -> str:
    """Register version `mv` of `source`'s registry in `target`'s, as `make train` registers one (same artifacts,
    signature and version tags); returns the new version."""
    model = mlmodel(source, mv)
    pyfunc = model["flavors"]["python_function"]
    artifacts = {key: str(Path(model["_dir"], spec["path"])) for key, spec in pyfunc["artifacts"].items()}
    signature = mlflow.models.get_model_info(f"models:/{source.model_name}/{mv.version}").signature
    client: MlflowClient = connect(target)
    with mlflow.start_run(experiment_id=ensure_experiment(target)):
        mlflow.set_tag("copied_from", f"{source.home_dir}:{mv.version}")
        info = mlflow.pyfunc.log_model(
            name="ranker",
            python_model=RankerBundle(),
            artifacts=artifacts,
            signature=signature,
            registered_model_name=target.model_name,
            metadata=model["metadata"],
            pip_requirements=PIP_REQUIREMENTS,
        )
    version = str(info.registered_model_version)
    for key in COPIED_TAGS:
        client.set_model_version_tag(target.model_name, version, key, mv.tags[key])
    return version


def test_the_gate_compares_spark_and_duckdb_trained_models_on_the_same_frozen_rows(
    spark_platform: Settings, duckdb_on_spark_marts: Settings
) -> None:
    spark_mv = trained_version(spark_platform, "xgboost.spark")
    duckdb_mv = trained_version(duckdb_on_spark_marts, None)
    # the same training set, hence the same frozen test rows (test_offline_store.py checks the file row for row)
    assert spark_mv.tags["data_fingerprint"] == duckdb_mv.tags["data_fingerprint"]
    client = connect(spark_platform)
    champion = client.get_model_version_by_alias(spark_platform.model_name, "champion")
    assert str(champion.version) == str(spark_mv.version)  # `make promote` made the Spark-trained one champion

    candidate = register_copy(duckdb_on_spark_marts, duckdb_mv, spark_platform)
    decision = promote(spark_platform)
    assert decision.candidate == candidate and decision.champion_before == str(spark_mv.version)
    # both scored on the candidate's frozen rows, every gate check judged (promoted or refused, both are fine)
    assert decision.candidate_metrics and decision.champion_metrics
    assert set(decision.candidate_metrics) == set(decision.champion_metrics)
    judged = {check for check, _, _ in decision.checks}
    assert {"leakage guard", "training data fingerprint"} <= judged, judged
    assert any("auc" in check.lower() for check in judged), judged
    print(f"\ngate, DuckDB-trained v{candidate} vs xgboost.spark-trained v{spark_mv.version}: {decision.reason}")
    for key in sorted(decision.candidate_metrics):
        print(f"  {key}: duckdb {decision.candidate_metrics[key]:.5f}  spark {decision.champion_metrics[key]:.5f}")


def test_spark_reads_the_same_day_windows_as_duckdb(tmp_path: Path) -> None:
    """training.spark_fitting.window_filter (Spark SQL) picks the rows training.batches.where_clause (DuckDB)
    picks, at the edges of UTC days too: the Spark heads learn from exactly the train / valid rows."""
    from datetime import UTC, date, datetime, timedelta

    import pandas as pd

    from platform_common.spark_session import get_spark_session
    from training.batches import connect, where_clause
    from training.spark_fitting import window_filter

    start = datetime(2026, 3, 1, tzinfo=UTC)
    edges = [start + timedelta(days=d) + timedelta(microseconds=m) for d in range(6) for m in (-1, 0, 1)]
    frame = pd.DataFrame({"impression_id": [f"i{k:03d}" for k in range(len(edges))], "event_timestamp": edges})
    frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path)
    windows = ((date(2026, 3, 1), date(2026, 3, 2)), (date(2026, 3, 4), date(2026, 3, 4)))
    with connect() as con:
        on_duckdb = sorted(
            r[0] for r in con.sql(f"select impression_id from '{path}' where {where_clause(windows)}").fetchall()
        )
    spark = get_spark_session(Settings(home=tmp_path, offline_engine="spark"))
    on_spark = sorted(
        r[0] for r in spark.read.parquet(str(path)).where(window_filter(windows)).select("impression_id").collect()
    )
    assert on_duckdb == on_spark
    assert 0 < len(on_spark) < len(edges)  # the windows cut somewhere
