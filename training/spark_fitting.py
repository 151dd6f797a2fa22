"""The ranker's heads trained with xgboost.spark (SHOPRANK_OFFLINE_ENGINE=spark).

Same decisions as training/fitting.py (the heads and their labels, early stopping on the validation days, the
refit on train + valid with the tree count scaled by the rows added), with the rows in Spark instead of the
driver: the point-in-time training set that Feast's Spark offline store persisted (training/trainset.py) is read
by Spark, encoded by the same FeatureSpec as serving, one pandas batch at a time on the executors
(`mapInPandas`), and `SparkXGBClassifier` trains one booster across `num_workers` barrier tasks. What comes out
is a plain XGBoost booster (`get_booster()`), cut at its best iteration as the single-process path cuts its own,
so the bundle, MLflow logging, the gate and the service take it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb

from platform_common.feature_spec import FeatureSpec
from training.batches import DayWindow
from training.config import XGBConfig
from training.fitting import HEADS, Parts
from training.trainset import ParquetTrainingSet

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FEATURES, LABEL, IS_VALID = "features", "label", "is_valid"


def _utc_literal(day: datetime) -> str:
    return f"timestamp'{day.isoformat()}'"


def window_filter(windows: Sequence[DayWindow]) -> str:
    """Spark SQL for rows whose UTC day falls in one of `windows` (training.batches.where_clause's twin)."""
    spans = []
    for start, end in windows:
        lo = datetime.combine(start, time(0), tzinfo=UTC)
        hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)
        spans.append(f"(event_timestamp >= {_utc_literal(lo)} and event_timestamp < {_utc_literal(hi)})")
    return "(" + " or ".join(spans) + ")"


def encoded_rows(
    spark: SparkSession,
    data: ParquetTrainingSet,
    spec: FeatureSpec,
    label: str,
    parts: Parts,
    valid_parts: Parts,
    clicked_only: bool,
) -> DataFrame:
    """The rows of `parts` (and of `valid_parts`, flagged `is_valid`) as (features array<float>, label, is_valid):
    the FeatureSpec encodes each pandas batch on the executors, exactly as serving encodes a request."""
    windows = tuple(getattr(data.split, p) for p in (*parts, *valid_parts))
    valid_windows = tuple(getattr(data.split, p) for p in valid_parts)
    rows = spark.read.parquet(str(data.path)).where(window_filter(windows))
    if clicked_only:
        rows = rows.where("clicked = 1")
    is_valid = window_filter(valid_windows) if valid_windows else "false"
    rows = rows.selectExpr(*[f"`{c}`" for c in spec.inputs], f"cast(`{label}` as double) as {LABEL}",
                           f"{is_valid} as {IS_VALID}")  # fmt: skip
    columns = list(spec.inputs)

    def encode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            matrix = spec.frame_matrix(frame[columns]).astype(np.float32)
            yield pd.DataFrame({FEATURES: list(matrix), LABEL: frame[LABEL], IS_VALID: frame[IS_VALID]})

    return rows.mapInPandas(encode, f"{FEATURES} array<float>, {LABEL} double, {IS_VALID} boolean")


def classifier(cfg: XGBConfig, n_trees: int, num_workers: int, early_stopping: bool) -> object:
    from xgboost.spark import SparkXGBClassifier

    params: dict[str, Any] = {
        "features_col": FEATURES,
        "label_col": LABEL,
        "num_workers": num_workers,
        "n_estimators": n_trees,
        "tree_method": "hist",
        "max_depth": cfg.max_depth,
        "learning_rate": cfg.eta,
        "subsample": cfg.subsample,
        "colsample_bytree": cfg.colsample_bytree,
        "min_child_weight": cfg.min_child_weight,
        "reg_lambda": cfg.reg_lambda,
        "random_state": cfg.seed,
        "eval_metric": ["logloss"],  # drives early stopping, as in fitting.py (no per-round AUC: nothing reads it)
        "missing": np.nan,
        "verbose": False,  # no evaluation line per tree in the log (fitting.py's verbose_eval=False)
    }
    if early_stopping:
        params |= {"validation_indicator_col": IS_VALID, "early_stopping_rounds": cfg.early_stopping_rounds}
    return SparkXGBClassifier(**params)


def _booster(model: object, spec: FeatureSpec, cut: bool) -> xgb.Booster:
    booster: xgb.Booster = model.get_booster()  # type: ignore[attr-defined]
    if cut:
        booster = booster[: booster.best_iteration + 1]
    booster.feature_names = list(spec.columns)
    return booster


def default_workers(spark: SparkSession) -> int:
    """One XGBoost worker per task slot of the session (local[2]: 2)."""
    return max(1, int(spark.sparkContext.defaultParallelism))


def fit_heads_spark(
    spark: SparkSession, data: ParquetTrainingSet, spec: FeatureSpec, cfg: XGBConfig, num_workers: int
) -> dict[str, xgb.Booster]:
    """Each head early-stopped on the validation days (xgboost.spark's validation_indicator_col) and cut at its
    best iteration."""
    boosters: dict[str, xgb.Booster] = {}
    for head, (clicked_only, label) in HEADS.items():
        rows = encoded_rows(spark, data, spec, label, ("train",), ("valid",), clicked_only)
        model = classifier(cfg, cfg.num_boost_round, num_workers, early_stopping=True).fit(rows)  # type: ignore[attr-defined]
        boosters[head] = _booster(model, spec, cut=True)
    return boosters


def refit_heads_spark(
    spark: SparkSession,
    data: ParquetTrainingSet,
    spec: FeatureSpec,
    cfg: XGBConfig,
    stopped: dict[str, xgb.Booster],
    num_workers: int,
) -> dict[str, xgb.Booster]:
    """Refit on train + valid with the early-stopped tree count scaled by the rows added (fitting.refit_heads)."""
    boosters: dict[str, xgb.Booster] = {}
    for head, (clicked_only, label) in HEADS.items():
        n_train = len(data.labels(("train",), "clicked", clicked_only))
        n_both = len(data.labels(("train", "valid"), "clicked", clicked_only))
        n_trees = max(1, round(stopped[head].num_boosted_rounds() * n_both / max(n_train, 1)))
        rows = encoded_rows(spark, data, spec, label, ("train", "valid"), (), clicked_only)
        model = classifier(cfg, n_trees, num_workers, early_stopping=False).fit(rows)  # type: ignore[attr-defined]
        boosters[head] = _booster(model, spec, cut=False)
    return boosters
