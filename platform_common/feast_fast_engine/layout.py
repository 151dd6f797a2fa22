"""What the fast engine knows how to reproduce exactly: a view's names and types, and the exception that hands
everything else back to Feast's own engine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from feast import FeatureView
from feast.utils import make_tzaware
from feast.value_type import ValueType

# One logger for the whole package, under the name it had as one module (tests and operators filter on it).
log = logging.getLogger("shoprank.feast_fast_engine")

# Feast value type -> (ValueProto field, python conversion) for the scalar types encoded here.
SCALAR_FIELDS: dict[ValueType, tuple[str, Callable[[Any], Any]]] = {
    ValueType.STRING: ("string_val", str),
    ValueType.INT64: ("int64_val", int),
    ValueType.INT32: ("int32_val", int),
    ValueType.DOUBLE: ("double_val", float),
    ValueType.FLOAT: ("float_val", float),
    ValueType.BOOL: ("bool_val", bool),
}
JOIN_KEY_TYPES = {ValueType.STRING, ValueType.INT64}


class FallBackToFeast(Exception):
    """This view is outside what the fast path reproduces exactly: Feast's local engine takes it."""


class ViewLayout:
    """Names and types of one feature view, as Feast's materialization sees them."""

    def __init__(self, fv: FeatureView) -> None:
        self.fv = fv
        self.source = fv.batch_source
        if self.source is None:
            raise FallBackToFeast("no batch source")
        self.timestamp_field = self.source.timestamp_field
        self.created_field = self.source.created_timestamp_column or None
        self.mapping = dict(self.source.field_mapping or {})  # source column -> view name
        self.reverse = {v: k for k, v in self.mapping.items()}
        self.join_key_types = {c.name: c.dtype.to_value_type() for c in fv.entity_columns}
        self.join_keys = list(self.join_key_types)
        if not self.join_keys:
            raise FallBackToFeast("entityless view")
        self.feature_types = {f.name: f.dtype.to_value_type() for f in fv.features}
        self.features = list(self.feature_types)
        for name, vt in self.join_key_types.items():
            if vt not in JOIN_KEY_TYPES:
                raise FallBackToFeast(f"join key {name} of type {vt.name}")
        for name, vt in self.feature_types.items():
            if vt not in SCALAR_FIELDS:
                raise FallBackToFeast(f"feature {name} of type {vt.name}")
        if self.timestamp_field in self.mapping or (self.created_field and self.created_field in self.mapping):
            raise FallBackToFeast("mapped timestamp columns")

    @classmethod
    def of(cls, fv: FeatureView) -> ViewLayout:
        return cls(fv)

    def source_column(self, name: str) -> str:
        return self.reverse.get(name, name)


def utc(value: datetime) -> datetime:
    return make_tzaware(value).astimezone(UTC)
