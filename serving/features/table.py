"""Feature views held in memory as numpy columns, and one request's vectors gathered from them.

Shared by the snapshot mode (every row of every view, loaded at once) and the direct mode (the rows of one
request, read per request): both build ViewTables and answer through `assemble`, so they serve the same values.
Values are what Feast's `get_online_features(...).to_dict()` returns, converted by Feast's own value converter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.features.base import FeatureVectors
from serving.features.routing import REQUEST_KEYED_VIEWS, ROUTES, ROUTING_FEATURES, STREAM_VIEWS, Lookup

if TYPE_CHECKING:
    from platform_common.feature_spec import FeatureSpec


@dataclass(frozen=True)
class ViewTable:
    """Every row of one feature view. Row `n` (one past the last) is an all-missing sentinel: unknown and stale
    entities are pointed at it, so one fancy index serves present, absent and expired rows alike."""

    name: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    kinds: dict[str, str]  # feature -> "int" | "float" | "bool" | "str" (how Feast returns it)
    index: dict[Any, int]  # entity key (the value, or a tuple in join_keys order) -> row
    numeric: dict[str, np.ndarray]  # float64, NaN where missing; length n + 1
    null: dict[str, np.ndarray]  # bool, True where Feast returns None (numeric features only); length n + 1
    objects: dict[str, np.ndarray]  # object arrays (strings, None where missing); length n + 1
    ts: np.ndarray  # int64 event-timestamp seconds per row, 0 for the sentinel
    ttl_seconds: float | None
    _codes: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.ts) - 1

    def rows(self, keys: Iterable[Any], count: int) -> np.ndarray:
        get, n = self.index.get, self.n
        return np.fromiter((get(k, n) for k in keys), dtype=np.intp, count=count)

    def expire(self, idx: np.ndarray, now_s: float) -> int:
        """Point rows older than the TTL at the sentinel (in place); how many there were."""
        if self.ttl_seconds is None:
            return 0
        ts = self.ts[idx]
        stale = (ts > 0) & ((now_s - ts) > self.ttl_seconds)
        count = int(stale.sum())
        if count:
            idx[stale] = self.n
        return count

    def column(self, name: str, idx: np.ndarray) -> np.ndarray:
        return self.numeric[name][idx] if name in self.numeric else self.objects[name][idx]

    def codes(self, name: str, vocabulary: tuple[str, ...]) -> np.ndarray:
        """float32 vocabulary index of every row's value of a string feature (NaN: missing or unknown),
        cached per vocabulary: the same encoding as `FeatureSpec.encode`."""
        key = (name, vocabulary)
        table = self._codes.get(key)
        if table is None:
            lookup = {v: float(i) for i, v in enumerate(vocabulary)}
            values = self.objects[name]
            table = np.fromiter((lookup.get(v, np.nan) for v in values), dtype=np.float32, count=len(values))
            self._codes[key] = table
        return table

    def python_value(self, name: str, row: int) -> Any:
        """The value as Feast's `to_dict` returns it (for parity checks and logs)."""
        if name in self.objects:
            return self.objects[name][row]
        if self.null[name][row]:
            return None
        v = float(self.numeric[name][row])
        kind = self.kinds[name]
        return int(v) if kind == "int" else bool(v) if kind == "bool" else v


def table_from_columns(
    name: str,
    join_keys: tuple[str, ...],
    features: Sequence[str],
    kinds: dict[str, str],
    keys: list[Any],
    stamps: list[int],
    values: list[list[Any]],
    ttl_seconds: float | None,
) -> ViewTable:
    """A ViewTable from per-entity keys, event seconds and Python values (None: missing); adds the sentinel."""
    n = len(keys)
    index = {k: i for i, k in enumerate(keys)}
    ts = np.zeros(n + 1, dtype=np.int64)
    ts[:n] = stamps
    numeric: dict[str, np.ndarray] = {}
    null: dict[str, np.ndarray] = {}
    objects: dict[str, np.ndarray] = {}
    for f, py in zip(features, values, strict=True):
        py = [*py, None]
        if kinds[f] == "str":
            arr = np.empty(n + 1, dtype=object)
            arr[:] = py
            objects[f] = arr
        else:
            null[f] = np.fromiter((v is None for v in py), dtype=bool, count=n + 1)
            numeric[f] = np.fromiter((np.nan if v is None else float(v) for v in py), dtype=np.float64, count=n + 1)
    return ViewTable(name, join_keys, tuple(features), kinds, index, numeric, null, objects, ts, ttl_seconds)


