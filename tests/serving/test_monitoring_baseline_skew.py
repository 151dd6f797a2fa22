"""The served baseline (serving/monitoring/baseline.py) and the training-serving skew comparison
(serving/monitoring/skew.py) on hand-made request logs; the real Feast lookup runs in tests/e2e/test_monitoring.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from serving.monitoring import baseline, skew, stats
from serving.monitoring.alerts import Window
from serving.monitoring.config import Drift, Features

END = datetime(2026, 3, 9, tzinfo=UTC)
WINDOW = Window(END - timedelta(days=1), END)
REFERENCE = {
    "features": {
        "price": stats.numeric_profile(np.random.default_rng(1).lognormal(3, 0.5, 1000)) | {"view": "product_features"},
        "surface": stats.categorical_profile(["home_feed", "search"] * 500) | {"view": "context"},
        "position": stats.numeric_profile(np.ones(10)) | {"view": "context"},
    }
}


def write_log(logs: Path, version: str, start: datetime, requests: int, part: int, per_request: int = 10) -> None:
    rng = np.random.default_rng(part)
    n = requests * per_request
    frame = pd.DataFrame(
        {
            "request_id": np.repeat([f"{version}-{part}-{i}" for i in range(requests)], per_request),
            "served_at": np.repeat([start + timedelta(seconds=i) for i in range(requests)], per_request),
            "model_version": version,
            "price": rng.lognormal(3, 0.5, n),
            "surface": rng.choice(["home_feed", "search"], n),
            "position": 1,
            "pctr": rng.beta(2, 40, n),
        }
    )
    folder = logs / "requests" / f"dt={start.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / f"part-{part}.parquet", index=False)


def test_the_baseline_is_the_versions_first_served_requests_frozen(tmp_path: Path) -> None:
    logs, th = tmp_path / "logs", Drift(baseline_rows=300)
    write_log(logs, "1", WINDOW.start, 50, part=1)  # v1's 500 rows
    write_log(logs, "2", WINDOW.start + timedelta(hours=2), 20, part=2)  # v2's first 200 rows
    # not enough of v2 yet: no baseline, and it says why
    none, why = baseline.load_or_capture(tmp_path, logs, "m", "2", REFERENCE, th)
    assert none is None and "served 200 logged rows" in why
    first = baseline.first_served(logs, "1", 300)
    assert len(first) == 300 and first["request_id"].nunique() == 30  # whole requests, the oldest first
    assert first["served_at"].max() == WINDOW.start + timedelta(seconds=29)
    captured, where = baseline.load_or_capture(tmp_path, logs, "m", "1", REFERENCE, th)
    assert captured is not None and "captured now" in where and captured["rows"] == 300
    assert set(captured["features"]) == {"price", "surface"}  # request context (position) left out
    assert captured["features"]["price"]["view"] == "product_features" and "pctr" in captured["scores"]
    # frozen: later traffic does not move it
    write_log(logs, "1", WINDOW.start - timedelta(hours=5), 50, part=3)
    again, where = baseline.load_or_capture(tmp_path, logs, "m", "1", REFERENCE, th)
    assert again == captured and "captured now" not in where
    assert baseline.baseline_path(tmp_path, "m", "1").exists()


def test_skew_counts_rows_whose_served_value_is_not_the_offline_one() -> None:
    rows = pd.DataFrame(
        {
            "price": [10.0, 20.0, np.nan, 40.0],
            "merchant_tier": ["mall", "regular", None, "mall"],
            "discount_pct": [0.0, 0.1, 0.2, 0.3],
        }
    )
    offline = pd.DataFrame(
        {
            "price": [10.0, 20.0 * (1 + 1e-12), np.nan, 41.0],  # a rounding is not skew; 40 vs 41 is
            "merchant_tier": ["mall", "preferred", None, "mall"],
            "discount_pct": [0.0, 0.1, 0.2, 0.3],
        }
    )
    views = {"price": "product_features", "merchant_tier": "merchant_features", "discount_pct": "product_features"}
    result = skew.compare(rows, offline, views, WINDOW, Features())
    shares = result.series["skew_share"]
    assert shares == {
        "merchant_features.merchant_tier": 0.25,
        "product_features.discount_pct": 0.0,
        "product_features.price": 0.25,
    }
    assert {a.target for a in result.alerts} == {"merchant_features.merchant_tier", "product_features.price"}
    price = next(a for a in result.alerts if a.target == "product_features.price")
    assert "served 40.0, training-time 41.0" in price.message
    # missing on one side only is skew; missing on both is not
    assert skew.differs(pd.Series([np.nan, 1.0, np.nan]), pd.Series([np.nan, np.nan, 2.0])).tolist() == [
        False,
        True,
        True,
    ]
