"""One world for the whole suite: hand-made landing zone -> real `dbt build` -> `feast apply` -> Feast store.

Everything lives under a temporary SHOPRANK_HOME; the process environment is not changed (the `feast apply`
subprocess gets SHOPRANK_HOME so feature_repo/data_sources.py resolves the temporary marts, and the
in-process store reads the registry it wrote, whose sources carry those absolute paths).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore

from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.settings import FEATURE_REPO_DIR, TRANSFORMS_DIR, OfflineEngine, Settings

from . import live_story, timelines

BIN = Path(sys.executable).parent
VIEWS = ("user_features", "user_category_features", "product_features", "merchant_features")


@dataclass(frozen=True)
class World:
    settings: Settings
    store: FeatureStore
    seconds: dict[str, float]

    @property
    def marts_dir(self) -> Path:
        return self.settings.marts_dir

    def labels(self) -> pd.DataFrame:
        """The impression_labels mart, read the way training reads it."""
        from training.dataset import load_labels

        return load_labels(self.settings).set_index("impression_id", drop=False)

    def features_of(self, views: Iterable[str]) -> list[str]:
        return [f"{v}:{f.name}" for v in views for f in self.store.get_feature_view(v).features]

    def join(
        self,
        rows: Iterable[Mapping[str, object]],
        views: Iterable[str] = VIEWS,
        *,
        filter_by_created_timestamp: bool = True,
    ) -> dict[str, dict[str, object]]:
        """Feast's point-in-time join of entity rows (each with a unique `row` name); {row: {feature: value}}."""
        entity_df = entity_frame(rows)
        refs = self.features_of(views)
        frame = self.store.get_historical_features(
            entity_df=entity_df,
            features=refs,
            full_feature_names=False,
            filter_by_created_timestamp=filter_by_created_timestamp,
        ).to_df()
        names = [ref.split(":")[1] for ref in refs]
        assert len(frame) == len(entity_df), "the join must return exactly one row per entity row"
        return {rec["row"]: {n: rec[n] for n in names} for rec in frame.to_dict("records")}


def entity_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {
                "row": r["row"],
                "event_timestamp": r["at"],
                "user_id": r.get("user_id", timelines.U_NOBODY),
                "product_id": r.get("product_id", timelines.P_NOBODY),
                "merchant_id": r.get("merchant_id", timelines.M_NOBODY),
                "category_l1": r.get("category_l1", "nothing"),
            }
            for r in rows
        ]
    )
    assert frame["row"].is_unique
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("pit_home"), "duckdb")


def build_world(home: Path, offline_engine: OfflineEngine) -> World:
    """The world in `home`, its joins served by `offline_engine`'s Feast offline store (tests/spark runs the same
    timelines with "spark"); the marts are the DuckDB build's either way."""
    settings = Settings(home=home, profile="local", offline_engine=offline_engine)  # whatever the caller has
    env = dict(os.environ) | {
        "SHOPRANK_HOME": str(settings.home_dir),
        "SHOPRANK_OFFLINE_ENGINE": offline_engine,
        "DBT_TARGET_PATH": str(home / "dbt" / "target"),
        "DBT_LOG_PATH": str(home / "dbt" / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    env.pop("SHOPRANK_PROFILE", None)
    seconds: dict[str, float] = {}

    timelines.write_raw_landing_zone(home)
    live_story.land(home)  # the live shoppers' story, through live mode's own landing code

    started = time.perf_counter()
    dbt = _run([str(BIN / "dbt"), "build", "--profiles-dir", "."], TRANSFORMS_DIR, env)
    seconds["dbt build"] = time.perf_counter() - started
    if dbt.returncode != 0:
        pytest.fail(f"dbt build failed ({dbt.returncode}):\n{dbt.stdout[-6000:]}\n{dbt.stderr[-3000:]}")

    timelines.append_corrections(settings.marts_dir)

    started = time.perf_counter()
    env["FEAST_FS_YAML_FILE_PATH"] = str(render_feature_store_yaml(settings))
    feast = _run([str(BIN / "feast"), "apply"], FEATURE_REPO_DIR, env)
    seconds["feast apply"] = time.perf_counter() - started
    if feast.returncode != 0:
        pytest.fail(f"feast apply failed ({feast.returncode}):\n{feast.stdout[-4000:]}\n{feast.stderr[-4000:]}")

    store = get_feature_store(settings)
    for name in VIEWS:  # the registry must point at *our* marts, never at .state
        path = Path(store.get_feature_view(name).batch_source.path)
        assert path.parent == settings.marts_dir, path
    return World(settings=settings, store=store, seconds=seconds)
