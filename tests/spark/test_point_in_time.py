"""The point-in-time timeline suite (tests/point_in_time) with its joins served by Feast's Spark offline store.

The very same test functions, imported here, run against a `world` whose feature_store.yaml names
`offline_store: {type: spark}` and whose registry holds SparkSources over the timelines' marts (built by dbt on
DuckDB, as in the suite: what is under test is the join, not the build). Nothing is re-stated: a timeline that
Feast's Spark join answers differently from the expected values fails here exactly as it would on DuckDB.
"""

from __future__ import annotations

import pytest

from tests.point_in_time.conftest import World, build_world
from tests.point_in_time.test_day_boundaries import *  # noqa: F403
from tests.point_in_time.test_late_data import *  # noqa: F403
from tests.point_in_time.test_live_events import *  # noqa: F403
from tests.point_in_time.test_rolling_windows import *  # noqa: F403
from tests.point_in_time.test_ttl_and_missing import *  # noqa: F403


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    built = build_world(tmp_path_factory.mktemp("pit_home_spark"), "spark")
    offline = built.store.config.offline_store
    assert offline.type == "spark", offline  # the joins below really are Spark's
    return built


def test_the_world_joins_on_spark(world: World) -> None:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    for name in ("user_features", "user_category_features", "product_features", "merchant_features"):
        assert isinstance(world.store.get_feature_view(name).batch_source, SparkSource), name


def test_every_timeline_test_is_here() -> None:
    """A star import silently keeps the last of two equal names: every test of the suite must be this module's."""
    import importlib

    here = globals()
    for module in ("test_day_boundaries", "test_late_data", "test_live_events", "test_rolling_windows",
                   "test_ttl_and_missing"):  # fmt: skip
        suite = importlib.import_module(f"tests.point_in_time.{module}")
        tests = [name for name in vars(suite) if name.startswith("test_")]
        assert tests, module
        for name in tests:
            assert here.get(name) is getattr(suite, name), f"{module}.{name} is not run on Spark"
