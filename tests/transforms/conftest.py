"""One real `dbt build` over a small hand-made landing zone, shared by every transforms test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from .transforms_fixture_data import write_raw_landing_zone

TRANSFORMS_DIR = Path(__file__).resolve().parents[2] / "transforms"


@dataclass(frozen=True)
class BuiltWarehouse:
    home: Path
    seconds: float
    output: str

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def marts_dir(self) -> Path:
        return self.home / "marts"


def dbt_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SHOPRANK_HOME=str(home),
        DBT_TARGET_PATH=str(home / "dbt" / "target"),
        DBT_LOG_PATH=str(home / "dbt" / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    return env


def run_dbt(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dbt = Path(sys.executable).parent / "dbt"
    return subprocess.run(
        [str(dbt), *args, "--profiles-dir", "."],
        cwd=TRANSFORMS_DIR,
        env=dbt_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouse:
    home = tmp_path_factory.mktemp("shoprank_home")
    write_raw_landing_zone(home)
    started = time.perf_counter()
    result = run_dbt(home, "build")
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        pytest.fail(f"dbt build failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return BuiltWarehouse(home=home, seconds=seconds, output=result.stdout)


@pytest.fixture(scope="session")
def db(built: BuiltWarehouse):
    con = duckdb.connect(str(built.warehouse), read_only=True)
    con.execute("set TimeZone = 'UTC'")
    yield con
    con.close()
