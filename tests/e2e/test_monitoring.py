"""`make monitor` on the session's SCALE=tiny platform (issue 19): the clean platform fires nothing, and each
planted incident is named (check, view/feature or table, window) in the daily run of the day it starts.

One shared platform, incidents planted on copies: the data incidents on copies of its landing zone
(simulator/incidents.py, as `make data INCIDENT=...` plants them), judged by the monitor's own function over the
same daily window as the clean platform. The pipeline zeros, price shock and traffic drop share one copy (they
touch different tables and columns; one dbt rebuild of product_features for the zeros), the late batch, which
moves a whole day of events, has its own. The mis-calibrated challenger is planted on a copy with its own Feast
store, served to live shoppers after the champion (benchmarks/miscalibrated_challenger.py).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from platform_common.registry import connect
from platform_common.settings import Settings
from serving.monitoring.alerts import Alert, Window
from serving.monitoring.config import load_thresholds
from serving.monitoring.run import EXPERIMENT, monitor
from simulator.incidents import Incident, plant
from tests.conftest import run_make
from tests.transforms.conftest import run_dbt


def test_make_monitor_on_a_clean_platform_exits_0_with_an_empty_alert_list(tiny_platform):
    # the platform's last day, not `make monitor`'s default (yesterday): a run that crosses midnight UTC would
    # judge a day the platform never simulated (it did, once)
    params = json.loads((tiny_platform.home_dir / "oracle" / "generative_params.json").read_text())
    last_day = date.fromisoformat(params["end_date"]) - timedelta(days=1)
    run_make(tiny_platform.home_dir, "monitor", extra_env={"MONITOR_RUN": "clean", "DAY": last_day.isoformat()})
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
    # landing freshness is dbt's own verdict, kept beside the report
    sources = json.loads((folder / "dbt_sources.json").read_text())
    assert {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in sources["results"]} == dict.fromkeys(
        ("clicks", "impressions", "merchant_daily", "product_prices"), "pass"
    )
    assert ("data_quality.landing_freshness", "impressions") in measured
    client = connect(tiny_platform)
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string="attributes.run_name = 'clean'", output_format="list"
    )
    assert len(runs) == 1 and runs[0].data.metrics["alerts"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "monitoring")}
    assert {"monitoring/alerts.json", "monitoring/report.html", "monitoring/dbt_sources.json"} <= artifacts


# --- planted data incidents ------------------------------------------------------------------------------


def incident_day(settings: Settings) -> date:
    """X = the period's end - 2 days, as in `make bench-monitor`: a full baseline week before it."""
    params = json.loads((settings.home_dir / "oracle" / "generative_params.json").read_text())
    return date.fromisoformat(params["end_date"]) - timedelta(days=2)


def window_of(day: date) -> Window:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def judge(settings: Settings, day: date, name: str) -> list[Alert]:
    """The daily run of `day`, 6 h after it closed, as `make monitor DAY=<day>` runs it (without MLflow)."""
    window = window_of(day)
    outcome = monitor(settings, load_thresholds(), window, window.end + timedelta(hours=6), name, log_to_mlflow=False)
    return outcome.result.alerts


def copy_home(src: Settings, dst: Path) -> Settings:
    """What the data checks read: the landing zone, the warehouse (quarantine), the marts, and the registry (the
    champion's reference picks the mart features). No Feast registry: view freshness is not judged on a copy."""
    for part in ("raw", "marts", "mlflow", "oracle"):
        shutil.copytree(src.home_dir / part, dst / part, ignore=shutil.ignore_patterns("*.lock", "live"))
    shutil.copy2(src.warehouse_path, dst / src.warehouse_path.name)
    return Settings(home=dst, scale="tiny")


@pytest.fixture(scope="module")
def clean_day(tiny_platform: Settings) -> list[Alert]:
    return judge(tiny_platform, incident_day(tiny_platform), "clean-incident-day")


