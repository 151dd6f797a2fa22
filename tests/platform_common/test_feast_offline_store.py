"""The ASOF-join offline store returns what Feast's own DuckDB join returns, row for row and value for value.

Three worlds, each joined by both stores with and without `filter_by_created_timestamp` and
`full_feature_names`: random feature rows built to hit every rule at once (ties on event time broken by
created time, rows created after their event time, null created times, null and unknown keys, entity rows
exactly at, one microsecond before and after every row's event, created and expiry times); the point-in-time
suite's hand-written world (real dbt marts with corrections appended); and a simulated tiny platform's
impression labels over the model's feature service. Feast promises no row order, so rows are compared sorted.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore
from feast.infra.offline_stores.file_source import SavedDatasetFileStorage
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64, String

from platform_common.feast_config import OFFLINE_STORE_TYPE, get_feature_store, render_feature_store_yaml
from platform_common.feast_offline_store import (
    STORE_TYPE,
    AsofDuckDBOfflineStore,
    AsofDuckDBOfflineStoreConfig,
    AsofRetrievalJob,
)
from platform_common.settings import FEATURE_REPO_DIR, Settings
from tests.point_in_time.conftest import VIEWS, World, world  # noqa: F401  (the suite's session fixture, reused)

FLAGS = [(f, n) for f in (True, False) for n in (False, True)]  # (filter_by_created_timestamp, full names)
US = timedelta(microseconds=1)


# --- comparing -------------------------------------------------------------------------------------------


def canonical(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Rows sorted by `key`, timestamps as microsecond UTC (Feast's DuckDB store returns whatever unit ibis
    picked; the plugin always returns microseconds), the index dropped."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
    return out.sort_values(key, kind="stable").reset_index(drop=True)


def assert_same_join(plugin: pd.DataFrame, feast: pd.DataFrame, key: list[str]) -> None:
    assert list(plugin.columns) == list(feast.columns)
    assert len(plugin) == len(feast)
    pd.testing.assert_frame_equal(canonical(plugin, key), canonical(feast, key), check_exact=True)


def feasts_store(settings: Settings, folder: Path) -> FeatureStore:
    """The same registry and marts under Feast's own DuckDB offline store."""
    config = yaml.safe_load(render_feature_store_yaml(settings).read_text())
    config["offline_store"] = {"type": "duckdb"}
    path = folder / "feature_store.yaml"
    path.write_text(yaml.safe_dump(config))
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=path)


def both(plugin_store: FeatureStore, feast_store: FeatureStore, **request: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    job = plugin_store.get_historical_features(**request)
    assert isinstance(job, AsofRetrievalJob)  # the ASOF join ran: no fall-back to Feast's join
    return job.to_df(), feast_store.get_historical_features(**request).to_df()


# --- configuration ---------------------------------------------------------------------------------------


def test_both_profiles_select_the_plugin(tmp_path):
    assert OFFLINE_STORE_TYPE == STORE_TYPE
    for name in ("feature_store.yaml", "feature_store.prod.yaml"):
        config = yaml.safe_load((FEATURE_REPO_DIR / name).read_text())
        assert config["offline_store"]["type"] == STORE_TYPE, name
    rendered = yaml.safe_load(render_feature_store_yaml(Settings(home=tmp_path, profile="local")).read_text())
    assert rendered["offline_store"] == {
        "type": STORE_TYPE,
        "temp_directory": str(tmp_path / "duckdb_tmp"),
        "memory_limit": "4GB",  # DuckDB spills past it instead of taking 80% of the machine
    }
    store = FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=tmp_path / "feast" / "feature_store.yaml")
    assert isinstance(store.config.offline_store, AsofDuckDBOfflineStoreConfig)
    assert store.config.offline_store.temp_directory == str(tmp_path / "duckdb_tmp")
    assert store.config.offline_store.memory_limit == "4GB"
    smaller = Settings(home=tmp_path, profile="local", duckdb_memory_limit="1GB")
    assert yaml.safe_load(render_feature_store_yaml(smaller).read_text())["offline_store"]["memory_limit"] == "1GB"


