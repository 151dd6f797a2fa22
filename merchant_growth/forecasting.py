"""Next-7-day GMV per merchant: dataset, rolling-origin backtest, MLflow registration, promotion and serving.

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
"""

from __future__ import annotations

import getpass
import json
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from merchant_growth import data
from merchant_growth.errors import NotReadyError, UnknownMerchantError
from merchant_growth.forecast_model import (
    OUTPUT_COLUMNS,
    QUANTILES,
    ForecastRecipe,
    MerchantForecastModel,
    base_of,
    model_frame,
    write_artifacts,
)
from merchant_growth.schemas import ForecastRequest, ForecastResponse
from platform_common.feature_spec import FeatureSpec
from platform_common.settings import Settings, get_settings
from training.registry import CHAMPION, connect, latest_version, version_by_alias

console = Console(stderr=True)

MODEL_NAME = "shoprank_merchant_forecast"
EXPERIMENT_NAME = "shoprank-merchant-forecast"
FEATURE_SERVICE = "merchant_forecast_v1"
HORIZON_DAYS = 7
PIP_REQUIREMENTS = [f"xgboost=={xgb.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


class ForecastConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    warmup_days: int = Field(
        0, ge=0, description="Origins start this many days after the data starts (short windows are an input)."
    )
    n_folds: int = Field(4, ge=1, description="Folds of the rolling-origin backtest (the newest = holdout).")
    fold_days: int = Field(7, ge=1, le=HORIZON_DAYS, description="Origins per fold (a week).")
    min_train_rows: int = Field(50, ge=1)
    scale_floor: float = Field(1.0, gt=0, description="USD added to the run rate: the scale of a quiet merchant.")
    max_depth: int = Field(4, ge=1, le=12)
    eta: float = Field(0.05, gt=0, le=1)
    num_boost_round: int = Field(300, ge=1)
    min_child_weight: float = Field(2.0, ge=0)
    subsample: float = Field(0.9, gt=0, le=1)
    colsample_bytree: float = Field(0.9, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    nthread: int = Field(2, ge=1)
    seed: int = 7

    @classmethod
    def for_scale(cls, scale: str) -> ForecastConfig:
        """tiny (21 days) cannot hold 4 weekly folds: 2 folds of 3 origins."""
        if scale == "tiny":
            return cls(n_folds=2, fold_days=3, min_train_rows=30)
        return cls()

    def booster_params(self) -> dict[str, Any]:
        return {
            "objective": "reg:quantileerror",
            "quantile_alpha": np.array(QUANTILES),
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.eta,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "nthread": self.nthread,
            "seed": self.seed,
        }


# --- dataset -----------------------------------------------------------------------------------------------


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


# --- training and evaluation -------------------------------------------------------------------------------


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
    booster = xgb.train(cfg.booster_params(), dtrain, num_boost_round=cfg.num_boost_round)
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


# --- MLflow ------------------------------------------------------------------------------------------------


def ensure_experiment(client: MlflowClient, settings: Settings) -> str:
    existing = client.get_experiment_by_name(EXPERIMENT_NAME)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(EXPERIMENT_NAME, artifact_location=settings.artifact_root.as_uri())


@dataclass(frozen=True)
class ForecastTrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]


def freeze_holdout(ds: ForecastDataset, bt: Backtest, settings: Settings) -> Path:
    keys = bt.predictions.loc[bt.predictions["fold_start"] == bt.holdout_start, ["merchant_id", "origin"]]
    rows = ds.frame.merge(keys, on=["merchant_id", "origin"], how="inner")
    digest = pd.util.hash_pandas_object(rows[["merchant_id", "label"]], index=False).sum()
    out = settings.datasets_dir / "merchant_forecast" / f"{bt.holdout_start}-{abs(int(digest)) % 10**12}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(out, index=False)
    return out


def train_forecast(cfg: ForecastConfig | None = None, settings: Settings | None = None) -> ForecastTrainResult:
    from platform_common.feast_config import get_feature_store

    settings = settings or get_settings()
    cfg = cfg or ForecastConfig.for_scale(settings.scale)
    store = get_feature_store(settings)
    console.print(f"[bold]Forecast dataset[/] from feature service {FEATURE_SERVICE} (point in time)")
    ds = build_dataset(store, settings, cfg)
    console.print(
        f"{len(ds.frame):,} merchant-origins, origins {ds.frame['origin'].min()} .. {ds.frame['origin'].max()}"
    )
    bt = backtest(ds, cfg)
    holdout_path = freeze_holdout(ds, bt, settings)
    client = connect(settings)
    experiment_id = ensure_experiment(client, settings)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(Path(tmp), bt.holdout_recipe, bt.holdout_booster)
        mlflow.log_params(
            {
                "feature_service": FEATURE_SERVICE,
                "horizon_days": HORIZON_DAYS,
                "train_origin_end": str(bt.train_end),
                "holdout_start": str(bt.holdout_start),
                "n_inputs": len(bt.holdout_recipe.spec.columns),
                **{f"cfg_{k}": v for k, v in cfg.model_dump().items()},
            }
        )
        # a slice without rows (no campaign week in a tiny holdout) has no WAPE: logged as absent, not NaN
        finite = {k: v for k, v in bt.metrics.items() if np.isfinite(v)}
        mlflow.log_metrics(finite)
        mlflow.set_tags({"holdout_set_path": str(holdout_path), "trained_by": getpass.getuser()})
        predictions_path = Path(tmp) / "backtest_predictions.parquet"
        bt.predictions.to_parquet(predictions_path, index=False)
        mlflow.log_artifact(str(predictions_path))
        example = ds.frame[list(ds.raw_columns)].head(5).copy()
        # declared as doubles: any numeric feature can be missing when serving
        numeric = [c for c in ds.raw_columns if c not in ds.categorical]
        example[numeric] = example[numeric].astype("float64")
        info = mlflow.pyfunc.log_model(
            name="merchant_forecast",
            python_model=MerchantForecastModel(),
            artifacts=artifacts,
            input_example=example.head(2),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=MODEL_NAME,
            metadata={"feature_service": FEATURE_SERVICE, "horizon_days": HORIZON_DAYS, "quantiles": QUANTILES},
        )
        version = str(info.registered_model_version)
        client.set_model_version_tag(MODEL_NAME, version, "holdout_set_path", str(holdout_path))
        client.set_model_version_tag(MODEL_NAME, version, "metrics", json.dumps(finite))
    m = bt.metrics
    console.print(
        f"[green]Registered {MODEL_NAME} v{version}[/]: backtest WAPE normal weeks "
        f"{m['backtest_wape_model_normal']:.3f}"
        f" (naive {m['backtest_wape_naive_normal']:.3f}), campaign weeks {m['backtest_wape_model_campaign']:.3f}"
        f" (naive {m['backtest_wape_naive_campaign']:.3f})"
    )
    return ForecastTrainResult(run.info.run_id, version, bt.metrics)


def load_version(version: str) -> MerchantForecastModel:
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}").unwrap_python_model()
    if not isinstance(model, MerchantForecastModel):
        raise TypeError(f"{MODEL_NAME} v{version} is not a merchant forecast model")
    return model


