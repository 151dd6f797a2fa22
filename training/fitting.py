"""Fitting the ranker's heads from a training set held either way: a parquet file read in batches (the default)
or a pandas frame (the in-memory path, kept to show both give the same model).

Both kinds of training set answer the same few questions (`TrainingData`), and everything that decides the
model (early stopping, the refit's tree count, the CVR method, units per order) is written once, here, so the
two paths differ only in how rows reach XGBoost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import xgboost as xgb

from platform_common.feature_spec import FeatureSpec
from training.bundle import DAY_KIND_FEATURE, PLAN_PRICE_FEATURE, CvrMethod, RankerBundle, plan_or_price
from training.calibration import DayKindMargins, as_day_kinds, fit_day_kind_margins
from training.config import XGBConfig
from training.dataset import FeatureColumns, TimeSplit
from training.metrics import binary_metrics

# head -> (learns from clicked rows only, label)
HEADS: dict[str, tuple[bool, str]] = {
    "ctr": (False, "clicked"),
    "cvr": (True, "converted"),
    "ctcvr": (False, "converted"),
}

Parts = tuple[str, ...]  # names of split windows: ("train",), ("train", "valid")


class TrainingData(Protocol):
    @property
    def split(self) -> TimeSplit: ...

    @property
    def columns(self) -> FeatureColumns: ...

    @property
    def fingerprint(self) -> str:
        """Content hash of the training set: promotion tags model versions with it."""
        ...

    def fit_spec(self, feature_service: str, numeric: Sequence[str]) -> FeatureSpec:
        """Categorical vocabularies learned from the train rows only."""
        ...

    def matrix(
        self, spec: FeatureSpec, parts: Parts, clicked_only: bool, nthread: int, ref: xgb.DMatrix | None
    ) -> xgb.DMatrix:
        """The rows of `parts` as an XGBoost matrix without labels (one matrix serves several heads)."""
        ...

    def labels(self, parts: Parts, label: str, clicked_only: bool) -> np.ndarray:
        """One label column in the matrix's row order."""
        ...

    def head_scores(self, bundle: RankerBundle, part: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Raw head scores of every row of `part`, and its `converted` labels."""
        ...

    def orders(self, parts: Parts) -> pd.DataFrame:
        """Converted rows' price and order_gmv (a few per thousand impressions)."""
        ...


def cvr_margins(data: TrainingData, spec: FeatureSpec, parts: Parts) -> DayKindMargins | None:
    """The CVR head's starting margin per plan day kind, from the clicked rows of `parts`
    (training/calibration.py), for a model that reads the plan; None for any other."""
    if DAY_KIND_FEATURE not in spec.columns:
        return None
    kinds = as_day_kinds(data.labels(parts, DAY_KIND_FEATURE, True))
    return fit_day_kind_margins(data.labels(parts, "converted", True), kinds)


def _start_at_margins(
    data: TrainingData, parts: Parts, rows: xgb.DMatrix, margins: DayKindMargins | None, params: dict[str, object]
) -> dict[str, object]:
    """Give the clicked rows of `parts` their day kind's margin; the head then starts at 0 (base_score 0.5), so
    its output is the trees alone and the bundle adds the margin back (RankerBundle.calibrate)."""
    if margins is None:
        return params
    rows.set_base_margin(margins.rows(as_day_kinds(data.labels(parts, DAY_KIND_FEATURE, True))))
    return params | {"base_score": 0.5}


def fit_heads(
    data: TrainingData, spec: FeatureSpec, cfg: XGBConfig, margins: DayKindMargins | None = None
) -> dict[str, xgb.Booster]:
    """Each head early-stopped on the validation days and cut at its best iteration, so every consumer uses
    the right trees (Booster.predict would otherwise use them all). `margins`: the CVR head's per day kind."""
    boosters: dict[str, xgb.Booster] = {}
    for clicked_only in (False, True):
        dtrain = data.matrix(spec, ("train",), clicked_only, cfg.nthread, None)
        dvalid = data.matrix(spec, ("valid",), clicked_only, cfg.nthread, dtrain)
        params = cfg.booster_params()
        if clicked_only:
            params = _start_at_margins(data, ("train",), dtrain, margins, params)
            _start_at_margins(data, ("valid",), dvalid, margins, params)
        for head, (head_clicked_only, label) in HEADS.items():
            if head_clicked_only != clicked_only:
                continue
            dtrain.set_label(data.labels(("train",), label, clicked_only))
            dvalid.set_label(data.labels(("valid",), label, clicked_only))
            booster = xgb.train(
                params,
                dtrain,
                num_boost_round=cfg.num_boost_round,
                evals=[(dvalid, "valid")],
                early_stopping_rounds=cfg.early_stopping_rounds,
                verbose_eval=False,
            )
            boosters[head] = booster[: booster.best_iteration + 1]
        del dtrain, dvalid  # free the binned rows before the next matrix is built
    return {head: boosters[head] for head in HEADS}


def refit_heads(
    data: TrainingData,
    spec: FeatureSpec,
    cfg: XGBConfig,
    stopped: dict[str, xgb.Booster],
    margins: DayKindMargins | None = None,
) -> dict:
    """Refit on train + valid with the early-stopped tree count scaled by the rows added (no early stopping:
    the validation days are now training rows). `margins`: the CVR head's, fitted on train + valid."""
    boosters: dict[str, xgb.Booster] = {}
    both: Parts = ("train", "valid")
    for clicked_only in (False, True):
        rows = data.matrix(spec, both, clicked_only, cfg.nthread, None)
        n_train = len(data.labels(("train",), "clicked", clicked_only))
        params = cfg.booster_params()
        if clicked_only:
            params = _start_at_margins(data, both, rows, margins, params)
        for head, (head_clicked_only, label) in HEADS.items():
            if head_clicked_only != clicked_only:
                continue
            y = data.labels(both, label, clicked_only)
            rows.set_label(y)
            n_trees = max(1, round(stopped[head].num_boosted_rounds() * len(y) / max(n_train, 1)))
            boosters[head] = xgb.train(params, rows, num_boost_round=n_trees, verbose_eval=False)
        del rows
    return {head: boosters[head] for head in HEADS}


def choose_cvr_method(bundle: RankerBundle, data: TrainingData) -> tuple[str, dict[str, float]]:
    """Pick how pCTCVR is formed by log loss on the validation days: observable in production, unlike the oracle."""
    raw, y = data.head_scores(bundle, "valid")
    methods: tuple[CvrMethod, ...] = ("clicked_only", "ctcvr_over_ctr")
    losses = {method: binary_metrics(y, bundle.combine(raw, method)["pctcvr"], "v")["v_logloss"] for method in methods}
    return min(losses, key=lambda m: losses[m]), {f"valid_ctcvr_logloss_{m}": v for m, v in losses.items()}


def units_per_order(orders: pd.DataFrame) -> float:
    """GMV of an order per unit of shown price (quantity > 1 happens): turns pCTCVR x price into GMV."""
    price = orders["price"].sum()
    return float(orders["order_gmv"].sum() / price) if price > 0 else 1.0


def units_by_price_band(orders: pd.DataFrame, n_bands: int = 5) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean GMV per unit of price within price quintiles of the converted training impressions."""
    orders = orders[orders["price"] > 0]
    if len(orders) < 20 * n_bands:
        return (), ()
    edges = tuple(float(e) for e in np.quantile(orders["price"], np.linspace(0, 1, n_bands + 1)[1:-1]))
    band = np.searchsorted(np.asarray(edges), orders["price"].to_numpy(), side="left")
    units = tuple(
        float(orders["order_gmv"].to_numpy()[band == b].sum() / orders["price"].to_numpy()[band == b].sum())
        for b in range(n_bands)
    )
    return edges, units


def units_by_day_kind(
    orders: pd.DataFrame, edges: tuple[float, ...], min_per_band: int = 20
) -> dict[str, tuple[float, ...]]:
    """`units_by_price_band` within the pooled bands, per day kind of the orders' campaign plan (a model without
    the plan has no `DAY_KIND_FEATURE` column: nothing). A kind with fewer than `min_per_band` orders in any band
    is left out, so it uses the pooled value rather than a few baskets' noise."""
    if not edges or DAY_KIND_FEATURE not in orders:
        return {}
    orders = orders[(orders["price"] > 0) & orders[DAY_KIND_FEATURE].notna()]
    price = orders["price"].to_numpy()
    gmv = orders["order_gmv"].to_numpy()
    band = np.searchsorted(np.asarray(edges), price, side="left")
    kinds = orders[DAY_KIND_FEATURE].to_numpy(dtype=float)
    out: dict[str, tuple[float, ...]] = {}
    for kind in sorted(set(kinds.tolist())):
        rows = kinds == kind
        counts = np.bincount(band[rows], minlength=len(edges) + 1)
        if counts.min() < min_per_band:
            continue
        out[str(int(kind))] = tuple(
            float(gmv[rows & (band == b)].sum() / price[rows & (band == b)].sum()) for b in range(len(edges) + 1)
        )
    return out


def at_value_price(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders with `price` the one the bundle values an impression at (RankerBundle.value_price): the day's plan
    price where the model reads the plan, so the order value per unit of price is fitted on the price it scales."""
    if PLAN_PRICE_FEATURE not in orders:
        return orders
    plan = orders[PLAN_PRICE_FEATURE].to_numpy(dtype=float)
    return orders.assign(price=plan_or_price(plan, orders["price"].to_numpy(dtype=float)))
