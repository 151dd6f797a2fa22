"""Streaming generation: day-by-day windows give what the whole period at once would, in bounded memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from simulator import SimConfig
from simulator.campaigns import DAY_US, build_days
from simulator.days import simulate_days
from simulator.entities import make_merchants, make_panels, make_products, make_users, plant_causes, rng_for
from simulator.flaws import plan_flaws
from simulator.landing import DenseIds, EventTable
from simulator.ordering import IMPRESSION_KEYS, ChronoOrder, Window
from simulator.pipeline import streamed_auc
from simulator.run import roc_auc
from simulator.tables import product_prices_days
from simulator.traffic import DayEvents
from simulator.writer import PartitionedTable, TruthWriter, truth_table, write_partitioned
from tests.simulator.conftest import END_DATE, Run

EVENT_TABLES = ("impressions", "clicks", "orders")


def tiny_days() -> tuple[SimConfig, list[int], list[DayEvents]]:
    config = SimConfig(scale="tiny", seed=42, end_date=END_DATE)
    days = build_days(config)
    users = make_users(config, days, rng_for(42, "users"))
    merchants = make_merchants(config, days, rng_for(42, "merchants"))
    products = make_products(config, days, merchants, rng_for(42, "products"))
    planted = plant_causes(config, days, merchants, products, rng_for(42, "plants"))
    panels = make_panels(config, days, merchants, products, planted, rng_for(42, "panels"))
    traffic = simulate_days(config, days, users, merchants, products, panels, rng_for(42, "traffic"))
    boundaries = [int(s) + DAY_US for s in days.start_us]
    return config, boundaries, list(traffic)


def one_piece(chunks: list[DayEvents]) -> DayEvents:
    """All days as one day: row references re-based, as the whole period simulated at once."""
    imp_base = np.cumsum([0] + [len(c["imp_ts"]) for c in chunks[:-1]])
    clk_base = np.cumsum([0] + [len(c["clk_ts"]) for c in chunks[:-1]])
    whole = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    whole["clk_imp"] = np.concatenate([c["clk_imp"] + b for c, b in zip(chunks, imp_base, strict=True)])
    whole["ord_clk"] = np.concatenate([c["ord_clk"] + b for c, b in zip(chunks, clk_base, strict=True)])
    return whole


def joined(windows: list[Window]) -> dict[str, dict[str, np.ndarray]]:
    return {
        part: {k: np.concatenate([getattr(w, part)[k] for w in windows]) for k in getattr(windows[0], part)}
        for part in EVENT_TABLES
    }


def test_day_windows_number_rows_as_the_whole_period_at_once() -> None:
    _, boundaries, chunks = tiny_days()
    order = ChronoOrder()
    windows = [order.push(c, None if i == len(chunks) - 1 else boundaries[i]) for i, c in enumerate(chunks)]
    streamed = joined(windows)
    whole = joined([ChronoOrder().push(one_piece(chunks), None)])
    for part in EVENT_TABLES:
        for key, values in whole[part].items():
            np.testing.assert_array_equal(streamed[part][key], values, err_msg=f"{part}.{key}")
    # and the single piece is chronological, references included
    imps = whole["impressions"]
    assert (np.diff(imps["imp_ts"]) >= 0).all()
    assert (imps["imp_ts"][whole["clicks"]["imp_row"]] <= whole["clicks"]["clk_ts"]).all()
    assert (whole["clicks"]["clk_ts"][whole["orders"]["clk_row"]] <= whole["orders"]["ord_ts"]).all()
    assert set(whole["impressions"]) == set(IMPRESSION_KEYS)


def test_carry_between_windows_stays_small() -> None:
    """What waits for a later window is the spill past midnight and two days of orders, never a day's traffic."""
    config, boundaries, chunks = tiny_days()
    max_order_delay = int(config.params.orders.order_delay_max_h * 3600 * 1e6)
    order = ChronoOrder()
    for i, chunk in enumerate(chunks[:-1]):
        order.push(chunk, boundaries[i])
        carried = order.imps["imp_ts"]
        assert len(carried) < 0.05 * len(chunk["imp_ts"]), (i, len(carried))
        assert (carried >= boundaries[i]).all()
        # an order is at most 48 h (plus the click's seconds) after its impression
        assert (order.ords["ord_ts"] < boundaries[i] + max_order_delay + DAY_US).all()
        assert len(order.clks["clk_ts"]) < 0.05 * len(chunk["clk_ts"]) + 5


