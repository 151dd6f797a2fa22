"""The statistics of monitoring: binned profiles, PSI, calibration error.

A profile of a feature is what the reference keeps of it: for a numeric, quantile bin edges and the share of
rows per bin (plus the share of nulls and of exact zeros); for a categorical, the share per value (rare values
pooled into `__other__`). PSI = sum((cur - ref) * ln(cur / ref)) over bins, with shares floored at EPS so an
empty bin is finite. Conventional reading (Siddiqi, Credit Risk Scorecards): < 0.1 no shift, 0.1-0.25
moderate, > 0.25 significant. Nulls are a bin of their own, so a feature going missing also moves PSI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.metrics import expected_calibration_error

EPS = 1e-4
OTHER = "__other__"
NULL = "__null__"
MAX_CATEGORIES = 30


def numeric_profile(values: pd.Series | np.ndarray, bins: int = 10) -> dict[str, Any]:
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = x[~np.isnan(x)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "shares": numeric_shares(x, edges.tolist()),
        "zero_share": float(np.mean(present == 0)) if len(present) else 0.0,
        "rows": len(x),
    }


def numeric_shares(values: pd.Series | np.ndarray, edges: list[float]) -> list[float]:
    """Shares per bin of `edges` (right-closed, as np.searchsorted side='left'), the last entry is the null bin."""
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if len(x) == 0:
        return [0.0] * (len(edges) + 2)
    nulls = np.isnan(x)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x[~nulls], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return (np.append(counts, nulls.sum()) / len(x)).tolist()


def categorical_profile(values: pd.Series | np.ndarray) -> dict[str, Any]:
    s = pd.Series(values).astype(object).where(pd.notna(pd.Series(values)), NULL).astype(str)
    shares = s.value_counts(normalize=True)
    top = shares.head(MAX_CATEGORIES)
    out = {str(k): float(v) for k, v in top.items()}
    if len(shares) > len(top):
        out[OTHER] = float(shares.iloc[len(top) :].sum())
    return {"kind": "categorical", "shares": out, "rows": len(s)}


def categorical_shares(values: pd.Series | np.ndarray, categories: list[str]) -> list[float]:
    """Shares of `values` over the reference `categories` (unseen values count as `__other__`)."""
    s = pd.Series(values).astype(object).where(pd.notna(pd.Series(values)), NULL).astype(str)
    known = set(categories)
    s = s.where(s.isin(known), OTHER)
    shares = s.value_counts(normalize=True)
    cats = categories if OTHER in known else [*categories, OTHER]
    return [float(shares.get(c, 0.0)) for c in cats]


def psi(reference: list[float] | np.ndarray, current: list[float] | np.ndarray) -> float:
    ref = np.maximum(np.asarray(reference, dtype=np.float64), EPS)
    cur = np.maximum(np.asarray(current, dtype=np.float64), EPS)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def current_shares(profile: dict[str, Any], values: pd.Series | np.ndarray) -> tuple[list[float], list[float]]:
    """(reference shares, current shares) aligned bin by bin for a feature's profile."""
    if profile["kind"] == "numeric":
        return profile["shares"], numeric_shares(values, profile["edges"])
    cats = list(profile["shares"])
    ref = [profile["shares"][c] for c in cats] + ([] if OTHER in cats else [0.0])
    return ref, categorical_shares(values, cats)


def zero_share(values: pd.Series | np.ndarray) -> float:
    x = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy()
    return float(np.mean(x == 0)) if len(x) else 0.0


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """The gate's expected calibration error (training/metrics.py), so online and offline figures compare; NaN
    on no rows, where a monitoring window may simply be empty."""
    if len(p) == 0:
        return float("nan")
    return expected_calibration_error(y, p, n_bins)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))
