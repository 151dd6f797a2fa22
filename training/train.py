"""Train the ranker's heads on a point-in-time training set, evaluate against the oracle, register in MLflow."""

from __future__ import annotations

import dataclasses
import getpass
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from feast import FeatureStore
from rich.console import Console

from platform_common.feast_config import get_feature_store
from platform_common.feature_spec import FeatureSpec
from platform_common.registry import connect, ensure_experiment
from platform_common.settings import Settings, get_settings
from serving.monitoring.profile import log_reference_profile
from training import evaluation, oracle
from training.bundle import BundleConfig, RankerBundle, write_artifacts
from training.calibration import DayKindMargins
from training.config import TrainConfig
from training.dataset import build_training_set, save_test_set
from training.fitting import (
    TrainingData,
    at_value_price,
    choose_cvr_method,
    cvr_margins,
    fit_heads,
    refit_heads,
    units_by_day_kind,
    units_by_price_band,
    units_per_order,
)
from training.guards import GuardResult, leakage_guard
from training.signature import integer_features, model_signature
from training.trainset import Augment, ParquetTrainingSet, build_parquet_training_set

console = Console(stderr=True)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Print a step's wall and CPU seconds (every thread): where `make train` spends its time at scale. Printed,
    not logged to MLflow, so two runs of the same data still log identical metrics."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    console.print(f"[dim]{name}: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU[/]")


