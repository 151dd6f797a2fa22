"""Feast's online byte format, built per column: v3 entity keys, serialised ValueProtos, value_text, timestamps."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import _convert_arrow_to_proto, make_tzaware, to_naive_utc
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from platform_common.feast_fast_engine.layout import SCALAR_FIELDS, FallBackToFeast, ViewLayout


class EncodedRows:
    """One view's latest rows in Feast's online format: entity keys, serialised values, timestamps."""

    def __init__(self, table: pa.Table, layout: ViewLayout) -> None:
        self.table = table
        self.layout = layout
        self.n = table.num_rows
        self.entity_keys: list[bytes] = []
        self.values: dict[str, list[bytes]] = {}
        self.event_us: list[int] = []
        self.created_us: list[int | None] = []
        self._texts: dict[str, list[str | None]] = {}

    @classmethod
    def build(cls, table: pa.Table, layout: ViewLayout, entity_keys: list[bytes]) -> EncodedRows:
        """`entity_keys`: the table's keys in Feast's v3 serialisation (`encode_entity_keys`)."""
        rows = cls(table, layout)
        rows.entity_keys = entity_keys
        for name, vt in layout.feature_types.items():
            rows.values[name] = _encode_column(table.column(name), vt)
        # never null: the window filter on the event timestamp (query.py) drops rows without one
        rows.event_us = cast(list[int], _micros(table.column(layout.timestamp_field)))
        rows.created_us = (
            _micros(table.column(layout.created_field)) if layout.created_field else [None] * table.num_rows
        )
        return rows

    def texts(self, name: str) -> list[str | None]:
        """The value_text column Feast's SQLite store fills (extract_text_and_num): str() of the stored value."""
        if name not in self._texts:
            self._texts[name] = _texts(self.table.column(name), self.layout.feature_types[name])
        return self._texts[name]

    def verify_against_feast(self, fv: FeatureView, timestamp_kind: str) -> None:
        """Re-encode these rows with Feast's own code; any difference hands the view back to Feast."""
        if self.n == 0:
            return
        expected = _convert_arrow_to_proto(self.table, fv, self.layout.join_key_types)
        for i, (key, values, event_ts, created_ts) in enumerate(expected):
            if serialize_entity_key(key, entity_key_serialization_version=3) != self.entity_keys[i]:
                raise FallBackToFeast(f"entity key of row {i} differs from Feast's encoding")
            for name, proto in values.items():
                if proto.SerializeToString() != self.values[name][i]:
                    raise FallBackToFeast(f"value of {name} in row {i} differs from Feast's encoding")
                if timestamp_kind == "sqlite" and feast_text(proto) != self.texts(name)[i]:
                    raise FallBackToFeast(f"value_text of {name} in row {i} differs from Feast's")
            if timestamp_kind == "redis":
                if redis_ts(event_ts) != redis_ts(from_micros(self.event_us[i])):
                    raise FallBackToFeast(f"event timestamp of row {i} differs")
            else:
                if sqlite_ts(event_ts) != sqlite_ts(from_micros(self.event_us[i])):
                    raise FallBackToFeast(f"event timestamp of row {i} differs")
                mine = self.created_us[i]
                # A null created timestamp reaches Feast as NaT, which its SQLite store cannot even write; None here.
                theirs = None if created_ts is None or created_ts != created_ts else sqlite_ts(created_ts)
                if theirs != (None if mine is None else sqlite_ts(from_micros(mine))):
                    raise FallBackToFeast(f"created timestamp of row {i} differs")


def encode_entity_keys(table: pa.Table, layout: ViewLayout) -> list[bytes]:
    """Feast's v3 serialisation (key_encoding_utils.serialize_entity_key) for string and int64 join keys."""
    names = sorted(layout.join_keys)
    head = [struct.pack("<I", len(names))]
    for name in names:
        encoded = name.encode("utf8")
        head.append(struct.pack("<II", ValueType.STRING.value, len(encoded)) + encoded)
    prefix = b"".join(head)
    parts: list[list[bytes]] = []
    for name in names:
        if layout.join_key_types[name] == ValueType.STRING:
            encoded = table.column(name).cast(pa.binary()).to_pylist()
            heads = {n: struct.pack("<II", ValueType.STRING.value, n) for n in {len(v) for v in encoded}}
            parts.append([heads[len(v)] + v for v in encoded])
        else:
            int_tag = struct.pack("<II", ValueType.INT64.value, 8)
            pack = struct.Struct("<q").pack
            parts.append([int_tag + pack(v) for v in table.column(name).to_pylist()])
    if len(parts) == 1:
        return [prefix + p for p in parts[0]]
    return [prefix + b"".join(p) for p in zip(*parts, strict=True)]


