"""The reference read mode (SHOPRANK_FEATURE_READ=feast): `FeatureStore.get_online_features`, two calls a request.

Feast's online read returns a value however old it is. Training never sees a value older than its view's TTL
(the point-in-time join drops it), so the service drops it too: a value whose event timestamp is older than the
TTL at request time is served as missing and counted, keeping training and serving on one rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from serving.features.base import FeatureStoreUnavailable, FeatureVectors
from serving.features.routing import (
    FIRST_STEP,
    REQUEST_KEYED_VIEWS,
    ROUTING_FEATURES,
    SECOND_STEP,
    STREAM_VIEWS,
    Lookup,
    check_views,
    first_step_rows,
)

if TYPE_CHECKING:
    from feast import FeatureStore

TS_SUFFIX = "__ts"


class FeastReader:
    """Two `get_online_features` calls per request (step one, then step two of serving.features.routing)."""

    mode = "feast"

    def __init__(self, store: FeatureStore, feature_service: str, requested_mode: str = "feast") -> None:
        self.store = store
        self.feature_service = feature_service
        self.requested_mode = requested_mode
        service = store.get_feature_service(feature_service)
        self.features: dict[str, list[str]] = defaultdict(list)
        for projection in service.feature_view_projections:
            self.features[projection.name_to_use()] = [f.name for f in projection.features]
        check_views(feature_service, self.features)
        self.ttl_seconds = {
            fv.name: fv.ttl.total_seconds() for fv in store.list_feature_views() if fv.name in self.features and fv.ttl
        }

    def degraded_reason(self) -> str:
        return ""

    def close(self) -> None:
        pass

    def refs(self, *views: str) -> list[str]:
        return [f"{v}:{f}" for v in views for f in self.features.get(v, [])]

    def _read(
        self, views: tuple[str, ...], rows: list[dict[str, str]], now: float, stale: dict[str, int]
    ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """The columns of `views` for `rows`, TTL rule applied, and the routing features as stored."""
        refs = self.refs(*views)
        if not refs:
            return {}, {}
        try:
            response = self.store.get_online_features(features=refs, entity_rows=rows)
        except Exception as exc:  # sqlite3 / redis / registry errors: the store, not the request, is at fault
            raise FeatureStoreUnavailable(f"online store read failed: {type(exc).__name__}: {exc}") from exc
        raw = response.to_dict(include_event_timestamps=True)
        out = {k: v for k, v in raw.items() if not k.endswith(TS_SUFFIX)}
        # Copied before the TTL rule: routing keys stay as stored when their row expired (serving.features.routing).
        stored = {name: list(out[name]) for name in ROUTING_FEATURES if name in out}
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
        return out, stored

    def fetch(self, user_id: str, product_ids: Sequence[str], now: datetime | None = None) -> FeatureVectors:
        now_s = (now or datetime.now(UTC)).timestamp()
        stale: dict[str, int] = {}
        # The stream views and the campaign plan (if the service has them) share step one's entity rows: keyed by
        # user_id or product_id.
        step_one = FIRST_STEP + STREAM_VIEWS + REQUEST_KEYED_VIEWS
        first, stored = self._read(step_one, first_step_rows(user_id, product_ids), now_s, stale)
        lookup = Lookup.route(user_id, product_ids, stored)
        second, _ = self._read(SECOND_STEP, lookup.second_step_rows(), now_s, stale)
        columns = {**first, **second}
        known_user = any(columns[name][0] is not None for name in self.features["user_features"])
        return FeatureVectors(columns=columns, known_user=known_user, known_products=lookup.known_products, stale=stale)
