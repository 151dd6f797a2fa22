"""The registered model's input signature: what `mlflow.pyfunc` checks a caller's frame against.

MLflow has no nullable integer (mlflow/mlflow#5207): a column declared `long` refuses float64, which is what
pandas makes of an integer column with a missing value, and a column declared `double` refuses int64 ("can not
safely convert"). Feast's Int64 features arrive either way: int64 when every entity is known, float64 with NaN
when one is unknown or expired, in training frames and in `get_online_features(...).to_df()` alike. No single
MLflow type accepts both, so those features are declared `Any` and the bundle itself checks that they are numeric
(training/bundle.py); everything else keeps a strict type.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from feast import FeatureStore
from feast.types import Int32, Int64
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.types.schema import AnyType

from platform_common.feature_spec import CONTEXT_NUMERIC, FeatureSpec


def integer_features(store: FeatureStore, feature_service: str) -> frozenset[str]:
    """Names of the service's features that Feast stores as integers."""
    service = store.get_feature_service(feature_service)
    return frozenset(f.name for p in service.feature_view_projections for f in p.features if f.dtype in (Int32, Int64))


def model_signature(spec: FeatureSpec, integers: Iterable[str], output_example: pd.DataFrame) -> ModelSignature:
    """The spec's raw inputs (`FeatureSpec.inputs`: derived features are computed from them, so a caller sends
    the strings they come from, not the derived values): request context (always sent, integers) as `long`, Feast
    integer features as `Any`, other numeric features as `double`, categoricals and strings as `string`; every
    input optional: any feature can be missing at serving time (unknown user, stale value)."""
    integer_set = set(integers)
    inputs: list[ColSpec | TensorSpec] = []
    for name in spec.inputs:
        if name not in spec.numeric:
            inputs.append(ColSpec("string", name, required=False))
        elif name in CONTEXT_NUMERIC:
            inputs.append(ColSpec("long", name, required=False))
        elif name in integer_set:
            inputs.append(ColSpec(AnyType(), name, required=False))
        else:
            inputs.append(ColSpec("double", name, required=False))
    outputs: list[ColSpec | TensorSpec] = [ColSpec("double", name) for name in output_example.columns]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))
