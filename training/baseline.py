"""Clearly worse rankers, registered as ordinary versions of the ranker so an experiment can serve them.

An experiment's arm is a registry alias or version, and the service loads every arm the one way it loads the
champion (`platform_common.registry.load_bundle` -> a `RankerBundle`). A baseline is therefore a `RankerBundle`
subclass with the champion's feature spec (same feature service, same columns: the service builds the same
matrix) and no boosters, whose `score_matrix` ranks without a model:

- `random`: a fixed pseudo-random score per candidate row (a hash of its feature values), so the order is
  random with respect to value yet the same request gets the same answer;
- `popularity`: the product's recent clicks (the incumbent's popularity prior, as the features see it).

Each is tagged `shoprank.baseline=<kind>`. `make promote` without VERSION never takes one as "the newest
version" (training/promotion.py skips the tag), and one named with VERSION fails the gate's integrity checks
(no leakage-guard verdict, no training-data fingerprint): a baseline is for experiments, never a champion.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from platform_common.registry import CHAMPION, connect, ensure_experiment, load_bundle
from platform_common.settings import Settings, get_settings
from training.bundle import RankerBundle, write_artifacts

BASELINE_TAG = "shoprank.baseline"
BaselineKind = Literal["random", "popularity"]
KINDS: tuple[str, ...] = ("random", "popularity")
# Clicks of the product in the feature service, most recent window first: the first one the spec has is used.
POPULARITY_FEATURES = ("product_clicks_7d", "product_clicks_30d", "product_impressions_7d", "product_impressions_30d")
# Scores look like probabilities so every consumer of pctr/pcvr (answer, logs) sees plausible numbers; only the
# order they induce matters.
BASE_CTR, BASE_CVR = 0.04, 0.05


class BaselineConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: BaselineKind
    seed: int = 0
    popularity_feature: str | None = None


def _row_hash(x: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) value per row from its bytes (splitmix64 over the row's float32 words)."""
    words = np.ascontiguousarray(np.nan_to_num(x, nan=-1.0), dtype=np.float32).view(np.uint32).astype(np.uint64)
    h = np.full(len(x), np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h ^= words[:, j] + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class BaselineBundle(RankerBundle):
    """A ranker bundle without boosters; artifacts: `feature_spec`, `bundle_config`, `baseline` (JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.baseline = BaselineConfig(kind="random")

    def load_from_paths(self, artifacts: dict[str, str]) -> None:
        super().load_from_paths(artifacts)
        self.baseline = BaselineConfig.model_validate_json(Path(artifacts["baseline"]).read_text())

    def _strength(self, x: np.ndarray) -> np.ndarray:
        """In [0, 1]: the baseline's preference for each row."""
        if self.baseline.kind == "random":
            return _row_hash(x, self.baseline.seed)
        assert self.spec is not None and self.baseline.popularity_feature is not None
        clicks = np.nan_to_num(x[:, self.spec.columns.index(self.baseline.popularity_feature)].astype(np.float64))
        return 1.0 - 1.0 / (1.0 + np.maximum(clicks, 0.0))

    def score_matrix(self, x: np.ndarray) -> dict[str, np.ndarray]:
        pctr = BASE_CTR * 2.0 * self._strength(x)
        pcvr = np.full(len(x), BASE_CVR)
        return {"pctr": pctr, "pcvr": pcvr, "pctcvr": pctr * pcvr}

    def expected_gmv(self, pctcvr: np.ndarray, price: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        # The baseline ignores value: pCTCVR times one typical order value, so the `gmv` objective keeps its order.
        typical = float(np.nanmedian(price)) if np.isfinite(price).any() else 1.0
        return pctcvr * typical * self.config.units_per_order


def popularity_feature(columns: tuple[str, ...]) -> str:
    for name in POPULARITY_FEATURES:
        if name in columns:
            return name
    clicks = [c for c in columns if c.startswith("product_") and "click" in c]
    if not clicks:
        raise ValueError("the feature spec has no product click count to rank by popularity")
    return clicks[0]


def register_baseline(kind: str, settings: Settings | None = None, seed: int = 0) -> str:
    """Register a `kind` baseline built on the champion's feature spec; returns its version."""
    if kind not in KINDS:
        raise ValueError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    settings = settings or get_settings()
    client = connect(settings)
    champion = load_bundle(settings, settings.model_name, CHAMPION, RankerBundle)
    spec = champion.bundle.spec
    if spec is None:
        raise ValueError(f"{settings.model_name} v{champion.version} has no feature spec")
    feature = popularity_feature(spec.columns) if kind == "popularity" else None
    config = BaselineConfig(kind=kind, seed=seed, popularity_feature=feature)
    signature = mlflow.models.get_model_info(f"models:/{settings.model_name}/{champion.version}").signature
    with (
        mlflow.start_run(experiment_id=ensure_experiment(settings), run_name=f"baseline-{kind}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        artifacts = write_artifacts(Path(tmp), spec, {}, champion.bundle.config)
        artifacts["baseline"] = str(Path(tmp) / "baseline.json")
        Path(artifacts["baseline"]).write_text(config.model_dump_json(indent=2))
        mlflow.set_tags({BASELINE_TAG: kind, "baseline_spec_from": champion.version})
        mlflow.log_params({"baseline_kind": kind, "baseline_seed": seed, "feature_service": spec.feature_service})
        info = mlflow.pyfunc.log_model(
            name="ranker",
            python_model=BaselineBundle(),
            artifacts=artifacts,
            signature=signature,
            pip_requirements=[f"numpy=={np.__version__}", f"pandas=={pd.__version__}"],
            registered_model_name=settings.model_name,
            metadata={"feature_service": spec.feature_service, "baseline": kind},
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(settings.model_name, version, BASELINE_TAG, kind)
    client.set_model_version_tag(settings.model_name, version, "baseline_config", json.dumps(config.model_dump()))
    return version


def is_baseline(tags: dict[str, Any]) -> bool:
    return BASELINE_TAG in tags
