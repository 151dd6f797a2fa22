"""Where every piece of generated state lives, validated once at the edge.

All state (raw landing zone, DuckDB warehouse, parquet marts, Feast registry and online store, MLflow
database and artifacts, logs) sits under one folder so that `make clean` is one `rm -rf` and tests can
point the whole platform at a temporary directory with a single environment variable.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO_DIR = REPO_ROOT / "feature_repo"
TRANSFORMS_DIR = REPO_ROOT / "transforms"

Scale = Literal["tiny", "small", "medium"]
Profile = Literal["local", "prod"]


class Settings(BaseSettings):
    """Platform settings read from `SHOPRANK_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="SHOPRANK_", frozen=True, extra="ignore")

    home: Path = Field(default=REPO_ROOT / ".state", description="Root folder of all generated state.")
    profile: Profile = Field(default="local", description="Which engines back the platform.")
    scale: Scale = Field(default="small", description="Simulated marketplace size.")
    model_name: str = Field(default="shoprank_ranker", description="Registered model of the ranker.")
    experiment_name: str = Field(default="shoprank-ranking")

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

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
    def feast_dir(self) -> Path:
        return self.home_dir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home_dir / "mlflow"

    @property
    def logs_dir(self) -> Path:
        return self.home_dir / "logs"

    @property
    def datasets_dir(self) -> Path:
        """Frozen training/validation/test sets, keyed by their fingerprint."""
        return self.home_dir / "datasets"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

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
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env
