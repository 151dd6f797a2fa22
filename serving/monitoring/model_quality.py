"""Online model quality: served scores joined with what shoppers did afterwards.

A logged candidate (serving/request_log.py) is matched to the impression that landed for it in the raw zone
(same user, product and surface, the nearest `event_ts` within MATCH_SECONDS of `served_at`), then to its click
and order by `impression_id`. Candidates that were answered but never shown (the shopper left first) have no
impression and are not judged. Delayed labels: only requests served at least `label_delay_hours` before the
run's as-of time are judged, so an order that lands hours after its click is not counted as a miss.

The service scores every candidate as if shown first (platform_common.feature_spec.SERVING_POSITION), so the
served pCTR is not the probability of a click at the slot the candidate got. Calibration is judged on the
version's pCTR at the shown position, recomputed from the logged features with the same bundle; prediction
drift on the served pCTR against the version's reference (also scored at slot 1).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from serving.monitoring import stats
from serving.monitoring.alerts import CheckResult, Window
from serving.monitoring.config import ModelQuality

MATCH_SECONDS = 120


def read_request_log(logs_dir: Path, window: Window) -> pd.DataFrame:
    folder = logs_dir / "requests"
    days = pd.date_range(window.start.date(), window.end.date(), freq="D")
    files = [f for d in days for f in sorted((folder / f"dt={d.date().isoformat()}").glob("part-*.parquet"))]
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    ts = pd.to_datetime(frame["served_at"], utc=True)
    return frame[(ts >= window.start) & (ts < window.end)].reset_index(drop=True)


def attach_outcomes(log: pd.DataFrame, raw_dir: Path, window: Window) -> pd.DataFrame:
    """Log rows that were shown, with `shown_position`, `clicked`, `ordered` and `gmv` (0 without an order)."""
    con = duckdb.connect()
    con.register("served", log[["request_id", "served_at", "user_id", "product_id", "surface"]].reset_index())

    def raw(t: str) -> str:
        return f"read_parquet('{raw_dir / t}/*/*.parquet', hive_partitioning = true, union_by_name = true)"

    lo, hi = window.start - timedelta(seconds=MATCH_SECONDS), window.end + timedelta(days=1)
    has_orders = any((raw_dir / "orders").glob("*/*.parquet"))
    orders = (
        f"(select impression_id, sum(gmv) as gmv from {raw('orders')} group by 1)"
        if has_orders
        else "(select null::varchar as impression_id, null::double as gmv where false)"
    )
    matched = con.execute(
        f"""with imps as (
                select impression_id, user_id, product_id, surface, event_ts, position from {raw("impressions")}
                where event_ts >= ? and event_ts < ?),
            pairs as (
                select s."index" as row, i.impression_id, i.position,
                    row_number() over (partition by s."index"
                        order by abs(epoch(i.event_ts) - epoch(s.served_at))) as nearest
                from served s join imps i using (user_id, product_id, surface)
                where abs(epoch(i.event_ts) - epoch(s.served_at)) <= {MATCH_SECONDS})
            select p.row, p.position as shown_position,
                (c.impression_id is not null)::int as clicked,
                (o.impression_id is not null)::int as ordered, coalesce(o.gmv, 0) as gmv
            from pairs p
            left join (select distinct impression_id from {raw("clicks")}) c using (impression_id)
            left join {orders} o using (impression_id)
            where p.nearest = 1""",
        [lo, hi],
    ).df()
    return log.loc[matched["row"].to_numpy()].assign(
        shown_position=matched["shown_position"].to_numpy(),
        clicked=matched["clicked"].to_numpy(),
        ordered=matched["ordered"].to_numpy(),
        realised_gmv=matched["gmv"].to_numpy(),
    )


def rescore_at_shown(bundle: Any, shown: pd.DataFrame) -> np.ndarray:
    rows = shown.assign(position=shown["shown_position"])
    return bundle.score_matrix(bundle.spec.frame_matrix(rows))["pctr"]


def check(
    shown: pd.DataFrame,
    log: pd.DataFrame,
    reference: dict[str, Any] | None,
    window: Window,
    as_of: datetime,
    th: ModelQuality,
    version: str | None = None,
) -> CheckResult:
    """`shown` carries `pctr_shown` (pCTR at the shown slot) and the outcomes; `log` every logged candidate, both
    of one served model version (`version` prefixes the targets when several served in the window)."""
    out = CheckResult()
    prefix = f"v{version} " if version else ""
    if reference is not None and "pctr" in reference.get("scores", {}) and len(log) >= th.min_impressions:
        ref, cur = stats.current_shares(reference["scores"]["pctr"], log["pctr"])
        value = stats.psi(ref, cur)
        out.measure(
            "model.prediction_drift",
            f"{prefix}pctr",
            value,
            th.score_psi_alert,
            window,
            value > th.score_psi_alert,
            f"served pCTR distribution moved from the version's reference (PSI {value:.3f})",
        )
    if shown.empty:
        out.notes.append("no served candidate matched a landed impression: online quality not judged")
        return out
    matured = shown[pd.to_datetime(shown["served_at"], utc=True) <= as_of - timedelta(hours=th.label_delay_hours)]
    if len(matured) < len(shown):
        out.notes.append(f"{len(shown) - len(matured)} impressions younger than {th.label_delay_hours:g} h not judged")
    groups = [(f"{prefix}all", matured)] + [(f"{prefix}surface={s}", g) for s, g in matured.groupby("surface")]
    for target, g in groups:
        if len(g) < th.min_impressions:
            out.notes.append(f"online quality {target}: {len(g)} matured impressions < {th.min_impressions}")
            continue
        y, p = g["clicked"].to_numpy(), g["pctr_shown"].to_numpy()
        e, a = stats.ece(y, p), stats.auc(y, p)
        ratio = float(p.mean() / max(y.mean(), 1e-6))
        out.measure(
            "model.calibration",
            target,
            e,
            th.ece_max,
            window,
            e > th.ece_max,
            f"online CTR ECE {e:.4f} over {len(g)} impressions ({target})",
        )
        off = ratio > th.ctr_ratio_max or ratio < 1 / th.ctr_ratio_max
        out.measure(
            "model.ctr_ratio",
            target,
            ratio,
            th.ctr_ratio_max,
            window,
            off,
            f"predicted CTR {p.mean():.4f} vs realised {y.mean():.4f} ({ratio:.2f}x, {target})",
        )
        if not np.isnan(a):
            out.measure(
                "model.auc", target, a, th.auc_min, window, a < th.auc_min, f"online CTR AUC {a:.3f} ({target})"
            )
        clicked = g["clicked"] == 1
        if "pcvr" in g and clicked.any():
            out.measure("model.predicted_cvr", target, float(g.loc[clicked, "pcvr"].mean()), None, window, False, "")
            out.measure("model.realised_cvr", target, float(g.loc[clicked, "ordered"].mean()), None, window, False, "")
        if "expected_gmv" in g:
            out.measure("model.predicted_gmv", target, float(g["expected_gmv"].sum()), None, window, False, "")
            out.measure("model.realised_gmv", target, float(g["realised_gmv"].sum()), None, window, False, "")
    hourly = matured.assign(hour=pd.to_datetime(matured["served_at"], utc=True).dt.floor("h"))
    out.series[f"calibration_hourly{prefix.strip()}"] = hourly.groupby("hour").agg(
        predicted=("pctr_shown", "mean"), realised=("clicked", "mean"), n=("clicked", "size")
    )
    return out
