"""Same seed and end date give the same bytes, whichever entry point; the period ends before end_date."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from simulator import SimConfig
from simulator.cli import app
from tests.simulator.conftest import END_DATE, Run, simulate


def fingerprint(home: Path) -> dict[str, str]:
    files = sorted(p for folder in ("raw", "oracle") for p in (home / folder).rglob("*") if p.is_file())
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_same_bytes_and_rerun_replaces(tiny: Run, tmp_path: Path) -> None:
    home = tmp_path / "again"
    (home / "raw" / "stale_table").mkdir(parents=True)
    simulate(home)
    assert fingerprint(home) == fingerprint(tiny.home)
    assert not (home / "raw" / "stale_table").exists()


def test_other_seed_other_data(tiny: Run, tmp_path: Path) -> None:
    other = simulate(tmp_path, seed=7)
    ours, theirs = fingerprint(tiny.home), fingerprint(other.home)
    assert ours["oracle/impression_truth.parquet"] != theirs["oracle/impression_truth.parquet"]
    assert other.summary.rows["impressions"] != tiny.summary.rows["impressions"]


def test_cli_matches_api_and_reads_scale_and_home_from_env(
    tiny: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPRANK_SCALE", "tiny")
    result = CliRunner().invoke(app, ["generate", "--seed", "42", "--end-date", END_DATE.isoformat()])
    assert result.exit_code == 0, result.output
    assert "oracle AUC" in result.output
    assert fingerprint(tmp_path) == fingerprint(tiny.home)


def test_period_ends_before_end_date(tiny: Run) -> None:
    params = json.loads((tiny.oracle / "generative_params.json").read_text())
    assert params["end_date"] == END_DATE.isoformat()
    assert params["start_date"] == (END_DATE - timedelta(days=21)).isoformat()
    assert params["seed"] == 42 and params["scale"] == "tiny"
    end = datetime(END_DATE.year, END_DATE.month, END_DATE.day, tzinfo=UTC)
    for name in ("impressions", "clicks", "orders"):
        df = tiny.table(name)
        assert df["_ingested_at"].max() < end
        ts = df["event_ts"][df["event_ts"] <= df["_ingested_at"]]  # planted clock-skew rows aside
        assert ts.min() >= end - timedelta(days=21) and ts.max() < end
    impressions = tiny.table("impressions")
    first_day = impressions["event_ts"].min().date()
    assert first_day == (END_DATE - timedelta(days=21))


def test_default_end_date_is_today_utc() -> None:
    assert SimConfig().end_date == datetime.now(UTC).date()


def test_a_longer_history_keeps_each_day_s_volume_and_ends_on_the_same_day(tiny: Run, tmp_path: Path) -> None:
    """`--days` / HISTORY_DAYS: the same marketplace over more days (earlier campaigns to learn from)."""
    assert SimConfig(scale="tiny").spec == SimConfig(scale="tiny", days=21).spec  # the scale's own: unchanged
    spec = SimConfig(scale="tiny", days=42).spec
    assert spec.n_days == 42 and spec.target_impressions == 2 * SimConfig(scale="tiny").spec.target_impressions
    with pytest.raises(ValueError, match="days"):
        SimConfig(scale="tiny", days=3)
    result = CliRunner().invoke(
        app,
        ["generate", "--scale", "tiny", "--days", "42", "--end-date", END_DATE.isoformat(), "--home", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "oracle" / "generative_params.json").read_text())
    assert params["start_date"] == (END_DATE - timedelta(days=42)).isoformat()
    assert params["end_date"] == END_DATE.isoformat()
    longer = ds.dataset(tmp_path / "raw" / "impressions", format="parquet", partitioning="hive").to_table().to_pandas()
    longer = longer[longer["event_ts"] <= longer["_ingested_at"]]  # planted flaws (no time, clock skew) aside
    days = longer["event_ts"].dt.date
    assert days.min() == END_DATE - timedelta(days=42)
    # the last 21 days carry about the volume the 21-day period has (the same users and daily rates)
    recent = int((days >= END_DATE - timedelta(days=21)).sum())
    short = tiny.table("impressions")
    assert 0.8 < recent / int((short["event_ts"] <= short["_ingested_at"]).sum()) < 1.25, recent
