"""The reference profile of a model version: what its training data looked like, feature by feature.

Built at training time from the frozen test window of the training set (the newest rows the version was
built from, hence the closest to what it will serve) and logged as `reference_profile.json` on the version's
MLflow run. A version trained before this existed falls back to the same computation on its frozen test set
(`test_set_path` tag), if that file still exists.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from platform_common.category_stream import DERIVED
from serving.monitoring import stats

ARTIFACT = "reference_profile.json"
VERSION = 1


def build_profile(
    rows: pd.DataFrame,
    numeric: Iterable[str],
    categorical: Iterable[str],
    views: dict[str, str],
    scores: dict[str, np.ndarray] | None = None,
    bins: int = 10,
) -> dict[str, Any]:
    """`views` maps a feature to its feature view (features absent from it are request context)."""
    features: dict[str, Any] = {}
    for name in numeric:
        features[name] = stats.numeric_profile(rows[name], bins) | {"view": views.get(name, "context")}
    for name in categorical:
        features[name] = stats.categorical_profile(rows[name]) | {"view": views.get(name, "context")}
    return {
        "version": VERSION,
        "rows": len(rows),
        "features": features,
        "scores": {k: stats.numeric_profile(v, bins) for k, v in (scores or {}).items()},
    }


def views_of(feature_refs: Iterable[str]) -> dict[str, str]:
    """`view:feature` refs -> {feature: view}."""
    return {ref.split(":", 1)[1]: ref.split(":", 1)[0] for ref in feature_refs if ":" in ref}


def profile_of(rows: pd.DataFrame, bundle: Any, feature_refs: Iterable[str]) -> dict[str, Any]:
    """A version's profile: its features on `rows` and its scores as served (every candidate at slot 1)."""
    spec = bundle.spec
    scores = bundle.score_matrix(spec.frame_matrix(serving_position(rows)))
    # derived features (computed from the raw strings inside the matrix) are profiled from the same derivation,
    # under the view of the strings they read
    derived = spec.derive({c: rows[c] for c in spec.inputs}, len(rows))
    views = views_of(feature_refs)
    views |= {name: views.get(DERIVED[name], "context") for name in derived}
    rows = rows.assign(**derived) if derived else rows
    return build_profile(rows, spec.numeric, spec.categorical, views, _serving_scores(scores))


def log_reference_profile(rows: pd.DataFrame, bundle: Any, feature_refs: Iterable[str]) -> dict[str, Any]:
    """Training's one call, inside the active MLflow run that logs the model version."""
    import mlflow

    profile = profile_of(rows, bundle, feature_refs)
    mlflow.log_dict(profile, ARTIFACT)
    return profile


def _serving_scores(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in scores.items() if k in ("pctr", "pcvr", "pctcvr")}


def load_reference_profile(settings: Any, version: str) -> tuple[dict[str, Any] | None, str]:
    """(profile, where it came from); (None, reason) when neither the artifact nor the frozen rows exist."""
    import mlflow

    from platform_common.registry import connect

    client = connect(settings)
    mv = client.get_model_version(settings.model_name, version)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=ARTIFACT, dst_path=tmp)
            return json.loads(Path(path).read_text()), f"MLflow artifact {ARTIFACT} of run {mv.run_id}"
    except Exception:  # noqa: BLE001 - an older version without the artifact: fall back below
        pass
    test_path = mv.tags.get("test_set_path")
    if not test_path or not Path(test_path).exists():
        return None, f"v{version} has no {ARTIFACT} and its frozen test set is gone"
    from training.promotion import load_ranker

    bundle = load_ranker(settings, version)
    rows = pd.read_parquet(test_path)
    refs: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="features.json", dst_path=tmp)
            refs = json.loads(Path(path).read_text()).get("feature_refs", [])
    except Exception:  # noqa: BLE001 - without it every feature is reported under the view "unknown"
        pass
    return profile_of(
        rows, bundle, refs
    ), f"computed from the frozen test set {test_path} (no {ARTIFACT} on v{version})"


def serving_position(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows as the service scores them: every candidate at the first slot (platform_common.feature_spec)."""
    from platform_common.feature_spec import SERVING_POSITION

    return rows.assign(position=SERVING_POSITION)