# --- a random world built to hit every rule --------------------------------------------------------------


class NoOnDemandViews:
    """The one registry call both stores make here: which on-demand views the refs name (none)."""

    def list_on_demand_feature_views(self, project: str, allow_cache: bool = True) -> list[Any]:
        return []


def random_world(folder: Path, seed: int) -> tuple[list[FeatureView], pd.DataFrame]:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in range(0, 24 * 12, 6)]  # a coarse grid: many exact ties
    shop = Entity(name="shop", join_keys=["shop_id"], value_type=ValueType.STRING)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)
    rows_a, rows_b = [], []
    for shop_id in ("s1", "s2", "s3"):
        for at in rng.sample(hours, 25):
            # Up to three versions of one event time, with distinct created times (a tie on both is arbitrary
            # in Feast too): on time, late (a correction), early, or unknown.
            offsets = rng.sample([timedelta(0), timedelta(hours=5), timedelta(days=3), -timedelta(hours=1), None], 3)
            for offset in offsets[: rng.randint(1, 3)]:
                created = None if offset is None else at + offset
                rows_a.append({"shop_id": shop_id, "ts": at, "created": created, "score": rng.random(),
                               "label": rng.choice(["x", "y", None])})  # fmt: skip
                for item_id in (1, 2):
                    if rng.random() < 0.5:
                        rows_b.append({"shop": shop_id, "item_id": item_id, "ts": at, "created": created,
                                       "qty": rng.randint(0, 9)})  # fmt: skip
    pd.DataFrame(rows_a).to_parquet(folder / "a.parquet")
    pd.DataFrame(rows_b).astype({"created": "datetime64[us, UTC]"}).to_parquet(folder / "b.parquet")
    view_a = FeatureView(
        name="shop_stats",
        entities=[shop],
        ttl=timedelta(days=2),
        # Join keys in the schema: Feast makes them the view's entity columns (`feast apply` infers them).
        schema=[
            Field(name="shop_id", dtype=String),
            Field(name="score", dtype=Float64),
            Field(name="label", dtype=String),
        ],
        source=FileSource(path=str(folder / "a.parquet"), timestamp_field="ts", created_timestamp_column="created"),
    )
    view_b = FeatureView(  # field mapping on a join key, and no TTL
        name="stock",
        entities=[shop, item],
        ttl=timedelta(0),
        schema=[
            Field(name="shop_id", dtype=String),
            Field(name="item_id", dtype=Int64),
            Field(name="qty", dtype=Int64),
        ],
        source=FileSource(
            path=str(folder / "b.parquet"),
            timestamp_field="ts",
            created_timestamp_column="created",
            field_mapping={"shop": "shop_id"},
        ),
    )
    times = {t + d for row in rows_a + rows_b for t in (row["ts"], row["created"]) if t for d in (-US, 0 * US, US)}
    times |= {row["ts"] + timedelta(days=2) + d for row in rows_a for d in (-US, 0 * US, US)}
    entity = pd.DataFrame(
        [
            {
                "row": i,
                "event_timestamp": t,
                "shop_id": rng.choice(["s1", "s2", "s3", "s9", None]),
                "item_id": rng.choice([1, 2, 3]),
                "weight": rng.random(),
            }  # fmt: skip
            for i, t in enumerate(sorted(times) * 2)
        ]
    )
    return [view_a, view_b], entity


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("filter_by_created", "full_names"), FLAGS)
def test_random_world_equals_feasts_join(tmp_path, seed, filter_by_created, full_names):
    views, entity = random_world(tmp_path, seed)
    refs = ["shop_stats:score", "shop_stats:label", "stock:qty"]
    config = RepoConfig(
        project="pit",
        provider="local",
        registry=str(tmp_path / "registry.db"),
        offline_store=AsofDuckDBOfflineStoreConfig(),
        entity_key_serialization_version=3,
        repo_path=tmp_path,
    )
    request = dict(config=config, feature_views=views, feature_refs=refs, registry=NoOnDemandViews(), project="pit",
                   full_feature_names=full_names, filter_by_created_timestamp=filter_by_created)  # fmt: skip
    job = AsofDuckDBOfflineStore.get_historical_features(entity_df=entity.copy(), **request)
    assert isinstance(job, AsofRetrievalJob)  # the ASOF join ran: no fall-back to Feast's join
    plugin = job.to_df()
    feast = DuckDBOfflineStore.get_historical_features(entity_df=entity.copy(), **request).to_df()
    assert_same_join(plugin, feast, ["row"])
    found = plugin.iloc[:, len(entity.columns) :].notna().any(axis=1)
    assert 0.2 < found.mean() < 0.9, "the entity rows must both find and miss features"


