"""The served baseline of a model version: the first rows it served, frozen, to judge served drift against.

Why not the training reference: the reference profile (profile.py) is the version's frozen test window, feature
values joined point in time at each impression of the last training days. What the service is asked is the
candidate lists callers send now, scored on the newest materialized snapshot. On a clean live run at SCALE=tiny
the two differ by PSI 1.67 (merchant_orders_30d: the tiny world is 21 days old, so every 30-day count is still
filling and the newest snapshot sits above the whole test window), while nothing is wrong. A served distribution
is comparable only with another served distribution of the same version: as Databricks' inference-table
monitoring compares a window with a baseline table, the baseline here is the first `drift.baseline_rows` rows the
version served once promoted (the request log, serving/request_log.py), profiled with the reference's bins and
frozen in $SHOPRANK_HOME/monitoring/baselines/<model>-v<version>.json the first time a monitoring run finds that
many. The same rows whichever run captures it, so reproducible; rows up to the baseline's last one are never
judged against it. A new version (retrain, rollback's target) gets its own baseline: drift is what moved while
one version served, the training-time gap is the skew monitor's (skew.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from serving.monitoring import stats
from serving.monitoring.config import Drift

# Set by the request, not by a pipeline (features.REQUEST_CONTEXT): left out of the baseline as of drift.
REQUEST_CONTEXT = ("position", "hour_of_day", "is_campaign_day")


def baseline_path(home: Path, model: str, version: str) -> Path:
    return home / "monitoring" / "baselines" / f"{model}-v{version}.json"


def first_served(logs_dir: Path, version: str, rows: int) -> pd.DataFrame:
    """The first `rows` logged rows served by `version` (whole requests), oldest first; fewer if not yet served."""
    folder = logs_dir / "requests"
    kept: list[pd.DataFrame] = []
    total = 0
    for day in sorted(folder.glob("dt=*")):
        for file in sorted(day.glob("part-*.parquet")):
            frame = pq.read_table(file, filters=[("model_version", "=", version)]).to_pandas()
            if frame.empty:
                continue
            kept.append(frame)
            total += len(frame)
        if total >= rows:  # a day's files are not in served order across workers: finish the day, then sort
            break
    if not kept:
        return pd.DataFrame()
    frame = pd.concat(kept, ignore_index=True)
    frame["served_at"] = pd.to_datetime(frame["served_at"], utc=True)
    frame = frame.sort_values(["served_at", "request_id"], kind="stable").reset_index(drop=True)
    if len(frame) <= rows:
        return frame
    last = frame.loc[rows - 1, "request_id"]
    return frame[(frame.index < rows) | (frame["request_id"] == last)]  # the last request whole


def build_baseline(rows: pd.DataFrame, reference: dict[str, Any], version: str, bins: int) -> dict[str, Any]:
    """Profiles of the served rows, feature by feature with the kinds and views of the training reference."""
    features: dict[str, Any] = {}
    for name, prof in reference["features"].items():
        if name not in rows.columns or name in REQUEST_CONTEXT:
            continue
        if prof["kind"] == "numeric":
            features[name] = stats.numeric_profile(rows[name], bins) | {"view": prof["view"]}
        else:
            features[name] = stats.categorical_profile(rows[name]) | {"view": prof["view"]}
    scores = {k: stats.numeric_profile(rows[k], bins) for k in ("pctr", "pcvr", "pctcvr") if k in rows.columns}
    served = pd.to_datetime(rows["served_at"], utc=True)
    return {
        "kind": "served_baseline",
        "model_version": version,
        "rows": len(rows),
        "requests": int(rows["request_id"].nunique()),
        "served_from": served.min().isoformat(),
        "served_until": served.max().isoformat(),
        "features": features,
        "scores": scores,
    }


def load_or_capture(
    home: Path, logs_dir: Path, model: str, version: str, reference: dict[str, Any] | None, th: Drift
) -> tuple[dict[str, Any] | None, str]:
    """(baseline, where from), or (None, why not yet): frozen on disk once the version has served enough rows."""
    path = baseline_path(home, model, version)
    if path.exists():
        baseline = json.loads(path.read_text())
        return baseline, (
            f"served baseline {path} ({baseline['rows']} rows served {baseline['served_from']} .. "
            f"{baseline['served_until']})"
        )
    if reference is None:
        return None, f"v{version}: no reference profile to take the feature kinds from, no served baseline"
    rows = first_served(logs_dir, version, th.baseline_rows)
    if len(rows) < th.baseline_rows:
        return None, f"v{version} has served {len(rows)} logged rows; its served baseline needs {th.baseline_rows}"
    baseline = build_baseline(rows, reference, version, th.bins)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(baseline) + "\n")
    tmp.replace(path)
    return baseline, f"served baseline {path} captured now from v{version}'s first {len(rows)} served rows"
