"""MLflow tracking and registry plumbing shared by every package: training, serving and merchant_growth.

One place to connect, to take a registry-wide lock, to load a registered pyfunc as the Python object it wraps
(checked against the type the caller expects), to make sure an experiment exists, and to move aliases. Alias
moves only happen through `move_aliases`, which holds the promotion lock for as long as its block runs, so a
ranker promotion, a rollback and a forecast promotion can never interleave their alias changes.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from platform_common.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_LOCK = "promotion"  # the lock every alias move holds (see move_aliases)

_INITIALIZED: set[str] = set()  # tracking URIs whose schema this process has already made sure of

T = TypeVar("T")


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
    lock next to the SQLite database. Not re-entrant: a block holding it must not take it again."""
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


def ensure_experiment(settings: Settings, name: str | None = None, artifact_root: Path | None = None) -> str:
    """Id of the experiment `name` (default: the profile's experiment), created on first use with its artifacts
    under `artifact_root` (default: the profile's artifact root)."""
    client = connect(settings)
    name = name or settings.experiment_name
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(name, artifact_location=(artifact_root or settings.artifact_root).as_uri())


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


@dataclass(frozen=True)
class LoadedBundle(Generic[T]):
    """A registered version, loaded: the Python object its pyfunc wraps, and the pyfunc itself (whose `predict`
    enforces the logged signature, as any MLflow client of the model would see it)."""

    name: str
    version: str
    bundle: T
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel


def load_bundle(settings: Settings, model_name: str, version_or_alias: str, expected_type: type[T]) -> LoadedBundle[T]:
    """Load version `version_or_alias` (digits) or the version holding that alias (anything else) of
    `model_name` from this platform's registry, unwrap its pyfunc and check it is an `expected_type`.

    Raises LookupError when the alias or version does not exist, TypeError when it wraps something else.
    """
    client = connect(settings)  # models:/ URIs resolve against the registry connect() points MLflow at
    if version_or_alias.isdigit():
        try:
            version = str(client.get_model_version(model_name, version_or_alias).version)
        except MlflowException as exc:
            raise LookupError(f"registered model {model_name} has no version {version_or_alias}") from exc
    else:
        mv = version_by_alias(client, model_name, version_or_alias)
        if mv is None:
            raise LookupError(f"registered model {model_name} has no '{version_or_alias}' alias")
        version = str(mv.version)
    # Load by number, not by alias: the alias may move between resolving it and loading.
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    bundle = pyfunc.unwrap_python_model()
    if not isinstance(bundle, expected_type):
        raise TypeError(
            f"{model_name} v{version} holds a {type(bundle).__qualname__}, not a {expected_type.__qualname__}"
        )
    return LoadedBundle(model_name, version, bundle, pyfunc)


class AliasMoves:
    """The alias changes of one `move_aliases` block; unusable once the block (and so the lock) has ended."""

    def __init__(self, client: MlflowClient, model_name: str) -> None:
        self.client = client
        self.model_name = model_name
        self._open = True

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(f"aliases of {self.model_name} moved after the promotion lock was released")

    def set(self, alias: str, version: str) -> None:
        self._check_open()
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def delete(self, alias: str) -> None:
        self._check_open()
        self.client.delete_registered_model_alias(self.model_name, alias)


@contextmanager
def move_aliases(settings: Settings, model_name: str) -> Iterator[AliasMoves]:
    """Hold the registry's promotion lock and yield the only way to move `model_name`'s aliases.

    Read the aliases, decide and move them inside one block: a promotion (of any model of this registry)
    running at the same time waits, so no decision is taken on aliases that another one is halfway through
    moving.
    """
    client = connect(settings)
    with registry_lock(settings, PROMOTION_LOCK):
        moves = AliasMoves(client, model_name)
        try:
            yield moves
        finally:
            moves._open = False


def registered_model(client: MlflowClient, name: str) -> RegisteredModel | None:
    """The registered model `name` with its tags and aliases (one registry call), or None if it does not exist."""
    try:
        return client.get_registered_model(name)
    except MlflowException:
        return None
