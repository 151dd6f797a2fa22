"""A faster point-in-time join behind `get_historical_features`: a Feast offline-store plugin.

Select it in feature_store.yaml (both profiles do):

    offline_store:
      type: platform_common.feast_offline_store.AsofDuckDBOfflineStore

`store.get_historical_features(entity_df, features, ...)` stays the call. The store is Feast's DuckDB offline
store with one method replaced: the join runs as a single DuckDB query of ASOF LEFT JOINs (one per feature
view) straight over the FileSources' parquet files, with Feast's semantics to the row: per entity row and
view, the newest row with `event_timestamp <= t`, not older than the view's TTL (`event_timestamp + ttl >=
t`), with `created_timestamp <= t` under `filter_by_created_timestamp`, ties broken by the later created
timestamp (see `sql.py` for how). Feast's own join (an inner join of every entity row with every candidate
row, then a window per entity row, through ibis) took 2.5x a hand-written ASOF join on the same rows; see
docs/benchmarks.md for the numbers after this plugin.

Its RetrievalJob returns Arrow or pandas, and `persist(SavedDatasetFileStorage(path))` streams the query
into a parquet file with DuckDB's `COPY ... TO`, so a training set larger than memory never passes through
Python. The file's rows are ordered by the entity event timestamp, then the entity rows' input order (Feast
promises no order; `to_df` keeps none); timestamps are microsecond UTC. The entity rows may also be a DuckDB
query string.

A request the ASOF join does not reproduce exactly (a source that is not a local parquet file, substrait
on-demand views, a feature named like an entity column) is handed to Feast's own DuckDB join with a warning.

Modules, each importing only those above it: plan (Feast's arguments as column names), sql (the query),
job (the RetrievalJob), store (the OfflineStore and its config).
"""

from platform_common.feast_offline_store.job import AsofRetrievalJob
from platform_common.feast_offline_store.store import (
    STORE_TYPE,
    AsofDuckDBOfflineStore,
    AsofDuckDBOfflineStoreConfig,
)

__all__ = ["STORE_TYPE", "AsofDuckDBOfflineStore", "AsofDuckDBOfflineStoreConfig", "AsofRetrievalJob"]