SCALAR_ATTRS = frozenset({"int64_val", "int32_val", "double_val", "float_val", "string_val", "bool_val"})


def python_value(proto: Any) -> Any:
    """Feast's `feast_value_type_to_python_type`, with its scalar case (getattr of the set field) inlined."""
    from feast.type_map import feast_value_type_to_python_type

    which = proto.WhichOneof("val")
    if which is None:
        return None
    if which in SCALAR_ATTRS:
        return getattr(proto, which)
    return feast_value_type_to_python_type(proto)


class FastVectors(FeatureVectors):
    """FeatureVectors whose columns are numpy arrays and whose model matrix is gathered, not rebuilt."""

    _sources: dict[str, tuple[ViewTable, np.ndarray]]  # feature -> its view table and the request's rows in it

    def __init__(
        self,
        columns: dict[str, Sequence[Any] | np.ndarray],
        known_user: bool,
        known_products: list[bool],
        stale: dict[str, int],
        sources: dict[str, tuple[ViewTable, np.ndarray]],
    ) -> None:
        super().__init__(columns=columns, known_user=known_user, known_products=known_products, stale=stale)
        object.__setattr__(self, "_sources", sources)

    def model_matrix(self, spec: FeatureSpec, context: Mapping[str, Sequence[Any]], n_rows: int) -> np.ndarray:
        out = np.empty((n_rows, len(spec.columns)), dtype=np.float32)
        derived = spec.derive(self.columns, n_rows)  # FeatureSpec.matrix's own derivation, from the raw strings
        for j, name in enumerate(spec.numeric):
            if name in derived:
                out[:, j] = derived[name]
            elif name in self.columns:
                out[:, j] = self.columns[name]
            else:  # request context: one value for every row
                out[:, j] = np.float32(context[name][0]) if n_rows else 0
        offset = len(spec.numeric)
        for j, name in enumerate(spec.categorical):
            source = self._sources.get(name)
            if source is not None:
                table, idx = source
                out[:, offset + j] = table.codes(name, spec.vocabularies[name])[idx]
            else:
                out[:, offset + j] = spec.encode(name, list(context[name]))
        return out


def route(products: ViewTable, user_id: str, product_ids: Sequence[str]) -> tuple[Lookup, np.ndarray]:
    """Step two's keys from the product rows as stored (before the TTL rule), and those rows."""
    stored = products.rows(product_ids, len(product_ids))
    lookup = Lookup.route(user_id, product_ids, {f: products.objects[f][stored].tolist() for f in ROUTING_FEATURES})
    return lookup, stored


def assemble(
    tables: Mapping[str, ViewTable],
    features: Mapping[str, Sequence[str]],
    lookup: Lookup,
    stored: np.ndarray,
    now_s: float,
) -> FastVectors:
    """The same columns, flags and stale counts as the feast reader, from view tables holding the request's rows.

    `lookup` and `stored` come from `route` on `tables["product_features"]`."""
    n = len(lookup.product_ids)
    stale: dict[str, int] = {}
    sources: dict[str, tuple[ViewTable, np.ndarray]] = {}

    def take(view: str, idx: np.ndarray) -> np.ndarray:
        table = tables[view]
        expired = table.expire(idx, now_s)
        if expired:
            stale[view] = expired
        for f in table.features:
            sources[f] = (table, idx)
        return idx

    users = tables["user_features"]
    u_idx = take("user_features", np.full(n, users.index.get(lookup.user_id, users.n), dtype=np.intp))
    take("product_features", stored.copy())
    for view in STREAM_VIEWS + REQUEST_KEYED_VIEWS:  # keyed by the user or the candidate: no routing
        if view in tables:
            table = tables[view]
            take(view, table.rows(lookup.keys(table.join_keys), n))
    # The entity columns, as get_online_features echoes them: the request's ids and the looked-up keys.
    columns: dict[str, Any] = {
        "user_id": np.full(n, lookup.user_id, dtype=object),
        "product_id": np.array(lookup.product_ids, dtype=object),
    }
    second = [r.view for r in ROUTES if r.view in tables]
    if second:
        columns.update({r.key: np.array(lookup.routed[r.key], dtype=object) for r in ROUTES})
        for view in second:
            table = tables[view]
            take(view, table.rows(lookup.keys(table.join_keys), n))
    columns.update({f: table.column(f, idx) for f, (table, idx) in sources.items()})
    urow = int(u_idx[0]) if n else users.n
    known_user = any(users.python_value(f, urow) is not None for f in features["user_features"])
    return FastVectors(columns, known_user, lookup.known_products, stale, sources)
