"""`dbt source freshness` as `make monitor` runs it (serving/monitoring/data_quality.py): dbt's own command on the
sources' `loaded_at_field: _ingested_at` and warn/error thresholds, judged as of a window end through
transforms/macros/source_freshness.sql, on the hand-made landing zone of
tests/serving/test_monitoring_data_quality.py."""

from __future__ import annotations

from pathlib import Path

from serving.monitoring import data_quality as dq
from tests.serving.test_monitoring_data_quality import END, TH, WINDOW, world


def test_dbt_source_freshness_as_of_the_window_end_names_a_late_batch(tmp_path: Path) -> None:
    clean, late = tmp_path / "clean", tmp_path / "late"
    world(clean / "raw")
    world(late / "raw", late_hours=30)  # the window's impressions and clicks land the day after it closed

    sources, where = dq.run_source_freshness(clean, END)
    assert sources is not None, where
    result = dq.landing_freshness(sources, where, WINDOW, TH)
    assert result.alerts == []
    lags = {m.target: m.value for m in result.measurements}
    # only the tables with a freshness block; the window's last impression landed minutes before it closed
    assert set(lags) == {"impressions", "clicks", "product_prices", "merchant_daily"}
    assert lags["impressions"] < 1 and lags["merchant_daily"] < 1
    assert Path(where).name == "sources.json"

    sources, where = dq.run_source_freshness(late, END)
    assert sources is not None, where
    result = dq.landing_freshness(sources, where, WINDOW, TH)
    fired = {a.target: a for a in result.alerts}
    assert set(fired) == {"impressions", "clicks"}
    # rows that landed after the window end do not count: the newest one before it is from the previous day
    assert fired["impressions"].measured > 24 and fired["impressions"].threshold == 6
    assert {m.detail["dbt_status"] for m in result.measurements if m.target in fired} == {"error"}


def test_without_a_landing_zone_dbt_says_so_and_the_monitor_alerts(tmp_path: Path) -> None:
    sources, where = dq.run_source_freshness(tmp_path, END)
    result = dq.landing_freshness(sources, where, WINDOW, TH)
    assert sources is not None, where  # dbt ran, read nothing, and said so in its log only
    fired = {(a.check, a.target) for a in result.alerts}
    tables = ("impressions", "clicks", "product_prices", "merchant_daily")
    assert fired == {("data_quality.landing_freshness", t) for t in tables}
