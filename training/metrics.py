"""Offline metrics of probability models."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, n_bins: int = 20) -> float:
    """Weighted mean |observed rate - mean prediction| over equal-mass bins of the prediction.

    Equal-mass bins, because CTRs crowd into a few percent and equal-width bins would leave most rows in one.
    """
    y_true = np.asarray(y_true, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        raise ValueError("no rows to compute calibration on")
    order = np.argsort(p, kind="stable")
    ece = 0.0
    for idx in np.array_split(order, min(n_bins, len(p))):
        if len(idx):
            ece += len(idx) / len(p) * abs(y_true[idx].mean() - p[idx].mean())
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
