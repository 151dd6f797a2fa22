"""Online model quality (serving/monitoring/model_quality.py): calibration, CTR ratio, AUC, label maturity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from serving.monitoring import model_quality, stats
from serving.monitoring.alerts import Window
from serving.monitoring.config import ModelQuality

END = datetime(2026, 3, 9, tzinfo=UTC)
WINDOW = Window(END - timedelta(days=1), END)


def shown(scale: float = 1.0, n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 40, n)
    return pd.DataFrame(
        {
            "served_at": [END - timedelta(hours=3) - timedelta(seconds=int(s)) for s in rng.uniform(0, 70_000, n)],
            "surface": rng.choice(["home_feed", "search"], n),
            "pctr": p,
            "pctr_shown": np.minimum(p * scale, 1),
            "clicked": (rng.uniform(size=n) < p).astype(int),
            "ordered": 0,
            "realised_gmv": 0.0,
        }
    )


def reference() -> dict:
    return {"scores": {"pctr": stats.numeric_profile(np.random.default_rng(9).beta(2, 40, 5000))}}


def test_a_calibrated_model_fires_nothing() -> None:
    rows = shown()
    result = model_quality.check(rows, rows, reference(), WINDOW, END, ModelQuality())
    assert result.alerts == []
    assert {m.target for m in result.measurements if m.check == "model.calibration"} == {
        "all",
        "surface=home_feed",
        "surface=search",
    }


def test_a_miscalibrated_model_is_named_per_surface() -> None:
    rows = shown(scale=3.0)
    rows["pctr"] = rows["pctr_shown"]  # what it served is inflated too
    fired = {
        (a.check, a.target) for a in model_quality.check(rows, rows, reference(), WINDOW, END, ModelQuality()).alerts
    }
    assert {("model.calibration", "all"), ("model.ctr_ratio", "surface=search")} <= fired
    assert ("model.prediction_drift", "pctr") in fired


def test_only_matured_labels_are_judged() -> None:
    rows = shown(n=2000)
    rows["served_at"] = END - timedelta(minutes=30)  # younger than the 2 h label delay at the window end
    result = model_quality.check(rows, rows, None, WINDOW, END, ModelQuality())
    assert not [m for m in result.measurements if m.check == "model.calibration"]
    assert any("younger than 2 h" in n for n in result.notes)
