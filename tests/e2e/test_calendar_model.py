"""The calendar model end to end at SCALE=tiny (issue 18, section 4), on a private copy of the tiny platform.

`make train FEATURE_SERVICE=ctr_model_v3_calendar` joins the day's campaign plan point in time; the version records
its feature service; `make promote` gates it against the champion (v1, on ctr_model_v1) on the same frozen rows.
Whether it wins at tiny is not asserted (three test days, no campaign among them by default): what is asserted
is that the plan reached the training rows with the day it describes, that both models were scored on one set of
rows and the decision recorded, and, once it is the champion (forced if the gate refused, as an operator would
to ship it), that `/rank` scores it from the online plan and `make skew-check` finds no mismatch.
"""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from platform_common.feast_config import get_feature_store
from platform_common.registry import connect, load_bundle
from platform_common.settings import Settings
from serving.launcher import running_service
from tests.conftest import run_make
from tests.simulator.test_live_service import _copy_home
from training.bundle import RankerBundle

CALENDAR_SERVICE = "ctr_model_v3_calendar"
PLAN = ("plan_day_kind", "plan_discount_pct", "plan_price", "plan_price_rel_base")


@pytest.fixture(scope="module")
def platform(tiny_platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = _copy_home(tiny_platform, tmp_path_factory.mktemp("calendar-model-home"))
    # the champion's frozen test rows (its tag points into the copy: MLflow's paths were rewritten)
    shutil.copytree(tiny_platform.home_dir / "datasets", settings.home_dir / "datasets")
    return settings


def _plan_days(settings: Settings) -> pd.DataFrame:
    calendar = pd.read_parquet(settings.marts_dir / "campaign_calendar.parquet")
    kind = np.where(calendar["is_mega_sale"].astype(bool), 2, 1)
    return pd.DataFrame({"day": pd.to_datetime(calendar["calendar_date"]).dt.date, "kind": kind})


def test_the_calendar_model_trains_is_gated_served_and_skew_free(platform: Settings) -> None:
    settings = platform
    connect(settings)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert champion.tags["feature_service"] == "ctr_model_v1"

    run_make(settings.home_dir, "train", extra_env={"FEATURE_SERVICE": CALENDAR_SERVICE})
    newest = max(client.search_model_versions(f"name = '{settings.model_name}'"), key=lambda v: int(v.version))
    assert newest.tags["feature_service"] == CALENDAR_SERVICE
    test_rows = pd.read_parquet(newest.tags["test_set_path"])
    v1_rows = pd.read_parquet(champion.tags["test_set_path"])
    assert sorted(test_rows["impression_id"]) == sorted(v1_rows["impression_id"]), "the gate's rows differ"
    # The CVR head starts from its day kind's conversion level (training/calibration.py); v1 has no day kind.
    calendar = load_bundle(settings, settings.model_name, str(newest.version), RankerBundle).bundle
    assert calendar.config.cvr_day_kind_margins is not None
    assert (
        load_bundle(settings, settings.model_name, "champion", RankerBundle).bundle.config.cvr_day_kind_margins is None
    )

    # The plan describes the impression's own UTC day once the day's price list has landed (by 00:30 in the
    # simulator): its day kind is the calendar's for that day, whatever the day before was.
    ts = pd.to_datetime(test_rows["event_timestamp"], utc=True)
    landed = ts.dt.hour >= 1
    assert landed.mean() > 0.9
    kinds = dict(zip(*_plan_days(settings).T.to_numpy(), strict=True))
    expected = ts.dt.date.map(lambda d: kinds.get(d, 0))
    seen = test_rows.loc[landed, "plan_day_kind"]
    assert seen.notna().all(), "a product listed on its day has that day's plan"
    assert (seen.astype(int) == expected[landed]).all()
    # and the day's own discount: it differs from yesterday's (product_features) on some rows
    assert (test_rows.loc[landed, "plan_discount_pct"] != test_rows.loc[landed, "discount_pct"]).any()

    proc = run_make(settings.home_dir, "promote", extra_env={"VERSION": str(newest.version)})
    decided = client.get_model_version(settings.model_name, newest.version)
    assert decided.tags["promotion_compared_to"] == str(champion.version)
    assert decided.tags["promotion_decision"] in ("promoted", "refused")
    assert f"candidate v{newest.version} vs champion v{champion.version}" in proc.stdout
    if decided.tags["promotion_decision"] == "refused":
        run_make(settings.home_dir, "promote", extra_env={"VERSION": str(newest.version), "FORCE": "1"})
    assert str(client.get_model_version_by_alias(settings.model_name, "champion").version) == str(newest.version)

    # the plan is online for the products of the last day (materialized by _copy_home's `make materialize`)
    store = get_feature_store(settings)
    products = sorted(test_rows["product_id"].unique())[:20]
    online = store.get_online_features(
        features=[f"product_campaign_plan:{f}" for f in PLAN], entity_rows=[{"product_id": p} for p in products]
    ).to_dict()
    assert any(v is not None for v in online["plan_discount_pct"])

    with running_service(settings) as url:
        user = str(test_rows["user_id"].iloc[0])
        answer = httpx.post(f"{url}/rank", json={"user_id": user, "product_ids": products}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert str(body["model"]["version"]) == str(newest.version)
        assert len(body["ranking"]) == len(products)

        from serving.skew_check import run

        assert run(settings, n=20, n_requests=3, url=url) == 0
