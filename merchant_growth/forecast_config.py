"""Names and settings of the next-7-day merchant GMV forecast (see merchant_growth/forecasting.py for the method)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from merchant_growth.forecast_model import QUANTILES
from training.config import XGBConfig

MODEL_NAME = "shoprank_merchant_forecast"
EXPERIMENT_NAME = "shoprank-merchant-forecast"
FEATURE_SERVICE = "merchant_forecast_v1"
HORIZON_DAYS = 7

# The forecast trains a fixed number of trees (the backtest, not early stopping, judges it), so the ranker's
# early-stopping and refit settings do not apply to it and are not logged with its runs.
UNUSED_XGB_FIELDS = frozenset({"early_stopping_rounds", "refit_on_valid"})


class ForecastConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    warmup_days: int = Field(
        0, ge=0, description="Origins start this many days after the data starts (short windows are an input)."
    )
    n_folds: int = Field(4, ge=1, description="Folds of the rolling-origin backtest (the newest = holdout).")
    fold_days: int = Field(7, ge=1, le=HORIZON_DAYS, description="Origins per fold (a week).")
    min_train_rows: int = Field(50, ge=1)
    scale_floor: float = Field(1.0, gt=0, description="USD added to the run rate: the scale of a quiet merchant.")
    # A few hundred merchant-origins, not millions of impressions: leaves may be small and 300 trees suffice.
    xgb: XGBConfig = XGBConfig(min_child_weight=2.0, num_boost_round=300)

    @classmethod
    def for_scale(cls, scale: str) -> ForecastConfig:
        """tiny (21 days) cannot hold 4 weekly folds: 2 folds of 3 origins."""
        if scale == "tiny":
            return cls(n_folds=2, fold_days=3, min_train_rows=30)
        return cls()

    def booster_params(self) -> dict[str, Any]:
        params = self.xgb.booster_params("reg:quantileerror")
        del params["eval_metric"]  # no evaluation set is watched while training
        params["quantile_alpha"] = np.array(QUANTILES)
        return params

    def logged_params(self) -> dict[str, Any]:
        """The settings as flat `cfg_<field>` run parameters."""
        xgb = self.xgb.model_dump(exclude=set(UNUSED_XGB_FIELDS))
        return {f"cfg_{k}": v for k, v in (self.model_dump(exclude={"xgb"}) | xgb).items()}
