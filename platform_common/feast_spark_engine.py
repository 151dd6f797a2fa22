"""Feast's Spark compute engine, started on the Spark conf it is given (SHOPRANK_OFFLINE_ENGINE=spark).

Feast 0.67's `SparkComputeEngine` builds its session from the *whole* batch-engine config
(`_get_feature_view_engine_config` returns `{type, spark_conf, partitions}`) instead of its `spark_conf`: Spark
logs "Ignoring non-Spark config property: spark_conf" and `feast materialize` runs on a default session (master
`local[*]`, the JVM's time zone, the default driver memory). As the first session of the `feast` process it is
also the one the Spark offline store reuses. This subclass changes only that: the session is built from
`spark_conf` (the repo's, updated by a BatchFeatureView's own `batch_engine.spark_conf` if it has one), so
materialization runs on the same session configuration as the joins, dbt-spark and xgboost.spark
(platform_common/spark_session.py). Everything else, the DAG, the reads and the online writes, is Feast's.
"""

from __future__ import annotations

from typing import Any, Literal

from feast.infra.compute_engines.spark.compute import SparkComputeEngine, SparkComputeEngineConfig
from feast.infra.compute_engines.spark.utils import get_or_create_new_spark_session
from pyspark.sql import SparkSession

ENGINE_TYPE = "platform_common.feast_spark_engine.SparkEngine"


class SparkEngineConfig(SparkComputeEngineConfig):
    type: Literal["platform_common.feast_spark_engine.SparkEngine"] = ENGINE_TYPE  # type: ignore[assignment]


class SparkEngine(SparkComputeEngine):
    def _get_feature_view_spark_session(self, feature_view: Any) -> SparkSession:
        conf = dict(self.repo_config.batch_engine.spark_conf or {})
        conf |= self._get_feature_view_engine_config(feature_view).get("spark_conf") or {}
        return get_or_create_new_spark_session(conf)
