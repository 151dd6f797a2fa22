"""The forecast in MLflow: train and register the holdout fold's model, load a version, and the champion gate
(WAPE on the candidate's frozen holdout rows) whose alias move holds the registry's promotion lock."""

from __future__ import annotations

import getpass
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from rich.console import Console

from merchant_growth.forecast_backtest import Backtest, backtest, wape
from merchant_growth.forecast_config import EXPERIMENT_NAME, FEATURE_SERVICE, HORIZON_DAYS, MODEL_NAME, ForecastConfig
from merchant_growth.forecast_dataset import ForecastDataset, build_dataset
from merchant_growth.forecast_model import QUANTILES, MerchantForecastModel, write_artifacts
from platform_common.registry import (
    CHAMPION,
    connect,
    ensure_experiment,
    latest_version,
    load_bundle,
    move_aliases,
    version_by_alias,
)
from platform_common.settings import Settings, get_settings

console = Console(stderr=True)

PIP_REQUIREMENTS = [f"xgboost=={xgb.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


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
    experiment_id = ensure_experiment(settings, EXPERIMENT_NAME)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(Path(tmp), bt.holdout_recipe, bt.holdout_booster)
        mlflow.log_params(
            {
                "feature_service": FEATURE_SERVICE,
                "horizon_days": HORIZON_DAYS,
                "train_origin_end": str(bt.train_end),
                "holdout_start": str(bt.holdout_start),
                "n_inputs": len(bt.holdout_recipe.spec.columns),
                **cfg.logged_params(),
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


def load_forecast_model(settings: Settings, version: str) -> MerchantForecastModel:
    return load_bundle(settings, MODEL_NAME, version, MerchantForecastModel).bundle


@dataclass(frozen=True)
class ForecastDecision:
    promoted: bool
    candidate: str
    champion_before: str | None
    reason: str


def promote_forecast(settings: Settings | None = None, min_wape_gain: float = 0.0) -> ForecastDecision:
    """The newest version becomes champion if there is none, or if its WAPE on its frozen holdout rows beats the
    champion's on the same rows by more than min_wape_gain. Decided and moved under the registry's promotion lock,
    the one the ranker's promotions and rollbacks hold."""
    settings = settings or get_settings()
    client = connect(settings)
    with move_aliases(settings, MODEL_NAME) as aliases:
        decision = _decide(settings, client, min_wape_gain)
        if decision is None:
            raise LookupError(f"no version of {MODEL_NAME} is registered: run `make forecast`")
        if decision.champion_before == decision.candidate:
            return decision
        tags = {
            "promotion_decision": "promoted" if decision.promoted else "refused",
            "promotion_reason": decision.reason,
            "promotion_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        for key, value in tags.items():
            client.set_model_version_tag(MODEL_NAME, decision.candidate, key, value)
        if decision.promoted:
            aliases.set(CHAMPION, decision.candidate)
    return decision


def _decide(settings: Settings, client: MlflowClient, min_wape_gain: float) -> ForecastDecision | None:
    """The gate's verdict on the newest version (None when there is none); moves nothing."""
    candidate = latest_version(client, MODEL_NAME)
    if candidate is None:
        return None
    champion = version_by_alias(client, MODEL_NAME, CHAMPION)
    # MLflow returns versions as str or int depending on the call; compare and record them as str.
    cand_v, champ_v = str(candidate.version), (str(champion.version) if champion else None)
    if champ_v == cand_v:
        return ForecastDecision(False, cand_v, champ_v, f"v{cand_v} is already champion")
    if champ_v is None:
        return ForecastDecision(True, cand_v, None, "no champion yet: the first model becomes champion")
    rows = pd.read_parquet(candidate.tags["holdout_set_path"])
    cand = wape(rows["label"], load_forecast_model(settings, cand_v).predict_quantiles(rows)[:, 1])
    try:
        champ = wape(rows["label"], load_forecast_model(settings, champ_v).predict_quantiles(rows)[:, 1])
    except (KeyError, ValueError, TypeError) as exc:
        # A champion whose inputs the current feature code no longer produces could not serve either.
        return ForecastDecision(
            True,
            cand_v,
            champ_v,
            f"champion v{champ_v} cannot score the current features ({type(exc).__name__}: {exc}); "
            f"v{cand_v} (holdout WAPE {cand:.4f}) replaces it",
        )
    promoted = bool(cand < champ - min_wape_gain)
    verdict = "beats" if promoted else "does not beat"
    return ForecastDecision(
        promoted,
        cand_v,
        champ_v,
        f"v{cand_v} {verdict} champion v{champ_v} on the same {len(rows):,} holdout "
        f"rows: WAPE {cand:.4f} vs {champ:.4f} (required gain > {min_wape_gain:.4f})",
    )
