"""Rolling-origin backtest of the forecast against the seasonal naive, by WAPE (see merchant_growth/forecasting.py)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from rich.console import Console

from merchant_growth.errors import NotReadyError
from merchant_growth.forecast_config import FEATURE_SERVICE, HORIZON_DAYS, ForecastConfig
from merchant_growth.forecast_dataset import ForecastDataset
from merchant_growth.forecast_model import (
    OUTPUT_COLUMNS,
    QUANTILES,
    ForecastRecipe,
    MerchantForecastModel,
    base_of,
    model_frame,
    write_artifacts,
)
from platform_common.feature_spec import FeatureSpec

console = Console(stderr=True)


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    actual = np.asarray(actual, dtype=float)
    total = actual.sum()
    return float(np.abs(actual - np.asarray(forecast, dtype=float)).sum() / total) if total > 0 else float("nan")


def fit(ds: ForecastDataset, rows: pd.DataFrame, cfg: ForecastConfig) -> tuple[xgb.Booster, ForecastRecipe]:
    inputs = model_frame(rows, ds.extra_numeric, ds.categorical, cfg.scale_floor)
    numeric = tuple(c for c in inputs.columns if c not in ds.categorical)
    spec = FeatureSpec.fit(inputs, FEATURE_SERVICE, numeric, ds.categorical)
    base = base_of(rows, cfg.scale_floor)
    dtrain = xgb.DMatrix(
        spec.frame_matrix(inputs),
        label=rows["label"].to_numpy(dtype=float) / base,
        weight=base / base.mean(),
        feature_names=list(spec.columns),
    )
    booster = xgb.train(cfg.booster_params(), dtrain, num_boost_round=cfg.xgb.num_boost_round)
    recipe = ForecastRecipe(
        feature_service=FEATURE_SERVICE,
        raw_columns=ds.raw_columns,
        extra_numeric=ds.extra_numeric,
        spec=spec,
        quantiles=QUANTILES,
        scale_floor=cfg.scale_floor,
    )
    return booster, recipe


def as_model(booster: xgb.Booster, recipe: ForecastRecipe) -> MerchantForecastModel:
    model = MerchantForecastModel()
    with tempfile.TemporaryDirectory() as tmp:
        model.load_from_paths(write_artifacts(Path(tmp), recipe, booster))
    return model


def fold_starts(origins: list[date], n_folds: int, fold_days: int) -> list[date]:
    last = max(origins)
    starts = [last - timedelta(days=fold_days * k - 1) for k in range(n_folds, 0, -1)]
    return [s for s in starts if s >= min(origins)]


def metrics_of(rows: pd.DataFrame, prefix: str) -> dict[str, float]:
    """WAPE of the model (median) and of the seasonal naive on all, normal and campaign weeks, and more."""
    out: dict[str, float] = {}
    for kind, mask in (
        ("all", np.ones(len(rows), dtype=bool)),
        ("normal", rows["is_campaign_week"].to_numpy() == 0),
        ("campaign", rows["is_campaign_week"].to_numpy() == 1),
    ):
        part = rows[mask]
        out[f"{prefix}_rows_{kind}"] = float(len(part))
        out[f"{prefix}_wape_model_{kind}"] = wape(part["label"], part["gmv_7d_p50"])
        out[f"{prefix}_wape_naive_{kind}"] = wape(part["label"], part["naive"])
    y = rows["label"].to_numpy(dtype=float)
    out[f"{prefix}_coverage_80"] = float(np.mean((y >= rows["gmv_7d_p10"]) & (y <= rows["gmv_7d_p90"])))
    out[f"{prefix}_bias_model"] = float(rows["gmv_7d_p50"].sum() / y.sum()) if y.sum() > 0 else float("nan")
    out[f"{prefix}_bias_naive"] = float(rows["naive"].sum() / y.sum()) if y.sum() > 0 else float("nan")
    return out


@dataclass(frozen=True)
class Backtest:
    predictions: pd.DataFrame  # every scored fold row with its fold start
    metrics: dict[str, float]
    holdout_model: MerchantForecastModel
    holdout_booster: xgb.Booster
    holdout_recipe: ForecastRecipe
    holdout_start: date
    train_end: date


def backtest(ds: ForecastDataset, cfg: ForecastConfig) -> Backtest:
    frame = ds.frame
    origins = sorted(frame["origin"].unique())
    starts = fold_starts(origins, cfg.n_folds, cfg.fold_days)
    scored = []
    last: tuple[xgb.Booster, ForecastRecipe, MerchantForecastModel, date, date] | None = None
    for start in starts:
        train_end = start - timedelta(days=HORIZON_DAYS)
        train = frame[frame["origin"] <= train_end]
        test = frame[(frame["origin"] >= start) & (frame["origin"] < start + timedelta(days=cfg.fold_days))]
        if len(train) < cfg.min_train_rows or test.empty:
            console.print(f"fold {start}: skipped ({len(train)} training rows, {len(test)} test rows)")
            continue
        booster, recipe = fit(ds, train, cfg)
        model = as_model(booster, recipe)
        q = model.predict_quantiles(test)
        part = test[["merchant_id", "origin", "label", "naive", "is_campaign_week"]].copy()
        for i, name in enumerate(OUTPUT_COLUMNS):
            part[name] = q[:, i]
        part["fold_start"] = start
        scored.append(part)
        last = (booster, recipe, model, start, train_end)
        console.print(
            f"fold {start}: train {len(train):,} rows (origins <= {train_end}), test {len(test):,}: "
            f"WAPE model {wape(part['label'], part['gmv_7d_p50']):.3f} "
            f"vs naive {wape(part['label'], part['naive']):.3f}"
        )
    if last is None:
        raise NotReadyError("too little data for any backtest fold: simulate more days")
    predictions = pd.concat(scored, ignore_index=True)
    holdout = predictions[predictions["fold_start"] == last[3]]
    metrics = metrics_of(predictions, "backtest") | metrics_of(holdout, "holdout")
    metrics["backtest_folds"] = float(len(scored))
    return Backtest(predictions, metrics, last[2], last[0], last[1], last[3], last[4])
