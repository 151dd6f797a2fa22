"""`make status`: what is registered, what is champion, and how fresh the online features are."""

from __future__ import annotations

import json
from typing import Any

from mlflow.exceptions import MlflowException

from platform_common.feast_config import get_feature_store
from platform_common.registry import CHAMPION, connect, version_by_alias
from platform_common.settings import Settings, get_settings

TEST_METRICS = ("test_auc", "test_logloss", "test_ece", "oracle_auc", "normalized_lift")


def model_status(settings: Settings) -> list[dict[str, Any]]:
    client = connect(settings)
    out = []
    models: list[Any]
    try:
        models = list(client.search_registered_models())
    except MlflowException:
        models = []
    for model in models:
        champ = version_by_alias(client, model.name, CHAMPION)
        entry: dict[str, Any] = {"name": model.name, "aliases": dict(model.aliases or {}), "champion": None}
        if champ is not None and champ.run_id is not None:
            run = client.get_run(champ.run_id)
            entry["champion"] = {
                "version": champ.version,
                "run_id": champ.run_id,
                "test_metrics": {k: run.data.metrics[k] for k in TEST_METRICS if k in run.data.metrics},
            }
        out.append(entry)
    return out


def feature_status(settings: Settings) -> list[dict[str, Any]]:
    if settings.profile == "local" and not (settings.feast_dir / "registry.db").exists():
        return []  # nothing applied yet (the prod registry lives in PostgreSQL and is always asked)
    store = get_feature_store(settings)
    views = []
    for fv in sorted(store.list_feature_views(), key=lambda v: v.name):
        intervals = fv.materialization_intervals
        views.append(
            {
                "name": fv.name,
                "ttl_seconds": int(fv.ttl.total_seconds()) if fv.ttl else None,
                "last_materialized": max(end for _, end in intervals).isoformat() if intervals else None,
            }
        )
    return views


def status(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    return {
        "profile": settings.profile,
        "home": str(settings.home_dir),
        "tracking_uri": settings.tracking_uri,
        "models": model_status(settings),
        "feature_views": feature_status(settings),
    }


def status_json(settings: Settings | None = None) -> str:
    return json.dumps(status(settings), indent=2, default=str)
