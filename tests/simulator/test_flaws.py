"""Planted flaws are where flaw_counts.json says, in the numbers it says, and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from simulator.flaws import IMPOSSIBLE, NULLABLE
from tests.simulator.conftest import Run, simulate

EVENT_TABLES = ("impressions", "clicks", "orders")
ID_COLUMN = {"impressions": "impression_id", "clicks": "click_id", "orders": "order_id"}
SURFACES = {"home_feed", "short_video", "live_stream", "search"}
ON_TIME_MAX = pd.Timedelta(minutes=10)


def flaw_counts(run: Run) -> dict:
    return json.loads((run.oracle / "flaw_counts.json").read_text())


def observed(run: Run, name: str) -> dict[str, int]:
    """Count every flaw kind straight from the raw rows, the way a quarantine would."""
    df = run.table(name)
    id_column = ID_COLUMN[name]
    found = {"duplicate": int(df.duplicated(id_column).sum())}
    assert not (df.duplicated(id_column) & ~df.drop(columns="dt").duplicated()).any(), "duplicates are exact"
    df = df.drop_duplicates(id_column)
    for column in NULLABLE[name]:
        found[f"null_{column}"] = int(df[column].isna().sum())
    lag = df["_ingested_at"] - df["event_ts"]
    found["future_event_ts"] = int((lag < pd.Timedelta(0)).sum())
    found["late"] = int((lag >= pd.Timedelta(days=1)).sum())
    if name == "impressions":
        found["bad_position"] = int((df["position"] <= 0).sum())
        found["unknown_surface"] = int((df["surface"].notna() & ~df["surface"].isin(SURFACES)).sum())
    else:
        impressions = set(run.table("impressions")["impression_id"])
        found["orphan_impression"] = int((~df["impression_id"].isin(impressions)).sum())
    if name == "orders":
        found["bad_quantity"] = int((df["quantity"] <= 0).sum())
        found["negative_gmv"] = int((df["gmv"] < 0).sum())
        mismatch = df["gmv"] != df["quantity"] * df["unit_price"]
        found["gmv_mismatch"] = int((mismatch & (df["gmv"] >= 0)).sum())
    return found


@pytest.mark.parametrize("name", EVENT_TABLES)
def test_counts_match_the_raw_rows(tiny: Run, name: str) -> None:
    counts = flaw_counts(tiny)["tables"][name]
    expected_kinds = {f"null_{c}" for c in NULLABLE[name]} | set(IMPOSSIBLE[name]) | {"late", "duplicate"}
    assert set(counts) == expected_kinds
    assert all(n >= 1 for n in counts.values()), counts
    assert observed(tiny, name) == counts
    assert flaw_counts(tiny)["totals"][name] == sum(counts.values())


def test_flaws_at_roughly_the_configured_rate(tiny: Run) -> None:
    payload = flaw_counts(tiny)
    assert payload["flaw_rate"] == 0.005
    for name in ("impressions", "clicks"):  # orders are too few at tiny: each kind is floored at one
        counts = payload["tables"][name]
        clean_rows = tiny.summary.rows[name] - counts["duplicate"]
        for family in ("null_", "late", "duplicate"):
            n = sum(v for k, v in counts.items() if k.startswith(family))
            assert n == pytest.approx(0.005 * clean_rows, rel=0.05, abs=2), (name, family)
        impossible = sum(counts[k] for k in IMPOSSIBLE[name])
        assert impossible == pytest.approx(0.005 * clean_rows, rel=0.05, abs=2), name


@pytest.mark.parametrize("name", EVENT_TABLES)
def test_late_rows_land_in_a_later_partition(tiny: Run, name: str) -> None:
    df = tiny.table(name).dropna(subset=["event_ts"])
    lag = df["_ingested_at"] - df["event_ts"]
    late = df[lag >= pd.Timedelta(days=1)]
    assert len(late) == flaw_counts(tiny)["tables"][name]["late"]
    assert (lag[lag >= pd.Timedelta(days=1)] <= pd.Timedelta(days=5)).all()
    partition = pd.to_datetime(late["dt"].astype(str)).dt.date
    assert (partition > late["event_ts"].dt.date).all()
    # everything else lands within minutes, midnight crossings included
    on_time = lag[(lag >= pd.Timedelta(0)) & (lag < pd.Timedelta(days=1))]
    assert on_time.between(pd.Timedelta(seconds=5), ON_TIME_MAX).all()
    if name == "impressions":  # enough rows that some on-time ones cross midnight into the next partition
        crossed = df.loc[on_time.index]
        assert (pd.to_datetime(crossed["dt"].astype(str)).dt.date > crossed["event_ts"].dt.date).any()


def test_flawed_rows_never_carry_clean_dependents(tiny: Run) -> None:
    impressions = tiny.table("impressions")
    broken = impressions[
        impressions[["user_id", "product_id", "event_ts", "surface"]].isna().any(axis=1)
        | (impressions["position"] <= 0)
        | (impressions["event_ts"] > impressions["_ingested_at"])
    ]
    assert len(broken) > 0
    assert not broken["impression_id"].isin(tiny.table("clicks")["impression_id"]).any()


def test_zero_rate_means_clean_data(tmp_path: Path) -> None:
    run = simulate(tmp_path, flaw_rate=0.0)
    counts = flaw_counts(run)["tables"]
    assert all(n == 0 for table in counts.values() for n in table.values())
    for name in EVENT_TABLES:
        assert all(n == 0 for n in observed(run, name).values()), name
