"""The baseline ranker and the experiment report: unit pieces, then one live run end to end on the tiny platform."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest

from platform_common.experiment_summary import read_summary
from platform_common.feature_spec import FeatureSpec
from platform_common.settings import Settings
from training.baseline import BASELINE_TAG, BaselineBundle, BaselineConfig, popularity_feature
from training.promotion import newest_candidate

EXPERIMENT = "report-e2e"


def _bundle(kind: str) -> BaselineBundle:
    bundle = BaselineBundle()
    bundle.spec = FeatureSpec(
        feature_service="s", numeric=("price", "product_clicks_7d"), categorical=(), vocabularies={}
    )
    bundle.baseline = BaselineConfig(kind=kind, popularity_feature="product_clicks_7d")  # type: ignore[arg-type]
    return bundle


def test_random_baseline_is_deterministic_per_row_and_unrelated_to_value() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(1, 50, 5000), rng.poisson(3, 5000)]).astype(np.float32)
    bundle = _bundle("random")
    a, b = bundle.score_matrix(x), bundle.score_matrix(x)
    np.testing.assert_array_equal(a["pctr"], b["pctr"])
    assert set(a) == {"pctr", "pcvr", "pctcvr"}
    strength = a["pctr"] / (2 * 0.04)
    assert 0.45 < strength.mean() < 0.55 and strength.min() >= 0 and strength.max() < 1
    assert abs(np.corrcoef(strength, x[:, 0])[0, 1]) < 0.05
    gmv = bundle.expected_gmv(a["pctcvr"], x[:, 0].astype(float))
    assert np.array_equal(np.argsort(-gmv, kind="stable"), np.argsort(-a["pctcvr"], kind="stable"))


def test_popularity_baseline_ranks_by_recent_clicks() -> None:
    x = np.array([[10.0, 0.0], [10.0, 9.0], [10.0, 2.0]], dtype=np.float32)
    order = np.argsort(-_bundle("popularity").score_matrix(x)["pctr"])
    assert order.tolist() == [1, 2, 0]
    assert popularity_feature(("a", "product_clicks_30d", "product_clicks_7d")) == "product_clicks_7d"
    with pytest.raises(ValueError, match="no product click count"):
        popularity_feature(("a", "b"))


def test_promote_without_a_version_skips_baselines() -> None:
    versions = [
        SimpleNamespace(version="1", tags={}),
        SimpleNamespace(version="2", tags={"leakage_guard": "passed"}),
        SimpleNamespace(version="3", tags={BASELINE_TAG: "random"}),
    ]
    client = SimpleNamespace(search_model_versions=lambda _: versions)
    chosen = newest_candidate(client, "m")  # type: ignore[arg-type]
    assert chosen is not None and chosen.version == "2"
    only_baselines = SimpleNamespace(search_model_versions=lambda _: versions[2:])
    assert newest_candidate(only_baselines, "m") is None  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def platform(tiny_platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from tests.simulator.test_live_service import _copy_home

    return _copy_home(tiny_platform, tmp_path_factory.mktemp("report-home"))


def test_report_on_a_live_ab_run_against_a_random_baseline(platform: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the random baseline, run live shoppers under an A/B experiment, analyse: in process but for the
    service (the CLI subprocesses cost ~10 s each to import MLflow on a busy machine)."""
    from typer.testing import CliRunner

    from serving.experiments import store
    from serving.experiments.cli import app
    from serving.experiments.model import build
    from serving.launcher import running_service
    from simulator.live.client import run_live
    from training.baseline import register_baseline

    home = platform.home_dir
    monkeypatch.setenv("SHOPRANK_HOME", str(home))
    baseline = register_baseline("random", platform)
    now = datetime.now(UTC)
    store.start(platform, build(EXPERIMENT, "ab", f"control=v{baseline},treatment=champion", None, now, None))
    env = {"SHOPRANK_REQUEST_LOG_FLUSH_SECONDS": "1"}
    with running_service(platform, extra_env=env) as url:
        stats = asyncio.run(
            run_live(home / "raw", home / "oracle", url, rate=60.0, seconds=4.0, seed=5, linger_seconds=2.0)
        )
        assert stats.answered > 100 and stats.experiment_answers == stats.answered
        deadline = time.monotonic() + 20
        folder = home / "logs" / "experiments" / EXPERIMENT
        while time.monotonic() < deadline and not list(folder.glob("dt=*/*.parquet")):
            time.sleep(0.5)
        time.sleep(1.5)
    store.stop(platform, EXPERIMENT)

    runner = CliRunner()
    reported = runner.invoke(app, ["report", EXPERIMENT, "--window-minutes", "30"])
    assert reported.exit_code == 0, reported.output
    assert "oracle's true lift" in reported.output
    summary = read_summary(platform.experiments_dir, EXPERIMENT)
    assert set(summary.arms) == {"control", "treatment"}
    assert summary.arms["control"].model_version == baseline
    assert sum(a.requests for a in summary.arms.values()) == stats.answered
    assert summary.srm_p_value is not None and 0 <= summary.srm_p_value <= 1
    assert {"gmv_per_request", "ctr", "cvr"} <= set(summary.metrics)
    gmv = summary.metrics["gmv_per_request"]
    assert gmv.true_lift is not None and gmv.true_lift > -1
    clicks = sum(int((a.model_extra or {})["clicks"]) for a in summary.arms.values())
    assert clicks > 0 and summary.metrics["ctr"].true_lift is not None
    # stopped by command without a planned stop, orders still on their way: not readable, and it says why
    assert not summary.readable and "planned stop" in summary.readable_reason
    report = platform.experiments_dir / EXPERIMENT / "report.html"
    assert "cumulative_lift.png" in report.read_text() and "funnels.png" in report.read_text()
    run = json.loads((platform.experiments_dir / EXPERIMENT / "mlflow_run.json").read_text())["run_id"]
    from mlflow import MlflowClient

    logged = MlflowClient(tracking_uri=platform.tracking_uri).get_run(run)
    assert logged.data.tags["shoprank.experiment"] == EXPERIMENT and "srm_p_value" in logged.data.metrics

    # a bad id is refused in one line, exit 2
    missing = runner.invoke(app, ["report", "no-such"])
    assert missing.exit_code == 2 and "no experiment 'no-such'" in missing.output and "Traceback" not in missing.output

    # the plan reads the history
    plan = runner.invoke(app, ["plan", "--rate", "100", "--seconds", "600"])
    assert plan.exit_code == 0 and "minimum detectable GMV-per-request lift" in plan.output, plan.output
