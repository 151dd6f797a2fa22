"""Offline evaluation of a ranker bundle on a frozen test window, against the simulator's oracle.

Classification: AUC, log loss and ECE of each head beside the oracle's. Ranking: for every request in the
test window, our ordering of its candidates versus the oracle's ordering and a popularity baseline, valued
with the oracle's true expected GMV under the surface's true position bias (so a ranking is judged by what
it would have earned, not by the few orders the logged ranking happened to produce).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from platform_common.feature_spec import SERVING_POSITION
from training.bundle import CvrMethod, RankerBundle
from training.metrics import binary_metrics, expected_calibration_error

TOP_K = 10


@dataclass(frozen=True)
class Scored:
    """Test rows with model scores at the logged position and at the serving position, and the truth."""

    rows: pd.DataFrame
    logged: dict[str, np.ndarray]
    top_slot: dict[str, np.ndarray]
    truth: pd.DataFrame
    true_value: np.ndarray  # oracle expected GMV in slot 1


def score(bundle: RankerBundle, rows: pd.DataFrame, truth: pd.DataFrame, true_value: np.ndarray) -> Scored:
    assert bundle.spec is not None
    x = bundle.spec.frame_matrix(rows)
    with bundle.predict_threads(len(os.sched_getaffinity(0))):
        logged = bundle.score_matrix(x)
        if "position" in bundle.spec.columns:
            # The same matrix with every row at the serving slot (what frame_matrix makes of a frame with
            # position=SERVING_POSITION), without a second copy of the test frame: it is millions of rows at scale.
            x[:, bundle.spec.columns.index("position")] = SERVING_POSITION
        top = bundle.score_matrix(x)
    if "pctcvr" in top:
        top["expected_gmv"] = bundle.expected_gmv(top["pctcvr"], rows["price"].to_numpy(dtype=float), x)
    return Scored(rows.reset_index(drop=True), logged, top, truth.reset_index(drop=True), true_value)


def classification_metrics(s: Scored) -> dict[str, float]:
    y_click = s.rows["clicked"].to_numpy()
    y_conv = s.rows["converted"].to_numpy()
    p_click, p_cvr = s.truth["p_click"].to_numpy(), s.truth["p_order_given_click"].to_numpy()
    m = binary_metrics(y_click, s.logged["pctr"], "test") | binary_metrics(y_click, p_click, "oracle")
    m["test_ece_vs_oracle"] = expected_calibration_error(p_click, s.logged["pctr"])
    if "pcvr" in s.logged:
        clicked = y_click == 1
        m |= binary_metrics(y_conv[clicked], s.logged["pcvr"][clicked], "cvr_test")
        m |= binary_metrics(y_conv[clicked], p_cvr[clicked], "cvr_oracle")
        m["cvr_test_ece_vs_oracle"] = expected_calibration_error(p_cvr, s.logged["pcvr"])
        m["cvr_test_ece_vs_oracle_clicked"] = expected_calibration_error(p_cvr[clicked], s.logged["pcvr"][clicked])
        m["cvr_entire_space_mae"] = float(np.mean(np.abs(s.logged["pcvr"] - p_cvr)))
        m |= binary_metrics(y_conv, s.logged["pctcvr"], "ctcvr_test")
        m |= binary_metrics(y_conv, p_click * p_cvr, "ctcvr_oracle")
    m["normalized_lift"] = (m["test_auc"] - 0.5) / (m["oracle_auc"] - 0.5)
    return m


def _dcg(values: np.ndarray, discounts: np.ndarray) -> float:
    return float(np.sum(values[: len(discounts)] * discounts[: len(values)]))


def ranking_metrics(s: Scored, eta: dict[str, float], k: int = TOP_K) -> dict[str, float]:
    """GMV@k (expected GMV under true position bias) and NDCG@k with true values as gains, per policy."""
    policies = {"model": s.top_slot.get("expected_gmv", s.top_slot["pctr"])}
    policies["popularity"] = np.nan_to_num(s.rows["product_gmv_30d"].to_numpy(dtype=float), nan=0.0)
    policies["oracle"] = s.true_value
    totals = {name: 0.0 for name in policies}
    ndcg = {name: 0.0 for name in policies}
    n_requests = 0
    frame = pd.DataFrame({"request_id": s.rows["request_id"], "surface": s.rows["surface"]})
    for _, idx in frame.groupby("request_id", sort=False).indices.items():
        if len(idx) < 2:
            continue
        n_requests += 1
        surface = str(s.rows["surface"].iat[idx[0]])
        exam = np.arange(1, k + 1, dtype=float) ** -eta[surface]
        log_disc = 1.0 / np.log2(np.arange(2, k + 2))
        value = s.true_value[idx]
        ideal = _dcg(np.sort(value)[::-1], log_disc)
        for name, scores in policies.items():
            order = np.argsort(-scores[idx], kind="stable")
            totals[name] += _dcg(value[order], exam)
            ndcg[name] += _dcg(value[order], log_disc) / ideal if ideal > 0 else 0.0
    if n_requests == 0:
        raise ValueError("no test request has two or more candidates: cannot evaluate ranking")
    out = {"ranking_requests": float(n_requests)}
    for name in policies:
        out[f"gmv_at_{k}_{name}"] = totals[name] / n_requests
        out[f"ndcg_at_{k}_{name}"] = ndcg[name] / n_requests
    out[f"gmv_at_{k}_ratio_to_oracle"] = totals["model"] / totals["oracle"]
    out[f"gmv_at_{k}_popularity_ratio_to_oracle"] = totals["popularity"] / totals["oracle"]
    return out


def slice_masks(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    masks = {f"surface={s}": (rows["surface"] == s).to_numpy() for s in sorted(rows["surface"].unique())}
    campaign = rows["is_campaign_day"].to_numpy() == 1
    masks["campaign_day"], masks["normal_day"] = campaign, ~campaign
    new_user = rows["user_impressions_30d"].fillna(0).to_numpy() == 0
    masks["new_user"], masks["returning_user"] = new_user, ~new_user
    return masks


def slice_metrics(s: Scored) -> dict[str, float]:
    out: dict[str, float] = {}
    y = s.rows["clicked"].to_numpy()
    for name, mask in slice_masks(s.rows).items():
        if mask.sum() < 50 or y[mask].min() == y[mask].max():
            continue  # too small or one class: an AUC there would be noise, not a finding
        key = name.replace("=", "_")
        out[f"slice_{key}_rows"] = float(mask.sum())
        out[f"slice_{key}_auc"] = binary_metrics(y[mask], s.logged["pctr"][mask], "x")["x_auc"]
        out[f"slice_{key}_oracle_auc"] = binary_metrics(y[mask], s.truth["p_click"].to_numpy()[mask], "x")["x_auc"]
    return out


DAY_KINDS = ("normal", "campaign", "mega")


def day_kinds(rows: pd.DataFrame, calendar: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(day kind, campaign name or "") of each row's UTC day, from the campaign calendar mart."""
    day = pd.to_datetime(rows["event_timestamp"], utc=True).dt.date
    by_date = calendar.set_index(pd.to_datetime(calendar["calendar_date"]).dt.date)
    name = day.map(by_date["campaign_name"]).fillna("").astype(str).to_numpy()
    mega = day.isin(set(by_date.index[by_date["is_mega_sale"].astype(bool).to_numpy()])).to_numpy()
    kind = np.where(name == "", "normal", np.where(mega, "mega", "campaign"))
    return kind, name


