"""The registered ranker: boosters and their feature spec in one MLflow pyfunc, promoted as one unit.

The service unwraps the bundle and calls the boosters directly (in-place prediction on a float32 matrix);
`predict` exists so that any MLflow client can score a DataFrame of raw feature values with the same code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import xgboost as xgb

from platform_common.feature_spec import FeatureSpec

HEADS = ("ctr",)


class RankerBundle(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper; artifacts: `<head>_booster` (UBJSON) per head and `feature_spec` (JSON)."""

    def __init__(self) -> None:
        self.spec: FeatureSpec | None = None
        self.boosters: dict[str, xgb.Booster] = {}

    def load_context(self, context: Any) -> None:
        self.load_from_paths(context.artifacts)

    def load_from_paths(self, artifacts: dict[str, str]) -> None:
        self.spec = FeatureSpec.model_validate_json(Path(artifacts["feature_spec"]).read_text())
        self.boosters = {}
        for head in HEADS:
            key = f"{head}_booster"
            if key in artifacts:
                booster = xgb.Booster()
                booster.load_model(artifacts[key])
                booster.set_param({"nthread": 1})
                self.boosters[head] = booster

    def score_matrix(self, x: np.ndarray) -> dict[str, np.ndarray]:
        # Boosters are saved already cut at their best iteration, so all trees are the right trees.
        return {f"p{head}": booster.inplace_predict(x) for head, booster in self.boosters.items()}

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        assert self.spec is not None, "bundle not loaded"
        x = self.spec.frame_matrix(model_input)
        return pd.DataFrame({k: v.astype(float) for k, v in self.score_matrix(x).items()})


def write_artifacts(directory: Path, spec: FeatureSpec, boosters: dict[str, xgb.Booster]) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = {"feature_spec": str(directory / "feature_spec.json")}
    Path(artifacts["feature_spec"]).write_text(json.dumps(spec.model_dump(), indent=2))
    for head, booster in boosters.items():
        path = directory / f"{head}_booster.ubj"
        booster.save_model(path)
        artifacts[f"{head}_booster"] = str(path)
    return artifacts
