"""The registered ranker: its heads and their feature spec in one MLflow pyfunc, promoted as one unit.

Heads: `ctr` (p(click | impression), every impression), `cvr` (p(order | click), clicked impressions
only) and `ctcvr` (p(click and order | impression), every impression). How the served pCVR and pCTCVR are
derived from them is a per-version choice made at training time on the oracle (`BundleConfig.cvr_method`,
see docs/conversion_models.md), so the CTR and CVR halves can never be mismatched across versions.

The service unwraps the bundle and calls the boosters directly (in-place prediction on a float32 matrix);
`predict` exists so that any MLflow client can score a DataFrame of raw feature values with the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc.model import PythonModel
from pydantic import BaseModel, ConfigDict

from platform_common.feature_spec import FeatureSpec
from training.calibration import DayKindMargins

HEADS = ("ctr", "cvr", "ctcvr")
# feature_repo/campaign_features.py: the day kind and the day's own price of the published campaign plan
DAY_KIND_FEATURE = "plan_day_kind"
PLAN_PRICE_FEATURE = "plan_price"
CvrMethod = Literal["clicked_only", "ctcvr_over_ctr"]


def plan_or_price(plan: np.ndarray, price: np.ndarray) -> np.ndarray:
    """The plan's price of the day where one has landed (a positive number), else the product row's."""
    return np.where(np.isfinite(plan) & (plan > 0), plan, price)


def shift_probabilities(p: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """p with its logit moved by `offset`, row by row (p stays in (0, 1))."""
    clipped = np.clip(p, 1e-7, 1.0 - 1e-7)
    return 1.0 / (1.0 + np.exp(-(np.log(clipped / (1.0 - clipped)) + offset)))


class BundleConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    cvr_method: CvrMethod = "clicked_only"
    units_per_order: float = 1.0
    # Order value per unit of price by price band: cheap goods sell in bulk, so one constant would
    # undervalue them. `price_bands` are upper edges, `units_by_band` the mean GMV / price in each band.
    price_bands: tuple[float, ...] = ()
    units_by_band: tuple[float, ...] = ()
    # The same per band for each day kind of the published campaign plan (DAY_KIND_FEATURE: 0 ordinary, 1 campaign,
    # 2 mega sale) that had enough orders in the fitted days: baskets grow on a mega sale (multi-buy deals), most
    # for cheap goods, so a pooled value per band misranks cheap against dear on the days that carry the most GMV.
    # Only a model whose features hold the day kind has it; a kind with too few orders uses the pooled bands.
    units_by_day_kind: dict[str, tuple[float, ...]] = {}
    # The CVR head's starting margin per plan day kind (training/calibration.py): its trees learn what differs from
    # each kind's conversion level, and every scoring path adds the level back. Only a calendar model has it.
    cvr_day_kind_margins: DayKindMargins | None = None

    def units(self, price: np.ndarray, day_kind: np.ndarray | None = None) -> np.ndarray:
        if not self.units_by_band:
            return np.full(len(price), self.units_per_order)
        band = np.searchsorted(np.asarray(self.price_bands), np.nan_to_num(price, nan=0.0), side="left")
        band = np.minimum(band, len(self.units_by_band) - 1)
        units = np.asarray(self.units_by_band)[band]
        if day_kind is not None:
            for kind, by_band in self.units_by_day_kind.items():
                rows = day_kind == float(kind)
                units[rows] = np.asarray(by_band)[band[rows]]
        return units


class RankerBundle(PythonModel):
    """pyfunc wrapper; artifacts: `<head>_booster` (UBJSON) per head, `feature_spec` and `bundle_config` (JSON)."""

    def __init__(self) -> None:
        self.spec: FeatureSpec | None = None
        self.config = BundleConfig()
        self.boosters: dict[str, xgb.Booster] = {}

    def load_context(self, context: Any) -> None:
        self.load_from_paths(context.artifacts)

    def load_from_paths(self, artifacts: dict[str, str]) -> None:
        self.spec = FeatureSpec.model_validate_json(Path(artifacts["feature_spec"]).read_text())
        config = artifacts.get("bundle_config")
        self.config = BundleConfig.model_validate_json(Path(config).read_text()) if config else BundleConfig()
        self.boosters = {}
        for head in HEADS:
            key = f"{head}_booster"
            if key in artifacts:
                booster = xgb.Booster()
                booster.load_model(artifacts[key])
                booster.set_param({"nthread": 1})  # serving: one request per thread, many workers
                self.boosters[head] = booster

    @contextmanager
    def predict_threads(self, n: int) -> Iterator[None]:
        """Score on n threads meanwhile (evaluating millions of rows), then one again. A row's score is the same
        on any number of threads: each row's trees are summed by one thread, in tree order."""
        for booster in self.boosters.values():
            booster.set_param({"nthread": n})
        try:
            yield
        finally:
            for booster in self.boosters.values():
                booster.set_param({"nthread": 1})

    def head_scores(self, x: np.ndarray) -> dict[str, np.ndarray]:
        # Boosters are saved already cut at their best iteration, so all trees are the right trees.
        return self.calibrate({head: b.inplace_predict(x).astype(np.float64) for head, b in self.boosters.items()}, x)

    def calibrate(self, raw: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
        """The raw head outputs with the CVR head's day-kind margin added back (every scoring path calls this)."""
        margins = self.config.cvr_day_kind_margins
        if margins is None or "cvr" not in raw:
            return raw
        kind = self.day_kind(x)
        kind = np.full(len(raw["cvr"]), np.nan) if kind is None else kind
        return raw | {"cvr": shift_probabilities(raw["cvr"], margins.rows(kind))}

    def combine(self, raw: dict[str, np.ndarray], method: CvrMethod | None = None) -> dict[str, np.ndarray]:
        """pctr, pcvr, pctcvr from the raw head outputs, by the bundle's (or the given) CVR method."""
        method = method or self.config.cvr_method
        out = {"pctr": raw["ctr"]}
        if method not in ("clicked_only", "ctcvr_over_ctr"):
            raise ValueError(f"unknown CVR method {method!r}")
        needed = "cvr" if method == "clicked_only" else "ctcvr"
        if needed not in raw:  # a CTR-only bundle: no conversion scores to form
            return out
        if method == "clicked_only":
            out["pcvr"] = raw["cvr"]
            out["pctcvr"] = raw["ctr"] * raw["cvr"]
        else:
            out["pctcvr"] = raw["ctcvr"]
            out["pcvr"] = np.clip(raw["ctcvr"] / np.maximum(raw["ctr"], 1e-9), 0.0, 1.0)
        return out

    def score_matrix(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.combine(self.head_scores(x))

    def expected_gmv(self, pctcvr: np.ndarray, price: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """Expected GMV of one impression; unknown price is worth 0 (it cannot be ranked on value). `x`, the
        model matrix the scores came from, gives the day's plan price and day kind where the model reads the plan."""
        price = self.value_price(price, x)
        return np.nan_to_num(pctcvr * price * self.config.units(price, self.day_kind(x)), nan=0.0)

    def value_price(self, price: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        """The price an order would be placed at: the day's own price where the model reads the published plan,
        else the daily product row's, which on a sale day is yesterday's (a discounted product would be valued at
        its pre-sale price, measured: 0.9 points of GMV@10 on a mega sale)."""
        plan = self._column(x, PLAN_PRICE_FEATURE)
        return price if plan is None else plan_or_price(plan, price)

    def day_kind(self, x: np.ndarray | None) -> np.ndarray | None:
        return self._column(x, DAY_KIND_FEATURE)

    def _column(self, x: np.ndarray | None, name: str) -> np.ndarray | None:
        if x is None or self.spec is None or name not in self.spec.columns:
            return None
        return np.asarray(x[:, self.spec.columns.index(name)], dtype=float)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.spec is None:
            raise RuntimeError("bundle not loaded")
        # Every input of the signature is optional, so MLflow passes frames without some of them: those are
        # missing features. MLflow has no nullable integer (an int64 column holds no NaN and MLflow refuses
        # float64 where long is declared), so leaving the columns out is how a caller scores an unknown user.
        absent = [c for c in self.spec.inputs if c not in model_input.columns]
        if absent:
            model_input = model_input.assign(**dict.fromkeys(absent, np.nan))
        _check_numeric(model_input, tuple(c for c in self.spec.numeric if c not in self.spec.derived))
        x = self.spec.frame_matrix(model_input)
        scores = self.score_matrix(x)
        if "pctcvr" in scores and "price" in model_input:
            price = pd.to_numeric(model_input["price"], errors="coerce").to_numpy(dtype=float)
            scores["expected_gmv"] = self.expected_gmv(scores["pctcvr"], price, x)
        return pd.DataFrame(scores)


def _check_numeric(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """The signature declares Feast's integer features `Any` (training/signature.py), so MLflow lets anything
    through them: a value that is not a number is refused here, by name, instead of scored as missing."""
    for name in columns:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            continue
        present = values[values.notna()]
        converted = pd.to_numeric(present, errors="coerce")
        if converted.isna().any():
            bad = present[converted.isna()].iloc[0]
            raise ValueError(f"input column {name!r} must be numeric: got {bad!r} ({values.dtype})")


def write_artifacts(
    directory: Path, spec: FeatureSpec, boosters: dict[str, xgb.Booster], config: BundleConfig | None = None
) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = {
        "feature_spec": str(directory / "feature_spec.json"),
        "bundle_config": str(directory / "bundle_config.json"),
    }
    Path(artifacts["feature_spec"]).write_text(json.dumps(spec.model_dump(), indent=2))
    Path(artifacts["bundle_config"]).write_text((config or BundleConfig()).model_dump_json(indent=2))
    for head, booster in boosters.items():
        path = directory / f"{head}_booster.ubj"
        booster.save_model(path)
        artifacts[f"{head}_booster"] = str(path)
    return artifacts
