"""Online feature vectors for one ranking request, read from Feast's online store.

Two reads: the user and product rows first (the product row names its merchant and category), then the
user-category and merchant rows those point to.

Feast's online read returns a value however old it is. Training never sees a value older than its view's
TTL (the point-in-time join drops it), so the service drops it too: a value whose event timestamp is older
than the TTL at request time is served as missing and counted, keeping training and serving on one rule.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from feast import FeatureStore

    from platform_common.feature_spec import FeatureSpec

UNKNOWN_KEY = "__unknown__"
ROUTING = ("product_merchant_id", "product_category_l1")
ROUTE_PREFIX = "_route:"
TS_SUFFIX = "__ts"
READ_MODES = ("snapshot", "direct", "feast")


class FeatureStoreUnavailable(RuntimeError):
    """The online store (or its registry) cannot be read now: the service answers 503 with this reason."""


@dataclass(frozen=True)
class FeatureVectors:
    columns: dict[str, Sequence[Any]]
    known_user: bool
    known_products: list[bool]
    stale: dict[str, int] = field(default_factory=dict)  # view -> rows older than its TTL, served as missing

    def model_matrix(self, spec: FeatureSpec, context: Mapping[str, Sequence[Any]], n_rows: int) -> np.ndarray:
        """The model's input matrix: these features plus the request context, in spec order."""
        return spec.matrix({**self.columns, **context}, n_rows)


class OnlineFeatureReader:
    """The reference path: `FeatureStore.get_online_features`, two reads per request (SHOPRANK_FEATURE_READ=feast)."""

    mode = "feast"

    def __init__(self, store: FeatureStore, feature_service: str) -> None:
        self.store = store
        self.feature_service = feature_service
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

    def degraded_reason(self) -> str:
        return ""

    def close(self) -> None:
        pass

    def refs(self, *views: str) -> list[str]:
        return [f"{v}:{f}" for v in views for f in self.features.get(v, [])]

    def _read(self, views: tuple[str, ...], rows: list[dict[str, str]], now: float, stale: dict[str, int]) -> dict:
        refs = self.refs(*views)
        if not refs:
            return {}
        try:
            response = self.store.get_online_features(features=refs, entity_rows=rows)
        except Exception as exc:  # sqlite3 / redis / registry errors: the store, not the request, is at fault
            raise FeatureStoreUnavailable(f"online store read failed: {type(exc).__name__}: {exc}") from exc
        raw = response.to_dict(include_event_timestamps=True)
        out = {k: v for k, v in raw.items() if not k.endswith(TS_SUFFIX)}
        # Routing keys stay as stored even when their row expired: training joins merchant and category
        # features by the label's own keys, whatever the age of the product row.
        for name in ROUTING:
            if name in out:
                out[ROUTE_PREFIX + name] = list(out[name])
        for view in views:
            ttl = self.ttl_seconds.get(view)
            names = self.features.get(view, [])
            if ttl is None or not names:
                continue
            stamps = raw[names[0] + TS_SUFFIX]  # one row of a view shares one event timestamp
            for i, ts in enumerate(stamps):
                # A row is present when it has a timestamp; an expired row is missing as a whole.
                if ts and now - ts > ttl:
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
        categories = [c or UNKNOWN_KEY for c in first.pop(ROUTE_PREFIX + "product_category_l1")]
        merchants = [m or UNKNOWN_KEY for m in first.pop(ROUTE_PREFIX + "product_merchant_id")]
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
        known_products = [m != UNKNOWN_KEY for m in merchants]
        return FeatureVectors(columns=columns, known_user=known_user, known_products=known_products, stale=stale)


def read_mode() -> str:
    mode = os.environ.get("SHOPRANK_FEATURE_READ", "snapshot")
    if mode not in READ_MODES:
        raise ValueError(f"SHOPRANK_FEATURE_READ={mode!r}: expected one of {READ_MODES}")
    return mode


def make_reader(
    store_factory: Callable[[], FeatureStore],
    feature_service: str,
    mode: str | None = None,
    previous: Any = None,
) -> Any:
    """The online feature reader the service uses (SHOPRANK_FEATURE_READ: snapshot, the default; direct; feast).

    All three return the same values (tests/serving/test_fast_features.py). `snapshot` reads Feast's SQLite
    online store into memory; for any other online store it falls back to `direct`. A `previous` reader of the
    same mode and feature service is reused (a new model version on the same features keeps the snapshot);
    otherwise it is closed once the new one is built.
    """
    from serving.fast_features import DirectReader, SnapshotReader, _sqlite_path

    mode = mode or read_mode()
    if (
        previous is not None
        and getattr(previous, "feature_service", None) == feature_service
        and getattr(previous, "requested_mode", previous.mode) == mode
    ):
        return previous
    if mode == "feast":
        reader: Any = OnlineFeatureReader(store_factory(), feature_service)
    else:
        store = store_factory()
        if mode == "snapshot" and _sqlite_path(store) is not None:
            from serving.observability import reader_state_hook

            reader = SnapshotReader(store_factory, feature_service, on_refresh=reader_state_hook)
        else:
            reader = DirectReader(store, feature_service)
    reader.requested_mode = mode
    if previous is not None:
        previous.close()
    return reader
