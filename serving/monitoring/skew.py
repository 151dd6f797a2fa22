"""Training-serving skew of the same feature, judged continuously on the request log.

`make skew-check` compares the online store with the offline store on a sample of entities at one instant, against
a running service. This runs in every monitoring window on what was actually served: a deterministic sample of the
window's logged rows (serving/request_log.py keeps each row's entities and served time) is looked up with Feast's
`get_historical_features` at its `served_at`, which is exactly how a training set joins features (point in time,
the views' TTLs), and each served feature value is compared with that training-time value. A share of rows whose
value differs (`feature.skew` per view and feature) means the model was served something training would never
have given it: a materialization that fell behind or ran ahead of the marts, an online store written by another
pipeline, a transformation that differs online. Values compare with a relative tolerance of 1e-9 (the online
store's round trip of a double is exact; the tolerance only absorbs printing), missing equals missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from serving.monitoring.alerts import CheckResult, Window
from serving.monitoring.config import Features

ENTITY_COLUMNS = ("user_id", "product_id", "merchant_id", "category_l1")
RELATIVE_TOLERANCE = 1e-9


def sample_rows(log: pd.DataFrame, n: int) -> pd.DataFrame:
    """Up to `n` logged rows, the same ones for the same log (a fixed seed)."""
    return log if len(log) <= n else log.sample(n=n, random_state=0)


def offline_values(store: Any, rows: pd.DataFrame, refs: list[str]) -> pd.DataFrame:
    """Feast's point-in-time values of `refs` for each row's entities at its `served_at`, in the rows' order."""
    entity_df = rows[list(ENTITY_COLUMNS)].copy()
    entity_df["event_timestamp"] = pd.to_datetime(rows["served_at"], utc=True).to_numpy()
    entity_df["_row"] = np.arange(len(rows))
    out = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    return out.sort_values("_row").reset_index(drop=True)


def differs(served: pd.Series, offline: pd.Series) -> np.ndarray:
    """Per row: the served value is not the offline one (both missing counts as equal)."""
    a_missing, b_missing = served.isna().to_numpy(), offline.isna().to_numpy()
    numeric = pd.api.types.is_numeric_dtype(served) and pd.api.types.is_numeric_dtype(offline)
    if numeric:
        a = served.to_numpy(dtype=np.float64, na_value=np.nan)
        b = offline.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            unequal = ~(np.abs(a - b) <= RELATIVE_TOLERANCE * np.maximum(1.0, np.abs(b)))
    else:
        unequal = served.astype(object).to_numpy() != offline.astype(object).to_numpy()
    return np.where(a_missing | b_missing, a_missing != b_missing, unequal)


def compare(
    rows: pd.DataFrame, offline: pd.DataFrame, views: dict[str, str], window: Window, th: Features
) -> CheckResult:
    """`views`: {feature: its view}; one measurement per feature, alerting above `th.skew_share`."""
    out = CheckResult()
    shares: dict[str, float] = {}
    for name, view in sorted(views.items(), key=lambda kv: (kv[1], kv[0])):
        if name not in rows.columns or name not in offline.columns:
            continue
        bad = differs(rows[name].reset_index(drop=True), offline[name].reset_index(drop=True))
        share = float(bad.mean()) if len(bad) else 0.0
        target = f"{view}.{name}"
        shares[target] = share
        example = ""
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            example = f"; e.g. served {_plain(rows[name].iat[i])}, training-time {_plain(offline[name].iat[i])}"
        out.measure(
            "feature.skew",
            target,
            share,
            th.skew_share,
            window,
            share > th.skew_share,
            f"{target}: {share:.1%} of {len(bad)} served rows differ from the offline store at their served time"
            f"{example}",
        )
    out.series["skew_share"] = shares
    return out


def _plain(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def check(store: Any, log: pd.DataFrame, reference: dict[str, Any] | None, window: Window, th: Features) -> CheckResult:
    out = CheckResult()
    if log.empty or reference is None:
        out.notes.append("training-serving skew not judged: no request-log rows or no reference profile")
        return out
    missing = [c for c in ENTITY_COLUMNS if c not in log.columns]
    if missing:
        out.notes.append(f"training-serving skew not judged: the request log has no {', '.join(missing)}")
        return out
    views = {name: prof["view"] for name, prof in reference["features"].items() if prof["view"] != "context"}
    rows = sample_rows(log, th.skew_sample_rows).reset_index(drop=True)
    offline = offline_values(store, rows, [f"{view}:{name}" for name, view in views.items()])
    out.extend(compare(rows, offline, views, window, th))
    out.notes.append(
        f"training-serving skew: {len(rows)} of {len(log)} logged rows compared with Feast's offline store"
    )
    return out
