"""The offline store: Feast's DuckDB store with `get_historical_features` answered by one ASOF-join query.

Everything else (`pull_latest_from_table_or_query` and `pull_all_from_table_or_query` behind materialization,
`offline_write_batch`, logging, monitoring) is inherited from Feast's DuckDBOfflineStore unchanged, and so is
the config: the config class extends DuckDBOfflineStoreConfig, whose `isinstance` checks Feast's monitoring
code makes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureView
from feast.errors import EntityTimestampInferenceException
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from pydantic import StrictInt, StrictStr

from platform_common.feast_offline_store.job import AsofRetrievalJob
from platform_common.feast_offline_store.plan import UnsupportedByPlugin, ViewPlan, plan_views
from platform_common.feast_offline_store.sql import ROW_ID, ViewMode, join_sql, late_created_sql, order_by_sql, quote

log = logging.getLogger("shoprank.feast_offline_store")

STORE_TYPE = "platform_common.feast_offline_store.AsofDuckDBOfflineStore"
DEFAULT_EVENT_TIMESTAMP = "event_timestamp"
_ENTITY_VIEW = "__shoprank_entity_rows"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Feast finds this class from `offline_store.type` (the store's class path + "Config")."""

    type: StrictStr = STORE_TYPE
    # DuckDB settings of the join's connection; unset keeps DuckDB's defaults (80% of RAM, all cores, spill
    # files in a `.tmp` folder of the working directory).
    memory_limit: StrictStr | None = None
    temp_directory: StrictStr | None = None
    threads: StrictInt | None = None


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        """Feast's point-in-time join, as an ASOF join. `entity_df` is a pandas frame or, unlike Feast's DuckDB
        store, a DuckDB query (e.g. `select * from read_parquet('labels.parquet')`), so entity rows need not
        pass through pandas. A request the ASOF join does not cover (sources that are not local parquet,
        substrait on-demand views, a feature named like an entity column) goes to Feast's own join."""
        try:
            return build_job(config, feature_views, feature_refs, entity_df, registry, project, full_feature_names,
                             filter_by_created_timestamp)  # fmt: skip
        except UnsupportedByPlugin as exc:
            if isinstance(entity_df, str):
                raise ValueError(f"an entity query needs the ASOF join, which cannot serve it: {exc}") from exc
            log.warning("point-in-time join handed to Feast's DuckDB store: %s", exc)
            return DuckDBOfflineStore.get_historical_features(
                config=config,
                feature_views=feature_views,
                feature_refs=feature_refs,
                entity_df=entity_df,
                registry=registry,
                project=project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
            )


def connect(config: RepoConfig) -> Any:
    con = duckdb.connect()
    # Timestamps come out as TIMESTAMP WITH TIME ZONE; in UTC, Arrow and pandas get microsecond UTC columns.
    con.execute("set TimeZone = 'UTC'")
    store_config = config.offline_store
    for setting in ("memory_limit", "temp_directory", "threads"):
        value = getattr(store_config, setting, None)
        if value is not None:
            con.execute(f"set {setting} = ?", [value])
    return con


