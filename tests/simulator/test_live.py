"""Live shoppers without a service: the stored world, the draws, the ids and the landed contract."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from simulator.campaigns import build_days
from simulator.entities import SECOND_US, make_merchants, make_panels, make_products, make_users, plant_causes, rng_for
from simulator.live.client import LiveError, Stats, check_loopback, run_live
from simulator.live.landing import LIVE_ID_BASE, AnswerMeta, LiveLanding
from simulator.live.session import LiveMarket, Served, draw_sessions, react
from simulator.live.world_store import StoredWorld, load_world
from simulator.writer import SCHEMAS

from .conftest import Run

# 2026-11-27 12:00 UTC, a week after the tiny period, not a campaign day
NOW_US = 1_795_780_800 * SECOND_US


@pytest.fixture(scope="module")
def world(tiny: Run) -> StoredWorld:
    return load_world(tiny.oracle)


@pytest.fixture
def home(tiny: Run, tmp_path: Path) -> Path:
    """A writable copy of the tiny home (raw and oracle)."""
    for part in ("raw", "oracle"):
        shutil.copytree(tiny.home / part, tmp_path / part)
    return tmp_path


def _served_in_candidate_order(batch) -> Served:  # type: ignore[no-untyped-def]
    return Served(np.arange(batch.n), np.full(batch.n, NOW_US, dtype=np.int64), batch.offsets, batch.product)


def test_world_round_trips_through_its_persisted_form(tiny: Run, world: StoredWorld) -> None:
    config = tiny.config
    days = build_days(config)
    seed = config.seed
    users = make_users(config, days, rng_for(seed, "users"))
    merchants = make_merchants(config, days, rng_for(seed, "merchants"))
    products = make_products(config, days, merchants, rng_for(seed, "products"))
    planted = plant_causes(config, days, merchants, products, rng_for(seed, "plants"))
    panels = make_panels(config, days, merchants, products, planted, rng_for(seed, "panels"))
    assert world.config.model_dump(exclude={"home"}) == config.model_dump(exclude={"home"})
    for drawn, stored in ((users, world.users), (merchants, world.merchants), (products, world.products)):
        for f in fields(drawn):
            a, b = getattr(drawn, f.name), getattr(stored, f.name)
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
    last = days.n - 1
    assert np.array_equal(world.last_day.price, panels.price[:, last])
    assert np.array_equal(world.last_day.is_live, panels.is_live[:, last])
    assert np.array_equal(world.last_day.rating, panels.rating[:, last])
    assert world.clean_rows["impressions"] == tiny.summary.rows["impressions"] - sum(
        tiny.summary.flaw_counts["impressions"][k] for k in ("duplicate",)
    )


def test_clicks_and_orders_follow_the_true_probabilities(world: StoredWorld) -> None:
    market = LiveMarket(world, NOW_US)
    rng = np.random.default_rng(11)
    batch = draw_sessions(rng, market, 6000, NOW_US)
    out = react(rng, market, batch, _served_in_candidate_order(batch))
    n = len(out.p_click)
    mean_p = out.p_click.mean()
    # the sum of independent Bernoullis: variance sum p(1-p); 4 sigma makes a false alarm ~1e-4
    sd = np.sqrt((out.p_click * (1 - out.p_click)).sum())
    assert abs(len(out.clicked) - mean_p * n) < 4 * sd, (len(out.clicked), mean_p * n)
    p_ord = out.p_order[out.clicked]
    assert abs(len(out.ordered) - p_ord.sum()) < 4 * np.sqrt((p_ord * (1 - p_ord)).sum()) + 1
    assert 0.005 < len(out.clicked) / n < 0.2  # the historical CTR's neighbourhood, not a degenerate model
    # the list's truth is the sum of its impressions', and no order beats the oracle's
    per_list = np.bincount(out.imp_answer, weights=out.p_click * out.p_order * out.expected_value)
    assert np.allclose(per_list, out.list_gmv)
    assert np.all(out.best_gmv >= out.list_gmv - 1e-12)


def test_the_served_order_is_what_the_shopper_sees(world: StoredWorld) -> None:
    """The same product is clicked more at position 1 than at 10: position bias at the served slots."""
    market = LiveMarket(world, NOW_US)
    batch = draw_sessions(np.random.default_rng(3), market, 3000, NOW_US)
    keep = np.flatnonzero(np.diff(batch.offsets) >= 10)
    first_at_1, first_at_10 = [], []
    for i in keep:
        cands = batch.candidates(i)
        swapped = cands.copy()
        swapped[0], swapped[9] = cands[9], cands[0]
        first_at_1.append(cands[:10])
        first_at_10.append(swapped[:10])
    offsets = np.arange(len(keep) + 1) * 10
    clicks = {1: 0, 10: 0}
    p_at = {}
    for pos, lists in ((1, first_at_1), (10, first_at_10)):
        served = Served(keep, np.full(len(keep), NOW_US, dtype=np.int64), offsets, np.concatenate(lists))
        for r in range(40):
            out = react(np.random.default_rng(100 + r), market, batch, served)
            product_row = np.flatnonzero(out.imp_position == pos)
            clicks[pos] += int(np.isin(out.clicked, product_row).sum())
        p_at[pos] = out.p_click[out.imp_position == pos]
    eta = np.array(list(world.config.params.clicks.examination_eta.values()))
    assert np.all(p_at[1] > p_at[10])
    assert clicks[1] > 2 * clicks[10] > 0, clicks
    assert eta.min() > 0


def test_live_ids_never_collide_and_rows_keep_the_raw_contract(home: Path, tiny: Run) -> None:
    world = load_world(home / "oracle")
    market = LiveMarket(world, NOW_US)
    landed_ids: list[set[str]] = []
    for run in range(2):
        rng = np.random.default_rng(run)
        landing = LiveLanding(home / "raw", home / "oracle", world, f"run{run}", seed=run)
        batch = draw_sessions(rng, market, 400, NOW_US)
        served = _served_in_candidate_order(batch)
        out = react(rng, market, batch, served)
        meta = AnswerMeta(
            request_id=np.array([None] * batch.n, dtype=object),
            experiment_id=[None] * batch.n,
            arm=[None] * batch.n,
            credit=np.array([None] * len(served.product), dtype=object),
        )
        landing.add(out, served, meta, batch.user)
        # everything has happened by then (orders come at most two days later)
        landing.close(NOW_US + 3 * 86_400 * SECOND_US)
        files = sorted((home / "raw" / "impressions").glob(f"dt=*/part-live-run{run}-*.parquet"))
        assert files
        landed_ids.append(set(pq.read_table(files, columns=["impression_id"]).column(0).to_pylist()))
    historical = set(pq.read_table(sorted(tiny.raw.glob("impressions/*/part-00000.parquet"))).column(0).to_pylist())
    assert not (landed_ids[0] & landed_ids[1])
    assert not (landed_ids[0] | landed_ids[1]) & historical
    assert min(int(i[3:]) for i in landed_ids[0]) >= LIVE_ID_BASE
    # evaluation reads one truth file: every served live impression is in it, beside the historical ones
    truth = set(
        pq.read_table(home / "oracle" / "impression_truth.parquet", columns=["impression_id"]).column(0).to_pylist()
    )
    assert landed_ids[0] | landed_ids[1] <= truth and historical <= truth
    for name in ("impressions", "clicks", "orders"):
        live_files = sorted((home / "raw" / name).glob("dt=*/part-live-*.parquet"))
        assert live_files, name
        for path in live_files:
            assert pq.read_schema(path).remove_metadata() == SCHEMAS[name], path
        # the live rows read back together with the historical ones as one dataset
        table = ds.dataset(home / "raw" / name, format="parquet", partitioning="hive").to_table()
        assert table.num_rows > 0
    # every drawn row landed, plus the planted duplicates; flaws at the world's rate, per family
    summary = json.loads((home / "oracle" / "live" / "run1" / "summary.json").read_text())
    for name in ("impressions", "clicks", "orders"):
        flaws = summary["flaw_counts"][name]
        assert summary["landed"][name] == summary["drawn"][name] + flaws["duplicate"], name
        assert flaws["late"] == 0
    n, rate = summary["drawn"]["impressions"], summary["flaw_rate"]
    flaws = summary["flaw_counts"]["impressions"]
    families = {
        "null": sum(v for k, v in flaws.items() if k.startswith("null_")),
        "impossible": flaws["bad_position"] + flaws["unknown_surface"] + flaws["future_event_ts"],
        "duplicate": flaws["duplicate"],
    }
    for family, count in families.items():
        assert abs(count - rate * n) < 4 * np.sqrt(n * rate * (1 - rate)) and count > 0, (family, count, rate * n)


def test_events_land_only_once_they_have_happened(home: Path) -> None:
    world = load_world(home / "oracle")
    market = LiveMarket(world, NOW_US)
    rng = np.random.default_rng(5)
    batch = draw_sessions(rng, market, 300, NOW_US)
    served = _served_in_candidate_order(batch)
    out = react(rng, market, batch, served)
    none = np.array([None] * batch.n, dtype=object)
    meta = AnswerMeta(none, [None] * batch.n, [None] * batch.n, np.array([None] * len(served.product), dtype=object))
    first = LiveLanding(home / "raw", home / "oracle", world, "early", seed=1)
    first.add(out, served, meta, batch.user)
    pending = first.close(NOW_US + 10 * SECOND_US)
    assert pending["orders"] == len(out.ordered)  # orders come minutes after the click
    for path in (home / "raw").glob("*/dt=*/part-live-early-*.parquet"):
        table = pq.read_table(path, columns=["event_ts", "_ingested_at"]).to_pandas()
        assert (table._ingested_at == table._ingested_at.iloc[0]).all()  # the flush's wall clock
    later = LiveLanding(home / "raw", home / "oracle", world, "later", seed=2)
    assert later.close(NOW_US + 3 * 86_400 * SECOND_US) == {"impressions": 0, "clicks": 0, "orders": 0}
    landed = pq.read_table(sorted((home / "raw" / "orders").glob("dt=*/part-live-later-*.parquet"))).num_rows
    assert landed >= len(out.ordered)


@pytest.mark.parametrize(
    "url", ["http://example.com:3000", "http://10.1.2.3:3000", "https://127.0.0.1:3000", "ftp://x"]
)
def test_non_loopback_urls_are_refused(url: str) -> None:
    with pytest.raises(LiveError):
        check_loopback(url)


def test_loopback_urls_are_accepted() -> None:
    assert check_loopback("http://127.0.0.1:3000/") == "http://127.0.0.1:3000"
    assert check_loopback("http://localhost:3000") == "http://localhost:3000"


def test_connection_errors_are_counted_not_raised(home: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stats = asyncio.run(run_live(home / "raw", home / "oracle", f"http://127.0.0.1:{port}", 40.0, 1.0, seed=1))
    assert stats.sent > 10
    assert stats.connection_errors == stats.sent and stats.answered == 0


def test_shed_requests_and_foreign_answers_are_counted_not_raised(home: Path) -> None:
    from aiohttp import web

    calls = {"n": 0}

    async def rank(request: web.Request) -> web.Response:
        calls["n"] += 1
        await request.read()
        if calls["n"] % 2:
            return web.Response(status=503, headers={"Retry-After": "1"}, text="over capacity")
        return web.json_response({"ranking": [{"product_id": "p999999"}], "request_id": None, "experiment": None})

    async def main() -> Stats:
        app = web.Application()
        app.router.add_post("/rank", rank)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await run_live(home / "raw", home / "oracle", f"http://127.0.0.1:{port}", 40.0, 1.0, seed=2)
        finally:
            await runner.cleanup()

    stats = asyncio.run(main())
    assert stats.sent > 10 and stats.answered == 0
    assert stats.shed > 0 and stats.bad_answers > 0 and stats.shed + stats.bad_answers == stats.sent
    assert stats.retry_after == {"1"}


def test_a_faster_checkout_changes_when_orders_land_not_whether(world: StoredWorld) -> None:
    """The demo's checkout speed-up divides the click-to-order delay and leaves every draw and truth alone."""
    batch = draw_sessions(np.random.default_rng(21), LiveMarket(world, NOW_US), 4000, NOW_US)
    served = _served_in_candidate_order(batch)
    plain = react(np.random.default_rng(22), LiveMarket(world, NOW_US), batch, served)
    fast = react(np.random.default_rng(22), LiveMarket(world, NOW_US, checkout_speedup=720.0), batch, served)
    assert len(plain.ordered) > 0
    for name in ("clicked", "clk_ts", "ordered", "quantity", "p_click", "p_order", "list_gmv", "best_gmv"):
        assert np.array_equal(getattr(plain, name), getattr(fast, name)), name
    plain_delay = plain.ord_ts - plain.clk_ts[plain.ordered]
    fast_delay = fast.ord_ts - fast.clk_ts[fast.ordered]
    assert np.allclose(fast_delay, plain_delay / 720.0, atol=2)  # microseconds, rounded once each
    assert np.median(plain_delay) > 60 * SECOND_US > np.median(fast_delay)
    with pytest.raises(ValueError, match="positive"):
        LiveMarket(world, NOW_US, checkout_speedup=0.0)


def test_a_landing_records_its_watermark_also_when_nothing_was_due(home: Path) -> None:
    world = load_world(home / "oracle")
    landing = LiveLanding(home / "raw", home / "oracle", world, "quiet", seed=3)
    landing.close(NOW_US)
    mark = json.loads((home / "raw" / "_live_watermarks" / "quiet.json").read_text())
    assert mark == {"run_id": "quiet", "landed_through_us": NOW_US}
