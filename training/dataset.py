"""Point-in-time training sets: the label table's impressions joined to Feast features as of each impression.

The split, the feature columns and Feast's join are shared by both paths. `TrainingSet` here is the in-memory
path (the whole frame in pandas, as training used to be): kept only so that tests and the benchmark can show the
batched path (training/trainset.py, the default) gives the same model on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import xgboost as xgb
from feast import FeatureStore
from feast.types import String

from platform_common import category_stream
from platform_common.feature_spec import CONTEXT_CATEGORICAL, CONTEXT_NUMERIC, FeatureSpec
from platform_common.settings import Settings
from training.bundle import DAY_KIND_FEATURE, PLAN_PRICE_FEATURE
from training.config import SplitConfig, TrainConfig
from training.fingerprint import frame_fingerprint

if TYPE_CHECKING:
    from training.bundle import RankerBundle

ENTITY_COLUMNS = ("impression_id", "event_timestamp", "user_id", "product_id", "merchant_id", "category_l1")
# Features that only route a lookup (which merchant, which category) and would let a model memorise ids.
LOOKUP_ONLY = frozenset({"product_merchant_id"})
# Strings that only feed derived features (platform_common/category_stream.py): never a model column themselves.
DERIVATION_ONLY = frozenset(category_stream.STRING_FEATURES)


@dataclass(frozen=True)
class TimeSplit:
    train: tuple[date, date]
    valid: tuple[date, date]
    test: tuple[date, date]

    def as_params(self) -> dict[str, str]:
        return {
            f"{part}_{end}": str(getattr(self, part)[i])
            for part in ("train", "valid", "test")
            for i, end in enumerate(("start", "end"))
        }


@dataclass(frozen=True)
class FeatureColumns:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    feature_refs: tuple[str, ...]


def load_labels(settings: Settings) -> pd.DataFrame:
    path = settings.marts_dir / "impression_labels.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make features` (dbt build) first")
    with duckdb.connect() as con:
        frame = con.execute("select * from read_parquet(?) order by event_timestamp, impression_id", [str(path)]).df()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def plan_split(days: list[date], cfg: SplitConfig) -> TimeSplit:
    """Contiguous day windows, test last. Raises if the data is too short to split honestly."""
    n = len(days)
    n_test = max(cfg.min_days, round(n * cfg.test_frac))
    n_valid = max(cfg.min_days, round(n * cfg.valid_frac))
    n_warm = int(n * cfg.warmup_frac)
    n_train = n - n_test - n_valid - n_warm
    if n_train < cfg.min_days:
        raise ValueError(f"only {n} label days: too few for warm-up, train, valid and test windows")
    d = days[n_warm:]
    return TimeSplit(
        train=(d[0], d[n_train - 1]),
        valid=(d[n_train], d[n_train + n_valid - 1]),
        test=(d[n_train + n_valid], d[-1]),
    )


def feature_columns(store: FeatureStore, feature_service: str) -> FeatureColumns:
    """The service's model columns: context, its features (strings as categoricals, lookup and derivation
    inputs left out), then the derived features its features can feed (only ctr_model_v2_stream has their
    inputs)."""
    service = store.get_feature_service(feature_service)
    numeric: list[str] = list(CONTEXT_NUMERIC)
    categorical: list[str] = list(CONTEXT_CATEGORICAL)
    refs: list[str] = []
    names: list[str] = []
    for projection in service.feature_view_projections:
        for feature in projection.features:
            refs.append(f"{projection.name_to_use()}:{feature.name}")
            names.append(feature.name)
            if feature.name in LOOKUP_ONLY or feature.name in DERIVATION_ONLY:
                continue
            (categorical if feature.dtype == String else numeric).append(feature.name)
    numeric += category_stream.derived_features(names)
    return FeatureColumns(tuple(numeric), tuple(categorical), tuple(refs))


def historical_features(
    store: FeatureStore, entity_df: pd.DataFrame, feature_service: str, filter_by_created_timestamp: bool
) -> pd.DataFrame:
    """Feast's point-in-time join, returned in the entity frame's row order."""
    job = store.get_historical_features(
        entity_df=entity_df,
        features=store.get_feature_service(feature_service),
        full_feature_names=False,
        filter_by_created_timestamp=filter_by_created_timestamp,
    )
    frame = job.to_df()
    return frame.set_index("impression_id").loc[entity_df["impression_id"]].reset_index()


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame
    split: TimeSplit
    columns: FeatureColumns
    fingerprint: str

    def part(self, name: str) -> pd.DataFrame:
        start, end = getattr(self.split, name)
        day = self.frame["event_timestamp"].dt.date
        return self.frame[(day >= start) & (day <= end)]

    # --- training.fitting.TrainingData ------------------------------------------------------------------------
    def rows(self, parts: tuple[str, ...], clicked_only: bool = False) -> pd.DataFrame:
        frame = pd.concat([self.part(p) for p in parts], ignore_index=True) if len(parts) > 1 else self.part(parts[0])
        return frame[frame["clicked"] == 1] if clicked_only else frame

    def fit_spec(self, feature_service: str, numeric: Sequence[str]) -> FeatureSpec:
        return FeatureSpec.fit(self.part("train"), feature_service, numeric, self.columns.categorical)

    def matrix(
        self, spec: FeatureSpec, parts: tuple[str, ...], clicked_only: bool, nthread: int, ref: xgb.DMatrix | None
    ) -> xgb.DMatrix:
        # A plain DMatrix: `hist` sketches the quantiles from all rows at once (QuantileDMatrix, in batches, is
        # the batched path's; tests/training/test_batched.py compares the two).
        return xgb.DMatrix(spec.frame_matrix(self.rows(parts, clicked_only)), feature_names=list(spec.columns))

    def labels(self, parts: tuple[str, ...], label: str, clicked_only: bool) -> np.ndarray:
        return self.rows(parts, clicked_only)[label].to_numpy()

    def head_scores(self, bundle: RankerBundle, part: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        assert bundle.spec is not None
        rows = self.part(part)
        return bundle.head_scores(bundle.spec.frame_matrix(rows)), rows["converted"].to_numpy()

    def orders(self, parts: tuple[str, ...]) -> pd.DataFrame:
        rows = self.rows(parts)
        cols = ["price", "order_gmv", *(c for c in (DAY_KIND_FEATURE, PLAN_PRICE_FEATURE) if c in self.columns.numeric)]
        return rows.loc[rows["converted"] == 1, cols]


def build_training_set(store: FeatureStore, settings: Settings, cfg: TrainConfig) -> TrainingSet:
    labels = load_labels(settings)
    days = sorted(labels["event_timestamp"].dt.date.unique())
    split = plan_split(days, cfg.split)
    labels = labels[labels["event_timestamp"].dt.date >= split.train[0]]
    columns = feature_columns(store, cfg.feature_service)
    frame = historical_features(store, labels, cfg.feature_service, cfg.filter_by_created_timestamp)
    return TrainingSet(frame=frame, split=split, columns=columns, fingerprint=frame_fingerprint(frame))


def save_test_set(ts: TrainingSet, settings: Settings) -> Path:
    """Freeze the test rows so promotion can score champion and challenger on exactly the same rows."""
    out = settings.datasets_dir / ts.fingerprint / "test.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    test = ts.part("test").copy()
    test["event_timestamp"] = test["event_timestamp"].astype("datetime64[us, UTC]")
    test.to_parquet(out, index=False)
    return out
