"""The CVR head's day-kind margins: each kind's conversion level is its start, added back on every scoring path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from platform_common.feature_spec import FeatureSpec
from training.bundle import DAY_KIND_FEATURE, BundleConfig, RankerBundle
from training.calibration import DayKindMargins, as_day_kinds, fit_day_kind_margins
from training.config import XGBConfig
from training.dataset import FeatureColumns, TimeSplit, TrainingSet
from training.fitting import cvr_margins, fit_heads, refit_heads


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_each_kind_with_enough_orders_starts_at_its_own_conversion_level() -> None:
    converted = np.array([1.0] * 60 + [0.0] * 240 + [1.0] * 10 + [0.0] * 90 + [1.0] * 5)
    kind = np.array([2.0] * 300 + [0.0] * 100 + [np.nan] * 5)
    margins = fit_day_kind_margins(converted, kind, min_orders=50)
    assert margins.by_kind == pytest.approx({"2": _logit(0.2)})  # kind 0 has 10 orders: the pooled level
    assert margins.pooled == pytest.approx(_logit(75 / 405))
    got = margins.rows(np.array([2.0, 0.0, np.nan, 1.0]))
    assert got == pytest.approx([_logit(0.2), margins.pooled, margins.pooled, margins.pooled])
    with pytest.raises(ValueError, match="no clicked rows"):
        fit_day_kind_margins(np.array([]), np.array([]))


def test_nullable_day_kinds_become_nan() -> None:
    assert as_day_kinds(pd.array([2, None, 0], dtype="Int64")) == pytest.approx([2.0, np.nan, 0.0], nan_ok=True)
    assert as_day_kinds(np.array([1.0, np.nan])) == pytest.approx([1.0, np.nan], nan_ok=True)


def test_the_margin_is_added_back_by_day_kind_and_only_to_the_cvr_head() -> None:
    x = np.array([[0.0, 2.0], [0.0, 0.0], [0.0, np.nan]])
    rows = xgb.DMatrix(x, label=np.array([0.0, 1.0, 0.0]))
    # eta 0: the trees add nothing, so the head's own output is its start (0.5) and the margin is the whole answer
    flat = xgb.train({"objective": "binary:logistic", "base_score": 0.5, "eta": 0.0}, rows, num_boost_round=1)
    bundle = RankerBundle()
    bundle.spec = FeatureSpec(feature_service="t", numeric=("a", DAY_KIND_FEATURE), categorical=(), vocabularies={})
    bundle.boosters = {"ctr": flat, "cvr": flat}
    margins = DayKindMargins(pooled=_logit(0.05), by_kind={"2": _logit(0.12)})
    bundle.config = BundleConfig(cvr_day_kind_margins=margins)
    raw = bundle.head_scores(x)
    assert raw["ctr"] == pytest.approx([0.5, 0.5, 0.5])
    assert raw["cvr"] == pytest.approx([0.12, 0.05, 0.05])
    assert bundle.score_matrix(x)["pcvr"] == pytest.approx([0.12, 0.05, 0.05])
    bundle.config = BundleConfig()  # a head trained without margins is served as it is
    assert bundle.head_scores(x)["cvr"] == pytest.approx([0.5, 0.5, 0.5])


def _training_set(mega_lift: float, seed: int = 0) -> TrainingSet:
    """Clicked and unclicked rows over 40 days; every fifth day a mega sale whose conversion level is `mega_lift`
    logits higher. The validation days hold no mega day, as at SCALE=small."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2026-09-01", periods=40, freq="D", tz="UTC")
    n = 1_500
    ts = np.repeat(days, n)
    day_index = np.repeat(np.arange(40), n)
    kind = np.where((day_index % 5 == 2) & (day_index < 34), 2.0, 0.0)
    a = rng.normal(size=ts.size)
    clicked = (rng.random(ts.size) < 0.3).astype(int)
    p_order = 1 / (1 + np.exp(-(-2.5 + 0.8 * a + np.where(kind == 2.0, mega_lift, 0.0))))
    converted = (clicked == 1) & (rng.random(ts.size) < p_order)
    frame = pd.DataFrame(
        {
            "event_timestamp": ts,
            "a": a,
            DAY_KIND_FEATURE: kind,
            "clicked": clicked,
            "converted": converted.astype(int),
        }
    )
    d = days.date
    split = TimeSplit(train=(d[0], d[33]), valid=(d[34], d[39]), test=(d[39], d[39]))
    return TrainingSet(frame, split, FeatureColumns(("a", DAY_KIND_FEATURE), (), ()), "f")


def test_a_head_trained_from_its_margins_is_served_at_the_mega_sale_level() -> None:
    data = _training_set(mega_lift=1.0)
    spec = FeatureSpec(feature_service="t", numeric=("a", DAY_KIND_FEATURE), categorical=(), vocabularies={})
    cfg = XGBConfig(max_depth=2, eta=0.05, min_child_weight=20.0, nthread=1, early_stopping_rounds=10)
    clicked = data.rows(("train", "valid"), clicked_only=True)
    mega = (clicked[DAY_KIND_FEATURE] == 2.0).to_numpy()
    x = spec.frame_matrix(clicked)
    observed = clicked["converted"].to_numpy()[mega].mean()

    def mega_level(margins: DayKindMargins | None) -> float:
        stopped = fit_heads(data, spec, cfg, margins)
        bundle = RankerBundle()
        bundle.spec = spec
        bundle.boosters = refit_heads(data, spec, cfg, stopped, margins)
        bundle.config = BundleConfig(cvr_day_kind_margins=margins)
        return float(bundle.head_scores(x)["cvr"][mega].mean())

    with_margins = cvr_margins(data, spec, ("train", "valid"))
    assert with_margins is not None and set(with_margins.by_kind) == {"0", "2"}
    assert mega_level(with_margins) == pytest.approx(observed, rel=0.05)


def test_a_model_without_the_day_kind_has_no_margins() -> None:
    data = _training_set(mega_lift=0.0)
    spec = FeatureSpec(feature_service="t", numeric=("a",), categorical=(), vocabularies={})
    assert cvr_margins(data, spec, ("train",)) is None
