"""One stream event: the fields the producer writes, parsed and checked the way staging checks raw rows.

A payload is a JSON object. Every event has `kind` (impression, click, order), `event_id` (the raw row's id),
`user_id`, `product_id`, `event_ts` and `ingested_at` (UTC epoch microseconds: exact, and what the raw zone
stores). Impressions also carry `request_id`, `surface`, `position`; clicks `impression_id`; orders
`impression_id`, `click_id`, `quantity`, `unit_price`, `gmv`. A payload that breaks a rule is quarantined with
the first reason that applies, named like staging's reasons where staging has the same rule.
Orphan, unknown-id and gmv-product checks need other rows and stay the batch's job (dbt staging).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from simulator.config import SURFACES

KINDS = ("impression", "click", "order")
_REQUIRED = ("event_id", "user_id", "product_id", "event_ts", "ingested_at")
_MAX_ID = 64


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    event_id: str
    user_id: str
    product_id: str
    event_ts: int  # epoch microseconds, UTC
    ingested_at: int


class Malformed(ValueError):
    """An event that breaks a rule; `reason` is the quarantine reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse(payload: bytes | str) -> Event:
    """The event in a payload, or Malformed(reason)."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("not_json") from None
    if not isinstance(data, dict):
        raise Malformed("not_an_object")
    return check(data)


def check(data: dict[str, Any]) -> Event:
    kind = data.get("kind")
    if kind not in KINDS:
        raise Malformed("unknown_kind")
    for name in _REQUIRED:
        value = data.get(name)
        if value is None:
            raise Malformed(f"null_{name}")
        if name in ("event_ts", "ingested_at"):
            # bool is an int in Python; a timestamp is not
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise Malformed(f"bad_{name}")
        elif not isinstance(value, str) or not value or len(value) > _MAX_ID:
            raise Malformed(f"bad_{name}")
    if kind == "impression":
        if data.get("surface") not in SURFACES:
            raise Malformed("unknown_surface")
        position = data.get("position")
        if not isinstance(position, int) or isinstance(position, bool) or position <= 0:
            raise Malformed("bad_position")
    elif kind == "order":
        quantity, gmv = data.get("quantity"), data.get("gmv")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            raise Malformed("bad_quantity")
        if not isinstance(gmv, int | float) or isinstance(gmv, bool) or gmv < 0:
            raise Malformed("negative_gmv")
    if data["event_ts"] > data["ingested_at"]:
        raise Malformed("future_event_ts")  # staging's rule: it claims to have happened after it landed
    return Event(kind, data["event_id"], data["user_id"], data["product_id"], data["event_ts"], data["ingested_at"])
