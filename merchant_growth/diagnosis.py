"""`diagnose(merchant_id, period_a, period_b, settings) -> DiagnosisReport`: why a merchant's GMV changed.

1. Funnel of both periods from `mg_merchant_funnel_daily` / `mg_product_funnel_daily`, decomposed exactly into
   traffic, CTR, CVR and AOV (merchant level, per surface, per product; see decomposition.py).
2. Evidence on the merchant's levers, each against the median change of its category peers (other merchants
   with the same main category): list price index, average discount, rating, share of days live.
3. Rules (below) turn evidence into findings; the strongest merchant finding is the primary cause.
4. Optionally, the ranking model's SHAP explanation of its impressions (explain.py).

Rules: a finding fires when |evidence| reaches its threshold; its strength is |evidence| / threshold.

| cause | evidence (merchant change minus peers' median change) | threshold |
|---|---|---|
| price_increase / price_decrease | relative change of the list price index (list price / price at listing) | +-10% |
| rating_drop / rating_rise | change of the mean daily rating | -+0.4 stars |
| started_live / stopped_live | change of the share of days live; live <= 5% (>= 50%) of the 28 days before | +-0.5 |
| discount_up / discount_down | change of the mean discount of its products | +-15 points |
| campaign_calendar (market) | change of the share of campaign days between the periods | 1/7 |
| category_trend (market) | relative change of the peers' GMV per day | +-30% |

Merchant findings (levers the merchant pulled) rank before market findings (the calendar, the category): a
merchant that raised prices during 11.11 is diagnosed with the price increase; the campaign is context.
The thresholds sit well above the simulator's noise (weekly price drift ~1-3%, rating AR(1) noise ~0.07 stars,
promotions) and below the planted effects (prices +20-30%, rating -0.8 to -1.2, live 0 -> every day).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from merchant_growth import data
from merchant_growth.decomposition import (
    ExactChange,
    FunnelCounts,
    decompose,
    decompose_segments,
    float_residual,
)
from merchant_growth.diagnosis_gate import channel_intervals, gate_findings
from merchant_growth.schemas import (
    FACTORS,
    Contributions,
    Decomposition,
    DiagnoseRequest,
    DiagnosisReport,
    Evidence,
    Finding,
    ModelExplanation,
    PartIntervals,
    Period,
    SegmentChange,
)
from merchant_growth.uncertainty import (
    N_BOOT,
    DayBootstrap,
    day_matrix,
    seed_for,
)
from platform_common.settings import Settings, get_settings

log = logging.getLogger("shoprank.merchant_growth")

DEFAULT_DAYS = 7
PRICE_THRESHOLD = 0.10
RATING_THRESHOLD = 0.40
LIVE_THRESHOLD = 0.50
LIVE_LOOKBACK_DAYS = 28
LIVE_NEVER = 0.05
LIVE_USUALLY = 0.50
DISCOUNT_THRESHOLD = 0.15
CAMPAIGN_THRESHOLD = 1 / 7
CATEGORY_THRESHOLD = 0.30
SURFACES = ("home_feed", "short_video", "live_stream", "search")


def resolve_periods(request: DiagnoseRequest, bounds: tuple[Any, Any]) -> tuple[Period, Period]:
    """Fill in default periods, then check both lie inside the data."""
    lo, hi = bounds
    period_b = request.period_b or Period(start=max(lo, hi - timedelta(days=DEFAULT_DAYS - 1)), end=hi)
    if request.period_a is not None:
        period_a = request.period_a
    else:
        end = period_b.start - timedelta(days=1)
        if end < lo:
            raise data.InvalidPeriodError(f"no data before period_b ({period_b}) to compare it with")
        period_a = Period(start=max(lo, end - timedelta(days=period_b.days - 1)), end=end)
    data.check_period(period_a, "period_a", bounds)
    data.check_period(period_b, "period_b", bounds)
    return period_a, period_b


def _counts(frame: pd.DataFrame, days: int) -> FunnelCounts:
    return FunnelCounts.from_rows(frame["impressions"], frame["clicks"], frame["orders"], frame["gmv"], days)


def _segment(
    key: str,
    change: ExactChange,
    a: FunnelCounts | None,
    b: FunnelCounts | None,
    intervals: PartIntervals | None = None,
) -> SegmentChange:
    return SegmentChange(
        intervals=intervals,
        segment=key,
        gmv_per_day_a=float(change.gmv_per_day_a),
        gmv_per_day_b=float(change.gmv_per_day_b),
        delta=float(change.delta),
        contributions=change.contributions(),
        funnel_a=a.totals() if a else None,
        funnel_b=b.totals() if b else None,
    )


def _by_key(frame: pd.DataFrame, key: str, days: int) -> dict[str, FunnelCounts]:
    return {str(k): _counts(group, days) for k, group in frame.groupby(key, sort=True)}


def decomposition_for(
    settings: Settings,
    merchant_id: str,
    period_a: Period,
    period_b: Period,
    top: int,
    source: data.FunnelSource = "auto",
    n_boot: int = N_BOOT,
) -> tuple[Decomposition, FunnelCounts, FunnelCounts, dict[str, ExactChange]]:
    """Merchant, surface and product decompositions, all summed exactly from the same product x day x surface
    rows, so the surface deltas and the product deltas each add up to the merchant's delta exactly; each with
    bootstrap intervals over the same resampled days (uncertainty.py)."""
    rows = data.product_funnel_rows(settings, merchant_id, period_a.start, period_b.end, source)
    in_a = rows[rows["activity_date"].between(period_a.start, period_a.end)]
    in_b = rows[rows["activity_date"].between(period_b.start, period_b.end)]
    boot = DayBootstrap(period_a.days, period_b.days, seed_for(merchant_id, period_a, period_b), n_boot)
    dates_a, dates_b = period_a.dates(), period_b.dates()

    def intervals(mask_a: pd.Series | None = None, mask_b: pd.Series | None = None) -> PartIntervals:
        sub_a = in_a if mask_a is None else in_a[mask_a]
        sub_b = in_b if mask_b is None else in_b[mask_b]
        return boot.intervals(day_matrix(sub_a, dates_a), day_matrix(sub_b, dates_b))

    total_a, total_b = _counts(in_a, period_a.days), _counts(in_b, period_b.days)
    total = decompose(total_a, total_b)

    surf_a, surf_b = _by_key(in_a, "surface", period_a.days), _by_key(in_b, "surface", period_b.days)
    for s in SURFACES:
        surf_a.setdefault(s, FunnelCounts.zero(period_a.days))
        surf_b.setdefault(s, FunnelCounts.zero(period_b.days))
    by_surface = decompose_segments(surf_a, surf_b, period_a.days, period_b.days)

    prod_a, prod_b = _by_key(in_a, "product_id", period_a.days), _by_key(in_b, "product_id", period_b.days)
    by_product = decompose_segments(prod_a, prod_b, period_a.days, period_b.days)
    ranked = sorted(by_product, key=lambda k: (-abs(by_product[k].delta), -by_product[k].gmv_per_day_b, k))
    products = [
        _segment(
            k,
            by_product[k],
            prod_a.get(k),
            prod_b.get(k),
            intervals(in_a["product_id"] == k, in_b["product_id"] == k),
        )
        for k in ranked[:top]
    ]
    rest = ranked[top:]
    if rest:
        products.append(
            _segment(
                f"other products ({len(rest)})",
                sum_changes([by_product[k] for k in rest]),
                None,
                None,
                intervals(in_a["product_id"].isin(rest), in_b["product_id"].isin(rest)),
            )
        )
    for name, parts in (("surfaces", by_surface.values()), ("products", by_product.values())):
        if sum(ch.delta for ch in parts) != total.delta:
            raise ArithmeticError(f"the {name} do not add up to the merchant's change")  # pragma: no cover

    total_intervals = intervals()
    result = Decomposition(
        gmv_per_day_a=float(total.gmv_per_day_a),
        gmv_per_day_b=float(total.gmv_per_day_b),
        delta=float(total.delta),
        relative_change=float(total.delta / total.gmv_per_day_a) if total.gmv_per_day_a else None,
        contributions=total.contributions(),
        residual=float_residual(total),
        by_surface=[
            _segment(s, by_surface[s], surf_a[s], surf_b[s], intervals(in_a["surface"] == s, in_b["surface"] == s))
            for s in SURFACES
        ],
        by_product=products,
        intervals=total_intervals,
        distinguishable_parts=total_intervals.distinguishable(),
    )
    return result, total_a, total_b, by_surface


def sum_changes(changes: list[ExactChange]) -> ExactChange:
    total = changes[0]
    for ch in changes[1:]:
        total = total + ch
    return total


def _period_mean(frame: pd.DataFrame, column: str, period: Period) -> pd.Series:
    rows = frame[frame["feature_date"].between(period.start, period.end)]
    return rows.groupby("merchant_id")[column].mean()


def lever_evidence(
    settings: Settings, merchant_id: str, peers: list[str], period_a: Period, period_b: Period
) -> dict[str, Evidence]:
    lookback = Period(
        start=max(data.data_bounds(settings)[0], period_b.start - timedelta(days=LIVE_LOOKBACK_DAYS)),
        end=max(period_b.start - timedelta(days=1), period_a.start),
    )
    levers = data.merchant_levers(settings, [merchant_id, *peers], min(lookback.start, period_a.start), period_b.end)
    specs = {
        "list_price_index": ("Mean list price / catalogue price at listing of its products", True),
        "discount_avg": ("Mean discount of its products", False),
        "rating": ("Mean daily rating", False),
        "live_share": ("Share of days it live-streamed", False),
    }
    levers = levers.rename(columns={"is_live": "live_share"})
    levers["live_share_lookback"] = levers["live_share"]
    specs["live_share_lookback"] = (
        f"Share of days live: the {LIVE_LOOKBACK_DAYS} days before period b (a) vs period b (b)",
        False,
    )
    out: dict[str, Evidence] = {}
    for metric, (description, relative) in specs.items():
        a = _period_mean(levers, metric, lookback if metric == "live_share_lookback" else period_a)
        b = _period_mean(levers, metric, period_b)
        change = (b / a - 1.0) if relative else (b - a)
        change = change.replace([np.inf, -np.inf], np.nan)
        peer_changes = change.drop(merchant_id, errors="ignore").dropna()
        peers_change = float(peer_changes.median()) if len(peer_changes) else 0.0
        mine = change.get(merchant_id, np.nan)
        ma, mb = a.get(merchant_id, np.nan), b.get(merchant_id, np.nan)
        out[metric] = Evidence(
            metric=metric,
            description=description,
            merchant_a=None if pd.isna(ma) else float(ma),
            merchant_b=None if pd.isna(mb) else float(mb),
            change=None if pd.isna(mine) else float(mine),
            peers_change=peers_change,
            change_vs_peers=None if pd.isna(mine) else float(mine) - peers_change,
            relative=relative,
        )
    return out


def _fmt_change(ev: Evidence) -> str:
    if ev.relative:
        return f"{ev.change:+.1%} (peers {ev.peers_change:+.1%})"
    return f"{ev.merchant_a:.2f} -> {ev.merchant_b:.2f} ({ev.change:+.2f}; peers {ev.peers_change:+.2f})"


def apply_rules(
    evidence: dict[str, Evidence],
    total: Contributions,
    live_traffic: tuple[float, float],
    campaign_share: tuple[float, float],
    peers_gmv: tuple[float, float],
) -> list[Finding]:
    """The documented rules; merchant findings first, each group strongest first."""
    findings: list[Finding] = []
    conversion = total.ctr + total.cvr
    has_funnel = any(abs(getattr(total, f)) > 0 for f in ("traffic", "ctr", "cvr", "aov"))

    price = evidence["list_price_index"]
    if price.change_vs_peers is not None and abs(price.change_vs_peers) >= PRICE_THRESHOLD:
        up = price.change_vs_peers > 0
        findings.append(
            Finding(
                cause="price_increase" if up else "price_decrease",
                kind="merchant",
                strength=abs(price.change_vs_peers) / PRICE_THRESHOLD,
                summary=f"List prices {'rose' if up else 'fell'} {_fmt_change(price)}: price-sensitive shoppers "
                f"click and buy {'less' if up else 'more'}.",
                evidence=["list_price_index"],
                consistent_with_funnel=((conversion < 0) == up) if has_funnel else None,
            )
        )
    rating = evidence["rating"]
    if rating.change_vs_peers is not None and abs(rating.change_vs_peers) >= RATING_THRESHOLD:
        down = rating.change_vs_peers < 0
        findings.append(
            Finding(
                cause="rating_drop" if down else "rating_rise",
                kind="merchant",
                strength=abs(rating.change_vs_peers) / RATING_THRESHOLD,
                summary=f"The shop rating {'dropped' if down else 'rose'} {_fmt_change(rating)}: conversion "
                f"(and clicks, less so) follow the rating.",
                evidence=["rating"],
                consistent_with_funnel=((conversion < 0) == down) if has_funnel else None,
            )
        )
    live, history = evidence["live_share"], evidence["live_share_lookback"]
    if live.change_vs_peers is not None and live.merchant_b is not None and history.merchant_a is not None:
        # started: (almost) never live in the weeks before b, live most of b; stopped: the reverse
        started = live.change_vs_peers >= LIVE_THRESHOLD and history.merchant_a <= LIVE_NEVER
        stopped = (
            live.change_vs_peers <= -LIVE_THRESHOLD
            and live.merchant_b <= LIVE_NEVER
            and history.merchant_a >= LIVE_USUALLY
        )
        if started or stopped:
            live_a, live_b = live_traffic
            findings.append(
                Finding(
                    cause="started_live" if started else "stopped_live",
                    kind="merchant",
                    strength=abs(live.change_vs_peers) / LIVE_THRESHOLD,
                    summary=f"It {'started' if started else 'stopped'} live-streaming: live on "
                    f"{history.merchant_a:.0%} of the {LIVE_LOOKBACK_DAYS} days before period b and "
                    f"{live.merchant_b:.0%} of period b; live_stream impressions per day {live_a:.1f} -> {live_b:.1f}.",
                    evidence=["live_share", "live_share_lookback"],
                    consistent_with_funnel=(live_b > live_a) == started if (live_a or live_b) else None,
                )
            )
    discount = evidence["discount_avg"]
    if discount.change_vs_peers is not None and abs(discount.change_vs_peers) >= DISCOUNT_THRESHOLD:
        up = discount.change_vs_peers > 0
        findings.append(
            Finding(
                cause="discount_up" if up else "discount_down",
                kind="merchant",
                strength=abs(discount.change_vs_peers) / DISCOUNT_THRESHOLD,
                summary=f"Average discount {'deepened' if up else 'shrank'}: {_fmt_change(discount)}.",
                evidence=["discount_avg"],
                consistent_with_funnel=((conversion > 0) == up) if has_funnel else None,
            )
        )
    share_a, share_b = campaign_share
    if abs(share_b - share_a) >= CAMPAIGN_THRESHOLD - 1e-9:
        more = share_b > share_a
        findings.append(
            Finding(
                cause="campaign_calendar",
                kind="market",
                strength=abs(share_b - share_a) / CAMPAIGN_THRESHOLD,
                summary=f"Campaign days were {share_a:.0%} of period a and {share_b:.0%} of period b: sales lift "
                f"traffic, clicks and orders for everyone.",
                evidence=["campaign_days"],
                consistent_with_funnel=((total.traffic > 0) == more) if has_funnel else None,
            )
        )
    peers_a, peers_b = peers_gmv
    if peers_a > 0:
        trend = peers_b / peers_a - 1.0
        if abs(trend) >= CATEGORY_THRESHOLD:
            findings.append(
                Finding(
                    cause="category_trend",
                    kind="market",
                    strength=abs(trend) / CATEGORY_THRESHOLD,
                    summary=f"The whole category moved: peers' GMV per day {trend:+.0%}.",
                    evidence=["peers_gmv_per_day"],
                )
            )
    findings.sort(key=lambda f: (f.kind != "merchant", -f.strength))
    return findings


def _part(dec: Decomposition, name: str, label: str) -> str:
    value = getattr(dec.contributions, name)
    if dec.intervals is None:
        return f"{label} {value:+,.2f}"
    return f"{label} {value:+,.2f} {getattr(dec.intervals, name)}"


def _summary(dec: Decomposition, findings: list[Finding], primary: str) -> str:
    rel = f" ({dec.relative_change:+.0%})" if dec.relative_change is not None else ""
    level = f"{dec.intervals.level:.0%} intervals" if dec.intervals else "no intervals"
    text = (
        f"GMV per day went from ${dec.gmv_per_day_a:,.2f} to ${dec.gmv_per_day_b:,.2f}{rel}: "
        + ", ".join(
            _part(dec, name, label)
            for name, label in zip(FACTORS, ("traffic", "CTR", "CVR", "order value"), strict=True)
        )
        + f" (USD per day, {level} from a bootstrap over days)."
    )
    distinguishable = dec.distinguishable_parts
    text += (
        f" Parts beyond noise: {', '.join(distinguishable)}."
        if distinguishable
        else " No part of the GMV change is beyond noise on its own."
    )
    by_cause: dict[str, Finding] = {f.cause: f for f in findings}
    if primary in by_cause:
        f = by_cause[primary]
        text += f" Most likely cause: {primary} - {f.summary}"
        if f.channel_vs_peers is not None:
            text += f" Its {f.funnel_channel} moved beyond noise against the market: log change {f.channel_vs_peers}."
        others = [f.cause for f in findings if f.cause != primary]
        if others:
            text += " Also: " + "; ".join(others) + "."
    elif primary == "within_noise":
        moved = [f for f in findings if f.kind == "merchant"]
        if moved:
            text += (
                " No cause named: "
                + "; ".join(f"{f.cause} (its {f.funnel_channel} part is within noise)" for f in moved)
                + "."
            )
        else:
            text += " The change is within noise."
        context = [f.cause for f in findings if f.kind == "market"]
        if context:
            text += " Context: " + "; ".join(context) + "."
    else:
        text += " No lever moved beyond its threshold: no observed lever explains the change."
    return text


def diagnose(
    merchant_id: str,
    period_a: Period | tuple | dict | str | None = None,
    period_b: Period | tuple | dict | str | None = None,
    settings: Settings | None = None,
    *,
    top_products: int = 10,
    explain_with_model: bool = True,
    max_model_rows: int = 2000,
    funnel_source: data.FunnelSource = "auto",
    n_boot: int = N_BOOT,
    store: Any = None,
) -> DiagnosisReport:
    """Diagnose a merchant's GMV change from period_a (baseline) to period_b.

    Raises pydantic.ValidationError (bad input, 400), merchant_growth.errors.InvalidPeriodError (periods outside
    the data, 400), UnknownMerchantError (404) and NotReadyError (marts missing, 503).
    """
    request = DiagnoseRequest(
        merchant_id=merchant_id,
        period_a=period_a,
        period_b=period_b,
        top_products=top_products,
        explain_with_model=explain_with_model,
        max_model_rows=max_model_rows,
        funnel_source=funnel_source,
        n_boot=n_boot,
    )
    return diagnose_request(request, settings, store=store)


def diagnose_request(request: DiagnoseRequest, settings: Settings | None = None, store: Any = None) -> DiagnosisReport:
    settings = settings or get_settings()
    source = data.resolve_source(settings, request.funnel_source)
    bounds = data.data_bounds(settings, source)
    info = data.merchant_info(settings, request.merchant_id, source)
    period_a, period_b = resolve_periods(request, bounds)
    mid = info.merchant_id
    peers = [m for m in data.category_merchants(settings, info.main_category_l1, source) if m != mid]
    notes: list[str] = []

    funnel = data.merchant_funnel(settings, [mid, *peers], period_a.start, period_b.end, source)
    decomposition, total_a, total_b, _ = decomposition_for(
        settings, mid, period_a, period_b, request.top_products, source, request.n_boot
    )
    evidence = lever_evidence(settings, mid, peers, period_a, period_b)
    own = funnel[(funnel["merchant_id"] == mid) & (funnel["surface"] == "live_stream")]
    live_traffic = (
        float(own[own["activity_date"].between(period_a.start, period_a.end)]["impressions"].sum()) / period_a.days,
        float(own[own["activity_date"].between(period_b.start, period_b.end)]["impressions"].sum()) / period_b.days,
    )
    camp_a, camp_b = data.campaign_days(settings, period_a), data.campaign_days(settings, period_b)
    peer_rows = funnel[funnel["merchant_id"] != mid]
    peers_gmv = (
        float(peer_rows[peer_rows["activity_date"].between(period_a.start, period_a.end)]["gmv"].sum()) / period_a.days,
        float(peer_rows[peer_rows["activity_date"].between(period_b.start, period_b.end)]["gmv"].sum()) / period_b.days,
    )
    findings = apply_rules(
        evidence,
        decomposition.contributions,
        live_traffic,
        (camp_a / period_a.days, camp_b / period_b.days),
        peers_gmv,
    )
    channels = channel_intervals(settings, mid, period_a, period_b, source, request.n_boot)
    findings, primary = gate_findings(findings, decomposition, channels)
    merchant_findings = [f for f in findings if f.kind == "merchant"]
    if total_a.orders + total_b.orders < 10:
        notes.append(
            f"only {total_a.orders + total_b.orders} orders in the two periods: the CVR and AOV parts of the "
            "decomposition are noisy (see their intervals); the lever evidence does not depend on orders"
        )
    if source == "events" and not data.panel_path(settings).exists():
        notes.append("funnel from the event-level marts: no merchant panel under merchant_panels/ (run make data)")
    if not merchant_findings and findings:
        notes.append("no merchant lever moved beyond its threshold; the findings are market context")

    explanations: list[ModelExplanation] = []
    if request.explain_with_model:
        try:
            if store is None:
                from platform_common.feast_config import get_feature_store

                store = get_feature_store(settings)
            explanations, more = _explain(settings, store, mid, peers, period_a, period_b, request.max_model_rows)
            notes.extend(more)
        except Exception as exc:  # the diagnosis stands without the model; say why it is missing
            log.warning("model explanation skipped: %s", exc)
            notes.append(f"model explanation skipped: {type(exc).__name__}: {exc}")

    return DiagnosisReport(
        merchant_id=mid,
        main_category_l1=info.main_category_l1,
        merchant_tier=info.tier,
        period_a=period_a,
        period_b=period_b,
        data_start_date=bounds[0],
        data_end_date=bounds[1],
        peers=len(peers),
        funnel_a=total_a.totals(),
        funnel_b=total_b.totals(),
        decomposition=decomposition,
        evidence=list(evidence.values()),
        findings=findings,
        primary_cause=primary,
        funnel_source=source,
        campaign_days_a=camp_a,
        campaign_days_b=camp_b,
        model_explanations=explanations,
        notes=notes,
        summary=_summary(decomposition, findings, primary),
    )


def _explain(*args: Any) -> tuple[list[ModelExplanation], list[str]]:
    """Imported lazily: the model libraries load only when an explanation is asked for."""
    from merchant_growth.explain import explain_merchant

    return explain_merchant(*args)
