"""Feast feature views and the dbt marts behind them cannot drift apart: same columns, same types."""

from __future__ import annotations

import glob

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast.types import Float64, Int64, String

from platform_common.feast_config import get_feature_store

FEAST_TO_ARROW = {Int64: pa.int64(), Float64: pa.float64(), String: pa.string()}
# plan_date: the day a campaign plan row describes (product_campaign_plan), as feature_date for the daily marts
BOOKKEEPING = {"event_timestamp", "created_timestamp", "feature_date", "plan_date"}
# the stream log's (platform_common/stream_log.py): the event time a row describes and its newest event
STREAM_LOG_BOOKKEEPING = {"event_time", "last_event_id"}


def read_source_schema(path: str) -> pa.Schema:
    """A mart's schema, or for the stream log's glob of parts the first part's (all share one schema)."""
    return pq.read_schema(sorted(glob.glob(path))[0] if glob.has_magic(path) else path)


@pytest.fixture(scope="module")
def views(tiny_platform):
    return get_feature_store(tiny_platform).list_feature_views()


def test_every_model_view_is_registered(views):
    assert {v.name for v in views} >= {
        "user_features",
        "user_category_features",
        "product_features",
        "merchant_features",
    }


def test_feature_views_match_their_dbt_marts(views):
    problems = []
    for view in views:
        schema = read_source_schema(view.batch_source.path)
        columns = {f.name: f.type for f in schema}
        to_feast = dict(view.batch_source.field_mapping)
        to_mart = {v: k for k, v in to_feast.items()}
        join_keys = {c.name for c in view.entity_columns}
        for field in view.features:
            mart_col = to_mart.get(field.name, field.name)
            if mart_col not in columns:
                problems.append(f"{view.name}.{field.name}: no column {mart_col} in the mart")
            elif columns[mart_col] != FEAST_TO_ARROW[field.dtype]:
                problems.append(f"{view.name}.{field.name}: mart {columns[mart_col]} vs feast {field.dtype}")
        declared = {to_mart.get(f.name, f.name) for f in view.features} | join_keys | BOOKKEEPING
        if view.stream_source is not None:
            declared |= STREAM_LOG_BOOKKEEPING
        for extra in sorted(set(columns) - declared):
            problems.append(f"{view.name}: mart column {extra} is not declared in the feature view")
        for ts in ("event_timestamp", "created_timestamp"):
            if not (pa.types.is_timestamp(columns[ts]) and columns[ts].unit == "us" and columns[ts].tz):
                problems.append(f"{view.name}.{ts}: {columns[ts]} is not a microsecond UTC timestamp")
    assert not problems, "\n".join(problems)
