"""The stream under the prod profile: events through a Redis Stream, the processor pushing into Redis through
Feast (registry on PostgreSQL), the same rows in the offline log (issue 17, sections 2 and 3).

Its own small deployment (database, Feast project, stream key), dropped at the end; only `feast apply`, no
pipeline build. Missing servers fail the test.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import redis

from platform_common.event_stream import open_stream
from platform_common.event_stream.redis_stream import RedisStream
from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.settings import FEATURE_REPO_DIR
from platform_common.stream_log import USER_VIEW, read_log
from serving.features.direct import DirectReader
from tests.prod.conftest import deployment, require_servers, teardown
from transforms.streaming.processor import GROUP, FeastPusher, Processor

pytestmark = pytest.mark.prod

SECOND_US = 1_000_000


@pytest.fixture(scope="module")
def prod_stream(tmp_path_factory):
    name = f"shoprank_test_stream_{os.getpid()}_{secrets.token_hex(3)}"
    dep = deployment(tmp_path_factory.mktemp("prod-stream"), name, os.environ.get("SHOPRANK_PG_PASSWORD") or "x")
    settings = dep.settings.model_copy(update={"stream_key": f"shoprank:test:{name}"})
    require_servers(settings)
    env = dict(os.environ) | dep.env | {"SHOPRANK_HOME": str(dep.home), "SHOPRANK_STREAM_KEY": settings.stream_key}
    env["FEAST_FS_YAML_FILE_PATH"] = str(render_feature_store_yaml(settings))
    feast = str(Path(sys.executable).with_name("feast"))
    subprocess.run([feast, "apply"], cwd=FEATURE_REPO_DIR, env=env, check=True, capture_output=True)
    try:
        yield settings
    finally:
        client = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db)
        client.delete(settings.stream_key)
        client.close()
        teardown(dep)


def click(eid: str, user: str, ts_us: int) -> dict:
    return {"kind": "click", "event_id": eid, "user_id": user, "product_id": "p000001", "event_ts": ts_us,
            "ingested_at": ts_us + SECOND_US, "impression_id": "imp000000001"}  # fmt: skip


def test_events_through_redis_reach_the_online_store_and_the_log(prod_stream):
    settings = prod_stream
    stream = open_stream(settings)
    assert isinstance(stream, RedisStream)
    store = get_feature_store(settings)
    now = pd.Timestamp.now(tz="UTC").value // 1000
    t = now - 120 * SECOND_US
    quiet = {"kind": "impression", "event_id": "i1", "user_id": "u0000002", "product_id": "p000001", "event_ts": t,
             "ingested_at": t + SECOND_US, "request_id": "r1", "surface": "search", "position": 1}  # fmt: skip
    stream.publish([click("c1", "u0000001", t), click("c2", "u0000001", t + SECOND_US), click("c1", "u0000001", t),
                    quiet])  # fmt: skip
    processor = Processor(stream, FeastPusher(store), settings.stream_dir, settings.stream_log_dir, consumer="a",
                          catalogue={"p000001": "beauty"})  # fmt: skip
    result = processor.step()
    assert result.read == 4 and result.accepted == 3 and result.quarantined == {"duplicate": 1}
    assert stream.lag(GROUP) == 0
    refs = [f"{USER_VIEW}:us_clicks_5m", f"{USER_VIEW}:us_clicks_30m", f"{USER_VIEW}:us_seconds_since_click"]
    online = store.get_online_features(features=refs, entity_rows=[{"user_id": "u0000001"}]).to_dict()
    assert online["us_clicks_5m"] == [2] and online["us_clicks_30m"] == [2]
    assert online["us_seconds_since_click"] == [0.0]
    # the click-category strings through Redis, by Feast and by the service's direct reader (the Redis fast
    # path): a list, and "" (no click) kept apart from missing
    reader = DirectReader(store, "ctr_model_v2_stream")
    for user, listed in (("u0000001", "beauty|beauty"), ("u0000002", "")):
        names = ("us_click_categories_30m", "us_session_click_categories")
        got = store.get_online_features(features=[f"{USER_VIEW}:{n}" for n in names], entity_rows=[{"user_id": user}])
        assert got.to_dict()["us_session_click_categories"] == [listed]
        vectors = reader.fetch(user, ["p000001"])
        assert [list(vectors.columns[n]) for n in names] == [[listed], [listed]], user
    log = read_log(settings.stream_log_dir, USER_VIEW).to_pandas().sort_values("user_id")
    assert list(log["us_clicks_5m"]) == [2, 0]
    # the training join at the visible time reads the same row; one microsecond before, nothing
    visible = log["event_timestamp"].iloc[0]
    entity_df = pd.DataFrame(
        {"user_id": ["u0000001"] * 2, "event_timestamp": [visible, visible - pd.Timedelta(microseconds=1)]}
    )
    joined = store.get_historical_features(entity_df=entity_df, features=refs, filter_by_created_timestamp=True)
    frame = joined.to_df().sort_values("event_timestamp")
    assert frame["us_clicks_5m"].isna().iloc[0] and frame["us_clicks_5m"].iloc[1] == 2
    stream.close()
