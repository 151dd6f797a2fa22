"""The two-step lookup of a ranking request, written once for every read mode (and the serving benchmark).

Step one reads the user's row and the candidates' product rows. A product row names the product's category and
merchant; step two reads the rows those names point to: the user's row for that category and the merchant's row.
The names are taken from the product row as stored, even when that row is past its TTL: training joins merchant
and category features by the label's own keys, whatever the age of the product row. A candidate without a
product row routes to UNKNOWN_KEY, which matches no row, and counts as an unknown product.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serving.features.base import UNKNOWN_KEY

FIRST_STEP = ("user_features", "product_features")
# Issue 17: the stream views, keyed by the request's own user and candidates, so read in step one when the feature
# service has them (ctr_model_v2_stream). They are pushed online by the stream processor between
# materializations, so every read mode reads them from the store per request (serving.features.snapshot).
STREAM_VIEWS = ("user_stream_features", "product_stream_features")
# Issue 18, section 4: batch views keyed by the request's own candidates (ctr_model_v3_calendar's campaign plan),
# materialized like the daily views, so held in the snapshot, and read in step one without routing.
REQUEST_KEYED_VIEWS = ("product_campaign_plan",)


@dataclass(frozen=True)
class Route:
    view: str  # a view read in step two
    via: str  # the product feature naming the entity to read
    key: str  # the join key that name fills (the entity column get_online_features echoes)


ROUTES = (
    Route("user_category_features", "product_category_l1", "category_l1"),
    Route("merchant_features", "product_merchant_id", "merchant_id"),
)
SECOND_STEP = tuple(r.view for r in ROUTES)
ROUTING_FEATURES = tuple(r.via for r in ROUTES)
_KNOWN_BY = "merchant_id"  # every product row names its merchant: no merchant name, no product row


def check_views(feature_service: str, features: Mapping[str, Iterable[str]]) -> None:
    """Raise ValueError unless the feature service reads what the lookup needs (step one's views, the routes)."""
    missing = sorted(set(FIRST_STEP) - set(features))
    if missing:
        raise ValueError(f"feature service {feature_service} lacks views the service needs: {missing}")
    unrouted = sorted(set(ROUTING_FEATURES) - set(features["product_features"]))
    if unrouted:
        raise ValueError(f"feature service {feature_service}: product_features lacks the routing features {unrouted}")


def first_step_rows(user_id: str, product_ids: Sequence[str]) -> list[dict[str, str]]:
    """Step one's entity rows for `get_online_features`: one per candidate."""
    return [{"user_id": user_id, "product_id": p} for p in product_ids]


@dataclass(frozen=True)
class Lookup:
    """The entity keys of one request, per join key and candidate: the user, the products, where they route."""

    user_id: str
    product_ids: Sequence[str]
    routed: dict[str, list[str]]  # step two's join keys (category_l1, merchant_id) -> per candidate

    @classmethod
    def route(cls, user_id: str, product_ids: Sequence[str], stored: Mapping[str, Sequence[Any]]) -> Lookup:
        """From the routing features of the candidates' product rows as stored (None where a row is absent)."""
        return cls(user_id, product_ids, {r.key: [v or UNKNOWN_KEY for v in stored[r.via]] for r in ROUTES})

    @property
    def known_products(self) -> list[bool]:
        return [k != UNKNOWN_KEY for k in self.routed[_KNOWN_BY]]

    def column(self, join_key: str) -> Sequence[str]:
        """Per candidate, the value of one join key."""
        if join_key == "user_id":
            return [self.user_id] * len(self.product_ids)
        if join_key == "product_id":
            return self.product_ids
        return self.routed[join_key]

    def keys(self, join_keys: Sequence[str]) -> list[Any]:
        """Per candidate, a view's entity key: the value of its one join key, or a tuple in `join_keys` order."""
        columns = [self.column(k) for k in join_keys]
        return list(columns[0]) if len(columns) == 1 else list(zip(*columns, strict=True))

    def second_step_rows(self) -> list[dict[str, str]]:
        """Step two's entity rows for `get_online_features`: one per candidate, every routed key."""
        names = tuple(self.routed)
        return [
            {"user_id": self.user_id, **dict(zip(names, values, strict=True))}
            for values in zip(*self.routed.values(), strict=True)
        ]
