"""Offline metrics of probability models."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Weighted mean |observed rate - mean prediction| over equal-mass bins of the prediction.

    Equal-mass bins, because CTRs crowd into a few percent and equal-width bins would leave most rows in one.
    """
    y_true = np.asarray(y_true, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        raise ValueError("no rows to compute calibration on")
    # Quantile edges, so tied predictions always share a bin (a constant model gets one bin, not five).
    edges = np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1])
    bins = np.searchsorted(edges, p, side="right")
    ece = 0.0
    for b in np.unique(bins):
        mask = bins == b
        ece += mask.mean() * abs(y_true[mask].mean() - p[mask].mean())
    return float(ece)


def binary_metrics(y_true: np.ndarray, p: np.ndarray, prefix: str) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    if y_true.min() == y_true.max():
        raise ValueError(f"{prefix}: labels have a single class; cannot compute AUC")
    return {
        f"{prefix}_auc": float(roc_auc_score(y_true, p)),
        f"{prefix}_logloss": float(log_loss(y_true, p, labels=[0, 1])),
        f"{prefix}_ece": expected_calibration_error(y_true, p),
    }
