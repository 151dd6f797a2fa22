"""MLflow tracking and registry plumbing shared by training, promotion, status and serving."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from platform_common.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"

_INITIALIZED: set[str] = set()  # tracking URIs whose schema this process has already made sure of


def connect(settings: Settings) -> MlflowClient:
    """MLflow client on the profile's tracking store: SQLite under SHOPRANK_HOME (local) or PostgreSQL (prod).

    Under prod, PostgreSQL is checked first so that an unreachable server fails at once with a
    BackendUnavailableError naming it and how to start it, instead of MLflow's minutes of connection retries;
    the deployment's database and its `mlflow` schema are created on first use. Artifacts stay under
    SHOPRANK_HOME (`settings.artifact_root`) in both profiles.
    """
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    if settings.profile == "prod":
        from platform_common.connections import ensure_postgres, use_pg_password

        use_pg_password(settings)
        ensure_postgres(settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    if settings.tracking_uri in _INITIALIZED:
        return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    # MLflow creates and migrates its schema when a client first opens the store; two processes doing that at
    # once (two BentoML workers on a fresh SHOPRANK_HOME, say) collide on "table already exists". One at a time.
    with registry_lock(settings, "mlflow-schema"):
        client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    _INITIALIZED.add(settings.tracking_uri)
    return client


@contextmanager
def registry_lock(settings: Settings, name: str) -> Iterator[None]:
    """A lock named `name` shared by every process using this registry: an advisory lock on PostgreSQL, a file
    lock next to the SQLite database."""
    if settings.tracking_uri.startswith("postgresql"):
        import sqlalchemy

        key = f"shoprank-{name}"
        engine = sqlalchemy.create_engine(settings.tracking_uri)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("select pg_advisory_lock(hashtext(:key))"), {"key": key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("select pg_advisory_unlock(hashtext(:key))"), {"key": key})
        finally:
            engine.dispose()
        return
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.mlflow_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(settings: Settings) -> str:
    client = connect(settings)
    existing = client.get_experiment_by_name(settings.experiment_name)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(settings.experiment_name, artifact_location=settings.artifact_root.as_uri())


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def latest_version(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version), default=None)
