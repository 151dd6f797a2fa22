"""One Feast configuration for the CLI and for Python, following SHOPRANK_HOME and SHOPRANK_PROFILE.

The committed `feature_repo/feature_store.yaml` is the local profile pointing at the default state folder, so
`feast` works inside `feature_repo/` with no set-up. For any other state folder or profile the same file is
rendered with absolute paths into `$SHOPRANK_HOME/feast/feature_store.yaml`; `make` hands it to the CLI
through FEAST_FS_YAML_FILE_PATH and Python opens the store on it.

The prod profile renders `feature_store.prod.yaml` with the configured servers (SHOPRANK_PG_*, SHOPRANK_REDIS_*,
SHOPRANK_FEAST_PROJECT). Passwords are written as `${SHOPRANK_PG_PASSWORD}` / `${SHOPRANK_REDIS_PASSWORD}`, which
Feast expands from the environment when it loads the file, so the rendered file holds no secret.

Both profiles use the ASOF-join offline store (platform_common.feast_offline_store); the rendered file points
its DuckDB spill folder into the state folder, so a join larger than memory spills there and never into
whatever directory the command ran from. Under SHOPRANK_OFFLINE_ENGINE=spark (either profile) the offline store
is Feast's Spark store and the batch engine Feast's Spark compute engine instead (`_render_spark`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from platform_common.settings import FEATURE_REPO_DIR, Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

PROFILE_FILES = {"local": "feature_store.yaml", "prod": "feature_store.prod.yaml"}
# Spelled out rather than imported: importing the plugin would load Feast and DuckDB for every `make` target.
OFFLINE_STORE_TYPE = "platform_common.feast_offline_store.AsofDuckDBOfflineStore"
SPARK_ENGINE_TYPE = "platform_common.feast_spark_engine.SparkEngine"


def rendered_yaml_path(settings: Settings) -> Path:
    return settings.feast_dir / "feature_store.yaml"


def render_feature_store_yaml(settings: Settings | None = None) -> Path:
    """Write the active profile's feature_store.yaml with absolute state paths; return its path."""
    settings = settings or get_settings()
    template = FEATURE_REPO_DIR / PROFILE_FILES[settings.profile]
    config: dict[str, Any] = yaml.safe_load(template.read_text())
    feast_dir = settings.feast_dir
    feast_dir.mkdir(parents=True, exist_ok=True)
    registry = config.get("registry")
    if isinstance(registry, dict) and registry.get("registry_type", "file") == "file":
        registry["path"] = str(feast_dir / "registry.db")
    online = config.get("online_store", {})
    if online.get("type") == "sqlite":
        online["path"] = str(feast_dir / "online_store.db")
    offline = config.get("offline_store", {})
    if offline.get("type") == OFFLINE_STORE_TYPE:
        offline.setdefault("temp_directory", str(settings.home_dir / "duckdb_tmp"))
        # Without a limit DuckDB takes 80% of the machine: a point-in-time join at SCALE=large would hold 17 GB.
        offline.setdefault("memory_limit", settings.duckdb_memory_limit)
    if settings.profile == "prod":
        _render_prod(config, settings)
    if settings.offline_engine == "spark":
        _render_spark(config, settings)
    # The stream views' log globs must match a file before Feast reads them (materialize, training).
    from platform_common.stream_log import ensure_log

    ensure_log(settings)
    out = rendered_yaml_path(settings)
    header = f"# Rendered from feature_repo/{template.name} for {settings.home_dir}; do not edit.\n"
    new_text = header + yaml.safe_dump(config, sort_keys=False)
    # Rewriting an unchanged file would bump its mtime and make Feast reload the registry for nothing.
    if not out.exists() or out.read_text() != new_text:
        out.write_text(new_text)
    return out


def _render_prod(config: dict[str, Any], settings: Settings) -> None:
    config["project"] = settings.feast_project
    registry = config["registry"]
    if registry.get("registry_type") == "sql":
        registry["path"] = settings.feast_registry_url
        if settings.pg_password is not None:
            kwargs = registry.setdefault("sqlalchemy_config_kwargs", {})
            kwargs.setdefault("connect_args", {})["password"] = "${SHOPRANK_PG_PASSWORD}"
    online = config["online_store"]
    if online.get("type") == "redis":
        host = f"[{settings.redis_host}]" if ":" in settings.redis_host else settings.redis_host
        parts = [f"{host}:{settings.redis_port}", f"db={settings.redis_db}", "socket_connect_timeout=5"]
        if settings.redis_ssl:
            parts.append("ssl=true")
        if settings.redis_password is not None:
            parts.append("password=${SHOPRANK_REDIS_PASSWORD}")
        online["connection_string"] = ",".join(parts)
    if settings.materialize_engine == "local":
        config.pop("batch_engine", None)


def _render_spark(config: dict[str, Any], settings: Settings) -> None:
    """SHOPRANK_OFFLINE_ENGINE=spark: Feast's Spark offline store serves the point-in-time joins and its Spark
    compute engine materializes, both on a session configured as dbt-spark's (platform_common/spark_session.py).
    The registry and the online store stay the profile's (SQLite or Redis); the sources become SparkSources
    (feature_repo/data_sources.py)."""
    from platform_common.spark_session import spark_conf

    conf = spark_conf(settings)
    config["offline_store"] = {"type": "spark", "spark_conf": conf}
    # Feast's Spark compute engine, on this conf (platform_common/feast_spark_engine.py says why a subclass).
    # partitions 1: the executors write into the online store, and SQLite takes one writer at a time.
    config["batch_engine"] = {"type": SPARK_ENGINE_TYPE, "spark_conf": conf, "partitions": 1}


def get_feature_store(settings: Settings | None = None) -> FeatureStore:
    from feast import FeatureStore

    settings = settings or get_settings()
    if settings.profile == "prod":
        from platform_common.connections import ensure_postgres, use_pg_password

        use_pg_password(settings)
        ensure_postgres(settings)  # the registry's database and schema, or a clear BackendUnavailableError
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=render_feature_store_yaml(settings))


def main() -> None:
    """Print the rendered yaml's path (for FEAST_FS_YAML_FILE_PATH). Under prod, also make sure the servers answer
    and the deployment's database exists; a problem is reported on stderr, and the path is still printed so the
    feast command that follows runs against the prod config and fails with its own error, never falls back to
    another store."""
    settings = get_settings()
    path = render_feature_store_yaml(settings)
    if settings.profile == "prod":
        from platform_common.connections import BackendUnavailableError, check_prod

        try:
            check_prod(settings)
        except BackendUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
    print(path)


if __name__ == "__main__":
    main()