@dataclass(frozen=True)
class ForecastDecision:
    promoted: bool
    candidate: str
    champion_before: str | None
    reason: str


def promote_forecast(settings: Settings | None = None, min_wape_gain: float = 0.0) -> ForecastDecision:
    """The newest version becomes champion if there is none, or if its WAPE on its frozen holdout rows beats the
    champion's on the same rows by more than min_wape_gain."""
    settings = settings or get_settings()
    client = connect(settings)
    candidate = latest_version(client, MODEL_NAME)
    if candidate is None:
        raise LookupError(f"no version of {MODEL_NAME} is registered: run `make forecast`")
    champion = version_by_alias(client, MODEL_NAME, CHAMPION)
    if champion is not None and champion.version == candidate.version:
        return ForecastDecision(False, candidate.version, champion.version, f"v{candidate.version} is already champion")
    if champion is None:
        decision = ForecastDecision(True, candidate.version, None, "no champion yet: the first model becomes champion")
    else:
        rows = pd.read_parquet(candidate.tags["holdout_set_path"])
        cand = wape(rows["label"], load_version(candidate.version).predict_quantiles(rows)[:, 1])
        try:
            champ = wape(rows["label"], load_version(champion.version).predict_quantiles(rows)[:, 1])
        except (KeyError, ValueError, TypeError) as exc:
            # A champion whose inputs the current feature code no longer produces could not serve either.
            decision = ForecastDecision(
                True,
                candidate.version,
                champion.version,
                f"champion v{champion.version} cannot score the current features ({type(exc).__name__}: {exc}); "
                f"v{candidate.version} (holdout WAPE {cand:.4f}) replaces it",
            )
        else:
            promoted = bool(cand < champ - min_wape_gain)
            verdict = "beats" if promoted else "does not beat"
            decision = ForecastDecision(
                promoted,
                candidate.version,
                champion.version,
                f"v{candidate.version} {verdict} champion v{champion.version} on the same {len(rows):,} holdout "
                f"rows: WAPE {cand:.4f} vs {champ:.4f} (required gain > {min_wape_gain:.4f})",
            )
    tags = {
        "promotion_decision": "promoted" if decision.promoted else "refused",
        "promotion_reason": decision.reason,
        "promotion_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, decision.candidate, key, value)
    if decision.promoted:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, decision.candidate)
    return decision


# --- serving -----------------------------------------------------------------------------------------------

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
            _models[key] = load_version(str(version.version))
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
        feature_source=used,  # type: ignore[arg-type]
    )
