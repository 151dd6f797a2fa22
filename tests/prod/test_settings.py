"""Profile settings, the rendered prod config and the fast engine's encoders: no server needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
import yaml
from pydantic import ValidationError

from platform_common.connections import key_project, pg_connect_kwargs
from platform_common.feast_config import render_feature_store_yaml
from platform_common.settings import Settings, export_env

SECRET = "not-a-real-password-0123"


def prod(tmp_path, **kwargs) -> Settings:
    return Settings(home=tmp_path, profile="prod", **kwargs)


def test_local_profile_is_unchanged(tmp_path):
    s = Settings(home=tmp_path)
    assert s.profile == "local"
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    config = yaml.safe_load(render_feature_store_yaml(s).read_text())
    assert config["online_store"] == {"type": "sqlite", "path": str(s.feast_dir / "online_store.db")}
    assert config["registry"]["registry_type"] == "file"
    assert "batch_engine" not in config


def test_prod_defaults_point_at_local_servers(tmp_path, monkeypatch):
    for var in ("SHOPRANK_PG_HOST", "SHOPRANK_PG_PORT", "SHOPRANK_PG_DATABASE", "SHOPRANK_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    s = prod(tmp_path)
    assert s.tracking_uri == (
        "postgresql://postgres@127.0.0.1:5432/shoprank?connect_timeout=5&options=-csearch_path%3Dmlflow"
    )
    assert s.feast_registry_url.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/shoprank?")
    assert s.feast_registry_url.endswith("search_path%3Dfeast")
    assert (s.redis_host, s.redis_port, s.redis_db) == ("127.0.0.1", 6379, 0)
    assert s.artifact_root == tmp_path.resolve() / "mlflow" / "artifacts"


def test_prod_settings_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPRANK_PROFILE", "prod")
    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPRANK_PG_HOST", "db.internal")
    monkeypatch.setenv("SHOPRANK_PG_PORT", "6543")
    monkeypatch.setenv("SHOPRANK_PG_DATABASE", "shoprank_staging")
    monkeypatch.setenv("SHOPRANK_PG_PASSWORD", SECRET)
    monkeypatch.setenv("SHOPRANK_REDIS_URL", "redis://cache.internal:6380/2")
    monkeypatch.setenv("SHOPRANK_FEAST_PROJECT", "shoprank_staging")
    s = Settings()
    assert s.tracking_uri.startswith("postgresql://postgres@db.internal:6543/shoprank_staging?")
    assert SECRET not in s.tracking_uri and SECRET not in s.feast_registry_url and SECRET not in repr(s)
    assert pg_connect_kwargs(s)["password"] == SECRET
    env = export_env(s)
    assert env["SHOPRANK_PG_DATABASE"] == "shoprank_staging" and env["SHOPRANK_FEAST_PROJECT"] == "shoprank_staging"


def test_rendered_prod_yaml_refers_to_the_password_never_contains_it(tmp_path):
    s = prod(
        tmp_path,
        pg_password=SECRET,
        redis_password=SECRET,
        redis_url="rediss://cache:6380/3",
        feast_project="shoprank_ci_1",
        pg_database="shoprank_ci_1",
    )
    text = render_feature_store_yaml(s).read_text()
    assert SECRET not in text
    config = yaml.safe_load(text)
    assert config["project"] == "shoprank_ci_1"
    assert config["registry"]["registry_type"] == "sql"
    assert config["registry"]["path"] == s.feast_registry_url
    assert config["registry"]["sqlalchemy_config_kwargs"]["connect_args"] == {"password": "${SHOPRANK_PG_PASSWORD}"}
    assert config["online_store"] == {
        "type": "redis",
        "connection_string": "cache:6380,db=3,socket_connect_timeout=5,ssl=true,password=${SHOPRANK_REDIS_PASSWORD}",
    }
    assert config["batch_engine"]["type"] == "platform_common.feast_fast_engine.FastComputeEngine"


def test_feast_expands_the_password_when_it_loads_the_rendered_yaml(tmp_path, monkeypatch):
    from feast.repo_config import load_repo_config

    monkeypatch.setenv("SHOPRANK_PG_PASSWORD", SECRET)
    s = prod(tmp_path, pg_password=SECRET)
    config = load_repo_config(tmp_path, render_feature_store_yaml(s))
    assert config.registry.sqlalchemy_config_kwargs["connect_args"]["password"] == SECRET
    assert config.online_store.connection_string == "127.0.0.1:6379,db=0,socket_connect_timeout=5"


def test_feast_default_engine_can_be_selected(tmp_path):
    config = yaml.safe_load(render_feature_store_yaml(prod(tmp_path, materialize_engine="local")).read_text())
    assert "batch_engine" not in config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("redis_url", "redis://:hunter2@127.0.0.1:6379/0"),
        ("redis_url", "http://127.0.0.1:6379"),
        ("pg_database", "shoprank; drop table x"),
        ("feast_project", "Shop-Rank"),
    ],
)
def test_bad_connection_settings_are_refused(tmp_path, field, value):
    with pytest.raises(ValidationError):
        prod(tmp_path, **{field: value})


def test_redis_keys_are_attributed_to_their_exact_project():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = serialize_entity_key(
        EntityKey(join_keys=["user_id", "category_l1"], entity_values=[Value(string_val="u1"), Value(string_val="x")]),
        entity_key_serialization_version=3,
    )
    assert key_project(key + b"x_shoprank") == b"x_shoprank"
    assert key_project(key + b"shoprank") == b"shoprank"
    assert key_project(b"shoprank:feast_fast_engine:watermarks:shoprank") != b"shoprank"


def test_fast_engine_encodes_exactly_like_feast():
    """Entity keys (multi-key, int keys), values with nulls and NaN, value_text and timestamps, byte for byte."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.types import Bool, Float32, Float64, Int32, Int64, String
    from feast.utils import _convert_arrow_to_proto

    from platform_common.feast_fast_engine.encode import (
        EncodedRows,
        encode_entity_keys,
        feast_text,
        from_micros,
        redis_ts,
    )
    from platform_common.feast_fast_engine.layout import ViewLayout

    source = FileSource(name="s", path="/nonexistent.parquet", timestamp_field="ts", created_timestamp_column="c")
    fv = FeatureView(
        name="v",
        entities=[
            Entity(name="shop", join_keys=["shop_id"], value_type=ValueType.INT64),
            Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING),
        ],
        schema=[
            Field(name="shop_id", dtype=Int64),
            Field(name="user_id", dtype=String),
            Field(name="s", dtype=String),
            Field(name="i", dtype=Int64),
            Field(name="i32", dtype=Int32),
            Field(name="d", dtype=Float64),
            Field(name="f", dtype=Float32),
            Field(name="b", dtype=Bool),
        ],
        source=source,
    )
    ts = [
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, tzinfo=UTC),
    ]
    table = pa.table(
        {
            "shop_id": pa.array([1, -7, 2**40], pa.int64()),
            "user_id": ["u1", "ü2", ""],
            "s": ["a", None, "ж"],
            "i": pa.array([0, None, -(2**62)], pa.int64()),
            "i32": pa.array([5, -1, 0], pa.int32()),
            "d": [0.0, float("nan"), 1e-300],
            "f": pa.array([0.1, None, -2.5], pa.float32()),
            "b": [True, False, None],
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "c": pa.array([ts[0], None, ts[2]], pa.timestamp("us", tz="UTC")),
        }
    )
    layout = ViewLayout(fv)
    rows = EncodedRows.build(table, layout, encode_entity_keys(table, layout))
    expected = _convert_arrow_to_proto(table, fv, layout.join_key_types)
    for i, (key, values, event_ts, _) in enumerate(expected):
        assert rows.entity_keys[i] == serialize_entity_key(key, entity_key_serialization_version=3)
        for name, proto in values.items():
            assert rows.values[name][i] == proto.SerializeToString(), (name, i)
            assert rows.texts(name)[i] == feast_text(proto), (name, i)
        assert redis_ts(from_micros(rows.event_us[i])) == redis_ts(event_ts)
    rows.verify_against_feast(fv, "redis")
    rows.verify_against_feast(fv, "sqlite")
