"""One Spark configuration for every Spark session of the offline engine (SHOPRANK_OFFLINE_ENGINE=spark).

dbt-spark reads its session from transforms/profiles.yml (`server_side_parameters`); Feast's Spark offline store
and compute engine take theirs from the rendered feature_store.yaml (`spark_conf`, platform_common/feast_config.py);
xgboost.spark trains on whichever session is active in the process. All three are this dict, so a join, a
materialization and a training run see the same master, memory, time zone and parquet timestamp type.

No Spark import here: the Feast config is rendered for every `make` target, and pyspark is an optional extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_common.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_conf(settings: Settings) -> dict[str, str]:
    """Spark properties of the offline engine's sessions (values are strings, as Spark's conf wants them)."""
    spark_dir = settings.spark_dir
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "shoprank-offline",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        # Feast's join compares instants with literals ('2026-01-01T00:00:00'), which Spark reads in the session
        # time zone; Feast writes them in UTC. The dbt build uses UTC as well.
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(spark_dir / "warehouse"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # its progress bars would bury make's output
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={spark_dir}",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        # Instants written as UTC-adjusted microseconds (what DuckDB writes), not the legacy INT96: the persisted
        # training set reads back as the same timestamptz column on either engine.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # pandas <-> Spark through Arrow (Feast uploads the entity frame and reads results as pandas).
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.local.dir": str(spark_dir / "tmp"),
    }


def get_spark_session(settings: Settings) -> SparkSession:
    """The process's Spark session: the active one (Feast may have started it with the same conf), or a new one."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    (settings.spark_dir / "tmp").mkdir(parents=True, exist_ok=True)
    conf = SparkConf().setAll(list(spark_conf(settings).items()))
    return SparkSession.builder.config(conf=conf).getOrCreate()
