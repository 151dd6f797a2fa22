"""Train the CTR head on a point-in-time training set, evaluate against the oracle, register in MLflow."""

from __future__ import annotations

import getpass
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature
from rich.console import Console

from platform_common.feast_config import get_feature_store
from platform_common.feature_spec import FeatureSpec
from platform_common.settings import Settings, get_settings
from training import oracle
from training.bundle import RankerBundle, write_artifacts
from training.config import TrainConfig, XGBConfig
from training.dataset import TrainingSet, build_training_set, save_test_set
from training.metrics import binary_metrics
from training.registry import connect, ensure_experiment

console = Console(stderr=True)

PIP_REQUIREMENTS = [f"xgboost=={xgb.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]


def fit_head(spec: FeatureSpec, train: pd.DataFrame, valid: pd.DataFrame, label: str, cfg: XGBConfig) -> xgb.Booster:
    """Early-stopped booster, cut at its best iteration so every consumer uses the right trees."""
    dtrain = xgb.DMatrix(spec.frame_matrix(train), label=train[label].to_numpy(), feature_names=list(spec.columns))
    dvalid = xgb.DMatrix(spec.frame_matrix(valid), label=valid[label].to_numpy(), feature_names=list(spec.columns))
    booster = xgb.train(
        cfg.booster_params(),
        dtrain,
        num_boost_round=cfg.num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=cfg.early_stopping_rounds,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1]


def evaluate_ctr(bundle: RankerBundle, ts: TrainingSet, settings: Settings) -> dict[str, float]:
    assert bundle.spec is not None
    test = ts.part("test")
    pred = bundle.score_matrix(bundle.spec.frame_matrix(test))["pctr"]
    y = test["clicked"].to_numpy()
    metrics = binary_metrics(y, pred, "test")
    truth = oracle.load_truth(settings, test["impression_id"])
    metrics |= binary_metrics(y, truth["p_click"].to_numpy(), "oracle")
    metrics["normalized_lift"] = (metrics["test_auc"] - 0.5) / (metrics["oracle_auc"] - 0.5)
    metrics["test_rows"] = float(len(test))
    metrics["test_ctr"] = float(y.mean())
    return metrics


def train(cfg: TrainConfig | None = None, settings: Settings | None = None) -> TrainResult:
    cfg = cfg or TrainConfig()
    settings = settings or get_settings()
    store = get_feature_store(settings)
    console.print(f"[bold]Building point-in-time training set[/] from feature service {cfg.feature_service}")
    ts = build_training_set(store, settings, cfg)
    train_df, valid_df = ts.part("train"), ts.part("valid")
    console.print(
        f"rows: train {len(train_df):,} valid {len(valid_df):,} test {len(ts.part('test')):,}; "
        f"fingerprint {ts.fingerprint}"
    )
    spec = FeatureSpec.fit(train_df, cfg.feature_service, ts.columns.numeric, ts.columns.categorical)
    with console.status("Training CTR head (XGBoost, early stopping on the validation days)"):
        ctr = fit_head(spec, train_df, valid_df, "clicked", cfg.xgb)
    bundle = RankerBundle()
    test_path = save_test_set(ts, settings)

    client = connect(settings)
    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(Path(tmp), spec, {"ctr": ctr})
        bundle.load_from_paths(artifacts)
        metrics = evaluate_ctr(bundle, ts, settings)
        metrics["ctr_best_iteration"] = float(ctr.num_boosted_rounds())
        mlflow.log_params(
            {
                "feature_service": cfg.feature_service,
                "n_features": len(spec.columns),
                "filter_by_created_timestamp": cfg.filter_by_created_timestamp,
                **ts.split.as_params(),
                **{f"xgb_{k}": v for k, v in cfg.xgb.model_dump().items()},
            }
        )
        mlflow.set_tags(
            {
                "data_fingerprint": ts.fingerprint,
                "feature_service": cfg.feature_service,
                "test_set_path": str(test_path),
                "trained_by": getpass.getuser(),
            }
        )
        mlflow.log_dict(
            {"features": list(spec.columns), "feature_refs": list(ts.columns.feature_refs)}, "features.json"
        )
        mlflow.log_metrics(metrics)
        example = ts.part("test")[list(spec.columns)].head(20).copy()
        # Declared as doubles: any numeric feature can be missing at serving time.
        example[list(spec.numeric)] = example[list(spec.numeric)].astype("float64")
        signature = infer_signature(example, bundle.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="ranker",
            python_model=RankerBundle(),
            artifacts=artifacts,
            signature=signature,
            input_example=example.head(3),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=settings.model_name,
            metadata={"feature_service": cfg.feature_service, "heads": ["ctr"]},
        )
        version = str(info.registered_model_version)
        client.set_model_version_tag(settings.model_name, version, "data_fingerprint", ts.fingerprint)
        client.set_model_version_tag(settings.model_name, version, "feature_service", cfg.feature_service)
        client.set_model_version_tag(settings.model_name, version, "test_set_path", str(test_path))
        client.set_model_version_tag(settings.model_name, version, "metrics", json.dumps(metrics))
    console.print(
        f"[green]Registered {settings.model_name} v{version}[/]: test_auc {metrics['test_auc']:.4f} "
        f"(oracle {metrics['oracle_auc']:.4f}), test_logloss {metrics['test_logloss']:.4f}, "
        f"test_ece {metrics['test_ece']:.4f}"
    )
    return TrainResult(run_id=run.info.run_id, model_version=version, metrics=metrics)