PIP_REQUIREMENTS = [f"xgboost=={xgb.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]
    guard_passed: bool


@dataclass(frozen=True)
class Fitted:
    """The heads and the bundle settings chosen from the training and validation days."""

    spec: FeatureSpec
    boosters: dict[str, xgb.Booster]
    config: BundleConfig
    method_metrics: dict[str, float]


def training_data(
    store: FeatureStore, settings: Settings, cfg: TrainConfig, augment: Augment | None = None
) -> tuple[TrainingData, Path]:
    """The training set (parquet read in batches; or one pandas frame with cfg.in_memory) and its frozen test rows."""
    if cfg.in_memory:
        if augment is not None:
            raise ValueError("augment is SQL over the parquet training set: not available with in_memory")
        ts = build_training_set(store, settings, cfg)
        return ts, save_test_set(ts, settings)
    pts = build_parquet_training_set(store, settings, cfg, augment)
    return pts, pts.save_test_set(settings)


def fit(
    data: TrainingData,
    cfg: TrainConfig,
    workdir: Path,
    extra_numeric: list[str] | None = None,
    spark: SparkFit | None = None,
) -> Fitted:
    """Early-stopped heads, the CVR method chosen on the validation days, then (by default) the refit on train +
    valid and units per order from the rows the final heads learned from. With `spark` (the Spark engine) the
    heads are trained by xgboost.spark (training/spark_fitting.py); everything else is the same code."""
    spec = data.fit_spec(cfg.feature_service, [*data.columns.numeric, *(extra_numeric or [])])
    if spark is not None:
        return _fit_spark(data, spec, cfg, workdir, spark)
    margins = cvr_margins(data, spec, ("train",))
    with console.status("Training the heads (XGBoost, early stopping on the validation days)"), phase("fit"):
        boosters = fit_heads(data, spec, cfg.xgb, margins)
    bundle = RankerBundle()
    bundle.load_from_paths(
        write_artifacts(workdir / "probe", spec, boosters, BundleConfig(cvr_day_kind_margins=margins))
    )
    method, method_metrics = choose_cvr_method(bundle, data)
    method_metrics |= {f"{h}_trees_early_stopped": float(b.num_boosted_rounds()) for h, b in boosters.items()}
    fit_parts: tuple[str, ...] = ("train",)
    if cfg.xgb.refit_on_valid:
        margins = cvr_margins(data, spec, ("train", "valid"))
        with console.status("Refitting the heads on the train and validation days"), phase("refit"):
            boosters = refit_heads(data, spec, cfg.xgb, boosters, margins)
        fit_parts = ("train", "valid")
    return _finish(data, spec, boosters, method, method_metrics, fit_parts, margins)


def _finish(
    data: TrainingData,
    spec: FeatureSpec,
    boosters: dict[str, xgb.Booster],
    method: str,
    method_metrics: dict[str, float],
    fit_parts: tuple[str, ...],
    margins: DayKindMargins | None = None,
) -> Fitted:
    orders = at_value_price(data.orders(fit_parts))
    bands, units = units_by_price_band(orders)
    config = BundleConfig(
        cvr_method=method,
        units_per_order=units_per_order(orders),
        price_bands=bands,
        units_by_band=units,
        units_by_day_kind=units_by_day_kind(orders, bands),
        cvr_day_kind_margins=margins,
    )
    margin_metrics = {f"cvr_margin_day_kind_{k}": v for k, v in (margins.by_kind if margins else {}).items()}
    return Fitted(spec, boosters, config, method_metrics | margin_metrics)


@dataclass(frozen=True)
class SparkFit:
    """Train the heads with xgboost.spark on this session, `num_workers` barrier tasks per booster."""

    session: Any
    num_workers: int


def _fit_spark(data: TrainingData, spec: FeatureSpec, cfg: TrainConfig, workdir: Path, spark: SparkFit) -> Fitted:
    from training.spark_fitting import fit_heads_spark, refit_heads_spark

    if not isinstance(data, ParquetTrainingSet):
        raise ValueError("xgboost.spark trains from the persisted training set: not available with in_memory")
    # Spark scales out instead of sampling: its executors take every row (the sample is the one-machine answer).
    data = dataclasses.replace(data, negative_keep=1.0)
    with console.status("Training the heads (xgboost.spark, early stopping on the validation days)"):
        boosters = fit_heads_spark(spark.session, data, spec, cfg.xgb, spark.num_workers)
    bundle = RankerBundle()
    bundle.load_from_paths(write_artifacts(workdir / "probe", spec, boosters))
    method, method_metrics = choose_cvr_method(bundle, data)
    method_metrics |= {f"{h}_trees_early_stopped": float(b.num_boosted_rounds()) for h, b in boosters.items()}
    fit_parts: tuple[str, ...] = ("train",)
    if cfg.xgb.refit_on_valid:
        with console.status("Refitting the heads on the train and validation days (xgboost.spark)"):
            boosters = refit_heads_spark(spark.session, data, spec, cfg.xgb, boosters, spark.num_workers)
        fit_parts = ("train", "valid")
    return _finish(data, spec, boosters, method, method_metrics, fit_parts)


def train(
    cfg: TrainConfig | None = None, settings: Settings | None = None, augment: Augment | None = None
) -> TrainResult:
    """`augment` adds SQL columns to the training set before fitting: the leakage test uses it to plant a leak."""
    cfg = cfg or TrainConfig()
    settings = settings or get_settings()
    store = get_feature_store(settings)
    path = "in memory (pandas)" if cfg.in_memory else "persisted to parquet, trained in batches"
    console.print(f"[bold]Building point-in-time training set[/] from feature service {cfg.feature_service}, {path}")
    with phase("training set"):
        data, test_path = training_data(store, settings, cfg, augment)
    try:
        # the in-memory path (tests and benchmarks only) holds its rows in pandas: it trains in process
        spark = None if cfg.in_memory else spark_fit(settings)
        return _train(store, data, test_path, cfg, settings, augment, spark)
    finally:
        if isinstance(data, ParquetTrainingSet):
            data.remove()


def spark_fit(settings: Settings) -> SparkFit | None:
    """xgboost.spark on the offline engine's session under SHOPRANK_OFFLINE_ENGINE=spark, else None (in process)."""
    if settings.offline_engine != "spark":
        return None
    from platform_common.spark_session import get_spark_session
    from training.spark_fitting import default_workers

    session = get_spark_session(settings)
    return SparkFit(session, default_workers(session))


def _train(
    store: FeatureStore,
    data: TrainingData,
    test_path: Path,
    cfg: TrainConfig,
    settings: Settings,
    augment: Augment | None,
    spark: SparkFit | None = None,
) -> TrainResult:
    test_df = pd.read_parquet(test_path)
    n_train = len(data.labels(("train",), "clicked", False))
    n_valid = len(data.labels(("valid",), "clicked", False))
    console.print(f"rows: train {n_train:,} valid {n_valid:,} test {len(test_df):,}; fingerprint {data.fingerprint}")

    client = connect(settings)
    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        fitted = fit(data, cfg, Path(tmp), list(augment.columns) if augment else None, spark)
        spec, boosters, config, method = fitted.spec, fitted.boosters, fitted.config, fitted.config.cvr_method
        artifacts = write_artifacts(Path(tmp) / "bundle", spec, boosters, config)
        bundle = RankerBundle()
        bundle.load_from_paths(artifacts)

        with phase("evaluation"):
            metrics, guard = _evaluate(bundle, test_df, settings, fitted)

        mlflow.log_params(
            {
                "feature_service": cfg.feature_service,
                "n_features": len(spec.columns),
                "filter_by_created_timestamp": cfg.filter_by_created_timestamp,
                "cvr_method": method,
                "units_per_order": round(config.units_per_order, 4),
                **data.split.as_params(),
                "training_path": "in_memory" if cfg.in_memory else "batched",
                # share of the train days' non-clicked rows the CTR and CTCVR heads learned from (1: all of them)
                "negative_keep": round(float(getattr(data, "negative_keep", 1.0)), 6) if spark is None else 1.0,
                "max_train_negatives": cfg.max_train_negatives,
                **({"trainer": f"xgboost.spark ({spark.num_workers} workers)"} if spark else {}),
                **{f"xgb_{k}": v for k, v in cfg.xgb.model_dump().items()},
            }
        )
        tags = {
            "data_fingerprint": data.fingerprint,
            "feature_service": cfg.feature_service,
            "test_set_path": str(test_path),
            "trained_by": getpass.getuser(),
            "leakage_guard": "passed" if guard.passed else "failed",
            "leakage_guard_reason": guard.reason,
        }
        mlflow.set_tags(tags)
        mlflow.log_dict(
            {"features": list(spec.columns), "feature_refs": list(data.columns.feature_refs)}, "features.json"
        )
        mlflow.log_metrics(metrics)
        log_reference_profile(test_df, bundle, data.columns.feature_refs)  # drift reference for `make monitor`
        example = test_df[list(spec.inputs)].head(20)
        signature = model_signature(spec, integer_features(store, cfg.feature_service), bundle.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="ranker",
            python_model=RankerBundle(),
            artifacts=artifacts,
            signature=signature,
            input_example=example.head(3),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=settings.model_name,
            metadata={"feature_service": cfg.feature_service, "heads": list(boosters), "cvr_method": method},
        )
        version = str(info.registered_model_version)
        for key in ("data_fingerprint", "feature_service", "test_set_path", "leakage_guard", "leakage_guard_reason"):
            client.set_model_version_tag(settings.model_name, version, key, tags[key])
        client.set_model_version_tag(settings.model_name, version, "metrics", json.dumps(metrics))
        if not guard.passed:
            console.print(f"[red bold]LEAKAGE GUARD FAILED[/]: {guard.reason}")
            mlflow.end_run(status="FAILED")
    colour = "green" if guard.passed else "red"
    console.print(
        f"[{colour}]Registered {settings.model_name} v{version}[/]: CTR AUC {metrics['test_auc']:.4f} "
        f"(oracle {metrics['oracle_auc']:.4f}, lift {metrics['normalized_lift']:.2f}), ECE {metrics['test_ece']:.4f}; "
        f"CVR AUC {metrics['cvr_test_auc']:.4f} (oracle {metrics['cvr_oracle_auc']:.4f}); "
        f"GMV@10 {metrics['gmv_at_10_ratio_to_oracle']:.1%} of oracle "
        f"(popularity {metrics['gmv_at_10_popularity_ratio_to_oracle']:.1%}); pCTCVR via {method}"
    )
    return TrainResult(run.info.run_id, version, metrics, guard.passed)


def _evaluate(
    bundle: RankerBundle, test_df: pd.DataFrame, settings: Settings, fitted: Fitted
) -> tuple[dict[str, float], GuardResult]:
    """Test metrics against the oracle, and the leakage guard, on the frozen test rows."""
    truth = oracle.load_truth(settings, test_df["impression_id"])
    eta = oracle.examination_eta(settings)
    value = oracle.top_slot_value(truth, test_df["surface"], test_df["position"], eta)
    scored = evaluation.score(bundle, test_df, truth, value)
    metrics = evaluation.classification_metrics(scored) | evaluation.ranking_metrics(scored, eta)
    trees = {f"{h}_trees": float(b.num_boosted_rounds()) for h, b in fitted.boosters.items()}
    metrics |= fitted.method_metrics | trees
    metrics |= {"test_rows": float(len(test_df)), "test_ctr": float(test_df["clicked"].mean())}
    guard = leakage_guard(
        test_df["clicked"].to_numpy(),
        scored.logged["pctr"],
        truth["p_click"].to_numpy(),
        test_df["request_id"].to_numpy(),
    )
    metrics |= {"leakage_auc_gap": guard.auc_gap, "leakage_ci_low": guard.ci_low, "leakage_ci_high": guard.ci_high}
    return metrics, guard
