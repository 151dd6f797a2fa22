"""An experiment's analysis from frames: exposures, the outcomes that landed, the oracle's truth, pre-period GMV.

`analyse(design, exposures, outcomes, truth, pre_gmv, window=..., watermark=..., now=...)` is pure (no files):
`serving/experiments/report.py` reads the frames from the state folder and writes what it returns, and a
benchmark can call it on frames it built itself.

Frames (extra columns are ignored):

- `exposures`: one row per served slot (the exposure log): request_id, served_at (UTC), user_id, arm,
  position, product_id, credit_arm; optional model_version, fallback, latency_ms.
- `outcomes`: one row per click or order linked to a served slot: request_id, product_id, kind (`click` or
  `order`), event_ts (UTC), gmv (orders; 0 for clicks).
- `truth` (optional, the oracle): one row per served slot: request_id, product_id, p_click,
  p_order_given_click, expected_gmv (= p_click x p_order x expected value).
- `pre_gmv` (optional): user_id, gmv: each user's GMV before the experiment started (CUPED's covariate).

Attribution: a click or order counts for the request whose slot it came from if it happened within `window`
of the request being served. A request is mature once `served_at + window <= watermark` (the time up to
which the landing zone is complete): only then can none of its outcomes still be on its way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from platform_common.experiment_summary import ArmSummary, ExperimentSummary, Guardrail, MetricSummary
from serving.experiments import stats

METRICS = ("gmv_per_request", "ctr", "cvr", "gmv_per_user")
# (numerator, denominator) of each ratio metric over user-level sums
RATIOS = {
    "gmv_per_request": ("gmv", "requests"),
    "ctr": ("clicks", "impressions"),
    "cvr": ("orders", "clicks"),
    "gmv_per_user": ("gmv", "one"),
}
TRUTH_RATIOS = {
    "gmv_per_request": ("t_gmv", "requests"),
    "ctr": ("t_clicks", "impressions"),
    "cvr": ("t_orders", "t_clicks"),
    "gmv_per_user": ("t_gmv", "one"),
}
SRM_ALPHA = 0.001  # a mismatch this unlikely means the split is broken, not unlucky
LATENCY_P99_RATIO = 1.25  # treatment p99 may exceed control's by 25% (plus LATENCY_SLACK_MS) before it fails
LATENCY_SLACK_MS = 5.0
CHECKPOINTS = 24


@dataclass(frozen=True)
class Design:
    """What the analysis needs of an experiment's definition (serving/experiments/model.py)."""

    id: str
    design: str  # ab | interleaving
    shares: dict[str, float]  # arm -> share of users (ab)
    control: str
    treatment: str
    start: datetime
    end: datetime | None = None  # when it ended (None: still running)
    planned_stop: datetime | None = None
    stopped_early: bool = False
    versions: dict[str, str] = field(default_factory=dict)  # arm -> target as defined (alias or version)


@dataclass
class Analysis:
    summary: ExperimentSummary
    arms: pd.DataFrame  # per arm: requests, users, impressions, clicks, orders, gmv, rates, truth
    timeline: pd.DataFrame  # cumulative headline lift by time: at, requests, lift, ci_low, ci_high, true_lift
    interleaving: pd.DataFrame | None  # per outcome: share won by treatment, interval, p-value
    notes: list[str]


def pick_arms(names: list[str]) -> tuple[str, str]:
    """Control and treatment: the arms so named, else the first two in the definition's order."""
    control = "control" if "control" in names else names[0]
    rest = [n for n in names if n != control]
    treatment = "treatment" if "treatment" in rest else rest[0]
    return control, treatment