def build_job(
    config: RepoConfig,
    feature_views: Sequence[FeatureView],
    feature_refs: Sequence[str],
    entity_df: pd.DataFrame | str,
    registry: BaseRegistry,
    project: str,
    full_feature_names: bool,
    filter_by_created_timestamp: bool,
) -> AsofRetrievalJob:
    odfvs = OnDemandFeatureView.get_requested_odfvs(list(feature_refs), project, registry)
    if any(odfv.mode == "substrait" for odfv in odfvs):
        raise UnsupportedByPlugin("substrait on-demand views transform Feast's ibis table")
    plans = plan_views(feature_views, feature_refs, full_feature_names)
    con = connect(config)
    keep_alive: object = None
    if not isinstance(entity_df, str) and ROW_ID in entity_df.columns:
        raise UnsupportedByPlugin(f"the entity rows have a column named {ROW_ID}, the join's own row id")
    if isinstance(entity_df, str):
        relation = f"(select *, row_number() over () as {quote(ROW_ID)} from ({entity_df}))"
    else:
        # An Arrow copy with the row id appended: scanning the frame in place through a positional join with
        # the row numbers took minutes at a million labels. The table must outlive the job (keep_alive).
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
        keep_alive = table.append_column(ROW_ID, pa.array(np.arange(len(table), dtype=np.int64)))
        con.register(_ENTITY_VIEW, keep_alive)
        relation = _ENTITY_VIEW
    schema = con.sql(f"select * exclude ({quote(ROW_ID)}) from {relation} limit 0")
    columns = list(schema.columns)
    types = [str(t) for t in schema.types]
    event_timestamp = infer_event_timestamp(columns, types)
    timestamp_columns = [c for c, t in zip(columns, types, strict=True) if c == event_timestamp or _is_timestamp(t)]
    _check_names(plans, columns)
    modes = [_mode(con, plan, filter_by_created_timestamp) for plan in plans]
    query = join_sql(
        relation,
        columns,
        event_timestamp,
        timestamp_columns,
        plans,
        modes,
        filter_by_created_timestamp,
    )

    def metadata() -> RetrievalMetadata:
        t = quote(event_timestamp)
        rows = con.sql(f"select min({t}::timestamptz), max({t}::timestamptz) from {relation}").fetchall()
        low, high = rows[0]
        return RetrievalMetadata(
            features=list(feature_refs),
            keys=[c for c in columns if c != event_timestamp],
            min_event_timestamp=_as_datetime(low),
            max_event_timestamp=_as_datetime(high),
        )

    return AsofRetrievalJob(
        connection=con,
        query=query,
        persist_order=order_by_sql(event_timestamp),
        full_feature_names=full_feature_names,
        on_demand_feature_views=[odfv for odfv in odfvs if odfv.mode != "substrait"],
        metadata=metadata,
        repo_path=str(config.repo_path) if config.repo_path else None,
        keep_alive=keep_alive,
    )


def infer_event_timestamp(columns: Sequence[str], types: Sequence[str]) -> str:
    """Feast's rule (offline_utils.infer_event_timestamp_from_entity_df): `event_timestamp` if present, else the
    one timestamp column."""
    if DEFAULT_EVENT_TIMESTAMP in columns:
        return DEFAULT_EVENT_TIMESTAMP
    stamps = [c for c, t in zip(columns, types, strict=True) if _is_timestamp(t)]
    if len(stamps) == 1:
        return stamps[0]
    raise EntityTimestampInferenceException(DEFAULT_EVENT_TIMESTAMP)


def _is_timestamp(duckdb_type: str) -> bool:
    return duckdb_type.startswith("TIMESTAMP")


def _check_names(plans: Sequence[ViewPlan], entity_columns: Sequence[str]) -> None:
    for plan in plans:
        if not plan.join_keys:
            raise UnsupportedByPlugin(f"{plan.name} has no join keys")
        missing = [e for _, e in plan.join_keys if e not in entity_columns]
        if missing:
            # Feast's own join fails on these too, with its message.
            raise UnsupportedByPlugin(f"entity rows lack the join keys {missing} of {plan.name}")
        clashes = [f.output_name for f in plan.features if f.output_name in entity_columns]
        if clashes:
            # Feast's join keeps the entity column and drops the feature: rare enough to leave to Feast.
            raise UnsupportedByPlugin(f"features {clashes} of {plan.name} are named like entity columns")


def _mode(con: Any, plan: ViewPlan, filter_by_created_timestamp: bool) -> ViewMode:
    """The rank shape unless the created filter applies and some row was created after its event time."""
    if not filter_by_created_timestamp or plan.created_column is None:
        return ViewMode.RANK
    late = con.sql(late_created_sql(plan)).fetchall()[0][0]
    return ViewMode.RECORD if late else ViewMode.RANK


def _as_datetime(value: object) -> datetime | None:
    if value is None:
        return None
    return pd.Timestamp(value).to_pydatetime()