def _subset(s: Scored, mask: np.ndarray) -> Scored:
    def pick(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[mask] for k, v in d.items()}

    return Scored(
        s.rows[mask].reset_index(drop=True),
        pick(s.logged),
        pick(s.top_slot),
        s.truth[mask].reset_index(drop=True),
        s.true_value[mask],
    )


def calendar_slices(s: Scored, eta: dict[str, float], calendar: pd.DataFrame) -> list[dict[str, float | str]]:
    """The headline figures per day kind (normal, campaign, mega) and per campaign day of the test window.

    A mega sale moves prices, discounts and intent at once: a model calibrated on ordinary days can be badly off
    on the days that carry the most GMV, and the whole-window figure hides it (issue 18).
    """
    kind, name = day_kinds(s.rows, calendar)
    groups = [(f"day_kind={k}", kind == k) for k in DAY_KINDS]
    groups += [(f"campaign={c}", name == c) for c in sorted(set(name) - {""})]
    out: list[dict[str, float | str]] = []
    for label, mask in groups:
        if mask.sum() == 0:
            continue
        part = _subset(s, mask)
        row: dict[str, float | str] = {"slice": label, "rows": float(mask.sum())}
        y = part.rows["clicked"].to_numpy()
        p_click = part.truth["p_click"].to_numpy()
        row["ctr_auc"] = binary_metrics(y, part.logged["pctr"], "x")["x_auc"] if 0 < y.sum() < len(y) else np.nan
        row["ctr_ece_vs_oracle"] = expected_calibration_error(p_click, part.logged["pctr"])
        if "pcvr" in part.logged:
            p_cvr = part.truth["p_order_given_click"].to_numpy()
            row["cvr_ece_vs_oracle"] = expected_calibration_error(p_cvr, part.logged["pcvr"])
            # The head's own population: p(order | click) is what pCTR x pCVR needs (docs/calendar_models.md).
            clicked = y == 1
            if clicked.any():
                row["cvr_ece_vs_oracle_clicked"] = expected_calibration_error(
                    p_cvr[clicked], part.logged["pcvr"][clicked]
                )
        try:
            ranking = ranking_metrics(part, eta)
            row["ranking_requests"] = ranking["ranking_requests"]
            row["gmv_at_10_ratio_to_oracle"] = ranking[f"gmv_at_{TOP_K}_ratio_to_oracle"]
        except ValueError:  # no request with two candidates in this slice
            row["ranking_requests"], row["gmv_at_10_ratio_to_oracle"] = 0.0, np.nan
        out.append(row)
    return out


def compare_cvr_methods(bundle: RankerBundle, rows: pd.DataFrame, truth: pd.DataFrame) -> dict[CvrMethod, dict]:
    """CTCVR quality of each way of deriving pCVR/pCTCVR from the heads, judged on every impression."""
    assert bundle.spec is not None
    raw = bundle.head_scores(bundle.spec.frame_matrix(rows))
    y_conv = rows["converted"].to_numpy()
    true_cvr = truth["p_order_given_click"].to_numpy()
    true_ctcvr = truth["p_click"].to_numpy() * true_cvr
    out: dict[CvrMethod, dict] = {}
    for method in ("clicked_only", "ctcvr_over_ctr"):
        p = bundle.combine(raw, method)
        m = binary_metrics(y_conv, p["pctcvr"], "ctcvr")
        m["ctcvr_mae_vs_oracle"] = float(np.mean(np.abs(p["pctcvr"] - true_ctcvr)))
        m["cvr_mae_vs_oracle"] = float(np.mean(np.abs(p["pcvr"] - true_cvr)))
        m["cvr_corr_vs_oracle"] = float(np.corrcoef(p["pcvr"], true_cvr)[0, 1])
        out[method] = m
    return out
