"""The pipeline end to end at SCALE=tiny with the offline build on Spark: the marts Feast, training and the gate
read are the Spark build's, and a champion comes out of it."""

from __future__ import annotations

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from platform_common.settings import Settings
from tests.spark.conftest import spark_table_dir
from training.status import status


def test_marts_are_the_spark_builds(spark_platform: Settings) -> None:
    """The exported file holds exactly the rows of Spark's table, and no DuckDB warehouse was built."""
    table_dir = spark_table_dir(spark_platform, "user_features")
    spark_rows = ds.dataset(sorted(str(p) for p in table_dir.glob("part-*.parquet")), format="parquet").count_rows()
    assert spark_rows == pq.read_metadata(spark_platform.marts_dir / "user_features.parquet").num_rows
    assert not spark_platform.warehouse_path.exists()


def test_a_champion_is_trained_and_promoted_on_the_spark_marts(spark_platform: Settings) -> None:
    models = {entry["name"]: entry for entry in status(spark_platform)["models"]}
    champion = models[spark_platform.model_name]["champion"]
    assert champion is not None, models
    # Better than chance on the held-out days: the Spark marts carry the signal the simulator planted.
    assert champion["test_metrics"]["test_auc"] > 0.6, champion
