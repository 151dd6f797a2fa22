"""Stream and backfill give identical rows on the same events (issue 17, section 2).

A landing zone is written flush by flush with the raw contract (simulator.writer.SCHEMAS), flaws included: a
re-landed duplicate, a null user, an event from the future, a click landed hours late. The stream path
publishes each flush as the live producer does (`raw_events`, table by table) through the embedded stream and
processes it as one batch; the backfill replays the raw files through DuckDB. Every row (entity, the event
time it describes, its last event, every feature) must be identical; only the visible time differs (the
processor's clock vs the landing time). Both take click categories from the raw products table
(transforms/streaming/catalogue.py), which lacks one clicked product on purpose and lands a product twice.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_common.event_stream import raw_events
from platform_common.event_stream.sqlite_stream import SqliteStream
from platform_common.stream_log import VIEWS, read_log
from simulator.writer import SCHEMAS
from transforms.streaming.backfill import backfill
from transforms.streaming.catalogue import load_catalogue
from transforms.streaming.processor import Processor

SECOND_US = 1_000_000
T0 = 1_794_300_000 * SECOND_US


def landing(seed: int, flushes: int = 40) -> list[tuple[int, dict[str, list[dict]]]]:
    """Per flush: its landing time and the rows of each event table."""
    rng = random.Random(seed)
    out = []
    imp = clk = order = 0
    shown: list[dict] = []
    for f in range(flushes):
        # flushes every 5 s, with pauses of up to 3 minutes (windows expire, sessions go on)
        landed = (out[-1][0] if out else T0) + 5 * SECOND_US + rng.choice([0, 0, 0, 40, 180]) * SECOND_US
        tables: dict[str, list[dict]] = {"impressions": [], "clicks": [], "orders": []}
        for _ in range(rng.randint(1, 8)):
            imp += 1
            row = {"impression_id": f"imp{imp:09d}", "request_id": f"req{f:09d}",
                   "event_ts": landed - rng.randint(0, 5 * SECOND_US), "user_id": f"u{rng.randint(1, 5):07d}",
                   "product_id": f"p{rng.randint(1, 6):06d}", "surface": "search", "position": rng.randint(1, 9),
                   "_ingested_at": landed}  # fmt: skip
            tables["impressions"].append(row)
            shown.append(row)
        for parent in rng.sample(shown[-10:], k=min(len(shown[-10:]), rng.randint(0, 3))):
            clk += 1
            ts = min(landed, parent["event_ts"] + rng.randint(0, 4 * SECOND_US))
            tables["clicks"].append({"click_id": f"clk{clk:09d}", "impression_id": parent["impression_id"],
                                     "event_ts": ts, "user_id": parent["user_id"], "product_id": parent["product_id"],
                                     "_ingested_at": landed})  # fmt: skip
        if tables["clicks"] and rng.random() < 0.4:
            c = tables["clicks"][0]
            order += 1
            tables["orders"].append({"order_id": f"ord{order:09d}", "impression_id": c["impression_id"],
                                     "click_id": c["click_id"], "event_ts": c["event_ts"], "user_id": c["user_id"],
                                     "product_id": c["product_id"], "quantity": 1, "unit_price": 9.5, "gmv": 9.5,
                                     "_ingested_at": landed})  # fmt: skip
        # flaws, as the landing zone has them
        if f % 7 == 3 and out:
            tables["impressions"].append(dict(out[-1][1]["impressions"][0], _ingested_at=landed))  # re-landed
        if f % 9 == 4:
            tables["impressions"][0] = dict(tables["impressions"][0], user_id=None)
        if f % 11 == 5:
            tables["clicks"].append({"click_id": f"clk{900_000 + f:09d}", "impression_id": "imp000000001",
                                     "event_ts": landed + 3600 * SECOND_US, "user_id": "u0000001",
                                     "product_id": "p000001", "_ingested_at": landed})  # fmt: skip
        if f == flushes - 1:
            clk += 1
            tables["clicks"].append(
                {
                    "click_id": f"clk{clk:09d}",
                    "impression_id": "imp000000002",
                    "event_ts": T0 - 2 * 3600 * SECOND_US,  # landed hours late
                    "user_id": "u0000002",
                    "product_id": "p000002",
                    "_ingested_at": landed,
                }
            )  # fmt: skip
        out.append((landed, tables))
    return out


def write_raw(raw_dir, flush_no: int, tables: dict[str, list[dict]]) -> dict[str, pa.Table]:
    arrow = {}
    for name, rows in tables.items():
        table = pa.Table.from_pylist(rows, schema=SCHEMAS[name]) if rows else SCHEMAS[name].empty_table()
        folder = raw_dir / name / "dt=2026-11-13"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{flush_no:05d}.parquet")
        arrow[name] = table
    return arrow


def write_products(raw_dir) -> None:
    """p000001..p000005 (p000006 is clicked but missing); p000003 re-landed later in another category, a row
    without a category: the newest landing with a category wins."""
    categories = ["fashion", "beauty", "home", "fashion", "toys"]
    rows = [{"product_id": f"p{i:06d}", "merchant_id": "m00001", "category_l1": c, "category_l2": None,
             "base_price": 9.5, "created_ts": T0 - 86_400 * SECOND_US, "_ingested_at": T0 - 3600 * SECOND_US}
            for i, c in enumerate(categories, start=1)]  # fmt: skip
    rows.append(rows[2] | {"category_l1": "sports", "_ingested_at": T0})
    rows.append(rows[0] | {"category_l1": None, "_ingested_at": T0 + SECOND_US})
    folder = raw_dir / "products" / "dt=2026-11-13"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS["products"]), folder / "part-00000.parquet")


def test_the_catalogue_is_the_newest_landed_category(tmp_path):
    write_products(tmp_path)
    assert load_catalogue(tmp_path) == {"p000001": "fashion", "p000002": "beauty", "p000003": "sports",
                                        "p000004": "fashion", "p000005": "toys"}  # fmt: skip
    assert load_catalogue(tmp_path / "nothing-landed") == {}


def comparable(log_dir, view):
    frame = read_log(log_dir, view).to_pandas().drop(columns=["event_timestamp", "created_timestamp"])
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_and_backfill_rows_are_identical(tmp_path, seed):
    raw_dir, stream_dir = tmp_path / "raw", tmp_path / "stream"
    stream_log, backfill_log = tmp_path / "stream_log", tmp_path / "backfill_log"
    stream = SqliteStream(stream_dir / "events.db")
    clock = {"now": T0}
    write_products(raw_dir)
    processor = Processor(stream, None, stream_dir, stream_log, batch_size=10_000, clock=lambda: clock["now"],
                          catalogue=load_catalogue(raw_dir))  # fmt: skip
    published = 0
    for f, (landed, tables) in enumerate(landing(seed)):
        arrow = write_raw(raw_dir, f, tables)
        for name in ("impressions", "clicks", "orders"):
            published += stream.publish(raw_events(name, arrow[name]))
        clock["now"] = landed + 200_000  # processed 0.2 s after landing
        result = processor.step()
        assert result.read == sum(len(rows) for rows in tables.values())
    result = backfill(raw_dir, backfill_log)
    assert result.events == published
    assert result.engine.counts == processor.engine.counts
    counts = result.engine.counts
    assert counts["duplicate"] > 0 and counts["late"] > 0
    assert counts["malformed_null_user_id"] > 0 and counts["malformed_future_event_ts"] > 0
    assert counts["click_unknown_category"] > 0  # p000006
    for view in VIEWS:
        streamed, replayed = comparable(stream_log, view), comparable(backfill_log, view)
        assert len(streamed) > 20
        assert streamed.equals(replayed), view
    listed = "|".join(comparable(stream_log, VIEWS[0])["us_session_click_categories"])
    assert {"fashion", "sports", "unknown"} <= set(listed.split("|"))