# Floating-point values are one tag byte and the IEEE bytes: built for a whole column at once with numpy.
# The tag is taken from protobuf itself, and verify_against_feast compares the result with Feast's encoding.
_FIXED_WIDTH = {
    ValueType.DOUBLE: (ValueProto(double_val=1.0).SerializeToString()[:-8], "<f8"),
    ValueType.FLOAT: (ValueProto(float_val=1.0).SerializeToString()[:-4], "<f4"),
}


def _encode_column(column: pa.ChunkedArray, vt: ValueType) -> list[bytes]:
    """Serialised ValueProto per cell; b"" (an empty Value) for null and NaN, which Feast also treats as null."""
    if vt in _FIXED_WIDTH:
        return _encode_fixed_width(column, vt)
    # Other scalars repeat a lot (counts, categories, ids): serialise each distinct value once.
    field, convert = SCALAR_FIELDS[vt]
    message = ValueProto()
    cache: dict[Any, bytes] = {None: b""}

    def encode(v: Any) -> bytes:
        setattr(message, field, convert(v))
        out = cache[v] = message.SerializeToString()
        return out

    get = cache.get
    return [cell if (cell := get(v)) is not None else encode(v) for v in column.to_pylist()]


def _encode_fixed_width(column: pa.ChunkedArray, vt: ValueType) -> list[bytes]:
    tag, dtype = _FIXED_WIDTH[vt]
    values = column.to_numpy(zero_copy_only=False).astype(dtype)  # nulls arrive as NaN
    n, width = len(values), len(tag) + np.dtype(dtype).itemsize
    if n == 0:
        return []
    cells = np.empty((n, width), dtype=np.uint8)
    cells[:, : len(tag)] = np.frombuffer(tag, dtype=np.uint8)
    cells[:, len(tag) :] = values.view(np.uint8).reshape(n, -1)
    raw = cells.tobytes()
    out = [raw[i : i + width] for i in range(0, n * width, width)]
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = b""
    return out


def _texts(column: pa.ChunkedArray, vt: ValueType) -> list[str | None]:
    values = column.to_pylist()
    if vt == ValueType.STRING:
        return values
    if vt == ValueType.FLOAT:  # the stored float32, widened back the way protobuf returns it
        values = [None if v is None else float(np.float32(v)) for v in values]
    texts: list[str | None] = list(map(str, values))
    missing = pc.is_null(column, nan_is_null=True) if pa.types.is_floating(column.type) else column.is_null()
    for i in np.flatnonzero(missing.to_numpy(zero_copy_only=False)).tolist():
        texts[i] = None
    return texts


def feast_text(proto: ValueProto) -> str | None:
    kind = proto.WhichOneof("val")
    if kind is None:
        return None
    if kind == "string_val":
        return proto.string_val
    return str(getattr(proto, kind))


def _micros(column: pa.ChunkedArray) -> list[int | None]:
    if not pa.types.is_timestamp(column.type):
        raise FallBackToFeast(f"timestamp column of type {column.type}")
    return pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64()).to_pylist()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def redis_ts(value: datetime) -> bytes:
    ts = Timestamp()
    ts.FromDatetime(make_tzaware(value))
    return ts.SerializeToString()


def sqlite_ts(value: datetime) -> int:
    # What Feast's SQLite store stores: to_naive_utc, then its registered adapter int(naive.timestamp()).
    return int(to_naive_utc(value).timestamp())


def cached(fn: Callable[[datetime], Any]) -> Callable[[int | None], Any]:
    cache: dict[int | None, Any] = {None: None}

    def convert(us: int | None) -> Any:
        try:
            return cache[us]
        except KeyError:
            out = cache[us] = fn(from_micros(us))  # type: ignore[arg-type]
            return out

    return convert