def test_partitions_written_as_they_close_equal_one_write(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 5_000
    day0 = 20_000
    ingested = np.sort((day0 * DAY_US + rng.uniform(0, 6 * DAY_US, n)).astype(np.int64))
    columns = {
        "click_id": rng.permutation(n) + 1,
        "impression_id": rng.integers(1, 10**6, n),
        "event_ts": ingested - 1_000_000,
        "user_id": rng.integers(1, 600, n),
        "product_id": rng.integers(1, 400, n),
        "_ingested_at": ingested,
    }
    nulls = {"user_id": rng.random(n) < 0.01, "product_id": np.zeros(n, dtype=bool), "event_ts": rng.random(n) < 0.01}

    streamed = PartitionedTable(tmp_path / "streamed", "clicks", ("user_id", "product_id", "event_ts"))
    # batches in event order, each flushed through the day it covers; rows may land days later
    late = rng.random(n) < 0.02
    columns["_ingested_at"] = np.where(late, ingested + 3 * DAY_US, ingested)
    write_partitioned(tmp_path / "once", "clicks", columns, nulls)
    for batch in np.array_split(np.arange(n), 6):
        streamed.add({k: v[batch] for k, v in columns.items()}, {k: v[batch] for k, v in nulls.items()})
        streamed.flush(int(ingested[batch[-1]] // DAY_US) - 1)
    assert streamed.close(day0) == n
    once = sorted((tmp_path / "once" / "clicks").rglob("*.parquet"))
    again = sorted((tmp_path / "streamed" / "clicks").rglob("*.parquet"))
    assert [p.parent.name for p in once] == [p.parent.name for p in again]
    assert len(once) >= 8  # the late rows open partitions past the six days
    for a, b in zip(once, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.parent.name


def test_truth_writer_appends_row_groups_like_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TruthWriter, "ROW_GROUP", 1_000)
    rng = np.random.default_rng(1)
    n = 4_321
    truth = {
        "impression_id": np.arange(1, n + 1),
        "p_click": rng.random(n),
        "p_order_given_click": rng.random(n),
        "expected_order_value": rng.random(n) * 30,
    }
    writer = TruthWriter(tmp_path / "streamed")
    for part in np.array_split(np.arange(n), 7):
        writer.add({k: v[part] for k, v in truth.items()})
    writer.close()
    (tmp_path / "once").mkdir()
    pq.write_table(truth_table(truth), tmp_path / "once" / "t.parquet", compression="zstd", row_group_size=1_000)
    streamed = (tmp_path / "streamed" / "impression_truth.parquet").read_bytes()
    assert hashlib.sha256(streamed).digest() == hashlib.sha256((tmp_path / "once" / "t.parquet").read_bytes()).digest()
    assert pq.ParquetFile(tmp_path / "streamed" / "impression_truth.parquet").metadata.num_row_groups == 5


def test_streamed_auc_is_roc_auc_to_the_bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TruthWriter, "ROW_GROUP", 777)
    rng = np.random.default_rng(2)
    n = 5_000
    scores = np.round(rng.random(n), 3)  # plenty of ties, across batches
    labels = rng.random(n) < scores * 0.3
    writer = TruthWriter(tmp_path)
    writer.add(
        {
            "impression_id": np.arange(1, n + 1),
            "p_click": scores,
            "p_order_given_click": scores,
            "expected_order_value": scores,
        }
    )
    writer.close()
    path = tmp_path / "impression_truth.parquet"
    assert streamed_auc(path, labels) == roc_auc(labels, scores)
    assert np.isnan(streamed_auc(path, np.zeros(n, dtype=bool)))


def test_dense_ids_skip_rows_that_did_not_land() -> None:
    ids = DenseIds()
    first = ids.add(np.array([True, False, True]))
    second = ids.add(np.array([True, True, False, True]))
    assert first[[0, 2]].tolist() == [1, 2] and second[[0, 1, 3]].tolist() == [3, 4, 5]
    ok, looked_up = ids.lookup(np.array([0, 1, 2, 3, 4, 5, 6]))
    assert ok.tolist() == [True, False, True, True, True, False, True]
    assert looked_up[ok].tolist() == [1, 2, 3, 4, 5]


def test_flaw_picks_do_not_depend_on_the_scan_block(monkeypatch: pytest.MonkeyPatch) -> None:
    config = SimConfig(scale="tiny", seed=1, end_date=END_DATE, flaw_rate=0.03)
    n = 3_000
    end_us = 30 * DAY_US
    cols = {
        "impression_id": np.arange(1, n + 1),
        "request_id": np.arange(1, n + 1),
        "event_ts": np.sort(np.random.default_rng(3).integers(0, end_us, n)),
        "user_id": np.ones(n, dtype=np.int64),
        "product_id": np.ones(n, dtype=np.int64),
        "surface": np.zeros(n, dtype=np.int8),
        "position": np.ones(n, dtype=np.int32),
        "_ingested_at": np.zeros(n, dtype=np.int64),
    }
    cols["_ingested_at"] = cols["event_ts"] + 1_000_000
    dependents = np.random.default_rng(4).random(n) < 0.3
    late_ok = cols["event_ts"] < end_us - DAY_US - 60_000_000

    def plan() -> tuple[np.ndarray, dict[str, int]]:
        result = plan_flaws(
            "impressions",
            n,
            config,
            end_us,
            dependents,
            late_ok,
            lambda rows: EventTable("impressions", {k: v[rows] for k, v in cols.items()}),
            rng_for(1, "flaws/impressions"),
        )
        assert not dependents[result.rows[result.table.nulls["user_id"]]].any()
        return result.rows, result.counts

    whole_rows, whole_counts = plan()
    monkeypatch.setattr("simulator.flaws._PICK_BLOCK", 97)
    rows, counts = plan()
    np.testing.assert_array_equal(rows, whole_rows)
    assert counts == whole_counts and counts["late"] == round(0.03 * n)


def test_daily_price_snapshots_draw_in_whole_panel_order() -> None:
    config = SimConfig(scale="tiny", seed=42, end_date=END_DATE)
    days = build_days(config)
    merchants = make_merchants(config, days, rng_for(42, "merchants"))
    products = make_products(config, days, merchants, rng_for(42, "products"))
    planted = plant_causes(config, days, merchants, products, rng_for(42, "plants"))
    panels = make_panels(config, days, merchants, products, planted, rng_for(42, "panels"))
    # the whole panel at once, entity-major, as one draw
    p, d = np.nonzero(products.first_day[:, None] <= np.arange(days.n)[None, :])
    lo, hi = config.params.landing.price_snapshot_lag_min
    lag = (rng_for(42, "prices").uniform(lo, hi, len(p)) * 60 * 1_000_000).astype(np.int64)
    expected = pd.DataFrame({"product_id": p + 1, "_ingested_at": days.start_us[d] + lag})
    got = pd.concat(
        pd.DataFrame({"product_id": c["product_id"], "_ingested_at": c["_ingested_at"]})
        for _, c in product_prices_days(config, days, products, panels, rng_for(42, "prices"))
    )
    key = ["product_id", "_ingested_at"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True)
    )


def test_late_rows_land_in_their_landing_day_partition(tiny: Run) -> None:
    for name in EVENT_TABLES:
        df = tiny.table(name)
        landed_on = df["_ingested_at"].dt.strftime("%Y-%m-%d")
        assert (df["dt"].astype(str) == landed_on).all(), name
        late = df[df["_ingested_at"] - df["event_ts"] >= pd.Timedelta(days=1)]
        assert len(late) > 0, name
        # the late rows sit in a partition after their event's day, not with their neighbours
        assert (late["dt"].astype(str) > late["event_ts"].dt.strftime("%Y-%m-%d")).all(), name
    assert not (tiny.home / ".spool.partial").exists()
