"""What the join reads of each feature view: Feast's arguments turned into plain column names, no SQL yet.

Every rule here mirrors `feast.infra.offline_stores.ibis.get_historical_features_ibis` (the DuckDB store's
join), which is the reference the tests compare against:

- the source's `field_mapping` renames source columns to Feast names before anything else, so every name
  below (join keys, features, timestamps) is a Feast name, read from the source column that maps to it;
- a view's join keys are its projection's `join_key_map` (feature column -> entity column) or, without one,
  its entity columns under their own names;
- a view's features are the refs that start with `projection.name_to_use() + ":"`, in the order of the refs;
  with `full_feature_names` they are output as `<name_alias or view name>__<feature>` (no version suffix);
- a TTL that is None or zero means no TTL.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from feast import FeatureView, FileSource
from feast.data_format import ParquetFormat


class UnsupportedByPlugin(Exception):
    """Raised while planning when a request needs something the ASOF join does not reproduce; the store then
    hands the whole request to Feast's own DuckDB join."""


@dataclass(frozen=True)
class Feature:
    source_column: str  # the column in the parquet file
    output_name: str  # the column in the result (Feast's naming, with or without the view prefix)


@dataclass(frozen=True)
class ViewPlan:
    name: str
    path: str  # a local parquet file
    join_keys: tuple[tuple[str, str], ...]  # (source column, entity column)
    timestamp_column: str  # source column of the event timestamp
    created_column: str | None  # source column of the created timestamp, if the source has one
    features: tuple[Feature, ...]
    ttl: timedelta | None

    @property
    def ttl_microseconds(self) -> int | None:
        if self.ttl is None:
            return None
        return self.ttl // timedelta(microseconds=1)


def plan_views(
    feature_views: Sequence[FeatureView], feature_refs: Sequence[str], full_feature_names: bool
) -> list[ViewPlan]:
    return [plan_view(view, feature_refs, full_feature_names) for view in feature_views]


def plan_view(view: FeatureView, feature_refs: Sequence[str], full_feature_names: bool) -> ViewPlan:
    if not isinstance(view, FeatureView):
        raise UnsupportedByPlugin(f"{view.name} is a {type(view).__name__}, not a FeatureView")
    source = view.batch_source
    if not _is_local_parquet(source):
        raise UnsupportedByPlugin(f"the source of {view.name} is not a local parquet FileSource")
    assert isinstance(source, FileSource)  # narrowed by _is_local_parquet
    # Feast renames source -> Feast name; we read Feast name <- source column.
    source_of = {feast_name: source_name for source_name, feast_name in source.field_mapping.items()}

    def column(name: str) -> str:
        return source_of.get(name, name)

    prefix = view.projection.name_to_use()
    base_name = view.projection.name_alias or view.name
    wanted = [ref.split(":")[1] for ref in feature_refs if ref.startswith(f"{prefix}:")]
    features = tuple(
        Feature(source_column=column(f), output_name=f"{base_name}__{f}" if full_feature_names else f) for f in wanted
    )
    key_map = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
    created = source.created_timestamp_column or None
    ttl = view.ttl if view.ttl else None  # Feast: `if ttl:`, so timedelta(0) is "no TTL"
    return ViewPlan(
        name=view.name,
        path=source.path,
        join_keys=tuple((column(k), v) for k, v in key_map.items()),
        timestamp_column=column(source.timestamp_field),
        created_column=column(created) if created else None,
        features=features,
        ttl=ttl,
    )


def _is_local_parquet(source: object) -> bool:
    """A FileSource Feast's DuckDB store would read with `ibis.read_parquet(path)` from the local disk."""
    if type(source) is not FileSource or not source.path or "://" in source.path:
        return False
    parquet = isinstance(source.file_format, ParquetFormat) or (
        source.file_format is None and source.path.endswith(".parquet")
    )
    return parquet and (os.path.isfile(source.path) or _is_glob_of_files(source.path))


def _is_glob_of_files(path: str) -> bool:
    """A glob of local parquet files with at least one match (the stream log's parts): DuckDB's read_parquet
    reads them as one table, as Feast's store does through ibis."""
    return glob.has_magic(path) and any(os.path.isfile(p) for p in glob.iglob(path))
