"""The Spark profile's platform (`make test-spark`, never `make test`: pyproject's norecursedirs leaves this
folder out of a plain `pytest`). It needs the `spark` extra (`make install-spark`) and Java 17.

`spark_platform` runs the pipeline at SCALE=tiny with SHOPRANK_OFFLINE_ENGINE=spark: the dbt build on Spark in
local mode, then Feast's Spark offline store and compute engine, xgboost.spark and the gate on the exported marts.
`duckdb_twin` builds the marts on DuckDB from the very same raw landing zone (a copy of the Spark platform's), for
the mart parity tests; `duckdb_on_spark_marts` runs the DuckDB engine's Feast and training on the very same marts,
for the parity of the join, the materialization and the model.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_common.settings import Settings
from tests.conftest import PIPELINE_TARGETS, run_make


@pytest.fixture(scope="session")
def spark_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("shoprank-spark-home")
    started = time.monotonic()
    run_make(home, *PIPELINE_TARGETS, extra_env={"SHOPRANK_OFFLINE_ENGINE": "spark"})
    print(f"\nspark_platform: {' '.join(PIPELINE_TARGETS)} on Spark in {time.monotonic() - started:.0f} s")
    yield Settings(home=home, scale="tiny", offline_engine="spark")


@pytest.fixture(scope="session")
def duckdb_twin(spark_platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("shoprank-duckdb-twin")
    shutil.copytree(spark_platform.raw_dir, home / "raw")
    run_make(home, "features", extra_env={"SHOPRANK_OFFLINE_ENGINE": "duckdb"})
    return Settings(home=home, scale="tiny", offline_engine="duckdb")


def spark_table_dir(settings: Settings, name: str) -> Path:
    return settings.spark_dir / "warehouse" / "shoprank.db" / name


@pytest.fixture(scope="session")
def duckdb_on_spark_marts(spark_platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The DuckDB engine's Feast store, materialization and training on the very marts the Spark platform
    exported (copied, with the raw zone and the oracle the evaluation reads): any difference from the Spark
    platform is then Feast's Spark join, Spark's materialization or xgboost.spark, never the dbt build."""
    home = tmp_path_factory.mktemp("shoprank-duckdb-on-spark-marts")
    for folder in ("raw", "oracle", "marts", "merchant_growth"):
        shutil.copytree(spark_platform.home_dir / folder, home / folder)
    started = time.monotonic()
    run_make(home, "apply", "materialize", "train", extra_env={"SHOPRANK_OFFLINE_ENGINE": "duckdb"})
    print(f"\nduckdb_on_spark_marts: apply materialize train on DuckDB in {time.monotonic() - started:.0f} s")
    return Settings(home=home, scale="tiny", offline_engine="duckdb")
