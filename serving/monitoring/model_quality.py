"""Online model quality: served scores joined with what shoppers did afterwards, per day and per surface.

A logged candidate (serving/request_log.py) is matched to the impression that landed for it in the raw zone
(same user, product and surface, the nearest `event_ts` within MATCH_SECONDS of `served_at`), then to its click
and order by `impression_id`. Candidates that were answered but never shown (the shopper left first) have no
impression and are not judged.

Delayed labels, explicitly: an outcome counts only if it had landed by the run's as-of time (`_ingested_at`), and
a day is scored only once its attribution window has passed: clicks for CTR, ECE and AUC `click_delay_hours`
after the day ends (clicks come seconds after the impression), orders for CVR and GMV `order_delay_hours` after
it (orders come a median 25 minutes after the click, 99.9% within 24 h in the simulator). So the daily run of
day D scores D's CTR and D-1's CVR and GMV (`lookback_days` 1): each day's conversion is judged once, as soon as
it can be, and the report's table says of every day what was scored and when the rest will be.

The service scores every candidate as if shown first (platform_common.feature_spec.SERVING_POSITION), so the
served pCTR is not the probability of a click at the slot the candidate got. Calibration is judged on the
version's scores at the shown position, recomputed from the logged features with the same bundle (pCTR, pCVR,
pCTCVR and the expected GMV of the impression); prediction drift on the served pCTR against the version's
reference (also scored at slot 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def attach_outcomes(
    log: pd.DataFrame, raw_dir: Path, window: Window, lookback_days: int = 0, as_of: datetime | None = None
) -> pd.DataFrame:
    """Log rows that were shown, with `shown_position`, `clicked`, `ordered` and `realised_gmv` (0 without an
    order), counting only clicks and orders landed by `as_of`; `log` may reach `lookback_days` before the window."""
    con = duckdb.connect()
    con.register("served", log[["request_id", "served_at", "user_id", "product_id", "surface"]].reset_index())

    def raw(t: str) -> str:
        return f"read_parquet('{raw_dir / t}/*/*.parquet', hive_partitioning = true, union_by_name = true)"

    lo = window.start - timedelta(days=lookback_days, seconds=MATCH_SECONDS)
    hi = window.end + timedelta(seconds=MATCH_SECONDS)
    landed = as_of or datetime.max.replace(tzinfo=UTC)
    has_orders = any((raw_dir / "orders").glob("*/*.parquet"))
    orders = (
        f"(select impression_id, sum(gmv) as gmv from {raw('orders')} where _ingested_at <= $landed group by 1)"
        if has_orders
        else "(select null::varchar as impression_id, null::double as gmv where false)"
    )
    matched = con.execute(
        f"""with imps as (
                select impression_id, user_id, product_id, surface, event_ts, position from {raw("impressions")}
                where event_ts >= $lo and event_ts < $hi),
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
            left join (select distinct impression_id from {raw("clicks")} where _ingested_at <= $landed) c
                using (impression_id)
            left join {orders} o using (impression_id)
            where p.nearest = 1""",
        {"lo": lo, "hi": hi, "landed": landed},
    ).df()
    return log.loc[matched["row"].to_numpy()].assign(
        shown_position=matched["shown_position"].to_numpy(),
        clicked=matched["clicked"].to_numpy(),
        ordered=matched["ordered"].to_numpy(),
        realised_gmv=matched["gmv"].to_numpy(),
    )


def rescore_at_shown(bundle: Any, shown: pd.DataFrame) -> pd.DataFrame:
    """The version's pCTR, pCVR, pCTCVR and expected GMV of each impression at the slot it was shown in."""
    rows = shown.assign(position=shown["shown_position"])
    x = bundle.spec.frame_matrix(rows)
    scores = bundle.score_matrix(x)
    price = rows["price"].to_numpy(dtype=np.float64) if "price" in rows else np.full(len(rows), np.nan)
    return pd.DataFrame(
        {
            "pctr_shown": scores["pctr"],
            "pcvr_shown": scores.get("pcvr", np.full(len(rows), np.nan)),
            "pctcvr_shown": scores.get("pctcvr", np.full(len(rows), np.nan)),
            "gmv_shown": bundle.expected_gmv(scores["pctcvr"], price, x) if "pctcvr" in scores else np.nan,
        },
        index=shown.index,
    )


def _matured(day: pd.Timestamp, hours: float, as_of: datetime) -> tuple[bool, datetime]:
    ready = (day + pd.Timedelta(days=1, hours=hours)).to_pydatetime()
    return ready <= as_of, ready


