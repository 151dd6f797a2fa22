"""The registered next-7-day merchant GMV forecaster: one quantile XGBoost and its feature recipe, as a pyfunc.

Inputs are the raw feature values of Feast's `merchant_forecast_v1` service (one row per merchant and as-of
day). `derive` turns them into the model's inputs the same way in training and serving:

* a run rate `base = 7 x GMV of the last 28 days / days observed + floor` (USD per 7 days), the scale;
* scale-free ratios (last 1, 7, 14 days against the run rate), funnel rates and trends, price index, discount,
  rating and live changes, the campaign days behind and ahead, the merchant's tier and other slow attributes.

The booster predicts quantiles (10%, 50%, 90%) of `GMV of the next 7 days / base`, trained with weight `base`:
pinball loss is positively homogeneous, so this is exactly the pinball loss of `base x prediction` on the GMV
itself, while the trees learn multipliers (a campaign week is "x3" whatever the merchant's size) instead of
having to split on size first. The 50% quantile is the point forecast: the median minimises absolute error,
hence WAPE.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc.model import PythonModel
from pydantic import BaseModel, ConfigDict

from platform_common.feature_spec import FeatureSpec

QUANTILES = (0.1, 0.5, 0.9)
OUTPUT_COLUMNS = ("gmv_7d_p10", "gmv_7d_p50", "gmv_7d_p90")


class ForecastRecipe(BaseModel):
    """Everything besides the booster that a prediction needs; stored with it."""

    model_config = ConfigDict(frozen=True)

    feature_service: str
    raw_columns: tuple[str, ...]  # the raw feature values a prediction reads
    extra_numeric: tuple[str, ...]  # raw numeric features passed through as they are
    spec: FeatureSpec  # the model's input columns (derived + extra numeric, then categorical) and vocabularies
    quantiles: tuple[float, ...] = QUANTILES
    scale_floor: float = 1.0


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num = pd.to_numeric(num, errors="coerce").astype(float)
    den = pd.to_numeric(den, errors="coerce").astype(float)
    return (num / den.where(den > 0)).astype(float)


def run_rate(raw: pd.DataFrame) -> pd.Series:
    """GMV per 7 days at the pace of the last 28 days (or of the days observed, if fewer)."""
    days = pd.to_numeric(raw["mg_days_observed_28d"], errors="coerce").fillna(1).clip(lower=1)
    return (7.0 * pd.to_numeric(raw["mg_gmv_28d"], errors="coerce").fillna(0.0) / days).astype(float)


def derive(raw: pd.DataFrame, scale_floor: float, extra_numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    """Model inputs from raw feature values (missing values stay NaN: XGBoost's missing)."""
    num = {c: pd.to_numeric(raw[c], errors="coerce").astype(float) for c in raw.columns if c.startswith("mg_")}
    days = num["mg_days_observed_28d"].fillna(1).clip(lower=1)
    rate = run_rate(raw)
    base = rate + scale_floor
    out = pd.DataFrame(index=raw.index)
    out["log_run_rate"] = np.log1p(rate)
    out["r_gmv_1d"] = 7.0 * num["mg_gmv_1d"] / base
    out["r_gmv_7d"] = num["mg_gmv_7d"] / base
    out["r_gmv_14d"] = num["mg_gmv_14d"] / 2.0 / base
    out["orders_7d"] = num["mg_orders_7d"]
    out["orders_28d"] = num["mg_orders_28d"]
    out["days_observed_28d"] = days
    out["impressions_trend"] = _ratio(num["mg_impressions_7d"] / 7.0, num["mg_impressions_28d"] / days)
    out["clicks_trend"] = _ratio(num["mg_clicks_7d"] / 7.0, num["mg_clicks_28d"] / days)
    out["ctr_7d"] = _ratio(num["mg_clicks_7d"], num["mg_impressions_7d"])
    out["ctr_28d"] = _ratio(num["mg_clicks_28d"], num["mg_impressions_28d"])
    out["cvr_28d"] = _ratio(num["mg_orders_28d"], num["mg_clicks_28d"])
    out["aov_28d"] = _ratio(num["mg_gmv_28d"], num["mg_orders_28d"])
    out["list_price_index"] = num["mg_list_price_index"]
    out["discount_avg"] = num["mg_discount_avg"]
    out["rating_7d"] = num["mg_rating_7d"]
    out["rating_change"] = num["mg_rating_7d"] - num["mg_rating_28d"]
    out["live_share_7d"] = num["mg_live_days_7d"] / days.clip(upper=7)
    out["live_share_28d"] = num["mg_live_days_28d"] / days
    # Disjoint counts: mega days, and the other campaign days (payday, double days). With "all campaign days"
    # next to "mega days", a model trained before any payday fell in a target week could not tell which of the
    # two the lift came from, and gave a payday week the lift of a mega sale.
    for window in ("last7", "last28", "next7"):
        mega = num[f"mg_mega_days_{window}"]
        out[f"mega_days_{window}"] = mega
        out[f"minor_campaign_days_{window}"] = num[f"mg_campaign_days_{window}"] - mega
    for c in extra_numeric:
        out[c] = pd.to_numeric(raw[c], errors="coerce").astype(float)
    return out


def base_of(raw: pd.DataFrame, scale_floor: float) -> np.ndarray:
    return (run_rate(raw) + scale_floor).to_numpy(dtype=float)


def model_frame(
    raw: pd.DataFrame, extra_numeric: tuple[str, ...], categorical: tuple[str, ...], floor: float
) -> pd.DataFrame:
    """Derived inputs plus the categorical raw columns, as a frame (FeatureSpec.frame_matrix encodes it)."""
    derived = derive(raw, floor, extra_numeric)
    for c in categorical:
        derived[c] = raw[c].to_numpy()
    return derived


class MerchantForecastModel(PythonModel):
    """pyfunc; artifacts: `booster` (UBJSON) and `recipe` (JSON)."""

    def __init__(self) -> None:
        self.recipe: ForecastRecipe | None = None
        self.booster: xgb.Booster | None = None

    def load_context(self, context: Any) -> None:
        self.load_from_paths(context.artifacts)

    def load_from_paths(self, artifacts: dict[str, str]) -> None:
        self.recipe = ForecastRecipe.model_validate_json(Path(artifacts["recipe"]).read_text())
        booster = xgb.Booster()
        booster.load_model(artifacts["booster"])
        booster.set_param({"nthread": 1})
        self.booster = booster

    def matrix(self, raw: pd.DataFrame) -> np.ndarray:
        if self.recipe is None:
            raise RuntimeError("model not loaded")
        r = self.recipe
        missing = [c for c in r.raw_columns if c not in raw.columns]
        if missing:
            raise ValueError(f"raw features missing from the input: {missing}")
        return r.spec.frame_matrix(model_frame(raw, r.extra_numeric, r.spec.categorical, r.scale_floor))

    def predict_quantiles(self, raw: pd.DataFrame) -> np.ndarray:
        """(n, 3) GMV of the next 7 days at the 10%, 50%, 90% quantiles, non-negative and non-crossing."""
        if self.recipe is None or self.booster is None:
            raise RuntimeError("model not loaded")
        ratio = self.booster.inplace_predict(self.matrix(raw))
        ratio = np.asarray(ratio, dtype=float).reshape(len(raw), -1)
        ratio = np.sort(np.clip(ratio, 0.0, None), axis=1)
        return ratio * base_of(raw, self.recipe.scale_floor)[:, None]

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        q = self.predict_quantiles(model_input)
        return pd.DataFrame({name: q[:, i] for i, name in enumerate(OUTPUT_COLUMNS)})


def write_artifacts(directory: Path, recipe: ForecastRecipe, booster: xgb.Booster) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = {"recipe": str(directory / "recipe.json"), "booster": str(directory / "booster.ubj")}
    Path(artifacts["recipe"]).write_text(json.dumps(recipe.model_dump(mode="json"), indent=2))
    booster.save_model(artifacts["booster"])
    return artifacts