def _attributed(exposures: pd.DataFrame, outcomes: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Outcomes on served slots within the attribution window, with the slot's request, user and credit arm."""
    slots = exposures[["request_id", "product_id", "served_at", "user_id", "arm", "credit_arm"]]
    joined = outcomes.merge(slots, on=["request_id", "product_id"], how="inner")
    late = joined["event_ts"].notna() & (joined["event_ts"] > joined["served_at"] + window)
    return joined[~late]


def _per_request(exposures: pd.DataFrame, attributed: pd.DataFrame, truth: pd.DataFrame | None) -> pd.DataFrame:
    """One row per request (and credit arm: A/B has one per request), outcome sums and truth sums."""
    keys = ["request_id", "credit_arm"]
    base = exposures.groupby(keys, sort=False).agg(
        user_id=("user_id", "first"),
        arm=("arm", "first"),
        served_at=("served_at", "first"),
        impressions=("position", "size"),
    )
    kind = attributed["kind"]
    sums = (
        attributed.assign(clicks=(kind == "click").astype(np.int64), orders=(kind == "order").astype(np.int64))
        .groupby(keys)
        .agg(clicks=("clicks", "sum"), orders=("orders", "sum"), gmv=("gmv", "sum"))
    )
    out = base.join(sums, how="left").fillna({"clicks": 0, "orders": 0, "gmv": 0.0})
    if truth is not None and len(truth):
        t = truth.merge(exposures[["request_id", "product_id", "credit_arm"]], on=["request_id", "product_id"])
        t = t.assign(t_orders=t["p_click"] * t["p_order_given_click"])
        tsum = t.groupby(keys).agg(
            t_clicks=("p_click", "sum"), t_orders=("t_orders", "sum"), t_gmv=("expected_gmv", "sum")
        )
        out = out.join(tsum, how="left")
    return out.reset_index()


def _users(requests: pd.DataFrame, by: str) -> pd.DataFrame:
    """User-level sums per `by` (the arm under A/B, the credit arm under interleaving)."""
    cols = {
        c: (c, "sum")
        for c in ("impressions", "clicks", "orders", "gmv", "t_clicks", "t_orders", "t_gmv")
        if c in requests
    }
    users = requests.groupby([by, "user_id"]).agg(requests=("request_id", "nunique"), **cols).reset_index()
    return users.assign(one=1.0)


def _truth_lift(users: pd.DataFrame, by: str, control: str, treatment: str, metric: str) -> float | None:
    num, den = TRUTH_RATIOS[metric]
    if num not in users or users[num].isna().all():
        return None
    sums = users.groupby(by)[[num, den]].sum()
    if control not in sums.index or treatment not in sums.index:
        return None
    t = sums.loc[treatment, num] / sums.loc[treatment, den]
    c = sums.loc[control, num] / sums.loc[control, den]
    return float(t / c - 1) if c > 0 and math.isfinite(t) else None


def _arm_table(users: pd.DataFrame, by: str) -> pd.DataFrame:
    sums = users.groupby(by).agg(
        requests=("requests", "sum"),
        users=("user_id", "nunique"),
        impressions=("impressions", "sum"),
        clicks=("clicks", "sum"),
        orders=("orders", "sum"),
        gmv=("gmv", "sum"),
        **({"t_gmv": ("t_gmv", "sum"), "t_clicks": ("t_clicks", "sum")} if "t_gmv" in users else {}),
    )
    sums["ctr"] = sums["clicks"] / sums["impressions"]
    sums["cvr"] = sums["orders"] / sums["clicks"].where(sums["clicks"] > 0)
    sums["gmv_per_request"] = sums["gmv"] / sums["requests"]
    sums["gmv_per_user"] = sums["gmv"] / sums["users"]
    if "t_gmv" in sums:
        sums["true_gmv_per_request"] = sums["t_gmv"] / sums["requests"]
        sums["true_ctr"] = sums["t_clicks"] / sums["impressions"]
    return sums


def _ab_lift(users: pd.DataFrame, control: str, treatment: str, metric: str) -> stats.Lift:
    num, den = RATIOS[metric]
    c, t = users[users["arm"] == control], users[users["arm"] == treatment]
    return stats.lift(
        stats.ratio(t[num].to_numpy(), t[den].to_numpy()), stats.ratio(c[num].to_numpy(), c[den].to_numpy())
    )


def _wide(users: pd.DataFrame, control: str, treatment: str) -> pd.DataFrame:
    """Interleaving: one row per user, each credit arm's sums side by side (0 where an arm got nothing)."""
    value_cols = [c for c in users.columns if c not in ("credit_arm", "user_id")]
    wide = users.pivot_table(index="user_id", columns="credit_arm", values=value_cols, aggfunc="sum", fill_value=0)
    for arm in (control, treatment):
        for col in value_cols:
            if (col, arm) not in wide.columns:
                wide[(col, arm)] = 0.0
    return wide


def _interleaving_lift(wide: pd.DataFrame, control: str, treatment: str, metric: str) -> stats.Lift:
    num, den = RATIOS[metric]
    if metric == "gmv_per_user":  # every user is in both arms: per user it is the credited GMV itself
        den = "one"
    return stats.paired_lift(
        wide[(num, treatment)].to_numpy(),
        wide[(den, treatment)].to_numpy() if den != "one" else np.ones(len(wide)),
        wide[(num, control)].to_numpy(),
        wide[(den, control)].to_numpy() if den != "one" else np.ones(len(wide)),
    )


def _timeline(requests: pd.DataFrame, d: Design, truth: bool) -> pd.DataFrame:
    """The headline's cumulative lift, interval and true lift on the requests served up to each checkpoint."""
    if requests.empty:
        return pd.DataFrame(columns=["at", "requests", "lift", "ci_low", "ci_high", "true_lift"])
    times = requests["served_at"].sort_values()
    cuts = times.quantile(np.linspace(0, 1, CHECKPOINTS + 1)[1:], interpolation="higher").unique()
    rows = []
    for at in cuts:
        upto = requests[requests["served_at"] <= at]
        if d.design == "ab":
            users = _users(upto, "arm")
            est = _ab_lift(users, d.control, d.treatment, "gmv_per_request")
            tl = _truth_lift(users, "arm", d.control, d.treatment, "gmv_per_request") if truth else None
        else:
            users = _users(upto, "credit_arm")
            est = _interleaving_lift(_wide(users, d.control, d.treatment), d.control, d.treatment, "gmv_per_request")
            tl = _truth_lift(users, "credit_arm", d.control, d.treatment, "gmv_per_request") if truth else None
        rows.append(
            {"at": at, "requests": int(upto["request_id"].nunique()), "lift": est.lift, "ci_low": est.ci_low,
             "ci_high": est.ci_high, "true_lift": tl}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _metric(est: stats.Lift, true_lift: float | None, **extra: float | None) -> MetricSummary:
    def clean(v: float) -> float:
        return float(v) if math.isfinite(v) else 0.0

    fields: dict[str, object] = {k: v for k, v in extra.items() if v is not None}
    # No outcome in an arm: no lift to estimate. The contract wants numbers, so the interval is the widest one
    # (-100% .. +1e9) with p = 1, and `estimable` says why.
    fields["estimable"] = math.isfinite(est.lift)
    return MetricSummary(
        lift=clean(est.lift),
        ci_low=clean(est.ci_low) if math.isfinite(est.ci_low) else -1.0,
        ci_high=float(est.ci_high) if math.isfinite(est.ci_high) else 1e9,
        p_value=min(max(est.p_value, 0.0), 1.0),
        true_lift=true_lift,
        control=est.control,
        treatment=est.treatment,
        **fields,
    )


def _guardrails(exposures: pd.DataFrame, d: Design, srm_p: float | None) -> list[Guardrail]:
    checks: list[Guardrail] = []
    if srm_p is not None:
        checks.append(
            Guardrail(
                name="sample ratio",
                passed=srm_p >= SRM_ALPHA,
                detail=f"chi-square p = {srm_p:.4g} (fails below {SRM_ALPHA})",
            )
        )
    requests = exposures.drop_duplicates(["request_id", "credit_arm"])
    by = "credit_arm"
    if "fallback" in requests:
        fell = requests.groupby(by)["fallback"].apply(lambda s: float(s.notna().mean()))
        worst = fell.max() if len(fell) else 0.0
        detail = ", ".join(f"{a} {v:.2%}" for a, v in fell.items())
        checks.append(Guardrail(name="arm errors (served by the champion instead)", passed=worst == 0.0, detail=detail))
    if "latency_ms" in requests and requests["latency_ms"].notna().any():
        p99 = requests.groupby(by)["latency_ms"].quantile(0.99)
        c, t = p99.get(d.control, math.nan), p99.get(d.treatment, math.nan)
        limit = c * LATENCY_P99_RATIO + LATENCY_SLACK_MS
        ok = not (math.isfinite(t) and math.isfinite(c)) or t <= limit
        checks.append(
            Guardrail(
                name="latency p99",
                passed=bool(ok),
                detail=f"{d.treatment} {t:.1f} ms vs {d.control} {c:.1f} ms (at most {limit:.1f} ms)",
            )
        )
    return checks


def readability(
    d: Design, requests: pd.DataFrame, window: timedelta, watermark: datetime | None, now: datetime
) -> tuple[bool, str]:
    """The fixed-horizon rule: read once the experiment ran to its planned stop and every request matured."""
    reasons = []
    if d.end is None or d.end > now:
        reasons.append("the experiment is still running (fixed horizon: read it after its planned stop)")
    elif d.planned_stop is None:
        reasons.append("no planned stop was set at the start: the horizon was not pre-registered")
    elif d.stopped_early:
        reasons.append(f"stopped before its planned stop {d.planned_stop.isoformat(timespec='seconds')}: peeking risk")
    if not requests.empty:
        last = requests["served_at"].max()
        due = last + window
        if watermark is None or due > watermark:
            mature = 0.0 if watermark is None else float((requests["served_at"] + window <= watermark).mean())
            reasons.append(
                f"outcomes still landing: {mature:.0%} of requests are past their {_fmt(window)} attribution window; "
                f"complete once the landing zone reaches {due.isoformat(timespec='seconds')}"
            )
    else:
        reasons.append("no exposures")
    if reasons:
        return False, "; ".join(reasons)
    return True, f"ran to its planned stop and every request is past its {_fmt(window)} attribution window"


def _fmt(window: timedelta) -> str:
    s = window.total_seconds()
    return f"{s / 3600:g} h" if s >= 3600 else f"{s / 60:g} min"


def analyse(
    d: Design,
    exposures: pd.DataFrame,
    outcomes: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    pre_gmv: pd.DataFrame | None = None,
    *,
    window: timedelta = timedelta(hours=24),
    watermark: datetime | None = None,
    now: datetime | None = None,
) -> Analysis:
    """The whole analysis of one experiment; see the module docstring for the frames."""
    now = now or datetime.now().astimezone()
    notes: list[str] = []
    exposures = exposures[exposures["arm"].notna()]
    attributed = _attributed(exposures, outcomes, window)
    requests = _per_request(exposures, attributed, truth)
    has_truth = "t_gmv" in requests and requests["t_gmv"].notna().any()
    if truth is not None and has_truth and requests["t_gmv"].isna().any():
        notes.append(f"{int(requests['t_gmv'].isna().sum())} requests have no oracle truth (served outside a live run)")

    if d.design == "ab":
        by = "arm"
        users = _users(requests, by)
        if pre_gmv is not None:
            x = pre_gmv.groupby("user_id")["gmv"].sum()
            users["pre_gmv"] = users["user_id"].map(x).fillna(0.0).to_numpy()
        arm_users = users.groupby(by)["user_id"].nunique().to_dict()
        srm_p: float | None = stats.srm_p_value({a: int(arm_users.get(a, 0)) for a in d.shares}, d.shares)
        metrics = {}
        for m in METRICS:
            est = _ab_lift(users, d.control, d.treatment, m)
            extra: dict[str, float | None] = {}
            if m == "gmv_per_request" and "pre_gmv" in users:
                c, t = users[users[by] == d.control], users[users[by] == d.treatment]
                adj, reduction = stats.cuped_lift(
                    t["gmv"].to_numpy(), t["requests"].to_numpy(), t["pre_gmv"].to_numpy(),
                    c["gmv"].to_numpy(), c["requests"].to_numpy(), c["pre_gmv"].to_numpy(),
                )  # fmt: skip
                if math.isfinite(adj.lift):
                    extra = {
                        "cuped_lift": adj.lift,
                        "cuped_ci_low": adj.ci_low,
                        "cuped_ci_high": adj.ci_high,
                        "cuped_p_value": adj.p_value,
                        "cuped_variance_reduction": reduction,
                    }
            tl = _truth_lift(users, by, d.control, d.treatment, m) if has_truth else None
            metrics[m] = _metric(est, tl, **extra)
        arms = _arm_table(users, by)
        inter = None
    else:
        by = "credit_arm"
        users = _users(requests, by)
        wide = _wide(users, d.control, d.treatment)
        srm_p = None
        metrics = {}
        for m in METRICS:
            est = _interleaving_lift(wide, d.control, d.treatment, m)
            tl = _truth_lift(users, by, d.control, d.treatment, m) if has_truth else None
            metrics[m] = _metric(est, tl)
        arms = _arm_table(users, by)
        rows = []
        for outcome in ("clicks", "orders", "gmv"):
            won, other = wide[(outcome, d.treatment)].to_numpy(), wide[(outcome, d.control)].to_numpy()
            share, lo, hi, p = stats.share(won, won + other)
            true_share = None
            if has_truth and outcome != "orders":
                tcol = {"clicks": "t_clicks", "gmv": "t_gmv"}[outcome]
                tt, tc = float(wide[(tcol, d.treatment)].sum()), float(wide[(tcol, d.control)].sum())
                true_share = tt / (tt + tc) if tt + tc > 0 else None
            if has_truth and outcome == "orders":
                tt, tc = float(wide[("t_orders", d.treatment)].sum()), float(wide[("t_orders", d.control)].sum())
                true_share = tt / (tt + tc) if tt + tc > 0 else None
            rows.append(
                {
                    "outcome": outcome,
                    "treatment_share": share,
                    "ci_low": lo,
                    "ci_high": hi,
                    "p_value": p,
                    "true_share": true_share,
                }
            )
        inter = pd.DataFrame(rows)

    arm_summaries = {}
    for arm in arms.index:
        versions = (
            exposures.loc[exposures[by] == arm, "model_version"].dropna().unique()
            if "model_version" in exposures
            else []
        )
        arm_summaries[str(arm)] = ArmSummary(
            model_version=str(versions[0]) if len(versions) == 1 else None,
            requests=int(arms.loc[arm, "requests"]),
            users=int(arms.loc[arm, "users"]),
            impressions=int(arms.loc[arm, "impressions"]),
            clicks=int(arms.loc[arm, "clicks"]),
            orders=int(arms.loc[arm, "orders"]),
            gmv=float(arms.loc[arm, "gmv"]),
            ctr=_finite(arms.loc[arm, "ctr"]),
            cvr=_finite(arms.loc[arm, "cvr"]),
            gmv_per_request=_finite(arms.loc[arm, "gmv_per_request"]),
            gmv_per_user=_finite(arms.loc[arm, "gmv_per_user"]),
            target=d.versions.get(str(arm)),
        )
    readable, reason = readability(d, requests, window, watermark, now)
    guardrails = _guardrails(exposures, d, srm_p)
    if srm_p is not None and srm_p < SRM_ALPHA:
        readable, reason = False, f"sample-ratio mismatch (p = {srm_p:.2g}): the split is broken; " + reason
    summary = ExperimentSummary(
        id=d.id,
        design=d.design,
        control=d.control,
        treatment=d.treatment,
        arms=arm_summaries,
        srm_p_value=srm_p,
        metrics=metrics,
        guardrails=guardrails,
        readable=readable,
        readable_reason=reason,
        window_seconds=window.total_seconds(),
        watermark=watermark.isoformat() if watermark else None,
        analysed_at=now.isoformat(),
        requests=int(requests["request_id"].nunique()),
        interleaving=inter.to_dict(orient="records") if inter is not None else None,
        notes=notes,
    )
    return Analysis(summary, arms, _timeline(requests, d, has_truth), inter, notes)


def _finite(value: object) -> float | None:
    v = float(value)  # type: ignore[arg-type]
    return v if math.isfinite(v) else None
