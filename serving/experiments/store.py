"""Experiments live with the registry: one tag per experiment on the ranker's registered model in MLflow.

`shoprank.experiment.<id>` = the definition as JSON. The model registry is the state the service already
follows (SQLite under SHOPRANK_HOME locally, PostgreSQL under the prod profile), so an experiment works on both
profiles, survives restarts, and reaches every worker and replica through the poll they already make. MLflow
allows 100,000 characters in a registered model tag's value, but its schema stores them as VARCHAR(5000),
which PostgreSQL enforces: a definition is refused above MAX_TAG_CHARS (one is a few hundred characters).

Every change holds the promotion lock (so it cannot interleave with an alias move that would change what an
arm resolves to) and is recorded in the promotion history (`make history`), as `experiment_start` and
`experiment_stop`. Nothing is written unless every check passed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from platform_common.registry import PROMOTION_LOCK, connect, registered_model, registry_lock, version_by_alias
from platform_common.settings import Settings
from serving.experiments.model import Experiment, ExperimentError, is_version, one_line
from training import audit

log = logging.getLogger("shoprank.serving.experiments")

TAG_PREFIX = "shoprank.experiment."
MAX_TAG_CHARS = 5000


def parse_tags(tags: Mapping[str, str]) -> tuple[list[Experiment], list[str]]:
    """The experiments stored in a registered model's tags, by start time, and why any could not be read."""
    experiments, errors = [], []
    for key, value in tags.items():
        if not key.startswith(TAG_PREFIX):
            continue
        try:
            experiments.append(Experiment.model_validate_json(value))
        except ValidationError as exc:  # hand-edited or written by a newer version: skipped, and said so
            errors.append(f"tag {key}: {one_line(exc)}")
    return sorted(experiments, key=lambda e: (e.start, e.id)), errors


def current(experiments: Iterable[Experiment], now: datetime) -> Experiment | None:
    """The experiment running at `now`, else the next one to start: the one the service should hold.

    Windows never overlap (start refuses it), so at most one is running; holding the next one lets the service
    switch at its start time exactly rather than at its next registry poll.
    """
    pending = [e for e in experiments if not e.finished(now)]
    return min(pending, key=lambda e: e.start, default=None)


def list_experiments(settings: Settings, client: MlflowClient | None = None) -> list[Experiment]:
    client = client or connect(settings)
    model = registered_model(client, settings.model_name)
    if model is None:
        return []
    experiments, errors = parse_tags(model.tags)
    for error in errors:
        log.warning("unreadable experiment skipped: %s", error)
    return experiments


def get(settings: Settings, experiment_id: str, client: MlflowClient | None = None) -> Experiment:
    for experiment in list_experiments(settings, client):
        if experiment.id == experiment_id:
            return experiment
    raise ExperimentError(f"no experiment {experiment_id!r} (`make experiments` lists them)")


def _check_arms(client: MlflowClient, model_name: str, experiment: Experiment) -> None:
    for arm in experiment.arms:
        if is_version(arm.target):
            try:
                client.get_model_version(model_name, arm.target)
            except MlflowException:
                raise ExperimentError(
                    f"arm {arm.name!r}: {model_name} has no version {arm.target} (`make status` shows the versions)"
                ) from None
        elif version_by_alias(client, model_name, arm.target) is None:
            raise ExperimentError(f"arm {arm.name!r}: {model_name} has no alias {arm.target!r}")


def _encode(experiment: Experiment) -> str:
    value = experiment.model_dump_json()
    if len(value) > MAX_TAG_CHARS:
        raise ExperimentError(
            f"experiment {experiment.id!r} is {len(value)} characters as JSON; the registry stores {MAX_TAG_CHARS}"
        )
    return value


def _record(client: MlflowClient, settings: Settings, kind: str, experiment: Experiment, reason: str) -> None:
    event = audit.Event(
        kind=kind,
        model=settings.model_name,
        from_version=None,
        to_version=None,
        at=audit.now(),
        by=audit.actor(),
        reason=reason,
        forced=False,
        metrics={"experiment": experiment.model_dump(mode="json")},
        experiment=experiment.id,
    )
    audit.record(client, settings, event)


def start(settings: Settings, experiment: Experiment, now: datetime | None = None) -> Experiment:
    """Store `experiment` if its arms exist and its window overlaps no other; ExperimentError (nothing written)
    otherwise."""
    now = now or datetime.now(UTC)
    client = connect(settings)
    name = settings.model_name
    with registry_lock(settings, PROMOTION_LOCK):
        model = registered_model(client, name)
        if model is None:
            raise ExperimentError(f"no registered model {name}: run `make train` first")
        if experiment.end is not None and experiment.end <= now:
            raise ExperimentError(f"experiment {experiment.id!r} would end at {experiment.end.isoformat()}, the past")
        existing, _ = parse_tags(model.tags)
        if TAG_PREFIX + experiment.id in model.tags:
            raise ExperimentError(f"experiment {experiment.id!r} already exists: pick another id")
        _check_arms(client, name, experiment)
        for other in existing:
            if other.overlaps(experiment):
                raise ExperimentError(
                    f"experiment {experiment.id!r} overlaps {other.id!r} ({other.start.isoformat()} -> "
                    f"{other.end.isoformat() if other.end else 'open'}): stop it first, or start after it ends"
                )
        client.set_registered_model_tag(name, TAG_PREFIX + experiment.id, _encode(experiment))
        _record(client, settings, "experiment_start", experiment, f"started {experiment.describe()}")
    return experiment


def stop(settings: Settings, experiment_id: str, now: datetime | None = None, by: str | None = None) -> Experiment:
    """End a running (or cancel a scheduled) experiment now; ExperimentError if there is none to stop."""
    now = now or datetime.now(UTC)
    client = connect(settings)
    name = settings.model_name
    with registry_lock(settings, PROMOTION_LOCK):
        model = registered_model(client, name)
        raw = model.tags.get(TAG_PREFIX + experiment_id) if model is not None else None
        if raw is None:
            raise ExperimentError(f"no experiment {experiment_id!r} to stop (`make experiments` lists them)")
        try:
            experiment = Experiment.model_validate_json(raw)
        except ValidationError as exc:
            raise ExperimentError(f"experiment {experiment_id!r} is unreadable: {one_line(exc)}") from None
        if experiment.finished(now):
            assert experiment.end is not None  # finished() implies an end
            raise ExperimentError(f"experiment {experiment_id!r} already stopped at {experiment.end.isoformat()}")
        stopped = Experiment.model_validate(
            experiment.model_dump() | {"stopped_at": now, "stopped_by": by or audit.actor()}
        )
        client.set_registered_model_tag(name, TAG_PREFIX + experiment_id, _encode(stopped))
        _record(client, settings, "experiment_stop", stopped, f"stopped {stopped.describe()}")
    return stopped
