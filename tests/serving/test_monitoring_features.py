"""Feature health (serving/monitoring/features.py): a zeroed mart column, served missing/stale shares and drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from serving.monitoring import baseline, features, stats
from serving.monitoring.alerts import Window
from serving.monitoring.config import Drift, Features

END = datetime(2026, 3, 9, tzinfo=UTC)
WINDOW = Window(END - timedelta(days=1), END)


def mart(path: Path, zero_from_last_day: bool) -> None:
    rng = np.random.default_rng(3)
    frames = []
    for d in range(8):
        n = 300
        price = rng.lognormal(3, 0.5, n)
        # as in the simulated catalogue, three products in four are not discounted on a given day
        discount = np.where(rng.uniform(size=n) < 0.75, 0.0, rng.uniform(0.05, 0.5, n))
        if zero_from_last_day and d == 7:
            discount = np.zeros(n)
        frames.append(
            pd.DataFrame(
                {
                    "product_id": [f"p{i}" for i in range(n)],
                    "event_timestamp": END - timedelta(days=7 - d),
                    "price": price,
                    "discount_pct": discount,
                }
            )
        )
    pd.concat(frames).to_parquet(path / "product_features.parquet")


def test_a_column_written_as_zero_is_named_and_a_clean_day_is_not(tmp_path: Path) -> None:
    views = {"product_features": ["price", "discount_pct"]}
    mart(tmp_path, zero_from_last_day=False)
    assert features.mart_drift(tmp_path, views, WINDOW, Drift(), 7).alerts == []
    mart(tmp_path, zero_from_last_day=True)
    fired = features.mart_drift(tmp_path, views, WINDOW, Drift(), 7).alerts
    assert [(a.check, a.target) for a in fired] == [("feature.mart_drift_zeros", "product_features.discount_pct")]
    assert fired[0].measured == 1.0 and fired[0].window == WINDOW.label


def reference(rng: np.random.Generator) -> dict:
    return {
        "features": {
            "price": stats.numeric_profile(rng.lognormal(3, 0.5, 5000)) | {"view": "product_features"},
            "user_ctr_7d": stats.numeric_profile(rng.beta(2, 40, 5000)) | {"view": "user_features"},
            "surface": stats.categorical_profile(rng.choice(["home_feed", "search"], 5000)) | {"view": "context"},
        },
        "scores": {"pctr": stats.numeric_profile(rng.beta(2, 40, 5000))},
    }


def served(
    rng: np.random.Generator,
    n: int = 2000,
    user_missing: float = 0.0,
    price_scale: float = 1.0,
    start: datetime = WINDOW.start,
) -> pd.DataFrame:
    user = rng.beta(2, 40, n)
    user[rng.uniform(size=n) < user_missing] = np.nan
    return pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(n // 20), 20).astype(str),
            "served_at": start + pd.to_timedelta(np.repeat(np.arange(n // 20), 20), unit="s"),
            "stale_views": None,
            "price": rng.lognormal(3, 0.5, n) * price_scale,
            "user_ctr_7d": user,
            "surface": rng.choice(["home_feed", "search"], n),
        }
    )


def served_baseline(rng: np.random.Generator, ref: dict) -> dict:
    """What baseline.build_baseline freezes: the first rows served, an hour before the window."""
    return baseline.build_baseline(served(rng, 5000, start=WINDOW.start - timedelta(hours=1)), ref, "1", 10)


def test_served_health_clean_missing_and_drift() -> None:
    rng = np.random.default_rng(5)
    ref = reference(rng)
    base = served_baseline(rng, ref)
    th = Drift(served_min_rows=1000)
    clean = features.served_health(served(rng), ref, WINDOW, th, Features(), base)
    assert clean.alerts == []
    assert max(clean.series["served_psi"].values()) < 0.05  # same distribution, like for like
    fired = features.served_health(served(rng, user_missing=0.5), ref, WINDOW, th, Features(), base).alerts
    assert ("feature.missing_share", "user_features") in [(a.check, a.target) for a in fired]
    doubled = features.served_health(served(rng, price_scale=2.0), ref, WINDOW, th, Features(), base)
    assert [(a.check, a.target) for a in doubled.alerts] == [("feature.served_drift", "product_features.price")]
    # against the training reference the same shift is measured, and reported only
    assert doubled.series["training_psi"]["product_features.price"] > 0.25


def test_served_drift_judges_only_rows_after_the_baseline_and_enough_of_them() -> None:
    rng = np.random.default_rng(8)
    ref = reference(rng)
    base = served_baseline(rng, ref)
    # the baseline's own rows, shifted: served before its last row, so never judged against it
    inside = served(rng, 3000, price_scale=2.0, start=WINDOW.start - timedelta(hours=1))
    result = features.served_health(inside, ref, WINDOW, Drift(), Features(), base)
    assert result.alerts == [] and "served_psi" not in result.series
    assert any("rows served after the baseline" in n for n in result.notes)
    few = features.served_health(served(rng, 1000, price_scale=2.0), ref, WINDOW, Drift(), Features(), base)
    assert few.alerts == [] and any("< 2000, not judged" in n for n in few.notes)


def test_a_zeroed_served_feature_alerts_against_the_training_reference() -> None:
    rng = np.random.default_rng(4)
    ref = reference(rng)
    log = served(rng)
    log["price"] = 0.0
    fired = {(a.check, a.target) for a in features.served_health(log, ref, WINDOW, Drift(), Features()).alerts}
    assert ("feature.training_drift_zeros", "product_features.price") in fired


def test_stale_share_counts_requests() -> None:
    rng = np.random.default_rng(6)
    log = served(rng)
    log.loc[log["request_id"].astype(int) % 4 == 0, "stale_views"] = "product_features,user_features"
    fired = features.served_health(log, reference(rng), WINDOW, Drift(), Features()).alerts
    stale = {a.target: a.measured for a in fired if a.check == "feature.stale_share"}
    assert stale == {"product_features": 0.25, "user_features": 0.25}


def test_the_reference_profile_of_a_stream_model_profiles_its_derived_features() -> None:
    """The derived per-candidate features are not columns of the training rows: the profile derives them with
    the spec's own function and files them under the view of the strings they read."""
    from types import SimpleNamespace

    from platform_common.category_stream import DERIVED
    from platform_common.feature_spec import FeatureSpec
    from serving.monitoring.profile import profile_of

    rows = pd.DataFrame(
        {
            "price": [1.0, 2.0, 3.0, 4.0],
            "product_category_l1": ["beauty", "toys", "beauty", None],
            "surface": ["search"] * 4,
            "us_click_categories_30m": ["beauty|beauty", "beauty", "", None],
            "us_session_click_categories": ["beauty", "beauty", "", None],
            "us_last_click_categories": ["beauty", "beauty", "", None],
        }
    )
    spec = FeatureSpec.fit(rows, "ctr_model_v2_stream", ["price", *DERIVED], ["surface"])
    bundle = SimpleNamespace(spec=spec, score_matrix=lambda x: {"pctr": np.full(len(x), 0.1)})
    refs = ["product_features:price", *(f"user_stream_features:{s}" for s in set(DERIVED.values()))]
    profile = profile_of(rows, bundle, refs)
    counts = profile["features"]["us_cat_clicks_30m"]
    assert counts["view"] == "user_stream_features"
    assert counts["shares"][-1] == 0.25  # the null bin: the row without a stream row or a category
    assert counts["zero_share"] == 2 / 3  # counts 2 (beauty), 0 (toys), 0 (no click)
    assert set(DERIVED) <= set(profile["features"]) and "us_click_categories_30m" not in profile["features"]
