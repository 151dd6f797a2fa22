"""Online model quality (serving/monitoring/model_quality.py): CTR calibration, ratio and AUC, CVR and GMV
calibration, the per-day per-surface table, and delayed labels (a day scored only once its attribution passed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from serving.monitoring import model_quality, stats
from serving.monitoring.alerts import Window
from serving.monitoring.config import ModelQuality

END = datetime(2026, 3, 9, tzinfo=UTC)
WINDOW = Window(END - timedelta(days=1), END)
MATURED = END + timedelta(hours=25)  # past both attribution windows of the window's day
TH = ModelQuality()


def shown(
    ctr_scale: float = 1.0, cvr_scale: float = 1.0, n: int = 20_000, seed: int = 0, day: datetime = WINDOW.start
) -> pd.DataFrame:
    """Impressions of one day whose outcomes follow the true p (click) and q (order after a click)."""
    rng = np.random.default_rng(seed)
    p, q = rng.beta(2, 40, n), rng.beta(2, 18, n)
    price = rng.lognormal(3, 0.5, n)
    clicked = rng.uniform(size=n) < p
    ordered = clicked & (rng.uniform(size=n) < q)
    pctcvr = np.minimum(p * ctr_scale, 1) * np.minimum(q * cvr_scale, 1)
    return pd.DataFrame(
        {
            "served_at": [day + timedelta(seconds=int(s)) for s in rng.uniform(0, 86_000, n)],
            "surface": rng.choice(["home_feed", "search"], n),
            "pctr": p,
            "pctr_shown": np.minimum(p * ctr_scale, 1),
            "pcvr_shown": np.minimum(q * cvr_scale, 1),
            "pctcvr_shown": pctcvr,
            "gmv_shown": pctcvr * price,
            "clicked": clicked.astype(int),
            "ordered": ordered.astype(int),
            "realised_gmv": np.where(ordered, price, 0.0),
        }
    )


def reference() -> dict:
    return {"scores": {"pctr": stats.numeric_profile(np.random.default_rng(9).beta(2, 40, 5000))}}


def run(rows: pd.DataFrame, as_of: datetime = MATURED) -> model_quality.CheckResult:
    return model_quality.check(rows, rows, reference(), WINDOW, as_of, TH)


def fired(rows: pd.DataFrame, as_of: datetime = MATURED) -> set[tuple[str, str]]:
    return {(a.check, a.target) for a in run(rows, as_of).alerts}


def test_a_calibrated_model_fires_nothing_and_every_group_is_judged() -> None:
    result = run(shown())
    assert result.alerts == []
    groups = {"all", "surface=home_feed", "surface=search"}
    for check in ("model.calibration", "model.ctr_ratio", "model.auc", "model.cvr_ratio", "model.gmv_ratio"):
        assert {m.target for m in result.measurements if m.check == check} == groups, check
    table = result.series["online_quality"]
    assert set(table["group"]) == groups and set(table["status"]) == {"scored"}
    row = table[table["group"] == "all"].iloc[0]
    assert row["impressions"] == 20_000 and row["orders"] > 30
    assert abs(row["predicted_ctr"] / row["realised_ctr"] - 1) < 0.1


def test_a_miscalibrated_ctr_head_is_named_per_surface() -> None:
    rows = shown(ctr_scale=3.0)
    rows["pctr"] = rows["pctr_shown"]  # what it served is inflated too
    alerts = fired(rows)
    assert {("model.calibration", "all"), ("model.ctr_ratio", "surface=search")} <= alerts
    assert ("model.prediction_drift", "pctr") in alerts
    assert ("model.gmv_ratio", "all") in alerts  # pCTCVR carries the same factor into expected GMV
    assert ("model.cvr_ratio", "all") not in alerts  # the CVR head is fine


def test_a_miscalibrated_cvr_head_is_named_by_cvr_and_gmv_not_ctr() -> None:
    alerts = fired(shown(cvr_scale=3.0))
    assert {("model.cvr_ratio", "all"), ("model.gmv_ratio", "all"), ("model.cvr_ratio", "surface=home_feed")} <= alerts
    assert not {a for a in alerts if a[0] in ("model.calibration", "model.ctr_ratio", "model.auc")}


def test_too_few_predicted_orders_are_not_judged() -> None:
    result = run(shown(cvr_scale=3.0, n=2_000))  # ~100 clicks: a handful of orders predicted
    assert not [m for m in result.measurements if m.check in ("model.cvr_ratio", "model.gmv_ratio")]
    assert any("orders predicted" in n and "not judged" in n for n in result.notes)


def test_delayed_labels_a_day_is_scored_once_its_attribution_window_passed() -> None:
    rows = shown(cvr_scale=3.0)
    # half an hour after the day: clicks not matured (1 h), nothing scored, and the report says when it will be
    early = run(rows, END + timedelta(minutes=30))
    assert not [m for m in early.measurements if m.check.startswith("model.") and m.check != "model.prediction_drift"]
    assert early.series["online_quality"]["status"].str.startswith("not scored: clicks mature").all()
    assert any("online CTR of 2026-03-08 not scored yet" in n for n in early.notes)
    # two hours after: CTR scored, CVR and GMV wait for the orders' 24 h attribution window
    ctr_only = run(rows, END + timedelta(hours=2))
    checks = {m.check for m in ctr_only.measurements}
    assert {"model.calibration", "model.ctr_ratio"} <= checks and not {"model.cvr_ratio", "model.gmv_ratio"} & checks
    assert ctr_only.alerts == []  # the planted CVR error is not visible yet
    assert any("CVR and GMV of 2026-03-08 not scored yet" in n for n in ctr_only.notes)
    assert "orders still landing" in ctr_only.series["online_quality"]["status"].iat[0]


def test_the_daily_run_scores_the_previous_days_orders() -> None:
    """Lookback: the day before the window, served with a bad CVR head, is judged on CVR and GMV in the window's
    run (its orders matured at the window end); its CTR belongs to its own run and is not judged again."""
    before = shown(ctr_scale=3.0, cvr_scale=3.0, day=WINDOW.start - timedelta(days=1), seed=1)
    rows = pd.concat([before, shown(seed=2)], ignore_index=True)
    result = model_quality.check(
        rows, rows[rows["served_at"] >= WINDOW.start], None, WINDOW, END + timedelta(hours=2), TH
    )
    alerts = {(a.check, a.target) for a in result.alerts}
    assert ("model.cvr_ratio", "all") in alerts and not {a for a in alerts if a[0] == "model.calibration"}
    table = result.series["online_quality"]
    assert set(table["day"]) == {"2026-03-07", "2026-03-08"}
    assert "2026-03-07" in next(a.message for a in result.alerts if a.check == "model.cvr_ratio")