@pytest.fixture(scope="module")
def product_incidents(tiny_platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[Alert]:
    """Pipeline zeros (discount_pct), a price shock (electronics x1.6) and a traffic drop (search keeps 1 in 5),
    all from day X, on one copy; product_features rebuilt by dbt from the planted landing zone."""
    settings = copy_home(tiny_platform, tmp_path_factory.mktemp("incidents-home"))
    day = incident_day(tiny_platform)
    planted = plant(
        settings.raw_dir,
        [Incident.parse(f"{kind}@{day.isoformat()}") for kind in ("zero_column", "price_shock", "traffic_drop")],
    )
    assert all(n > 0 for n in planted.values()), planted
    built = run_dbt(settings.home_dir, "run", "--select", "+product_features")
    assert built.returncode == 0, built.stdout[-3000:]
    return judge(settings, day, "product-incidents")


@pytest.fixture(scope="module")
def late_batch(tiny_platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[Alert]:
    settings = copy_home(tiny_platform, tmp_path_factory.mktemp("late-home"))
    day = incident_day(tiny_platform)
    assert plant(settings.raw_dir, [Incident.parse(f"late_batch@{day.isoformat()}")])
    return judge(settings, day, "late-batch")


def named(alerts: list[Alert], day: date) -> set[tuple[str, str]]:
    assert {a.window for a in alerts} <= {window_of(day).label}
    return {(a.check, a.target) for a in alerts}


def test_the_clean_platform_fires_nothing_on_the_incident_day(tiny_platform: Settings, clean_day: list[Alert]):
    assert clean_day == []


def test_pipeline_zeros_are_named(tiny_platform: Settings, product_incidents: list[Alert], clean_day: list[Alert]):
    zeros = [a for a in product_incidents if a.check == "feature.mart_drift_zeros"]
    assert [(a.target, a.measured) for a in zeros] == [("product_features.discount_pct", 1.0)]
    assert named(product_incidents, incident_day(tiny_platform))


def test_a_price_shock_is_named(tiny_platform: Settings, product_incidents: list[Alert]):
    shocks = [a for a in product_incidents if a.check == "data_quality.category_price"]
    assert [a.target for a in shocks] == ["product_prices[category=electronics]"]
    assert shocks[0].measured > 0.25  # log of the median's move: x1.6 planted


def test_a_traffic_drop_on_one_surface_is_named(tiny_platform: Settings, product_incidents: list[Alert]):
    drops = [a for a in product_incidents if a.check == "data_quality.row_count"]
    assert [a.target for a in drops] == ["impressions[surface=search]"]
    assert drops[0].measured < 0.4


# What the traffic drop does besides: it removes four in five search impressions with their clicks and orders, so
# at tiny (a few clicks an hour at night) the newest click of the day can land more than the 6 h freshness limit
# before the run (seen once sessions came: 7.4 h). That alert is the planted drop seen from another check, and the
# same day without the plants fires nothing (test_the_clean_platform_fires_nothing_on_the_incident_day).
THINNED_BY_THE_DROP = {("data_quality.landing_freshness", "clicks"), ("data_quality.landing_freshness", "orders")}


def test_the_planted_world_raises_nothing_else(
    tiny_platform: Settings, product_incidents: list[Alert], clean_day: list[Alert]
):
    planted = {
        ("feature.mart_drift_zeros", "product_features.discount_pct"),
        ("data_quality.category_price", "product_prices[category=electronics]"),
        ("data_quality.row_count", "impressions[surface=search]"),
    }
    raised = named(product_incidents, incident_day(tiny_platform))
    assert planted <= raised
    assert raised - planted <= THINNED_BY_THE_DROP, raised - planted
    assert clean_day == []  # so anything in THINNED_BY_THE_DROP that fired came from the plants


def test_a_late_batch_is_named_by_dbt_source_freshness(tiny_platform: Settings, late_batch: list[Alert]):
    fired = named(late_batch, incident_day(tiny_platform))
    assert {("data_quality.landing_freshness", "impressions"), ("data_quality.landing_freshness", "clicks")} <= fired
    # its other symptom: the day's rows had not landed when it closed
    assert ("data_quality.row_count", "impressions") in fired
    assert {check for check, _ in fired} == {"data_quality.landing_freshness", "data_quality.row_count"}


# --- the mis-calibrated challenger, promoted by force, on live traffic -------------------------------------


@pytest.fixture(scope="module")
def challenger_run(tiny_platform: Settings, tmp_path_factory: pytest.TempPathFactory):
    from benchmarks.miscalibrated_challenger import land_pending, live_incident
    from tests.simulator.test_live_service import _copy_home

    settings = _copy_home(tiny_platform, tmp_path_factory.mktemp("challenger-home"))
    # the frozen test set the gate compares on (a forced promotion still runs the comparison)
    shutil.copytree(tiny_platform.home_dir / "datasets", settings.home_dir / "datasets")
    shutil.copy2(tiny_platform.warehouse_path, settings.warehouse_path)  # quarantine_events
    incident = live_incident(settings, factor=3.0, rate=30.0, seconds=30.0, seed=11)
    land_pending(settings, hours=20)  # the orders' attribution window passes
    first = datetime.fromtimestamp(incident.started, UTC)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    days = (datetime.now(UTC) - start).days + 1  # live traffic may straddle midnight
    window = Window(start, start + timedelta(days=days))
    outcome = monitor(
        settings, load_thresholds(), window, window.end + timedelta(hours=25), "challenger", log_to_mlflow=False
    )
    return incident, outcome


def test_a_miscalibrated_challenger_is_named_and_the_champion_is_not(challenger_run):
    incident, outcome = challenger_run
    assert min(incident.answered) > 500
    fired = {(a.check, a.target) for a in outcome.result.alerts}
    new, old = f"v{incident.challenger}", f"v{incident.champion}"
    assert ("model.calibration", f"{new} all") in fired
    # pCTR x3 planted: the challenger's predicted / realised CTR is about 3x the champion's, and passes the
    # 2.5x threshold on some group. Not necessarily on `all`: over ~900 answers it measured 2.46x there once
    # (3.3x on short_video), and the threshold cannot drop below the clean champion's 2.1x on a small surface.
    ratios = {m.target: m.value for m in outcome.result.measurements if m.check == "model.ctr_ratio"}
    assert 2.0 < ratios[f"{new} all"] < 4.5 and ratios[f"{new} all"] > 2.0 * ratios[f"{old} all"], ratios
    assert any(check == "model.ctr_ratio" and target.startswith(f"{new} ") for check, target in fired), ratios
    # the champion, judged in the same run on the same window, fires nothing; nor does any feature check
    assert not [a for a in outcome.result.alerts if old in a.target]
    assert not [a for a in outcome.result.alerts if a.check.startswith(("feature.", "model.prediction"))]
    # what else fires is the landing zone, rightly: live shoppers at 30 req/s are several times the tiny world's
    # day, and judged as of tonight's window end the streams have been quiet since the live run stopped (and
    # today's price snapshot, which the simulated world never lands, is late)
    others = {(a.check, a.target) for a in outcome.result.alerts if not a.check.startswith("model.")}
    assert {check for check, _ in others} <= {"data_quality.row_count", "data_quality.landing_freshness"}
    scheduled = {"impressions", "clicks", "product_prices", "merchant_daily"}
    assert {target for check, target in others if check == "data_quality.landing_freshness"} <= scheduled
    assert all(a.measured > 4 for a in outcome.result.alerts if a.check == "data_quality.row_count")


def test_the_challenger_run_measures_skew_drift_and_the_online_table(challenger_run):
    incident, outcome = challenger_run
    measured = outcome.result.measurements
    skew = [m for m in measured if m.check == "feature.skew"]
    assert skew and all(m.value == 0.0 for m in skew)  # served values are the offline store's at their time
    drift = [m for m in measured if m.check == "feature.served_drift"]
    assert drift and max(m.value for m in drift) < 0.25  # both versions against their own served baselines
    table = pd.read_csv(outcome.folder / "online_quality.csv")
    assert set(table["version"].astype(str)) == {incident.champion, incident.challenger}
    assert {"all", "surface=home_feed", "surface=search"} <= set(table["group"])
    assert (table["status"] == "scored").all()
    overall = table[table["group"] == "all"]
    ratio = overall["predicted_ctr"] / overall["realised_ctr"]
    by_version = overall["version"].astype(str)
    assert (ratio[by_version == incident.challenger] > 2).all()
    assert (ratio[by_version == incident.champion] < 2).all()
    report = (outcome.folder / "report.html").read_text()
    assert "Online quality per day and surface" in report and "served baseline" in report
