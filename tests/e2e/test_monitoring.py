"""`make monitor` on the session's SCALE=tiny platform: a clean state fires nothing and exits 0 (issue 19).

The planted incidents are covered check by check on hand-made frames (tests/serving/test_monitoring_*.py) and,
on whole platforms over several seeds, by `make bench-monitor` (docs/benchmarks.md)."""

from __future__ import annotations

import json

import mlflow

from platform_common.registry import connect
from serving.monitoring.run import EXPERIMENT
from tests.conftest import run_make


def test_make_monitor_on_a_clean_platform_exits_0_with_an_empty_alert_list(tiny_platform):
    run_make(tiny_platform.home_dir, "monitor", extra_env={"MONITOR_RUN": "clean"})
    folder = tiny_platform.home_dir / "monitoring" / "clean"
    alerts = json.loads((folder / "alerts.json").read_text())
    assert alerts["status"] == "ok" and alerts["alerts"] == []
    report = (folder / "report.html").read_text()
    # trained with this code, the champion carries its reference profile as an MLflow artifact
    assert "MLflow artifact reference_profile.json" in report
    measured = {(m["check"], m["target"]) for m in json.loads((folder / "metrics.json").read_text())["measurements"]}
    assert ("data_quality.row_count", "impressions[surface=search]") in measured  # judged, not skipped
    assert ("freshness.view", "user_features") in measured
    assert ("feature.mart_drift_zeros", "product_features.discount_pct") in measured
    client = connect(tiny_platform)
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string="attributes.run_name = 'clean'", output_format="list"
    )
    assert len(runs) == 1 and runs[0].data.metrics["alerts"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "monitoring")}
    assert {"monitoring/alerts.json", "monitoring/report.html"} <= artifacts
