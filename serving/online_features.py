"""Online feature vectors for one ranking request, read from Feast's online store.

Two reads: the user and product rows first (the product row names its merchant and category), then the
user-category and merchant rows those point to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from feast import FeatureStore

UNKNOWN_KEY = "__unknown__"


@dataclass(frozen=True)
class FeatureVectors:
    columns: dict[str, list[Any]]
    known_user: bool
    known_products: list[bool]


class OnlineFeatureReader:
    def __init__(self, store: FeatureStore, feature_service: str) -> None:
        self.store = store
        service = store.get_feature_service(feature_service)
        self.refs: dict[str, list[str]] = defaultdict(list)
        for projection in service.feature_view_projections:
            view = projection.name_to_use()
            self.refs[view] = [f"{view}:{f.name}" for f in projection.features]
        missing = {"user_features", "product_features"} - set(self.refs)
        if missing:
            raise ValueError(f"feature service {feature_service} lacks views the service needs: {missing}")

    def _read(self, refs: list[str], rows: list[dict[str, str]]) -> dict[str, list[Any]]:
        if not refs:
            return {}
        return self.store.get_online_features(features=refs, entity_rows=rows).to_dict()

    def fetch(self, user_id: str, product_ids: Sequence[str]) -> FeatureVectors:
        first = self._read(
            self.refs["user_features"] + self.refs["product_features"],
            [{"user_id": user_id, "product_id": p} for p in product_ids],
        )
        categories = [c or UNKNOWN_KEY for c in first["product_category_l1"]]
        merchants = [m or UNKNOWN_KEY for m in first["product_merchant_id"]]
        second = self._read(
            self.refs.get("user_category_features", []) + self.refs.get("merchant_features", []),
            [
                {"user_id": user_id, "category_l1": c, "merchant_id": m}
                for c, m in zip(categories, merchants, strict=True)
            ],
        )
        columns = {**first, **second}
        user_cols = [r.split(":", 1)[1] for r in self.refs["user_features"]]
        known_user = any(v is not None for col in user_cols for v in columns[col][:1])
        known_products = [m is not None for m in first["product_merchant_id"]]
        return FeatureVectors(columns=columns, known_user=known_user, known_products=known_products)
