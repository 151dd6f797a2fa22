"""The fast read paths return exactly what Feast's `get_online_features` returns (plus the TTL rule)."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pytest

from platform_common.feast_config import get_feature_store
from platform_common.settings import Settings
from serving.champion import load_champion
from serving.fast_features import DirectReader, SnapshotReader
from serving.online_features import FeatureStoreUnavailable, OnlineFeatureReader, make_reader
from serving.ranking import context_columns
from serving.scoring import score_matrix

SERVICE = "ctr_model_v1"


@pytest.fixture(scope="module")
def store(tiny_platform):
    return get_feature_store(tiny_platform)


@pytest.fixture(scope="module")
def snapshot(tiny_platform):
    reader = SnapshotReader(lambda: get_feature_store(tiny_platform), SERVICE, poll_seconds=3600)
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def sample(tiny_platform):
    query = "select distinct {col} from read_parquet(?) order by 1 limit {n}"
    marts = tiny_platform.marts_dir
    with duckdb.connect() as con:
        users = con.execute(query.format(col="user_id", n=8), [str(marts / "user_features.parquet")]).fetchall()
        products = con.execute(
            query.format(col="product_id", n=60), [str(marts / "product_features.parquet")]
        ).fetchall()
    return [u for (u,) in users] + ["u_nobody"], [p for (p,) in products] + ["p_nothing", "p\x00weird"]


def _plain(v: object) -> object:
    """Numpy scalars as Python values; NaN (the fast path's missing number) as None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _same(a: object, b: object) -> bool:
    a, b = _plain(a), _plain(b)
    if a is None or b is None:
        return a is None and b is None
    return a == b


def _newest(store) -> datetime:
    return max(end for fv in store.list_feature_views() for _, end in fv.materialization_intervals)


def test_snapshot_values_equal_get_online_features_value_for_value(store, snapshot, sample):
    """Raw Feast answers, view by view, for users, products, user-category pairs and merchants."""
    users, products = sample
    tables = snapshot.snapshot.tables
    for view, table in tables.items():
        features = snapshot.layout.features[view]
        keys = list(table.index)[:40] + ([("u_nobody", "fashion")] if len(table.join_keys) > 1 else ["nobody"])
        rows = [dict(zip(table.join_keys, k if isinstance(k, tuple) else (k,), strict=True)) for k in keys]
        answer = store.get_online_features(features=[f"{view}:{f}" for f in features], entity_rows=rows).to_dict()
        for i, key in enumerate(keys):
            row = table.index.get(key, table.n)
            for f in features:
                expected, got = answer[f][i], table.python_value(f, row)
                assert got == expected and type(got) is type(expected), (view, key, f, got, expected)


@pytest.mark.parametrize("days_after", [0, 1, 3, 10])
def test_every_reader_serves_the_same_vectors(tiny_platform, store, snapshot, sample, days_after):
    """Snapshot and direct reads equal the reference reader (Feast + TTL rule), fresh and expired."""
    users, products = sample
    now = _newest(store) + timedelta(days=days_after)
    reference = OnlineFeatureReader(store, SERVICE)
    direct = DirectReader(get_feature_store(tiny_platform), SERVICE)
    for user in users[:4] + ["u_nobody"]:
        expected = reference.fetch(user, products, now=now)
        for reader in (snapshot, direct):
            got = reader.fetch(user, products, now=now)
            assert got.known_user == expected.known_user
            assert got.known_products == expected.known_products
            assert got.stale == expected.stale
            assert set(got.columns) == set(expected.columns)
            for name, values in expected.columns.items():
                pairs = zip(products, values, got.columns[name], strict=True)
                mismatches = [(p, a, b) for p, a, b in pairs if not _same(a, b)]
                assert not mismatches, (reader.mode, name, mismatches[:3])
    if days_after >= 3:
        assert expected.stale, "expected some rows past their TTL"


def test_fast_model_matrix_and_scores_equal_the_reference(tiny_platform, store, snapshot, sample):
    users, products = sample
    model = load_champion(tiny_platform)
    spec = model.bundle.spec
    now = datetime.now(UTC)
    reference = OnlineFeatureReader(store, SERVICE)
    for user in users[:3] + ["u_nobody"]:
        context = context_columns("search", len(products), now, True)
        slow = reference.fetch(user, products, now=now).model_matrix(spec, context, len(products))
        fast = snapshot.fetch(user, products, now=now).model_matrix(spec, context, len(products))
        assert np.array_equal(slow, fast, equal_nan=True)
        expected, got = model.bundle.score_matrix(fast), score_matrix(model.bundle, fast)
        assert expected.keys() == got.keys()
        assert all(np.array_equal(expected[k], got[k]) for k in expected)


def test_snapshot_reloads_when_the_registry_shows_a_new_materialization(tiny_platform, snapshot):
    assert snapshot.refresh() is False  # nothing new: only a probe of the store
    before = snapshot.snapshot
    assert snapshot.refresh(force=True) is True
    assert snapshot.snapshot is not before and snapshot.snapshot.rows == before.rows


def test_readers_fail_with_a_reason_when_the_store_is_missing(tiny_platform, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_platform.home_dir / "feast", home / "feast")
    settings = Settings(home=home, scale="tiny")
    (home / "feast" / "online_store.db").unlink()
    for mode in ("snapshot", "direct"):
        with pytest.raises(FeatureStoreUnavailable, match="missing"):
            make_reader(lambda: get_feature_store(settings), SERVICE, mode=mode)
    assert not (home / "feast" / "online_store.db").exists(), "a read must never create an empty store"
    (home / "feast" / "online_store.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(FeatureStoreUnavailable, match="corrupt"):
        make_reader(lambda: get_feature_store(settings), SERVICE, mode="snapshot")
