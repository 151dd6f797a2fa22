"""Into Feast's SQLite online store: its own upsert, many rows a statement, in primary-key order."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from feast import FeatureView
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.repo_config import RepoConfig

from platform_common.feast_fast_engine.encode import EncodedRows, cached, sqlite_ts
from platform_common.feast_fast_engine.layout import FallBackToFeast, ViewLayout
from platform_common.feast_fast_engine.online_writer import OnlineWriter
from platform_common.feast_fast_engine.query import quote

Batch = tuple[str, list[list[Any]]]  # a statement, and the parameters of each of its executions


class SqliteWriter(OnlineWriter):
    """Feast's SqliteOnlineStore upsert in one transaction, rows in primary-key order (entity key, feature name)
    so both of the table's B-tree indexes are filled in order instead of at random, and many rows per
    statement: one `INSERT ... VALUES (...), (...), ... ON CONFLICT DO UPDATE` of about ROWS_PER_STATEMENT
    rows costs SQLite and the sqlite3 module far less per row than one statement per row. The rows of an
    entity share its key and timestamps through numbered parameters and the feature names are literals of the
    statement, so an entity binds 3 + 2 x features values instead of 6 x features (the rows are distinct keys,
    so the result is the same as Feast's row-by-row upsert; tests/platform_common checks it byte for byte)."""

    timestamp_kind = "sqlite"
    ROWS_PER_STATEMENT = 200  # (entity, feature) rows; measured: a few hundred is best, thousands are slow
    COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")

    def __init__(self, store: SqliteOnlineStore) -> None:
        self.store = store

    in_key_order = True

    def plan(self, config: RepoConfig, fv: FeatureView, layout: ViewLayout) -> Callable[[EncodedRows], list[Batch]]:
        names = sorted(layout.features)
        per_entity = 3 + 2 * len(names)  # key, event, created, then value and text per feature
        limit = _sqlite_variable_limit()
        if per_entity > limit:
            raise FallBackToFeast(f"{len(names)} features exceed SQLite's {limit} parameters per statement")
        per_statement = max(1, min(self.ROWS_PER_STATEMENT // max(1, len(names)), limit // per_entity))
        table = quote(compute_table_id(config.project, fv, config.registry.enable_online_feature_view_versioning))
        statements: dict[int, str] = {}
        to_ts = cached(sqlite_ts)

        def upsert(n_entities: int) -> str:
            if n_entities not in statements:
                statements[n_entities] = _sqlite_upsert(table, self.COLUMNS, names, n_entities)
            return statements[n_entities]

        def batches(rows: EncodedRows) -> list[Batch]:
            if not names:
                return []
            # Parameters in statement order, laid out with strided slice assignments. Blobs as bytearray: the
            # sqlite3 module binds int, float, str and bytearray directly but sends `bytes` through its adapter
            # lookup first, which took ~0.5 us a value, a third of SQLite's whole insert time.
            flat: list[Any] = [None] * (rows.n * per_entity)
            flat[0::per_entity] = list(map(bytearray, rows.entity_keys))
            flat[1::per_entity] = [to_ts(us) for us in rows.event_us]
            flat[2::per_entity] = [to_ts(us) for us in rows.created_us]
            for j, name in enumerate(names):
                flat[3 + 2 * j :: per_entity] = list(map(bytearray, rows.values[name]))
                flat[4 + 2 * j :: per_entity] = rows.texts(name)
            step = per_statement * per_entity  # parameters per full statement
            whole = len(flat) // step * step
            out: list[Batch] = []
            if whole:
                out.append((upsert(per_statement), [flat[k : k + step] for k in range(0, whole, step)]))
            if whole < len(flat):
                out.append((upsert((len(flat) - whole) // per_entity), [flat[whole:]]))
            return out

        return batches

    def write(self, config: RepoConfig, fv: FeatureView, chunks: Iterator[list[Batch]], chunk_rows: int) -> None:
        conn = self.store._get_conn(config)
        with conn:
            for batches in chunks:
                for sql, params in batches:
                    conn.executemany(sql, params)


def _sqlite_upsert(table: str, columns: Sequence[str], names: Sequence[str], n_entities: int) -> str:
    """Feast's upsert for `n_entities` entities of the view's features, numbered parameters per entity."""
    per_entity = 3 + 2 * len(names)
    literals = ["'" + name.replace("'", "''") + "'" for name in names]
    tuples = []
    for e in range(n_entities):
        base = e * per_entity
        for j, name in enumerate(literals):
            tuples.append(f"(?{base + 1}, {name}, ?{base + 4 + 2 * j}, ?{base + 5 + 2 * j}, ?{base + 2}, ?{base + 3})")
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(tuples)} "
        "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
        "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts;"
    )


def _sqlite_variable_limit() -> int:
    """The most parameters a statement may have in this process's SQLite (the limit Feast's connection has)."""
    con = sqlite3.connect(":memory:")
    try:
        return con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        con.close()
