"""Next-7-day GMV per merchant: the method, and serving the champion forecast.

Label. For an as-of day D (the origin) and a merchant: GMV of its orders known in D+1 .. D+7, which is
`mg_gmv_7d` of the feature row of D+7. Features: Feast's point-in-time join of the `merchant_forecast_v1`
service (views `merchant_forecast_features` and `merchant_features`) at D+1 00:00 UTC, the moment the row of D
became true. Baseline: the seasonal-naive forecast, the same 7 weekdays of the last week (`mg_gmv_7d` of D).

Evaluation (WAPE = sum |actual - forecast| / sum actual, over merchants and origins). A rolling-origin backtest
over the last `n_folds` weeks of origins: the model of the fold starting on origin F is trained on the origins
whose label window had ended by F (D + 7 <= F) and scores the origins F .. F+6. A target week is a *campaign
week* when its 7 days hold at least one campaign day of the plan, else a *normal week*. The newest fold is the
holdout: its model is the one registered (what is evaluated is what is served) and its rows are frozen for the
champion/challenger gate, which compares WAPE on exactly those rows.

Modules: forecast_config (names, ForecastConfig), forecast_dataset (the frame above), forecast_backtest (the
folds, WAPE), forecast_model (the registered pyfunc), forecast_registry (train, register, promote).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from merchant_growth import data
from merchant_growth.errors import NotReadyError, UnknownMerchantError
from merchant_growth.forecast_config import FEATURE_SERVICE, HORIZON_DAYS, MODEL_NAME
from merchant_growth.forecast_dataset import with_features
from merchant_growth.forecast_model import MerchantForecastModel
from merchant_growth.forecast_registry import load_forecast_model
from merchant_growth.schemas import ForecastRequest, ForecastResponse
from platform_common.registry import CHAMPION, connect, version_by_alias
from platform_common.settings import Settings, get_settings

_models: dict[tuple[str, str], MerchantForecastModel] = {}
_stores: dict[str, Any] = {}
_lock = threading.Lock()


def champion_model(settings: Settings) -> tuple[str, MerchantForecastModel]:
    client = connect(settings)
    version = version_by_alias(client, MODEL_NAME, CHAMPION)
    if version is None:
        raise NotReadyError(f"{MODEL_NAME} has no '{CHAMPION}' alias: run `make forecast`")
    key = (settings.tracking_uri, str(version.version))
    with _lock:
        if key not in _models:
            _models[key] = load_forecast_model(settings, str(version.version))
        return str(version.version), _models[key]


def feature_store(settings: Settings) -> Any:
    from platform_common.feast_config import get_feature_store

    key = str(settings.home_dir)
    with _lock:
        if key not in _stores:
            _stores[key] = get_feature_store(settings)
        return _stores[key]


def online_features(store: Any, merchant_id: str) -> tuple[pd.DataFrame, date] | None:
    """The merchant's freshest online features and the day they describe; None when the store has none."""
    response = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE), entity_rows=[{"merchant_id": merchant_id}]
    ).to_dict(include_event_timestamps=True)
    if response.get("mg_gmv_28d", [None])[0] is None:
        return None
    seconds = response.get("mg_gmv_28d__ts", [0])[0]
    as_of = (datetime.fromtimestamp(seconds, tz=UTC) - timedelta(days=1)).date()
    frame = pd.DataFrame({k: v for k, v in response.items() if not k.endswith("__ts")})
    return frame, as_of


def offline_features(store: Any, settings: Settings, merchant_id: str) -> tuple[pd.DataFrame, date]:
    """The merchant's features as of the end of its last day in the mart (point in time, through Feast)."""
    path = data.mart_path(settings, data.FORECAST_FEATURES)
    last = data.query(f"select max(feature_date) d from read_parquet('{path}') where merchant_id = ?", [merchant_id])
    if last.empty or pd.isna(last.iloc[0, 0]):
        raise UnknownMerchantError(merchant_id)
    as_of = pd.Timestamp(last.iloc[0, 0]).date()
    ts = pd.Timestamp(as_of + timedelta(days=1), tz=UTC)
    entities = pd.DataFrame({"merchant_id": [merchant_id], "event_timestamp": [ts]})
    entities["event_timestamp"] = entities["event_timestamp"].astype("datetime64[us, UTC]")
    return with_features(store, entities), as_of


def forecast(
    merchant_id: str, settings: Settings | None = None, *, source: str = "auto", store: Any = None
) -> ForecastResponse:
    """Forecast a merchant's GMV of the next 7 days with the champion `shoprank_merchant_forecast`.

    source: "online" (Feast online store, as a service would), "offline" (point-in-time features of the last
    day of the data) or "auto" (online, falling back to offline when the online store has nothing fresh).
    Raises pydantic.ValidationError (400), UnknownMerchantError (404), NotReadyError (503).
    """
    return forecast_request(ForecastRequest(merchant_id=merchant_id), settings, source=source, store=store)


def forecast_request(
    request: ForecastRequest, settings: Settings | None = None, *, source: str = "auto", store: Any = None
) -> ForecastResponse:
    if source not in ("auto", "online", "offline"):
        raise ValueError(f"source must be auto, online or offline, not {source!r}")
    settings = settings or get_settings()
    data.merchant_info(settings, request.merchant_id)  # UnknownMerchantError before any model work
    version, model = champion_model(settings)
    store = store or feature_store(settings)
    got = online_features(store, request.merchant_id) if source in ("auto", "online") else None
    used = "online"
    if got is None:
        if source == "online":
            raise NotReadyError(f"no fresh online features for {request.merchant_id}: run `make materialize`")
        got, used = offline_features(store, settings, request.merchant_id), "offline"
    raw, as_of = got
    q = model.predict_quantiles(raw)[0]
    row = raw.iloc[0]
    return ForecastResponse(
        merchant_id=request.merchant_id,
        model_name=MODEL_NAME,
        model_version=version,
        as_of=as_of,
        horizon_start=as_of + timedelta(days=1),
        horizon_end=as_of + timedelta(days=HORIZON_DAYS),
        gmv_7d=float(q[1]),
        gmv_7d_low=float(q[0]),
        gmv_7d_high=float(q[2]),
        seasonal_naive_gmv_7d=float(row["mg_gmv_7d"]),
        campaign_days_ahead=int(row["mg_campaign_days_next7"]),
        mega_days_ahead=int(row["mg_mega_days_next7"]),
        feature_source=used,
    )