def daily_table(shown: pd.DataFrame, days: list[pd.Timestamp], as_of: datetime, th: ModelQuality) -> pd.DataFrame:
    """One row per day and group (all, each surface): volumes, CTR/ECE/AUC once clicks matured, CVR and GMV
    predicted vs realised once orders matured, and what is not scored yet with the time it will be."""
    rows = []
    day_of = pd.to_datetime(shown["served_at"], utc=True).dt.floor("D") if not shown.empty else pd.Series([])
    for day in days:
        g_day = shown[day_of == day] if not shown.empty else shown
        if g_day.empty:  # nothing this version served that day was shown
            continue
        clicks_ok, clicks_at = _matured(day, th.click_delay_hours, as_of)
        orders_ok, orders_at = _matured(day, th.order_delay_hours, as_of)
        groups = [("all", g_day)] + [(f"surface={s}", g) for s, g in g_day.groupby("surface")]
        for target, g in groups:
            row: dict[str, Any] = {"day": day.date().isoformat(), "group": target, "impressions": len(g)}
            if not clicks_ok:
                row["status"] = f"not scored: clicks mature {clicks_at:%Y-%m-%d %H:%M} UTC"
            elif not orders_ok:
                row["status"] = f"CTR scored; CVR, GMV at {orders_at:%Y-%m-%d %H:%M} UTC (orders still landing)"
            else:
                row["status"] = "scored"
            if clicks_ok:
                y, p = g["clicked"].to_numpy(), g["pctr_shown"].to_numpy()
                row |= {
                    "clicks": int(y.sum()),
                    "predicted_ctr": float(p.mean()),
                    "realised_ctr": float(y.mean()),
                    "ctr_ece": stats.ece(y, p),
                    "ctr_auc": stats.auc(y, p),
                }
            if orders_ok:
                clicked = g[g["clicked"] == 1]
                row |= {
                    "orders": int(g["ordered"].sum()),
                    "predicted_orders": float(clicked["pcvr_shown"].sum()),
                    "predicted_cvr": float(clicked["pcvr_shown"].mean()) if len(clicked) else float("nan"),
                    "realised_cvr": float(clicked["ordered"].mean()) if len(clicked) else float("nan"),
                    "predicted_gmv": float(g["gmv_shown"].sum()),
                    "realised_gmv": float(g["realised_gmv"].sum()),
                }
            rows.append(row)
    return pd.DataFrame(rows)


def check(
    shown: pd.DataFrame,
    log: pd.DataFrame,
    reference: dict[str, Any] | None,
    window: Window,
    as_of: datetime,
    th: ModelQuality,
    version: str | None = None,
) -> CheckResult:
    """`shown` carries the scores at the shown slot (rescore_at_shown) and the outcomes, from `lookback_days`
    before the window on; `log` every logged candidate of the window; both of one served model version (`version`
    prefixes the targets when several served in the window). CTR, ECE and AUC alert over the window's days whose
    clicks matured; CVR and GMV calibration over the days of the table whose orders matured."""
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
    start = pd.Timestamp(window.start) - pd.Timedelta(days=th.lookback_days)
    days = list(pd.date_range(start, pd.Timestamp(window.end) - pd.Timedelta(days=1), freq="D"))
    table = daily_table(shown, days, as_of, th)
    out.series[f"online_quality{prefix.strip()}"] = table.assign(version=version or "")
    day_of = pd.to_datetime(shown["served_at"], utc=True).dt.floor("D")
    in_window = [d for d in days if d >= pd.Timestamp(window.start)]
    ctr_days = [d for d in in_window if _matured(d, th.click_delay_hours, as_of)[0]]
    order_days = [d for d in days if _matured(d, th.order_delay_hours, as_of)[0]]
    for d in in_window:
        if d not in ctr_days and (day_of == d).any():
            out.notes.append(f"online CTR of {d.date()} not scored yet: {table_status(table, d)}")
    for d in days:
        if d not in order_days and (day_of == d).any():
            out.notes.append(f"online CVR and GMV of {d.date()} not scored yet: {table_status(table, d)}")
    _ctr_checks(out, shown[day_of.isin(ctr_days)], prefix, ctr_days, window, th)
    _conversion_checks(out, shown[day_of.isin(order_days)], prefix, order_days, window, th)
    judged = shown[day_of.isin(ctr_days)]
    hourly = judged.assign(hour=pd.to_datetime(judged["served_at"], utc=True).dt.floor("h"))
    out.series[f"calibration_hourly{prefix.strip()}"] = hourly.groupby("hour").agg(
        predicted=("pctr_shown", "mean"), realised=("clicked", "mean"), n=("clicked", "size")
    )
    return out


