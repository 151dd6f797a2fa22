"""The forecast's training frame: every (merchant, origin day) with its label, seasonal-naive forecast, week kind
and the point-in-time features of the `merchant_forecast_v1` service (see merchant_growth/forecasting.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

import pandas as pd

from merchant_growth import data
from merchant_growth.errors import NotReadyError
from merchant_growth.forecast_config import FEATURE_SERVICE, ForecastConfig
from platform_common.settings import Settings


@dataclass(frozen=True)
class ForecastDataset:
    frame: pd.DataFrame  # merchant_id, origin, event_timestamp, label, naive, is_campaign_week, raw features
    raw_columns: tuple[str, ...]
    extra_numeric: tuple[str, ...]
    categorical: tuple[str, ...]


def service_columns(store: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric, categorical) raw feature names of the forecast feature service."""
    from feast.types import String

    service = store.get_feature_service(FEATURE_SERVICE)
    numeric: list[str] = []
    categorical: list[str] = []
    for projection in service.feature_view_projections:
        for feature in projection.features:
            (categorical if feature.dtype == String else numeric).append(feature.name)
    return tuple(numeric), tuple(categorical)


def load_origins(settings: Settings, warmup_days: int) -> pd.DataFrame:
    """Every (merchant, origin D) with a complete label window, its label, naive forecast and week kind."""
    path = data.mart_path(settings, data.FORECAST_FEATURES)
    frame = data.query(
        f"""
        with f as (select * from read_parquet('{path}')),
        bounds as (select min(feature_date) lo from f)
        select f.merchant_id, f.feature_date as origin, l.mg_gmv_7d as label, f.mg_gmv_7d as naive,
               cast(f.mg_campaign_days_next7 > 0 as int) as is_campaign_week
        from f
        join f as l on l.merchant_id = f.merchant_id and l.feature_date = f.feature_date + interval 7 day
        cross join bounds
        where f.feature_date >= bounds.lo + interval {int(warmup_days)} day
        order by f.feature_date, f.merchant_id
        """
    )
    frame["origin"] = pd.to_datetime(frame["origin"]).dt.date
    frame["event_timestamp"] = (pd.to_datetime(frame["origin"]) + pd.Timedelta(days=1)).dt.tz_localize(UTC)
    frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    return frame


def with_features(store: Any, entities: pd.DataFrame) -> pd.DataFrame:
    """Feast point-in-time join of the forecast feature service, in the entities' order."""
    keys = entities[["merchant_id", "event_timestamp"]]
    job = store.get_historical_features(
        entity_df=keys, features=store.get_feature_service(FEATURE_SERVICE), full_feature_names=False
    )
    feats = job.to_df()
    feats["event_timestamp"] = pd.to_datetime(feats["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    merged = entities.merge(feats, on=["merchant_id", "event_timestamp"], how="left", validate="one_to_one")
    if len(merged) != len(entities):
        raise RuntimeError("the point-in-time join changed the number of rows")
    return merged


def build_dataset(store: Any, settings: Settings, cfg: ForecastConfig) -> ForecastDataset:
    origins = load_origins(settings, cfg.warmup_days)
    if origins.empty:
        raise NotReadyError("no forecast origin has a complete 7-day label window: too little data")
    numeric, categorical = service_columns(store)
    frame = with_features(store, origins)
    extra = tuple(c for c in numeric if not c.startswith("mg_") and "gmv" not in c)
    return ForecastDataset(frame, numeric + categorical, extra, categorical)
