"""Feast's online read returns values of any age; the service serves values older than the TTL as missing."""

from __future__ import annotations

from datetime import timedelta

import duckdb

from platform_common.feast_config import get_feature_store
from serving.features.feast import FeastReader


def test_values_older_than_their_ttl_are_served_as_missing(tiny_platform):
    store = get_feature_store(tiny_platform)
    reader = FeastReader(store, "ctr_model_v1")
    with duckdb.connect() as con:
        user, product = con.execute(
            "select user_id, product_id from read_parquet(?) order by event_timestamp desc limit 1",
            [str(tiny_platform.marts_dir / "impression_labels.parquet")],
        ).fetchone()
    newest = max(end for fv in store.list_feature_views() for _, end in fv.materialization_intervals)

    fresh = reader.fetch(user, [product], now=newest)
    assert fresh.stale == {}
    assert fresh.columns["user_clicks_30d"][0] is not None
    assert fresh.columns["price"][0] is not None
    assert fresh.columns["merchant_rating"][0] is not None

    # Three days on, the daily views (TTL 2 days) have expired; merchant features (TTL 7 days) have not.
    later = reader.fetch(user, [product], now=newest + timedelta(days=3))
    assert later.stale.get("user_features") == 1 and later.stale.get("product_features") == 1
    assert "merchant_features" not in later.stale
    assert later.columns["user_clicks_30d"][0] is None
    assert later.columns["price"][0] is None
    assert later.columns["merchant_rating"][0] == fresh.columns["merchant_rating"][0]
    assert later.known_user is False
