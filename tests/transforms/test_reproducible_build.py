"""Same raw data, same marts, byte for byte.

One SCALE=tiny landing zone (the simulator, a few seconds) is built twice by `dbt run` into two homes. DuckDB
sums in parallel, so a sum of doubles used to differ in its last bits between builds, and exports without an
ORDER BY came out in a different row order: at this scale both showed on every rebuild. The marts feed Feast
and training, whose training-set fingerprint (training/dataset.py) is computed from Feast's point-in-time join,
so identical marts are what makes the same raw data give the same training set.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.settings import FEATURE_REPO_DIR, REPO_ROOT, Settings
from training.config import TrainConfig
from training.trainset import build_parquet_training_set

from .conftest import dbt_env, run_dbt

# every exported file: the feature marts and the merchant-growth marts
EXPORTS = {
    "marts": {
        "campaign_calendar.parquet",
        "impression_labels.parquet",
        "merchant_features.parquet",
        "product_campaign_plan.parquet",
        "product_features.parquet",
        "user_category_features.parquet",
        "user_features.parquet",
    },
    "merchant_growth": {
        "mg_campaign_plan.parquet",
        "mg_merchant_forecast_features.parquet",
        "mg_merchant_funnel_daily.parquet",
        "mg_product_funnel_daily.parquet",
    },
}


def simulate_tiny(home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "generate", "--scale", "tiny", "--seed", "42", "--end-date", "2026-11-20"],
        cwd=REPO_ROOT,
        env=dbt_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"simulator failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def build(home: Path) -> None:
    result = run_dbt(home, "run", "--quiet")
    if result.returncode != 0:
        pytest.fail(f"dbt run failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first = tmp_path_factory.mktemp("build_first")
    second = tmp_path_factory.mktemp("build_second")
    simulate_tiny(first)
    shutil.copytree(first / "raw", second / "raw")
    build(first)
    build(second)
    return first, second


def test_both_builds_export_every_mart(two_builds: tuple[Path, Path]) -> None:
    for home in two_builds:
        for folder, names in EXPORTS.items():
            assert {p.name for p in (home / folder).glob("*.parquet")} == names, f"{home / folder}"


@pytest.mark.parametrize("folder,name", sorted((f, n) for f, names in EXPORTS.items() for n in names))
def test_same_raw_data_gives_byte_identical_marts(two_builds: tuple[Path, Path], folder: str, name: str) -> None:
    first, second = (home / folder / name for home in two_builds)
    a, b = first.read_bytes(), second.read_bytes()
    assert len(a) > 0
    assert a == b, f"{folder}/{name} differs between two builds of the same raw data ({len(a)} vs {len(b)} bytes)"


def feast_apply(home: Path) -> Settings:
    settings = Settings(home=home, profile="local")
    env = dbt_env(home) | {"FEAST_FS_YAML_FILE_PATH": str(render_feature_store_yaml(settings))}
    env.pop("SHOPRANK_PROFILE", None)
    feast = Path(sys.executable).parent / "feast"
    result = subprocess.run(
        [str(feast), "apply"], cwd=FEATURE_REPO_DIR, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"feast apply failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return settings


def test_same_raw_data_gives_the_same_training_data_fingerprint(two_builds: tuple[Path, Path]) -> None:
    """Through Feast's point-in-time join over each build's own marts: what promotion compares versions by."""
    fingerprints = []
    for home in two_builds:
        settings = feast_apply(home)
        store = get_feature_store(settings)
        assert Path(store.get_feature_view("user_features").batch_source.path).parent == settings.marts_dir
        training_set = build_parquet_training_set(store, settings, TrainConfig())  # what `make train` builds
        try:
            assert training_set.path.stat().st_size > 100_000
            fingerprints.append(training_set.fingerprint)
        finally:
            training_set.remove()
    assert fingerprints[0] == fingerprints[1]
