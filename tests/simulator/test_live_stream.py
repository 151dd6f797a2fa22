"""Live shoppers publish what they land (issue 17): the stream carries every landed row, flaws included, and
the processor's rows equal the backfill's over the same landed files."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from platform_common.event_stream import raw_events
from platform_common.event_stream.sqlite_stream import SqliteStream
from platform_common.stream_log import VIEWS, read_log
from simulator.entities import SECOND_US
from simulator.live.landing import AnswerMeta, LiveLanding
from simulator.live.session import LiveMarket, Served, draw_sessions, react
from simulator.live.world_store import load_world
from transforms.streaming.backfill import backfill
from transforms.streaming.processor import Processor

from .test_live import NOW_US, _served_in_candidate_order, home  # noqa: F401  (fixtures)

# late and duplicate have their own rule; orphans and the gmv product need other rows (staging checks them)
NOT_CHECKED = ("late", "duplicate", "orphan_impression", "gmv_mismatch")


def test_landed_events_are_published_and_stream_equals_backfill(home: Path, tmp_path: Path) -> None:  # noqa: F811
    world = load_world(home / "oracle")
    market = LiveMarket(world, NOW_US)
    rng = np.random.default_rng(11)
    batch = draw_sessions(rng, market, 400, NOW_US)
    served = _served_in_candidate_order(batch)
    out = react(rng, market, batch, served)
    none = np.array([None] * batch.n, dtype=object)
    meta = AnswerMeta(none, [None] * batch.n, [None] * batch.n, np.array([None] * len(served.product), dtype=object))
    stream = SqliteStream(tmp_path / "stream" / "events.db")
    landing = LiveLanding(home / "raw", home / "oracle", world, "streamed", seed=3, publisher=stream)
    landing.add(out, served, meta, batch.user)
    clock = {"now": 0}
    processor = Processor(stream, None, tmp_path / "stream", tmp_path / "log", batch_size=100_000,
                          clock=lambda: clock["now"])  # fmt: skip
    # two flushes, each processed as one batch: clicks first, the orders minutes later
    for now in (NOW_US + 60 * SECOND_US, NOW_US + 3 * 86_400 * SECOND_US):
        if now == NOW_US + 60 * SECOND_US:
            landing.flush(now)
        else:
            landing.close(now)
        clock["now"] = now + SECOND_US
        processor.step()
    landed = {}
    live_raw = tmp_path / "live_raw"
    for path in (home / "raw").glob("*/dt=*/part-live-streamed-*.parquet"):
        target = live_raw / path.parent.parent.name / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        landed[path.parent.parent.name] = landed.get(path.parent.parent.name, 0) + pq.read_metadata(path).num_rows
    assert landing.published == sum(landed.values()) > 0
    # every landed row is on the stream, duplicates and flaws included, once per landing
    published = [json.loads(p) for (p,) in stream._con.execute("select payload from events order by offset")]
    kinds = {"impressions": "impression", "clicks": "click", "orders": "order"}
    for name, kind in kinds.items():
        assert sum(e["kind"] == kind for e in published) == landed[name], name
    summary = json.loads((home / "oracle" / "live" / "streamed" / "summary.json").read_text())
    planted_bad = sum(v for t in summary["flaw_counts"].values() for k, v in t.items() if k not in NOT_CHECKED)
    counts = processor.engine.counts
    assert sum(v for k, v in counts.items() if k.startswith("malformed_")) == planted_bad > 0
    assert counts["duplicate"] == sum(t["duplicate"] for t in summary["flaw_counts"].values()) > 0
    replayed = backfill(live_raw, tmp_path / "backfill_log")
    assert replayed.engine.counts == counts
    for view in VIEWS:
        a = read_log(tmp_path / "log", view).to_pandas().drop(columns=["event_timestamp", "created_timestamp"])
        b = read_log(tmp_path / "backfill_log", view).to_pandas().drop(columns=["event_timestamp", "created_timestamp"])
        key = list(a.columns[:3])
        assert len(a) > 0
        assert a.sort_values(key).reset_index(drop=True).equals(b.sort_values(key).reset_index(drop=True)), view


def test_events_are_published_as_they_happen_and_land_at_the_next_flush(home: Path, tmp_path: Path) -> None:  # noqa: F811
    """A publish tick puts what has happened on the stream at once; the next flush lands exactly those rows
    (`_ingested_at` = the tick's clock) and the stream carries each landed row once."""
    world = load_world(home / "oracle")
    market = LiveMarket(world, NOW_US)
    rng = np.random.default_rng(5)
    batch = draw_sessions(rng, market, 200, NOW_US)
    served = _served_in_candidate_order(batch)
    out = react(rng, market, batch, served)
    none = np.array([None] * batch.n, dtype=object)
    meta = AnswerMeta(none, [None] * batch.n, [None] * batch.n, np.array([None] * len(served.product), dtype=object))
    stream = SqliteStream(tmp_path / "stream" / "events.db")
    landing = LiveLanding(home / "raw", home / "oracle", world, "ticks", seed=3, publisher=stream)
    landing.add(out, served, meta, batch.user)
    files = "*/dt=*/part-live-ticks-*.parquet"

    tick = NOW_US + SECOND_US  # the impressions have happened, most clicks not yet
    first = landing.publish(tick)
    assert first > 0 and landing.published == first
    assert not list((home / "raw").glob(files))  # on the stream, not landed yet
    landing.flush(NOW_US + 30 * SECOND_US)  # publishes what happened since the tick, then lands both
    landing.flush(NOW_US + 31 * SECOND_US)  # nothing new: nothing published or landed twice

    published = sorted(p for (p,) in stream._con.execute("select payload from events"))
    assert len(published) == landing.published > first
    landed_events = []
    stamps = set()
    for path in sorted((home / "raw").glob(files)):
        table = pq.read_table(path)
        landed_events += [json.dumps(e, sort_keys=True) for e in raw_events(path.parent.parent.name, table)]
        stamps |= {int(t.timestamp() * SECOND_US) for t in table.column("_ingested_at").to_pylist() if t}
    assert sorted(json.dumps(json.loads(p), sort_keys=True) for p in published) == sorted(landed_events)
    # stamped by the tick that published them (a planted duplicate may be re-sent a little later)
    assert {tick, NOW_US + 30 * SECOND_US} <= stamps and min(stamps) == tick


def test_rows_published_before_midnight_land_in_the_day_they_were_stamped(home: Path, tmp_path: Path) -> None:  # noqa: F811
    """A flush just after midnight lands what the last ticks before it published: each row goes to the partition
    of its own `_ingested_at` day, as the historical landing files rows by landing date."""
    midnight = NOW_US - NOW_US % (86_400 * SECOND_US)
    start = midnight - 30 * SECOND_US
    world = load_world(home / "oracle")
    market = LiveMarket(world, start)
    rng = np.random.default_rng(9)
    batch = draw_sessions(rng, market, 200, start)
    served = _served_in_candidate_order(batch)
    served = Served(served.session, np.full(batch.n, start, dtype=np.int64), served.offsets, served.product)
    out = react(rng, market, batch, served)
    none = np.array([None] * batch.n, dtype=object)
    meta = AnswerMeta(none, [None] * batch.n, [None] * batch.n, np.array([None] * len(served.product), dtype=object))
    stream = SqliteStream(tmp_path / "stream" / "events.db")
    landing = LiveLanding(home / "raw", home / "oracle", world, "midnight", seed=3, publisher=stream)
    landing.add(out, served, meta, batch.user)
    assert landing.publish(midnight - SECOND_US) > 0  # the impressions, stamped a second before midnight
    landing.flush(midnight + 4 * SECOND_US)
    partitions: dict[str, set[str]] = {}
    for path in (home / "raw").glob("*/dt=*/part-live-midnight-*.parquet"):
        days = {t.date().isoformat() for t in pq.read_table(path).column("_ingested_at").to_pylist()}
        partitions.setdefault(path.parent.name, set()).update(days)
    before = (datetime.fromtimestamp(midnight / SECOND_US, UTC) - timedelta(days=1)).date().isoformat()
    after = datetime.fromtimestamp(midnight / SECOND_US, UTC).date().isoformat()
    assert partitions == {f"dt={before}": {before}, f"dt={after}": {after}}
