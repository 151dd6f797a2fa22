"""One monitoring run: every check over one window, the report, alerts.json, MLflow."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from platform_common.settings import Settings
from serving.monitoring import baseline, data_quality, features, freshness, model_quality, skew
from serving.monitoring.alerts import CheckResult, Window, write_alerts
from serving.monitoring.config import Thresholds
from serving.monitoring.profile import load_reference_profile
from serving.monitoring.report import figures, render

console = Console(stderr=True)
EXPERIMENT = "shoprank-monitoring"


@dataclass(frozen=True)
class RunOutcome:
    folder: Path
    result: CheckResult
    window: Window


def served_versions(settings: Settings, log: pd.DataFrame) -> list[str]:
    """Versions that served logged rows, most rows first; the champion when nothing was logged."""
    if not log.empty and "model_version" in log:
        return [str(v) for v in log["model_version"].astype(str).value_counts().index]
    from platform_common.registry import CHAMPION, connect, version_by_alias

    try:
        mv = version_by_alias(connect(settings), settings.model_name, CHAMPION)
    except Exception:  # noqa: BLE001 - no registry yet: the model checks say so
        return []
    return [] if mv is None else [str(mv.version)]


def monitor(
    settings: Settings,
    th: Thresholds,
    window: Window,
    as_of: datetime | None = None,
    run_name: str | None = None,
    log_to_mlflow: bool = True,
) -> RunOutcome:
    as_of = as_of or datetime.now(UTC)
    result = CheckResult()
    console.print(f"[bold]monitoring[/] {window.label} on {settings.home_dir}")
    freshness_sources = data_quality.run_source_freshness(settings.home_dir, window.end)
    result.extend(
        data_quality.run(settings.raw_dir, settings.warehouse_path, window, th.data_quality, freshness_sources)
    )
    # the online table reaches `lookback_days` before the window: the daily run scores the previous day's orders
    lookback = Window(window.start - timedelta(days=th.model_quality.lookback_days), window.end)
    log_all = model_quality.read_request_log(settings.logs_dir, lookback)
    in_window = pd.to_datetime(log_all["served_at"], utc=True) >= window.start if not log_all.empty else None
    log = log_all[in_window].reset_index(drop=True) if in_window is not None else log_all
    versions = served_versions(settings, log if not log.empty else log_all)
    header = {"home": str(settings.home_dir), "as of": as_of.isoformat(), "request-log rows": str(len(log))}
    references: dict[str, dict[str, Any] | None] = {}
    for version in versions:
        references[version], source = load_reference_profile(settings, version)
        header[f"{settings.model_name} v{version}"] = f"reference profile: {source}"
    # the mart and freshness checks follow the version that served most (the champion when nothing was logged)
    main = versions[0] if versions else None
    reference = references.get(main) if main else None
    by_view = features.features_by_view(reference)
    marts = by_view or features.mart_features(settings.marts_dir)
    result.extend(features.mart_drift(settings.marts_dir, marts, window, th.drift, th.data_quality.baseline_days))
    until = freshness.materialized_until(settings)
    # The views the served model reads (a view nothing serves has no SLA); without a model, the ranker's marts.
    until = {v: t for v, t in until.items() if v in marts}
    newest = freshness.newest_rows(settings.marts_dir, until)
    newest |= freshness.newest_stream_rows(settings.stream_log_dir, sorted(set(until) & set(marts)), window.end)
    result.extend(freshness.check(newest, window, th.freshness))

    if log_all.empty or not versions:
        result.extend(features.served_health(log, reference, window, th.drift, th.features))
        result.extend(model_quality.check(pd.DataFrame(), log, reference, window, as_of, th.model_quality))
    else:
        from platform_common.feast_config import get_feature_store
        from training.promotion import load_ranker

        if log.empty:
            result.notes.append("no request-log rows in the window: training-serving skew not judged")
        else:
            result.extend(skew.check(get_feature_store(settings), log, reference, window, th.features))
        shown_all = model_quality.attach_outcomes(
            log_all, settings.raw_dir, window, th.model_quality.lookback_days, as_of
        )
        several = len(versions) > 1
        for version in versions:
            rows = log[log["model_version"].astype(str) == version] if not log.empty else log
            shown = shown_all[shown_all["model_version"].astype(str) == version] if not shown_all.empty else shown_all
            if not shown.empty:
                shown = shown.join(model_quality.rescore_at_shown(load_ranker(settings, version), shown))
            served_base, source = baseline.load_or_capture(
                settings.home_dir, settings.logs_dir, settings.model_name, version, references[version], th.drift
            )
            header[f"{settings.model_name} v{version} served baseline"] = source
            if served_base is None:
                result.notes.append(f"served drift of v{version} not judged: {source}")
            result.extend(features.served_health(rows, references[version], window, th.drift, th.features, served_base))
            result.extend(
                model_quality.check(
                    shown, rows, references[version], window, as_of, th.model_quality, version if several else None
                )
            )

    name = run_name or f"{window.start:%Y-%m-%d}_{datetime.now(UTC):%Y%m%dT%H%M%S}"
    folder = settings.home_dir / "monitoring" / name
    folder.mkdir(parents=True, exist_ok=True)
    write_alerts(folder / "alerts.json", result.alerts, window, "alert" if result.alerts else "ok")
    if freshness_sources[0] is not None:  # dbt's own verdict, beside the report
        shutil.copyfile(freshness_sources[1], folder / "dbt_sources.json")
    figs = figures(result, th.drift.psi_warn, th.drift.psi_alert)
    (folder / "report.html").write_text(render(result, window, header, figs))
    (folder / "metrics.json").write_text(
        json.dumps({"measurements": [asdict(m) for m in result.measurements], "notes": result.notes}, indent=1) + "\n"
    )
    online = [v for k, v in sorted(result.series.items()) if k.startswith("online_quality")]
    if online:  # the per-day, per-surface online quality table (report.html shows it too)
        pd.concat(online, ignore_index=True).to_csv(folder / "online_quality.csv", index=False)
    if "freshness_hours" in result.series:
        (folder / "freshness.prom").write_text(freshness.prometheus_text(result.series["freshness_hours"]))
    if log_to_mlflow:
        _log_mlflow(settings, folder, result, window, name)
    return RunOutcome(folder, result, window)


def _metric_name(check: str, target: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", f"{check}/{target}")[:250]


def _log_mlflow(settings: Settings, folder: Path, result: CheckResult, window: Window, name: str) -> None:
    import math

    import mlflow

    from platform_common.registry import connect, ensure_experiment

    connect(settings)  # sets the tracking URI
    with mlflow.start_run(experiment_id=ensure_experiment(settings, EXPERIMENT), run_name=name):
        mlflow.set_tags({"window": window.label, "alerts": str(len(result.alerts))})
        metrics = {_metric_name(m.check, m.target): m.value for m in result.measurements if math.isfinite(m.value)}
        metrics["alerts"] = float(len(result.alerts))
        mlflow.log_metrics(metrics)
        for file in sorted(folder.iterdir()):
            mlflow.log_artifact(str(file), artifact_path="monitoring")
