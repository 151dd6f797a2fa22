"""Where every piece of generated state lives, validated once at the edge.

All state (raw landing zone, DuckDB warehouse, parquet marts, Feast registry and online store, MLflow
database and artifacts, logs) sits under one folder so that `make clean` is one `rm -rf` and tests can
point the whole platform at a temporary directory with a single environment variable.

`SHOPRANK_PROFILE=prod` moves the shared state onto servers: the Feast online store to Redis, the Feast
registry and MLflow's tracking and model registry to PostgreSQL (schemas `feast` and `mlflow` of one database
per deployment). Their connection settings are the `SHOPRANK_REDIS_*` and `SHOPRANK_PG_*` variables below; all
have working defaults for servers on 127.0.0.1. Passwords are `SecretStr`: never part of a URI, a repr or a
rendered file (see platform_common/connections.py and docs/beyond_one_machine.md).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO_DIR = REPO_ROOT / "feature_repo"
TRANSFORMS_DIR = REPO_ROOT / "transforms"

Scale = Literal["tiny", "small", "medium", "large"]
Profile = Literal["local", "prod"]
OfflineEngine = Literal["duckdb", "spark"]

# PostgreSQL identifiers we create ourselves (database, schemas) and Feast project names: kept simple so they
# never need quoting and cannot inject SQL.
IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
FEAST_SCHEMA = "feast"
MLFLOW_SCHEMA = "mlflow"


# a folder of the landing zone that is not a table: live runs' watermarks
LIVE_WATERMARK_DIR = "_live_watermarks"


class Settings(BaseSettings):
    """Platform settings read from `SHOPRANK_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="SHOPRANK_", frozen=True, extra="ignore")

    home: Path = Field(default=REPO_ROOT / ".state", description="Root folder of all generated state.")
    profile: Profile = Field(default="local", description="Which engines back the platform.")
    scale: Scale = Field(default="small", description="Simulated marketplace size.")
    model_name: str = Field(default="shoprank_ranker", description="Registered model of the ranker.")
    experiment_name: str = Field(default="shoprank-ranking")

    # --- prod profile: where the servers are (ignored by the local profile) ---------------------------------
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis for the Feast online store: redis://host:port/db (password in SHOPRANK_REDIS_PASSWORD).",
    )
    redis_password: SecretStr | None = Field(default=None, description="Redis AUTH password, if any.")
    pg_host: str = Field(default="127.0.0.1", description="PostgreSQL host for the Feast and MLflow registries.")
    pg_port: int = Field(default=5432, ge=1, le=65535)
    pg_user: str = Field(default="postgres")
    pg_password: SecretStr | None = Field(default=None, description="PostgreSQL password (empty: trust/peer).")
    pg_database: str = Field(
        default="shoprank",
        pattern=IDENTIFIER_PATTERN,
        description="Database of this deployment (created on first use); one per environment or test run.",
    )
    pg_connect_timeout: int = Field(default=5, ge=1, description="Seconds to wait for PostgreSQL to answer.")
    feast_project: str = Field(
        default="shoprank",
        pattern=IDENTIFIER_PATTERN,
        description="Feast project under prod; it suffixes every Redis key, so deployments sharing a Redis differ.",
    )
    offline_engine: OfflineEngine = Field(
        default="duckdb",
        description=(
            "Engine of the offline compute: the dbt build (target `local` on DuckDB, or `spark` on dbt-spark in "
            "local mode, marts exported to the same files). Spark needs `make install-spark` and Java 17."
        ),
    )
    # --- the Spark engine's session (issue 15): the same variables transforms/profiles.yml reads for dbt-spark,
    # so Feast's Spark offline store and compute engine and xgboost.spark run on a session configured alike.
    spark_master: str = Field(default="local[2]", min_length=1, description="Spark master (local[N] or a URL).")
    spark_driver_memory: str = Field(default="2g", pattern=r"^[0-9]+[kmgt]?$", description="spark.driver.memory.")
    spark_shuffle_partitions: int = Field(default=4, ge=1, le=100_000, description="spark.sql.shuffle.partitions.")
    duckdb_memory_limit: str = Field(
        default="4GB",
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory_limit for the dbt build and Feast's offline store: past it, DuckDB spills to "
        "disk (the state folder's duckdb_tmp) instead of growing.",
    )
    materialize_engine: Literal["fast", "local"] = Field(
        default="fast",
        description="Batch engine behind `feast materialize` under prod: the vectorised plugin or Feast's default.",
    )

    # --- event stream (issue 17): live events -> stream -> processor -> Feast push + offline log -------------
    stream_enabled: bool = Field(
        default=True,
        description="Live shoppers also publish every event they land to the event stream (cheap: one append).",
    )
    stream_key: str = Field(
        default="shoprank:events",
        min_length=1,
        max_length=200,
        description="Redis Stream key of the events under prod (the embedded stream is a SQLite file instead).",
    )
    stream_maxlen: int = Field(
        default=1_000_000, ge=1000, description="Redis Stream length kept (XADD MAXLEN ~): older events are trimmed."
    )

    # --- which feature service `make train` trains on (issue 17, section 4) ---------------------------------
    train_feature_service: str = Field(
        default="ctr_model_v1",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$",
        description=(
            "Feature service of the next `make train` (`FEATURE_SERVICE=`): ctr_model_v1 (batch features) or "
            "ctr_model_v2_stream (plus the stream views); the version records it and serving reads it."
        ),
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_no_secret(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("SHOPRANK_REDIS_URL must look like redis://host:port/db")
        if parts.password:
            raise ValueError("SHOPRANK_REDIS_URL must not carry a password: set SHOPRANK_REDIS_PASSWORD instead")
        return value

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def live_watermarks_dir(self) -> Path:
        """Per live run, up to when it has landed every event that happened (written by simulator/live/landing.py)."""
        return self.raw_dir / LIVE_WATERMARK_DIR

    @property
    def raw_dir(self) -> Path:
        return self.home_dir / "raw"

    @property
    def oracle_dir(self) -> Path:
        return self.home_dir / "oracle"

    @property
    def warehouse_path(self) -> Path:
        return self.home_dir / "warehouse.duckdb"

    @property
    def marts_dir(self) -> Path:
        return self.home_dir / "marts"

    @property
    def spark_dir(self) -> Path:
        """Spark's warehouse (the tables of the dbt build) and its Derby metastore, under the spark engine."""
        return self.home_dir / "spark"

    @property
    def dbt_target(self) -> str:
        """The dbt target (transforms/profiles.yml) of the offline engine."""
        return "spark" if self.offline_engine == "spark" else "local"

    @property
    def feast_dir(self) -> Path:
        return self.home_dir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home_dir / "mlflow"

    @property
    def logs_dir(self) -> Path:
        return self.home_dir / "logs"

    @property
    def experiments_dir(self) -> Path:
        """Experiment analyses: `<id>/summary.json` and the HTML report (platform_common/experiment_summary.py)."""
        return self.home_dir / "experiments"

    @property
    def datasets_dir(self) -> Path:
        """Frozen training/validation/test sets, keyed by their fingerprint."""
        return self.home_dir / "datasets"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking and model registry: SQLite under `home` (local) or PostgreSQL schema `mlflow` (prod).

        The PostgreSQL URI never contains the password: libpq reads it from PGPASSWORD, which
        `platform_common.registry.connect` sets from SHOPRANK_PG_PASSWORD in its own process only.
        """
        if self.profile == "prod":
            return self.pg_url("postgresql", MLFLOW_SCHEMA)
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def feast_registry_url(self) -> str:
        """SQLAlchemy URL of Feast's SQL registry (prod), without the password."""
        return self.pg_url("postgresql+psycopg", FEAST_SCHEMA)

    def pg_url(self, scheme: str, schema: str | None = None, database: str | None = None) -> str:
        """`scheme://user@host:port/db` with a connect timeout and, if given, the schema as search_path."""
        query = f"connect_timeout={self.pg_connect_timeout}"
        if schema:
            query += f"&options={quote(f'-csearch_path={schema}')}"
        host = f"[{self.pg_host}]" if ":" in self.pg_host else self.pg_host
        user = quote(self.pg_user, safe="")
        return f"{scheme}://{user}@{host}:{self.pg_port}/{database or self.pg_database}?{query}"

    @property
    def pg_display(self) -> str:
        """Where PostgreSQL is, for messages: no password, ever."""
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.pg_database}"

    @property
    def redis_host(self) -> str:
        return urlsplit(self.redis_url).hostname or "127.0.0.1"

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379

    @property
    def redis_db(self) -> int:
        path = urlsplit(self.redis_url).path.strip("/")
        return int(path) if path else 0

    @property
    def redis_ssl(self) -> bool:
        return urlsplit(self.redis_url).scheme == "rediss"

    @property
    def redis_display(self) -> str:
        return f"{urlsplit(self.redis_url).scheme}://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def stream_dir(self) -> Path:
        """The embedded event stream (SQLite), the processor's checkpoint and its quarantine."""
        return self.home_dir / "stream"

    @property
    def stream_log_dir(self) -> Path:
        """The stream features' offline log: parquet parts per view, the push sources' batch sources."""
        return self.home_dir / "stream_log"

    @property
    def artifact_root(self) -> Path:
        return self.mlflow_dir / "artifacts"


def get_settings() -> Settings:
    """Fresh settings from the current environment (cheap; tests change the environment)."""
    return Settings()


def export_env(settings: Settings) -> dict[str, str]:
    """Environment for subprocesses (dbt, feast, bentoml) so they see the same state folder."""
    env = dict(os.environ)
    env["SHOPRANK_HOME"] = str(settings.home_dir)
    env["SHOPRANK_PROFILE"] = settings.profile
    env["SHOPRANK_OFFLINE_ENGINE"] = settings.offline_engine
    if settings.profile == "prod":
        # Explicit, so a subprocess reaches the same servers and namespaces as the settings it was started with.
        # Passwords are not copied: they stay in whatever variable the caller already set.
        env |= {
            "SHOPRANK_REDIS_URL": settings.redis_url,
            "SHOPRANK_PG_HOST": settings.pg_host,
            "SHOPRANK_PG_PORT": str(settings.pg_port),
            "SHOPRANK_PG_USER": settings.pg_user,
            "SHOPRANK_PG_DATABASE": settings.pg_database,
            "SHOPRANK_FEAST_PROJECT": settings.feast_project,
            "SHOPRANK_MATERIALIZE_ENGINE": settings.materialize_engine,
        }
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env
