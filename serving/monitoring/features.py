"""Feature health: drift of the marts day over day, and of served values against two references.

As in Hopsworks' feature monitoring (a detection window against a reference window):
- marts: the window's daily snapshot of each feature view (rows stamped in (start, end]) against the snapshots
  of the baseline days. This catches a pipeline bug (a column written as zero) the day it lands, before any
  request is served with it.
- served vs the served baseline (baseline.py): the sampled request log (serving/request_log.py) of the window
  against the first rows the same version served, like for like (same service, same callers, same snapshot
  path). PSI per feature alerts at `drift.served_psi_alert` (`feature.served_drift`).
- served vs the training reference (profile.py): the same rows against the version's frozen test window. PSI is
  reported (`feature.training_drift`), not alerted: the candidates callers send now, on the newest snapshot, are
  not the impressions of the last training days (PSI 1.67 on a clean tiny live run, baseline.py says why). What
  alerts is what a broken pipeline does to a feature: its non-zero or non-null values gone
  (`feature.training_drift_zeros` / `_nulls`). Value-for-value skew against the offline store is skew.py.
- the missing share per view and the stale share per view.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from serving.monitoring import stats
from serving.monitoring.alerts import CheckResult, Window
from serving.monitoring.config import Drift, Features

MIN_NONZERO = 0.05  # a feature almost always zero has no non-zero share to lose
# Set by the request, not by a pipeline: position is 1 for every served candidate by design, the hour and the
# campaign flag follow the clock (a window of an hour has one hour of day). The surface mix stays judged.
REQUEST_CONTEXT = ("position", "hour_of_day", "is_campaign_day")


MART_VIEWS = ("user_features", "product_features", "merchant_features", "user_category_features")
NOT_FEATURES = {"user_id", "product_id", "merchant_id", "category_l1", "event_timestamp", "created_timestamp"}


def mart_features(marts_dir: Path) -> dict[str, list[str]]:
    """Without a model version to ask: every column of the feature marts but keys and timestamps."""
    import pyarrow.parquet as pq

    out = {}
    for view in MART_VIEWS:
        path = marts_dir / f"{view}.parquet"
        if path.exists():
            out[view] = [c for c in pq.read_schema(path).names if c not in NOT_FEATURES]
    return out


def features_by_view(reference: dict[str, Any] | None) -> dict[str, list[str]]:
    """{view: the model's features from it}, request context left out."""
    out: dict[str, list[str]] = {}
    for name, prof in (reference or {}).get("features", {}).items():
        if prof["view"] != "context":
            out.setdefault(prof["view"], []).append(name)
    return out


def drift_of(
    out: CheckResult,
    check: str,
    view: str,
    feature: str,
    profile: dict[str, Any],
    values: pd.Series,
    window: Window,
    th: Drift,
    alert_psi: bool = True,
    psi_threshold: float | None = None,
    shares: bool = True,
) -> None:
    """PSI over the profile's bins; with `shares`, the share of non-null and of non-zero values that vanished."""
    if len(values) < th.min_rows:
        out.notes.append(f"{check} {view}.{feature}: {len(values)} rows < {th.min_rows}, not judged")
        return
    ref, cur = stats.current_shares(profile, values)
    value = stats.psi(ref, cur)
    target = f"{view}.{feature}"
    cut = (psi_threshold or th.psi_alert) if alert_psi else None
    out.measure(
        check,
        target,
        value,
        cut,
        window,
        cut is not None and value > cut,
        f"{target}: PSI {value:.3f} vs the reference",
    )
    if profile["kind"] != "numeric" or not shares:
        return
    present_ref = 1.0 - profile["shares"][-1]
    present_cur = 1.0 - float(pd.isna(values).mean())
    lost = 1.0 - present_cur / present_ref if present_ref > 0 else 0.0
    out.measure(
        f"{check}_nulls",
        target,
        lost,
        th.lost_share,
        window,
        lost > th.lost_share,
        f"{target}: {lost:.0%} of its non-null values vanished vs the reference (a dropped column?)",
    )
    nonzero_ref = (1.0 - profile.get("zero_share", 0.0)) * present_ref
    if nonzero_ref < MIN_NONZERO:
        return
    x = pd.to_numeric(pd.Series(values), errors="coerce")
    nonzero_cur = float(((x != 0) & x.notna()).mean())
    gone = 1.0 - nonzero_cur / nonzero_ref
    out.measure(
        f"{check}_zeros",
        target,
        gone,
        th.lost_share,
        window,
        gone > th.lost_share,
        f"{target}: {gone:.0%} of its non-zero values vanished vs the reference (a column written as zero?)",
    )


def mart_drift(
    marts_dir: Path, features_by_view: dict[str, list[str]], window: Window, th: Drift, days: int
) -> CheckResult:
    """Day-over-day, PSI is reported but does not alert: a 7- or 30-day rate moves a narrow distribution by a few
    percent a day, which PSI reads as a large shift (0.86 for product_ctr_7d on a clean day at SCALE=tiny).
    What alerts here is what a broken pipeline does: a column suddenly zero or null."""
    out = CheckResult()
    psis: dict[str, float] = {}
    for view, names in sorted(features_by_view.items()):
        path = marts_dir / f"{view}.parquet"
        if not path.exists():
            out.notes.append(f"mart {view}: no {path.name}, drift not judged")
            continue
        frame = pd.read_parquet(path)
        ts = pd.to_datetime(frame["event_timestamp"], utc=True)
        current = frame[(ts > window.start) & (ts <= window.end)]
        baseline = frame[(ts > window.start - timedelta(days=days)) & (ts <= window.start)]
        if current.empty or len(baseline) < th.min_rows:
            out.notes.append(f"mart {view}: {len(current)} rows in the window, {len(baseline)} in the baseline")
            continue
        for feature in names:
            if feature not in frame.columns:
                continue
            column = baseline[feature]
            numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
            profile = stats.numeric_profile(column, th.bins) if numeric else stats.categorical_profile(column)
            drift_of(out, "feature.mart_drift", view, feature, profile, current[feature], window, th, alert_psi=False)
    for m in out.measurements:
        if m.check == "feature.mart_drift":
            psis[m.target] = m.value
    out.series["mart_psi"] = psis
    return out


def served_health(
    log: pd.DataFrame,
    reference: dict[str, Any] | None,
    window: Window,
    th: Drift,
    fth: Features,
    baseline: dict[str, Any] | None = None,
) -> CheckResult:
    """Missing and stale share per view, and drift per feature, on the window's request-log rows of one version:
    against its training `reference` (PSI reported; vanished non-zero / non-null values alert) and against its
    served `baseline` (PSI alerts), on the rows served after the baseline's last one."""
    out = CheckResult()
    if log.empty:
        out.notes.append("no request-log rows in the window: served features not judged (is the service logging?)")
        return out
    if reference is None:
        out.notes.append("no reference profile: served drift not judged")
        return out
    features: dict[str, Any] = reference["features"]
    by_view = features_by_view(reference)
    requests = log.drop_duplicates("request_id")
    for view, names in sorted(by_view.items()):
        present = [n for n in names if n in log.columns]
        if present:
            share = float(log[present].isna().all(axis=1).mean())
            out.measure(
                "feature.missing_share",
                view,
                share,
                fth.missing_share,
                window,
                share > fth.missing_share,
                f"{share:.1%} of served candidates had none of {view}'s features",
            )
        stale = float(requests["stale_views"].fillna("").str.split(",").apply(lambda v, x=view: x in v).mean())
        out.measure(
            "feature.stale_share",
            view,
            stale,
            fth.stale_share,
            window,
            stale > fth.stale_share,
            f"{stale:.1%} of requests were served {view} past its TTL",
        )
    for name, prof in features.items():
        if name in log.columns and name not in REQUEST_CONTEXT:
            drift_of(out, "feature.training_drift", prof["view"], name, prof, log[name], window, th, alert_psi=False)
    out.series["training_psi"] = _psis(out, "feature.training_drift")
    if baseline is None:
        return out
    after = log[pd.to_datetime(log["served_at"], utc=True) > pd.Timestamp(baseline["served_until"])]
    if len(after) < th.served_min_rows:
        out.notes.append(
            f"served drift: {len(after)} rows served after the baseline's last one < {th.served_min_rows}, not judged"
        )
        return out
    for name, prof in baseline["features"].items():
        if name in after.columns:
            drift_of(
                out,
                "feature.served_drift",
                prof["view"],
                name,
                prof,
                after[name],
                window,
                th,
                psi_threshold=th.served_psi_alert,
                shares=False,
            )
    out.series["served_psi"] = _psis(out, "feature.served_drift")
    return out


def _psis(out: CheckResult, check: str) -> dict[str, float]:
    return {m.target: m.value for m in out.measurements if m.check == check}
