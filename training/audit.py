"""Append-only promotion history, kept in the MLflow tracking store itself.

Every promotion, refusal and rollback is one run in the experiment `<experiment>-promotions`: runs are
never updated after they end, they live in the same database as the registry (SQLite locally, PostgreSQL in
prod), and `mlflow ui` shows them. `make history` prints them oldest first.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient

from platform_common.registry import ensure_experiment
from platform_common.settings import Settings


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
    experiment: str | None = None  # the online experiment whose evidence the gate read (`make promote EXPERIMENT=`)


def actor() -> str:
    """Who did it: SHOPRANK_ACTOR if set (CI jobs, bots), else the OS user."""
    return os.environ.get("SHOPRANK_ACTOR") or os.environ.get("USER") or getpass.getuser()


def record(client: MlflowClient, settings: Settings, event: Event) -> None:
    run = client.create_run(
        ensure_experiment(settings, f"{settings.experiment_name}-promotions", settings.artifact_root / "promotions"),
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
            "experiment": event.experiment or "",
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
                experiment=t.get("experiment") or None,
            )
        )
    return events


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
