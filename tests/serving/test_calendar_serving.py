"""/rank's feature read with the campaign plan view (issue 18, section 4), through the real Feast store.

A temporary SHOPRANK_HOME gets `feast apply` of the real feature repo and two products' plans written to the online
store (as `make materialize` writes them). Every read mode, for the feature service ctr_model_v3_calendar, must serve
the plan of each candidate (none for an unknown one), the same values as Feast's `get_online_features`, and a plan
past its two-day TTL as missing, flagged stale.
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

from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.settings import FEATURE_REPO_DIR, Settings
from serving.features.direct import DirectReader
from serving.features.feast import FeastReader
from serving.features.snapshot import SnapshotReader

pytestmark = pytest.mark.integration

SERVICE = "ctr_model_v3_calendar"
VIEW = "product_campaign_plan"
PLAN = ("plan_day_kind", "plan_discount_pct", "plan_price", "plan_price_rel_base")
LANDED = datetime(2026, 11, 11, 0, 7, 30, tzinfo=UTC)  # 11.11's price list


@pytest.fixture(scope="module")
def readers(tmp_path_factory):
    home = tmp_path_factory.mktemp("calendar-serving-home")
    settings = Settings(home=home)
    env = dict(os.environ, SHOPRANK_HOME=str(home), SHOPRANK_PROFILE="local")
    env["FEAST_FS_YAML_FILE_PATH"] = str(render_feature_store_yaml(settings))
    feast = str(Path(sys.executable).with_name("feast"))
    subprocess.run([feast, "apply"], cwd=FEATURE_REPO_DIR, env=env, check=True, capture_output=True)
    store = get_feature_store(settings)
    rows = pd.DataFrame(
        {
            "product_id": ["p_a", "p_b"],
            "event_timestamp": [LANDED, LANDED + timedelta(minutes=3)],
            "created_timestamp": [LANDED, LANDED + timedelta(minutes=3)],
            "plan_day_kind": [2, 2],
            "plan_discount_pct": [0.5, 0.0],
            "plan_price": [15.0, 20.0],
            "plan_price_rel_base": [0.5, 1.0],
        }
    )
    store.write_to_online_store(VIEW, rows)
    out = {
        "feast": FeastReader(get_feature_store(settings), SERVICE),
        "direct": DirectReader(get_feature_store(settings), SERVICE),
        "snapshot": SnapshotReader(lambda: get_feature_store(settings), SERVICE, poll_seconds=3600),
    }
    yield out
    out["snapshot"].close()


def _plain(v):
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and np.isnan(v) else v


def _columns(vectors, names):
    return {n: [_plain(v) for v in vectors.columns[n]] for n in names}


def test_every_read_mode_serves_each_candidates_plan(readers):
    now = LANDED + timedelta(hours=12)
    got = {mode: r.fetch("u_x", ["p_a", "p_b", "p_none"], now=now) for mode, r in readers.items()}
    assert _columns(got["feast"], PLAN) == {
        "plan_day_kind": [2, 2, None],
        "plan_discount_pct": [0.5, 0.0, None],
        "plan_price": [15.0, 20.0, None],
        "plan_price_rel_base": [0.5, 1.0, None],
    }
    for mode, vectors in got.items():
        assert set(vectors.columns) == set(got["feast"].columns), mode
        assert _columns(vectors, vectors.columns) == _columns(got["feast"], vectors.columns), mode
        assert vectors.stale == {}, mode


def test_a_plan_past_its_ttl_is_served_missing_and_flagged_stale(readers):
    cases = {
        timedelta(days=2) - timedelta(minutes=1): {},  # both plans still within two days
        timedelta(days=2) + timedelta(minutes=1): {VIEW: 1},  # p_a's expired, p_b's (3 min younger) not
        timedelta(days=3): {VIEW: 2},
    }
    for after, stale in cases.items():
        for mode, reader in readers.items():
            vectors = reader.fetch("u_x", ["p_a", "p_b"], now=LANDED + after)
            assert vectors.stale.get(VIEW, 0) == stale.get(VIEW, 0), (mode, after, vectors.stale)
            prices = _columns(vectors, ("plan_price",))["plan_price"]
            assert prices == [None if stale.get(VIEW, 0) >= 1 else 15.0, None if stale.get(VIEW, 0) == 2 else 20.0], (
                mode,
                after,
            )