# --- the point-in-time suite's world ---------------------------------------------------------------------


def boundary_rows(pit: World) -> pd.DataFrame:
    """Entity rows at every feature row's event, created and expiry instants, one microsecond either side, for
    the row's own keys; plus the labels' own rows (real key combinations)."""
    rows = []
    for view in map(pit.store.get_feature_view, VIEWS):
        ttl = view.ttl or timedelta(0)
        keys = [e.name for e in view.entity_columns]
        mart = pd.read_parquet(view.batch_source.path)
        for rec in mart.to_dict("records"):
            for at in {rec["event_timestamp"], rec["created_timestamp"], rec["event_timestamp"] + ttl}:
                rows += [{k: rec[k] for k in keys} | {"event_timestamp": at + d} for d in (-US, 0 * US, US)]
    labels = pit.labels()[["event_timestamp", "user_id", "product_id", "merchant_id", "category_l1"]]
    frame = pd.concat([pd.DataFrame(rows), labels.reset_index(drop=True)], ignore_index=True)
    frame = frame.fillna({"user_id": "u_none", "product_id": "p_none", "merchant_id": "m_none", "category_l1": "c"})
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame.insert(0, "row", range(len(frame)))
    return frame


@pytest.fixture(scope="module")
def world_stores(world: World, tmp_path_factory) -> tuple[FeatureStore, FeatureStore]:  # noqa: F811
    assert isinstance(world.store.config.offline_store, AsofDuckDBOfflineStoreConfig)
    return world.store, feasts_store(world.settings, tmp_path_factory.mktemp("feast_join"))


@pytest.mark.parametrize(("filter_by_created", "full_names"), FLAGS)
def test_point_in_time_world_equals_feasts_join(world, world_stores, filter_by_created, full_names):  # noqa: F811
    entity = boundary_rows(world)
    refs = world.features_of(VIEWS)
    plugin, feast = both(*world_stores, entity_df=entity, features=refs, full_feature_names=full_names,
                         filter_by_created_timestamp=filter_by_created)  # fmt: skip
    assert_same_join(plugin, feast, ["row"])
    assert plugin.iloc[:, len(entity.columns) :].notna().any(axis=1).mean() > 0.5


def test_projection_with_join_key_map_and_alias(world, world_stores):  # noqa: F811
    """A feature service that reads merchant features twice under two aliases: for the row's merchant, and for
    a `seller` column through a join-key map."""
    plugin_store, feast_store = world_stores
    merchant = plugin_store.get_feature_view("merchant_features")
    service = FeatureService(
        name="two_merchants",
        # Both aliased: Feast cannot compare (sort) a service's aliased and unaliased projections of one view.
        features=[
            merchant.with_name("own_merchant"),
            merchant.with_name("seller_features").with_join_key_map({"merchant_id": "seller"}),
        ],
    )
    plugin_store.apply([service])  # Feast resolves a feature service through the registry, even one passed in
    feast_store.refresh_registry()
    entity = boundary_rows(world)
    entity["seller"] = entity["merchant_id"].sample(frac=1.0, random_state=5).to_numpy()
    plugin, feast = both(plugin_store, feast_store, entity_df=entity, features=service, full_feature_names=True,
                         filter_by_created_timestamp=True)  # fmt: skip
    assert_same_join(plugin, feast, ["row"])
    assert {"own_merchant__merchant_rating", "seller_features__merchant_rating"} <= set(plugin.columns)
    own, seller = plugin["own_merchant__merchant_rating"], plugin["seller_features__merchant_rating"]
    assert ((own != seller) & own.notna() & seller.notna()).any()  # the seller's, not the row's merchant's


