"""Stream features, point in time to the second (issue 17, section 3), through the real Feast store.

A temporary SHOPRANK_HOME gets `feast apply` of the real feature repo; events go through the embedded stream
into the processor, whose wall clock is scripted, so every row's visible time is known to the second. Training
(`get_historical_features`, filter_by_created_timestamp=True, the ASOF-join plugin) must see a row exactly from
its visible time on, and the online store must hold what the join gives at the last visible time.

Story of u_s (all 2026-11-10 UTC, "v" = visible, i.e. the processor's batch clock):

    batch 1, v 10:00:05   impression I1 at 10:00:00                      -> session 1 impression
    batch 2, v 10:00:11   click C1 at 10:00:09 (1 s before label L1 at 10:00:10, visible 1 s after it)
    batch 3, v 10:00:20   duplicate of C1 (redelivered), late click C0 at 09:40:00 (> 15 min behind)
    restart: a new processor from the checkpoint; batch 4 re-reads an unacknowledged click C2 at 10:00:25
    batch 4, v 10:00:30   C2                                              -> 2 clicks in 5 min
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from platform_common.event_stream.sqlite_stream import SqliteStream
from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.settings import FEATURE_REPO_DIR, Settings
from platform_common.stream_log import PRODUCT_VIEW, USER_VIEW, read_log
from transforms.streaming.processor import GROUP, FeastPusher, Processor, read_quarantine

pytestmark = pytest.mark.integration

USER, PRODUCT = "u_s", "p_s"


def us(text: str) -> int:
    return int(datetime.fromisoformat(f"2026-11-10T{text}+00:00").timestamp() * 1_000_000)


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(f"2026-11-10T{text}", tz="UTC")


def event(kind: str, eid: str, ts: str, landed: str) -> dict:
    e = {"kind": kind, "event_id": eid, "user_id": USER, "product_id": PRODUCT, "event_ts": us(ts),
         "ingested_at": us(landed)}  # fmt: skip
    if kind == "impression":
        e |= {"surface": "home_feed", "position": 1, "request_id": "req1"}
    else:
        e |= {"impression_id": "imp1"}
    return e


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    home = tmp_path_factory.mktemp("stream-home")
    settings = Settings(home=home)
    env = dict(os.environ, SHOPRANK_HOME=str(home), SHOPRANK_PROFILE="local")
    env["FEAST_FS_YAML_FILE_PATH"] = str(render_feature_store_yaml(settings))
    feast = str(Path(sys.executable).with_name("feast"))
    subprocess.run([feast, "apply"], cwd=FEATURE_REPO_DIR, env=env, check=True, capture_output=True)
    store = get_feature_store(settings)
    clock = {"now": 0}
    stream = SqliteStream(settings.stream_dir / "events.db")

    def processor(consumer: str = "p1") -> Processor:
        return Processor(SqliteStream(settings.stream_dir / "events.db"), FeastPusher(store), settings.stream_dir,
                         settings.stream_log_dir, consumer=consumer, clock=lambda: clock["now"])  # fmt: skip

    def batch(proc: Processor, visible: str, events: list[dict]) -> None:
        stream.publish(events)
        clock["now"] = us(visible)
        proc.step()

    first = processor()
    batch(first, "10:00:05", [event("impression", "I1", "10:00:00", "10:00:04")])
    batch(first, "10:00:11", [event("click", "C1", "10:00:09", "10:00:10")])
    redelivered, late = event("click", "C1", "10:00:09", "10:00:10"), event("click", "C0", "09:40:00", "10:00:19")
    batch(first, "10:00:20", [redelivered, late])
    # killed after reading C2, before logging or acknowledging it
    stream.publish([event("click", "C2", "10:00:25", "10:00:26")])
    first.stream.read(GROUP, "p1", count=10)
    del first
    restarted = processor()
    clock["now"] = us("10:00:30")
    restarted.step()
    return settings, store


def join(store, rows: dict[str, str], view: str = USER_VIEW, key: str = "user_id", value: str = USER) -> dict:
    entity_df = pd.DataFrame({"row": list(rows), key: value, "event_timestamp": [at(t) for t in rows.values()]})
    refs = [f"{view}:{f.name}" for f in store.get_feature_view(view).features]
    frame = store.get_historical_features(entity_df=entity_df, features=refs, filter_by_created_timestamp=True).to_df()
    return {r["row"]: r for r in frame.to_dict("records")}


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def test_a_row_is_seen_from_its_visible_second_on(streamed):
    _, store = streamed
    got = join(store, {
        "before I1 visible": "10:00:04",
        "I1 visible": "10:00:05",
        "L1 (C1 happened 1 s before, visible 1 s after)": "10:00:10",
        "C1 visible": "10:00:11",
        "1 us before C2 visible": "10:00:29.999999",
        "C2 visible": "10:00:30",
    })  # fmt: skip
    assert missing(got["before I1 visible"]["us_session_impressions"])
    assert got["I1 visible"]["us_session_impressions"] == 1
    assert got["I1 visible"]["us_clicks_5m"] == 0
    assert missing(got["I1 visible"]["us_seconds_since_click"])
    # the click one second before the label, processed one second after it, is not used
    assert got["L1 (C1 happened 1 s before, visible 1 s after)"]["us_clicks_5m"] == 0
    assert got["C1 visible"]["us_clicks_5m"] == 1
    assert got["C1 visible"]["us_session_clicks"] == 1
    assert got["C1 visible"]["us_seconds_since_click"] == 0.0
    assert got["1 us before C2 visible"]["us_clicks_5m"] == 1
    assert got["C2 visible"]["us_clicks_5m"] == 2
    assert got["C2 visible"]["us_session_impressions"] == 1


def test_duplicate_and_late_events_count_nowhere_and_are_quarantined(streamed):
    settings, store = streamed
    got = join(store, {"after the duplicate and the late click": "10:00:20", "end": "10:00:30"})
    assert got["after the duplicate and the late click"]["us_clicks_30m"] == 1  # C1 once, C0 dropped
    assert got["end"]["us_clicks_30m"] == 2  # C1, C2
    reasons = sorted(read_quarantine(settings.stream_dir).column("reason").to_pylist())
    assert reasons == ["duplicate", "late"]
    # a batch of only dropped events writes no row
    visible = read_log(settings.stream_log_dir, USER_VIEW).column("event_timestamp").to_pylist()
    assert at("10:00:20") not in [pd.Timestamp(v) for v in visible]


def test_restart_reprocesses_the_unacknowledged_event_once(streamed):
    settings, _ = streamed
    log = read_log(settings.stream_log_dir, USER_VIEW).to_pandas()
    assert list(log["last_event_id"]) == ["I1", "C1", "C2"]
    assert list(log["us_clicks_5m"]) == [0, 1, 2]
    stream = SqliteStream(settings.stream_dir / "events.db")
    assert stream.lag(GROUP) == 0


def test_online_store_holds_what_training_sees_at_the_last_visible_time(streamed):
    _, store = streamed
    refs = [f"{USER_VIEW}:{f.name}" for f in store.get_feature_view(USER_VIEW).features]
    refs += [f"{PRODUCT_VIEW}:{f.name}" for f in store.get_feature_view(PRODUCT_VIEW).features]
    online = store.get_online_features(features=refs, entity_rows=[{"user_id": USER, "product_id": PRODUCT}]).to_dict()
    offline = join(store, {"end": "10:00:30"})
    product = join(store, {"end": "10:00:30"}, PRODUCT_VIEW, "product_id", PRODUCT)
    assert online["us_clicks_5m"] == [2]
    assert online["ps_clicks_1h"] == [2] and online["ps_impressions_1h"] == [1]
    for name in ("us_clicks_5m", "us_clicks_30m", "us_impressions_30m", "us_session_impressions", "us_session_clicks",
                 "us_seconds_since_click"):  # fmt: skip
        assert online[name] == [offline["end"][name]], name
    for name in ("ps_clicks_1h", "ps_impressions_1h"):
        assert online[name] == [product["end"][name]], name
    assert online["us_seconds_since_click"] == [0.0]  # as of C2 (10:00:25), itself the newest click
