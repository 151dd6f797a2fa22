"""The evaluation's calendar slices on hand-made rows whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.evaluation import Scored, calendar_slices, day_kinds

CALENDAR = pd.DataFrame(
    {
        "calendar_date": pd.to_datetime(["2026-11-11", "2026-11-25"]).date,
        "campaign_name": ["11.11", "payday"],
        "is_mega_sale": [True, False],
    }
)
ETA = {"home_feed": 1.0}


def _scored(days: list[str], pcvr_bias: dict[str, float]) -> Scored:
    """Four-candidate requests, one per day in `days`; the model is exact but for a CVR bias per day."""
    rng = np.random.default_rng(0)
    k = 4
    n_req = 133 * len(days)
    day = np.repeat(np.array(days * 133), k)
    n = len(day)
    p_click = rng.uniform(0.01, 0.2, n)
    p_cvr = rng.uniform(0.01, 0.1, n)
    rows = pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(n_req), k),
            "event_timestamp": pd.to_datetime(day, utc=True) + pd.Timedelta(hours=12),
            "surface": "home_feed",
            "clicked": (rng.random(n) < p_click).astype(int),
            "product_gmv_30d": rng.uniform(0, 10, n),
        }
    )
    bias = np.array([pcvr_bias.get(d, 0.0) for d in day])
    logged = {"pctr": p_click, "pcvr": np.clip(p_cvr + bias, 0, 1)}
    value = p_click * p_cvr * 10.0
    top = {"pctr": p_click, "expected_gmv": value}
    truth = pd.DataFrame({"p_click": p_click, "p_order_given_click": p_cvr})
    return Scored(rows, logged, top, truth, value)


def test_rows_get_the_kind_and_name_of_their_utc_day() -> None:
    rows = pd.DataFrame(
        {"event_timestamp": pd.to_datetime(["2026-11-10T23:59:59Z", "2026-11-11T00:00:00Z", "2026-11-25T13:00:00Z"])}
    )
    kind, name = day_kinds(rows, CALENDAR)
    assert kind.tolist() == ["normal", "mega", "campaign"]
    assert name.tolist() == ["", "11.11", "payday"]


def test_a_model_off_on_the_mega_day_is_seen_in_its_slice_only() -> None:
    s = _scored(["2026-11-10", "2026-11-11", "2026-11-25"], {"2026-11-11": 0.05})
    by = {r["slice"]: r for r in calendar_slices(s, ETA, CALENDAR)}
    assert set(by) == {"day_kind=normal", "day_kind=campaign", "day_kind=mega", "campaign=11.11", "campaign=payday"}
    assert by["day_kind=mega"]["rows"] == by["campaign=11.11"]["rows"] == 532
    assert by["day_kind=mega"]["cvr_ece_vs_oracle"] == pytest.approx(0.05, abs=1e-9)
    assert by["day_kind=normal"]["cvr_ece_vs_oracle"] == pytest.approx(0.0, abs=1e-12)
    # the model orders by the true expected GMV: it earns the oracle's GMV@10 on every day kind
    assert by["day_kind=campaign"]["gmv_at_10_ratio_to_oracle"] == pytest.approx(1.0)
    assert by["day_kind=mega"]["ranking_requests"] == by["day_kind=normal"]["ranking_requests"] == 133
    assert by["day_kind=mega"]["cvr_ece_vs_oracle_clicked"] == pytest.approx(0.05, abs=1e-9)


def test_the_clicked_figure_judges_the_head_on_its_own_population() -> None:
    """A pCVR off on unclicked impressions only (the selection no click-trained head can see) moves the
    all-impressions figure and leaves the clicked one, the p(order | click) that ranking multiplies by pCTR."""
    s = _scored(["2026-11-11"], {})
    unclicked = s.rows["clicked"].to_numpy() == 0
    s.logged["pcvr"] = np.where(unclicked, s.logged["pcvr"] + 0.02, s.logged["pcvr"])
    mega = {r["slice"]: r for r in calendar_slices(s, ETA, CALENDAR)}["day_kind=mega"]
    assert mega["cvr_ece_vs_oracle_clicked"] == pytest.approx(0.0, abs=1e-12)
    assert mega["cvr_ece_vs_oracle"] == pytest.approx(0.02 * unclicked.mean(), rel=0.05)


def test_scoring_on_more_threads_gives_the_same_scores_then_one_thread_again() -> None:
    import json

    import xgboost as xgb

    from training.bundle import RankerBundle

    rng = np.random.default_rng(2)
    x = rng.normal(size=(20_000, 6))
    y = (x[:, 0] + rng.normal(size=len(x)) > 1).astype(int)
    booster = xgb.train({"max_depth": 4, "objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, y), 60)
    booster.set_param({"nthread": 1})
    bundle = RankerBundle()
    bundle.boosters = {"ctr": booster}
    one = bundle.head_scores(x)["ctr"]
    with bundle.predict_threads(2):
        assert json.loads(booster.save_config())["learner"]["generic_param"]["nthread"] == "2"
        two = bundle.head_scores(x)["ctr"]
    np.testing.assert_array_equal(one, two)
    assert json.loads(booster.save_config())["learner"]["generic_param"]["nthread"] == "1"