def table_status(table: pd.DataFrame, day: pd.Timestamp) -> str:
    if table.empty:
        return "no row"
    rows = table[(table["day"] == day.date().isoformat()) & (table["group"] == "all")]
    return str(rows["status"].iat[0]) if len(rows) else "no row"


def _groups(rows: pd.DataFrame, prefix: str) -> list[tuple[str, pd.DataFrame]]:
    return [(f"{prefix}all", rows)] + [(f"{prefix}surface={s}", g) for s, g in rows.groupby("surface")]


def _days(days: list[pd.Timestamp]) -> str:
    return ", ".join(d.date().isoformat() for d in days)


def _ctr_checks(
    out: CheckResult, rows: pd.DataFrame, prefix: str, days: list[pd.Timestamp], window: Window, th: ModelQuality
) -> None:
    for target, g in _groups(rows, prefix) if len(rows) else []:
        if len(g) < th.min_impressions:
            out.notes.append(f"online CTR {target}: {len(g)} matured impressions < {th.min_impressions}")
            continue
        y, p = g["clicked"].to_numpy(), g["pctr_shown"].to_numpy()
        e, a = stats.ece(y, p), stats.auc(y, p)
        ratio = float(p.mean() / max(y.mean(), 1e-6))
        on = f"{len(g)} impressions of {_days(days)}, {target}"
        out.measure(
            "model.calibration", target, e, th.ece_max, window, e > th.ece_max, f"online CTR ECE {e:.4f} over {on}"
        )
        out.measure(
            "model.ctr_ratio",
            target,
            ratio,
            th.ctr_ratio_max,
            window,
            ratio > th.ctr_ratio_max or ratio < 1 / th.ctr_ratio_max,
            f"predicted CTR {p.mean():.4f} vs realised {y.mean():.4f} ({ratio:.2f}x) over {on}",
        )
        if not np.isnan(a):
            out.measure("model.auc", target, a, th.auc_min, window, a < th.auc_min, f"online CTR AUC {a:.3f} ({on})")


def _conversion_checks(
    out: CheckResult, rows: pd.DataFrame, prefix: str, days: list[pd.Timestamp], window: Window, th: ModelQuality
) -> None:
    """Predicted / realised CVR (on clicked impressions) and GMV (on every impression), once enough orders are
    expected for the ratio to be more than noise: `min_orders` predicted by the model itself, so the gate does not
    depend on the outcome it judges (Poisson: at 30 expected orders a ratio of 2 is over 3 standard deviations)."""
    for target, g in _groups(rows, prefix) if len(rows) else []:
        clicked = g[g["clicked"] == 1]
        expected_orders = float(clicked["pcvr_shown"].sum())
        on = f"{_days(days)}, {target}"
        if expected_orders < th.min_orders:
            out.notes.append(
                f"online CVR/GMV {target}: {expected_orders:.1f} orders predicted on {len(clicked)} clicks < "
                f"{th.min_orders}, not judged"
            )
            continue
        realised = float(clicked["ordered"].sum())
        cvr_ratio = expected_orders / max(realised, 0.5)
        out.measure(
            "model.cvr_ratio",
            target,
            cvr_ratio,
            th.cvr_ratio_max,
            window,
            cvr_ratio > th.cvr_ratio_max or cvr_ratio < 1 / th.cvr_ratio_max,
            f"predicted CVR {expected_orders / len(clicked):.4f} vs realised {realised / len(clicked):.4f} "
            f"({cvr_ratio:.2f}x) on {len(clicked)} clicks of {on}",
        )
        predicted_gmv, realised_gmv = float(g["gmv_shown"].sum()), float(g["realised_gmv"].sum())
        if float(g["pctcvr_shown"].sum()) < th.min_orders:
            out.notes.append(f"online GMV {target}: under {th.min_orders} orders predicted, not judged")
            continue
        gmv_ratio = predicted_gmv / max(realised_gmv, 1e-6)
        out.measure(
            "model.gmv_ratio",
            target,
            gmv_ratio,
            th.gmv_ratio_max,
            window,
            gmv_ratio > th.gmv_ratio_max or gmv_ratio < 1 / th.gmv_ratio_max,
            f"predicted GMV {predicted_gmv:,.0f} vs realised {realised_gmv:,.0f} ({gmv_ratio:.2f}x) over "
            f"{len(g)} impressions of {on}",
        )
