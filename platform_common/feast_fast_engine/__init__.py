"""A faster write path behind `feast materialize`: a Feast batch-engine plugin.

Select it in feature_store.yaml (the prod profile does):

    batch_engine:
      type: platform_common.feast_fast_engine.FastComputeEngine

`feast materialize` / `materialize-incremental` stay the entry points: Feast still computes the intervals,
marks views as materializing and records the materialization in the registry; it hands every view of a run to
this engine at once (its batch path), and one job per view comes back. Profiling Feast's default local engine
shows where its time goes: one ValueProto per cell built through generic Python type dispatch, one
EntityKeyProto per row serialised through protobuf, then one SQLite statement per (entity, feature) or one
redis-py pipeline call per row. This engine keeps Feast's storage format byte for byte and only changes how the
bytes are produced and shipped:

- read: the latest row per entity in [start, end] in one DuckDB query (`arg_max` over event then created time,
  Feast's tie-break, ranked as one 128-bit integer for microsecond timestamps) straight from the FileSource's
  parquet, instead of pulling every row and deduplicating in pandas; sources that are not local parquet go
  through the configured offline store's `pull_all_from_table_or_query` and the same query runs on the Arrow
  table;
- encode: entity keys in Feast's v3 layout built from the join-key bytes; float columns serialised for the whole
  column at once with numpy, other scalars once per distinct value through protobuf; timestamps once per
  distinct value;
- write: SQLite through `executemany` of Feast's own upsert statement, in primary-key order; Redis as raw RESP
  `HSET`s pipelined in chunks over one connection of the store's client, after reading the stored timestamps of
  the chunk (one `EVAL` returning them all) so that, as in Feast, a row never overwrites a newer one;
- overlap: a reading thread encodes the next chunks while this thread writes, and the largest view's query
  starts at once on a third thread (see `FastComputeEngine.materialize`).

A Redis without persistence that restarts comes back empty while the registry still says the views are
materialized; `materialize-incremental` would then only add the newest rows. The engine keeps a watermark per
view in Redis itself (lost with the data, or older after a restore) and reads from it, or from the TTL horizon,
when that is earlier than the window Feast asks for (see RedisWriter.resume_from).

Everything it does not know how to reproduce exactly (transformations, aggregations, offline writes, vector or
list features, Redis cluster/sentinel, other online stores) is handed to Feast's own local engine unchanged.
Before writing, it re-encodes the first rows of every view with Feast's own functions (`_convert_arrow_to_proto`,
`serialize_entity_key`) and falls back to Feast's engine, with a warning, if a single byte differs. The data is
read back through Feast's unchanged online stores (`get_online_features`); `make bench-materialize` checks the
reads are identical to the default path's.

Modules, each importing only those above it: layout (view names and types, FallBackToFeast), query (the DuckDB
read), encode (the byte format), online_writer (the writer interface), sqlite_writer, redis_writer (with the one
RESP round trip), engine (the Feast engine, its threads).
"""

from platform_common.feast_fast_engine.engine import ENGINE_TYPE, FastComputeEngine, FastComputeEngineConfig
from platform_common.feast_fast_engine.layout import FallBackToFeast
from platform_common.feast_fast_engine.redis_writer import RedisWriter
from platform_common.feast_fast_engine.sqlite_writer import SqliteWriter

__all__ = [
    "ENGINE_TYPE",
    "FallBackToFeast",
    "FastComputeEngine",
    "FastComputeEngineConfig",
    "RedisWriter",
    "SqliteWriter",
]
