"""Append-only promotion history, kept in the MLflow tracking store itself.

Every promotion, refusal and rollback is one run in the experiment `<experiment>-promotions`: runs are
never updated after they end, they live in the same database as the registry (SQLite locally, PostgreSQL in
prod), and `mlflow ui` shows them. `make history` prints them oldest first.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient

from platform_common.settings import Settings
from training.registry import registry_lock

EVENT_KINDS = ("promote", "refuse", "rollback")


@dataclass(frozen=True)
class Event:
    kind: str
    model: str
    from_version: str | None
    to_version: str | None
    at: str
    by: str
    reason: str
    forced: bool
    metrics: dict[str, Any]


def actor() -> str:
    """Who did it: SHOPRANK_ACTOR if set (CI jobs, bots), else the OS user."""
    return os.environ.get("SHOPRANK_ACTOR") or os.environ.get("USER") or getpass.getuser()


def _experiment_id(client: MlflowClient, settings: Settings) -> str:
    name = f"{settings.experiment_name}-promotions"
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(name, artifact_location=(settings.artifact_root / "promotions").as_uri())


def record(client: MlflowClient, settings: Settings, event: Event) -> None:
    run = client.create_run(
        _experiment_id(client, settings),
        run_name=f"{event.kind} {event.model} {event.from_version or '-'} -> {event.to_version or '-'}",
        tags={
            "event": event.kind,
            "model": event.model,
            "from_version": event.from_version or "",
            "to_version": event.to_version or "",
            "at": event.at,
            "by": event.by,
            "reason": event.reason[:4900],
            "forced": str(event.forced).lower(),
            "metrics_json": json.dumps(event.metrics)[:4900],
        },
    )
    client.set_terminated(run.info.run_id, "FINISHED")


def history(client: MlflowClient, settings: Settings, model: str | None = None) -> list[Event]:
    exp = client.get_experiment_by_name(f"{settings.experiment_name}-promotions")
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=10000)
    events = []
    for run in runs:
        t = run.data.tags
        if model and t.get("model") != model:
            continue
        events.append(
            Event(
                kind=t["event"],
                model=t["model"],
                from_version=t.get("from_version") or None,
                to_version=t.get("to_version") or None,
                at=t["at"],
                by=t["by"],
                reason=t.get("reason", ""),
                forced=t.get("forced") == "true",
                metrics=json.loads(t.get("metrics_json") or "{}"),
            )
        )
    return events


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextmanager
def promotion_lock(settings: Settings) -> Iterator[None]:
    """One alias change at a time per registry."""
    with registry_lock(settings, "promotion"):
        yield
