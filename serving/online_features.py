"""Online feature vectors for one ranking request, read from Feast's online store.

Two reads: the user and product rows first (the product row names its merchant and category), then the
user-category and merchant rows those point to.

Feast's online read returns a value however old it is. Training never sees a value older than its view's
TTL (the point-in-time join drops it), so the service drops it too: a value whose event timestamp is older
than the TTL at request time is served as missing and counted, keeping training and serving on one rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from feast import FeatureStore

UNKNOWN_KEY = "__unknown__"
TS_SUFFIX = "__ts"


@dataclass(frozen=True)
class FeatureVectors:
    columns: dict[str, list[Any]]
    known_user: bool
    known_products: list[bool]
    stale: dict[str, int] = field(default_factory=dict)  # view -> rows older than its TTL, served as missing


class OnlineFeatureReader:
    def __init__(self, store: FeatureStore, feature_service: str) -> None:
        self.store = store
        service = store.get_feature_service(feature_service)
        self.features: dict[str, list[str]] = defaultdict(list)
        for projection in service.feature_view_projections:
            self.features[projection.name_to_use()] = [f.name for f in projection.features]
        missing = {"user_features", "product_features"} - set(self.features)
        if missing:
            raise ValueError(f"feature service {feature_service} lacks views the service needs: {missing}")
        self.ttl_seconds = {
            fv.name: fv.ttl.total_seconds() for fv in store.list_feature_views() if fv.name in self.features and fv.ttl
        }

    def refs(self, *views: str) -> list[str]:
        return [f"{v}:{f}" for v in views for f in self.features.get(v, [])]

    def _read(self, views: tuple[str, ...], rows: list[dict[str, str]], now: float, stale: dict[str, int]) -> dict:
        refs = self.refs(*views)
        if not refs:
            return {}
        raw = self.store.get_online_features(features=refs, entity_rows=rows).to_dict(include_event_timestamps=True)
        out = {k: v for k, v in raw.items() if not k.endswith(TS_SUFFIX)}
        for view in views:
            ttl = self.ttl_seconds.get(view)
            names = self.features.get(view, [])
            if ttl is None or not names:
                continue
            stamps = raw[names[0] + TS_SUFFIX]  # one row of a view shares one event timestamp
            for i, ts in enumerate(stamps):
                if ts and now - ts > ttl and out[names[0]][i] is not None:
                    stale[view] = stale.get(view, 0) + 1
                    for name in names:
                        out[name][i] = None
        return out

    def fetch(self, user_id: str, product_ids: Sequence[str], now: datetime | None = None) -> FeatureVectors:
        now_s = (now or datetime.now(UTC)).timestamp()
        stale: dict[str, int] = {}
        first = self._read(
            ("user_features", "product_features"),
            [{"user_id": user_id, "product_id": p} for p in product_ids],
            now_s,
            stale,
        )
        categories = [c or UNKNOWN_KEY for c in first["product_category_l1"]]
        merchants = [m or UNKNOWN_KEY for m in first["product_merchant_id"]]
        second = self._read(
            ("user_category_features", "merchant_features"),
            [
                {"user_id": user_id, "category_l1": c, "merchant_id": m}
                for c, m in zip(categories, merchants, strict=True)
            ],
            now_s,
            stale,
        )
        columns = {**first, **second}
        known_user = any(columns[name][0] is not None for name in self.features["user_features"])
        known_products = [m is not None for m in first["product_merchant_id"]]
        return FeatureVectors(columns=columns, known_user=known_user, known_products=known_products, stale=stale)
