"""/rank's feature read with the stream views (issue 17, section 4), through the real Feast store.

A temporary SHOPRANK_HOME gets `feast apply` of the real feature repo; the stream processor (scripted clock)
pushes rows for a user and two products. Every read mode, for the feature service ctr_model_v2_stream, must serve
what was pushed, the same values as Feast's `get_online_features`, the next request after a push (the snapshot
holds no copy of the stream views), and flag the stream views stale past their TTL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from platform_common.category_stream import DERIVED
from platform_common.event_stream.sqlite_stream import SqliteStream
from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.feature_spec import FeatureSpec
from platform_common.settings import FEATURE_REPO_DIR, Settings
from platform_common.stream_log import PRODUCT_VIEW, USER_VIEW
from serving.features.direct import DirectReader
from serving.features.feast import FeastReader
from serving.features.snapshot import SnapshotReader
from serving.features.sqlite_keyed import SqliteKeyedReads
from transforms.streaming.processor import FeastPusher, Processor

pytestmark = pytest.mark.integration

SERVICE = "ctr_model_v2_stream"
S = 1_000_000
T0 = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)


def us(offset_s: float) -> int:
    return int((T0 + timedelta(seconds=offset_s)).timestamp() * S)


def event(kind: str, eid: str, offset_s: float, product: str, user: str = "u_s") -> dict:
    e = {"kind": kind, "event_id": eid, "user_id": user, "product_id": product, "event_ts": us(offset_s),
         "ingested_at": us(offset_s + 1)}  # fmt: skip
    if kind == "impression":
        return e | {"surface": "home_feed", "position": 1, "request_id": "r1"}
    return e | {"impression_id": "i1"}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    home = tmp_path_factory.mktemp("stream-serving-home")
    settings = Settings(home=home)
    env = dict(os.environ, SHOPRANK_HOME=str(home), SHOPRANK_PROFILE="local")
    env["FEAST_FS_YAML_FILE_PATH"] = str(render_feature_store_yaml(settings))
    feast = str(Path(sys.executable).with_name("feast"))
    subprocess.run([feast, "apply"], cwd=FEATURE_REPO_DIR, env=env, check=True, capture_output=True)
    clock = {"now": us(5)}
    stream = SqliteStream(settings.stream_dir / "events.db")
    proc = Processor(stream, FeastPusher(get_feature_store(settings)), settings.stream_dir, settings.stream_log_dir,
                     clock=lambda: clock["now"], catalogue=CATALOGUE)  # fmt: skip
    stream.publish(
        [event("impression", "i1", 0, "p_a"), event("impression", "i2", 0, "p_b"), event("click", "c1", 2, "p_a"),
         event("impression", "i3", 1, "p_c", user="u_quiet")]  # a user with no click: empty strings, not missing
    )  # fmt: skip
    proc.step()
    readers = {
        "feast": FeastReader(get_feature_store(settings), SERVICE),
        "direct": DirectReader(get_feature_store(settings), SERVICE),
        "snapshot": SnapshotReader(lambda: get_feature_store(settings), SERVICE, poll_seconds=3600),
    }
    yield settings, stream, proc, clock, readers
    readers["snapshot"].close()


def _plain(v):
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and np.isnan(v) else v


def _columns(vectors, names):
    return {n: [_plain(v) for v in vectors.columns[n]] for n in names}


STREAM_NAMES = ("us_clicks_5m", "us_session_impressions", "us_seconds_since_click", "ps_clicks_1h", "ps_impressions_1h")
CATALOGUE = {"p_a": "beauty", "p_b": "toys"}
CATEGORY_NAMES = ("us_click_categories_30m", "us_session_click_categories", "us_last_click_categories")


def test_every_read_mode_serves_the_pushed_stream_rows(pushed):
    _, _, _, _, readers = pushed
    # the snapshot reads the stream views straight from the SQLite file, not through Feast's online_read
    assert isinstance(readers["snapshot"].snapshot.reads, SqliteKeyedReads)
    now = T0 + timedelta(seconds=10)
    got = {mode: r.fetch("u_s", ["p_a", "p_b", "p_none"], now=now) for mode, r in readers.items()}
    expected = _columns(got["feast"], STREAM_NAMES)
    assert expected == {
        "us_clicks_5m": [1, 1, 1],
        "us_session_impressions": [2, 2, 2],
        "us_seconds_since_click": [0.0, 0.0, 0.0],  # t = the user's newest event = the click
        "ps_clicks_1h": [1, 0, None],
        "ps_impressions_1h": [1, 1, None],
    }
    for mode, vectors in got.items():
        assert set(vectors.columns) == set(got["feast"].columns), mode
        assert _columns(vectors, vectors.columns) == _columns(got["feast"], vectors.columns), mode
        assert vectors.stale == {}, mode
        assert vectors.known_user is False  # no batch row: the batch features were never materialized here


def test_a_push_is_served_on_the_next_request_in_every_mode(pushed):
    _, stream, proc, clock, readers = pushed
    stream.publish([event("click", "c2", 20, "p_b")])
    clock["now"] = us(21)
    proc.step()
    now = T0 + timedelta(seconds=30)
    for mode, reader in readers.items():
        vectors = reader.fetch("u_s", ["p_a", "p_b"], now=now)
        assert _columns(vectors, ("us_clicks_5m", "ps_clicks_1h")) == {
            "us_clicks_5m": [2, 2],
            "ps_clicks_1h": [1, 1],
        }, mode


def test_stream_views_past_their_ttl_are_flagged_stale_and_served_missing(pushed):
    _, _, _, _, readers = pushed
    # user rows live 1 h, product rows 2 h from their visible time (T0 + 5 s and T0 + 21 s)
    cases = {
        timedelta(minutes=50): {},
        timedelta(minutes=70): {USER_VIEW: 2},
        timedelta(hours=3): {USER_VIEW: 2, PRODUCT_VIEW: 2},
    }
    for after, stale in cases.items():
        for mode, reader in readers.items():
            vectors = reader.fetch("u_s", ["p_a", "p_b"], now=T0 + after)
            assert vectors.stale == stale, (mode, after)
            for view, names in ((USER_VIEW, STREAM_NAMES[:3]), (PRODUCT_VIEW, STREAM_NAMES[3:])):
                values = _columns(vectors, names)
                missing = all(v is None for col in values.values() for v in col)
                assert missing == (view in stale), (mode, after, view, values)


def test_every_read_mode_serves_the_category_strings_and_derives_the_same_matrix(pushed):
    """The String fields come back as strings from every reader (SQLite here; the direct reader is also the Redis
    path), an empty list as "" (no click) and not as missing, and the model matrix of a stream spec derives the
    same per-candidate features from them in every mode (FastVectors and the feast reader's FeatureSpec.matrix)."""
    _, _, _, _, readers = pushed
    now = T0 + timedelta(seconds=40)  # after the second test's push: clicks c1 (p_a) and c2 (p_b)
    got = {mode: r.fetch("u_s", ["p_a", "p_b", "p_none"], now=now) for mode, r in readers.items()}
    for mode, vectors in got.items():
        assert _columns(vectors, CATEGORY_NAMES) == {
            "us_click_categories_30m": ["toys|beauty"] * 3,
            "us_session_click_categories": ["toys|beauty"] * 3,
            "us_last_click_categories": ["toys|beauty"] * 3,
        }, mode
        quiet = readers[mode].fetch("u_quiet", ["p_a"], now=now)
        assert _columns(quiet, CATEGORY_NAMES) == {n: [""] for n in CATEGORY_NAMES}, mode
    spec = FeatureSpec.fit(pd.DataFrame({"surface": ["search"]}), SERVICE, ["us_clicks_5m", *DERIVED], ["surface"])
    context = {"surface": ["search"] * 3, "position": [1] * 3, "hour_of_day": [10] * 3, "is_campaign_day": [0] * 3}
    matrices = {}
    for mode, vectors in got.items():
        # no batch rows were materialized here, so the product rows' category is set as a product row would give it
        vectors.columns["product_category_l1"] = np.array(["beauty", "toys", None], dtype=object)
        matrices[mode] = vectors.model_matrix(spec, context, 3)
    derived = matrices["feast"][:, 1:4]
    np.testing.assert_array_equal(derived[:2], [[1, 1, 2], [1, 1, 1]])  # p_a: 2nd newest category; p_b: newest
    assert np.isnan(derived[2]).all()  # no product row: no category to match
    for mode, m in matrices.items():
        np.testing.assert_array_equal(m, matrices["feast"], err_msg=mode)