# --- a simulated tiny platform, the model's feature service ----------------------------------------------


@pytest.fixture(scope="module")
def tiny_stores(tiny_platform, tmp_path_factory) -> Iterator[tuple[Settings, FeatureStore, FeatureStore]]:
    settings = tiny_platform
    yield settings, get_feature_store(settings), feasts_store(settings, tmp_path_factory.mktemp("feast_tiny"))


def tiny_labels(settings: Settings) -> pd.DataFrame:
    from training.dataset import load_labels

    return load_labels(settings)


@pytest.mark.parametrize(("filter_by_created", "full_names"), FLAGS)
def test_tiny_labels_equal_feasts_join(tiny_stores, filter_by_created, full_names):
    settings, plugin_store, feast_store = tiny_stores
    labels = tiny_labels(settings)
    assert len(labels) > 10_000
    service = plugin_store.get_feature_service("ctr_model_v1")
    plugin, feast = both(plugin_store, feast_store, entity_df=labels, features=service,
                         full_feature_names=full_names, filter_by_created_timestamp=filter_by_created)  # fmt: skip
    assert_same_join(plugin, feast, ["impression_id"])
    assert plugin["event_timestamp"].dtype == "datetime64[us, UTC]"
    assert plugin.iloc[:, len(labels.columns) :].notna().all(axis=1).mean() > 0.5


def test_persist_writes_the_rows_of_to_df_in_time_order(tiny_stores, tmp_path):
    settings, plugin_store, _ = tiny_stores
    labels = tiny_labels(settings).sample(frac=1.0, random_state=3)  # input order != time order
    job = plugin_store.get_historical_features(
        entity_df=labels, features=plugin_store.get_feature_service("ctr_model_v1"), filter_by_created_timestamp=True
    )
    path = tmp_path / "training.parquet"
    job.persist(SavedDatasetFileStorage(path=str(path)))
    with pytest.raises(SavedDatasetLocationAlreadyExists):
        job.persist(SavedDatasetFileStorage(path=str(path)))
    job.persist(SavedDatasetFileStorage(path=str(path)), allow_overwrite=True)
    table = pq.read_table(path)
    assert str(table.schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"
    written = table.to_pandas()
    assert_same_join(written, job.to_df(), ["impression_id"])
    # Event time, then the input frame's order (for labels whose event times tie).
    expected = labels.sort_values("event_timestamp", kind="stable")["impression_id"].tolist()
    assert written["impression_id"].tolist() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["training.parquet"]  # no partial file left behind


def test_entity_rows_as_a_duckdb_query(tiny_stores):
    settings, plugin_store, _ = tiny_stores
    labels_path = settings.marts_dir / "impression_labels.parquet"
    service = plugin_store.get_feature_service("ctr_model_v1")
    from_sql = plugin_store.get_historical_features(
        entity_df=f"select * from read_parquet('{labels_path}')", features=service, filter_by_created_timestamp=True
    )
    from_frame = plugin_store.get_historical_features(
        entity_df=pd.read_parquet(labels_path), features=service, filter_by_created_timestamp=True
    ).to_df()
    assert_same_join(from_sql.to_df(), from_frame, ["impression_id"])
    assert from_sql.metadata is not None
    assert from_sql.metadata.min_event_timestamp == from_frame["event_timestamp"].min()
