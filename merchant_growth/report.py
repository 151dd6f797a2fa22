"""`make diagnose MERCHANT=<id>`: the diagnosis (and forecast, when a champion exists) as one HTML file.

Plots are matplotlib PNGs embedded as base64, so the file is self-contained:
funnel waterfall, contributions by surface and by product, model (SHAP) feature-group gaps, GMV history with
the two periods and the forecast band.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from merchant_growth import data  # noqa: E402
from merchant_growth.schemas import (  # noqa: E402
    FACTORS,
    DiagnosisReport,
    ForecastResponse,
    PartIntervals,
    SegmentChange,
)
from platform_common.settings import Settings  # noqa: E402

COLORS = {"traffic": "#3d5a80", "ctr": "#98c1d9", "cvr": "#ee6c4d", "aov": "#8d99ae"}
LABELS = {"traffic": "traffic", "ctr": "CTR", "cvr": "CVR", "aov": "order value"}


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def waterfall(report: DiagnosisReport) -> str:
    dec = report.decomposition
    steps = [(LABELS[f], getattr(dec.contributions, f)) for f in FACTORS]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(0, dec.gmv_per_day_a, color="#293241")
    level = dec.gmv_per_day_a
    for i, (_, value) in enumerate(steps, start=1):
        ax.bar(i, value, bottom=level, color="#2a9d8f" if value >= 0 else "#e76f51")
        ax.text(i, level + max(value, 0), f"{value:+.2f}", ha="center", va="bottom", fontsize=8)
        level += value
    ax.bar(len(steps) + 1, dec.gmv_per_day_b, color="#293241")
    ax.set_xticks(range(len(steps) + 2), ["GMV/day a", *[s[0] for s in steps], "GMV/day b"])
    ax.margins(y=0.12)
    ax.set_ylabel("USD per day")
    ax.set_title(f"{report.merchant_id}: GMV per day {report.period_a} -> {report.period_b}")
    return _png(fig)


def stacked_segments(segments: list[SegmentChange], title: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(segments) + 1.2))
    names = [s.segment for s in segments][::-1]
    pos = [0.0] * len(names)
    neg = [0.0] * len(names)
    for factor in FACTORS:
        values = [getattr(s.contributions, factor) for s in segments][::-1]
        left = [p if v >= 0 else n for v, p, n in zip(values, pos, neg, strict=True)]
        ax.barh(names, values, left=left, color=COLORS[factor], label=LABELS[factor])
        pos = [p + max(v, 0) for p, v in zip(pos, values, strict=True)]
        neg = [n + min(v, 0) for n, v in zip(neg, values, strict=True)]
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("change of GMV per day (USD)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def shap_groups(report: DiagnosisReport) -> str:
    if not report.model_explanations:
        return ""
    n = len(report.model_explanations)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.4), squeeze=False)
    fig.subplots_adjust(wspace=0.7)
    for ax, ex in zip(axes[0], report.model_explanations, strict=True):
        groups = [g for g in ex.groups if g.group != "bias"][::-1]
        ax.barh(
            [g.group for g in groups],
            [g.gap for g in groups],
            color=["#2a9d8f" if g.gap >= 0 else "#e76f51" for g in groups],
        )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{ex.head.upper()}: {ex.comparison.replace('_', ' ')}", fontsize=9)
        ax.set_xlabel("mean SHAP gap (log-odds)", fontsize=8)
        ax.tick_params(labelsize=8)
    return _png(fig)


def history(settings: Settings, report: DiagnosisReport, fc: ForecastResponse | None) -> str:
    daily = data.merchant_daily_gmv(settings, report.merchant_id, report.funnel_source)
    daily["activity_date"] = pd.to_datetime(daily["activity_date"])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.bar(daily["activity_date"], daily["gmv"], color="#98c1d9", label="GMV per day")
    ax.plot(daily["activity_date"], daily["gmv"].rolling(7, min_periods=1).mean(), color="#3d5a80", label="7-day mean")
    for period, color, name in ((report.period_a, "#8d99ae", "period a"), (report.period_b, "#ee6c4d", "period b")):
        ax.axvspan(
            pd.Timestamp(period.start),
            pd.Timestamp(period.end + timedelta(days=1)),
            color=color,
            alpha=0.15,
            label=name,
        )
    if fc is not None:
        days = pd.date_range(pd.Timestamp(fc.horizon_start), pd.Timestamp(fc.horizon_end))
        ax.fill_between(
            days, fc.gmv_7d_low / 7, fc.gmv_7d_high / 7, color="#2a9d8f", alpha=0.25, label="forecast 10-90%"
        )
        ax.plot(days, [fc.gmv_7d / 7] * len(days), color="#2a9d8f", label="forecast (median)")
        ax.plot(
            days, [fc.seasonal_naive_gmv_7d / 7] * len(days), color="#293241", linestyle=":", label="seasonal naive"
        )
    ax.set_ylabel("USD per day")
    ax.legend(fontsize=7, ncol=3)
    fig.autofmt_xdate()
    return _png(fig)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "" if x is None else fmt.format(x)


def render(settings: Settings, report: DiagnosisReport, fc: ForecastResponse | None, fc_note: str | None) -> str:
    fa, fb = report.funnel_a, report.funnel_b
    funnel_rows = [
        [name, f"{getattr(fa, key):,.4g}", f"{getattr(fb, key):,.4g}"]
        for name, key in (
            ("days", "days"),
            ("impressions / day", "impressions_per_day"),
            ("CTR", "ctr"),
            ("CVR", "cvr"),
            ("AOV (USD)", "aov"),
            ("GMV / day (USD)", "gmv_per_day"),
            ("orders", "orders"),
        )
    ]
    dec = report.decomposition
    c = dec.contributions
    iv = dec.intervals

    def interval_cells(intervals: PartIntervals | None, name: str) -> list[str]:
        if intervals is None:
            return ["", ""]
        interval = getattr(intervals, name)
        return [str(interval), "yes" if interval.excludes_zero() else "no (within noise)"]

    contrib_rows = [[LABELS[f], f"{getattr(c, f):+,.4f}", *interval_cells(iv, f)] for f in FACTORS]
    contrib_rows.append(["total (= GMV/day b - a)", f"{dec.delta:+,.4f}", *interval_cells(iv, "delta")])
    level = f"{iv.level:.0%} interval" if iv else "interval"
    segment_rows = [
        [
            seg.segment,
            f"{seg.delta:+,.2f}",
            *(
                f"{getattr(seg.contributions, f):+,.2f} {getattr(seg.intervals, f)}" if seg.intervals else ""
                for f in FACTORS
            ),
        ]
        for seg in dec.by_surface + dec.by_product
    ]
    findings = [
        [
            f.cause,
            f.kind,
            f"{f.strength:.2f}",
            f.funnel_channel or "",
            str(f.channel_vs_peers) if f.channel_vs_peers else "",
            "" if f.distinguishable_from_noise is None else ("yes" if f.distinguishable_from_noise else "no"),
            f.summary,
        ]
        for f in report.findings
    ]
    evidence = [
        [
            e.metric,
            _num(e.merchant_a),
            _num(e.merchant_b),
            _num(e.change),
            _num(e.peers_change),
            _num(e.change_vs_peers),
        ]
        for e in report.evidence
    ]
    explanations = "".join(f"<li>{html.escape(e.summary)}</li>" for e in report.model_explanations)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes + ([fc_note] if fc_note else []))
    forecast_html = (
        f"<p>Forecast (model {fc.model_name} v{fc.model_version}, {fc.feature_source} features as of {fc.as_of}): "
        f"GMV {fc.horizon_start}..{fc.horizon_end} <b>${fc.gmv_7d:,.2f}</b> (10-90%: ${fc.gmv_7d_low:,.2f} - "
        f"${fc.gmv_7d_high:,.2f}); seasonal naive ${fc.seasonal_naive_gmv_7d:,.2f}; campaign days ahead "
        f"{fc.campaign_days_ahead} (mega {fc.mega_days_ahead}).</p>"
        if fc
        else "<p>No forecast: no champion forecast model.</p>"
    )
    title = f"{report.merchant_id} ({report.main_category_l1}, {report.merchant_tier or '?'})"
    context = (
        f"Period a (baseline) {report.period_a} ({report.campaign_days_a} campaign days) vs period b "
        f"{report.period_b} ({report.campaign_days_b} campaign days); data {report.data_start_date}.."
        f"{report.data_end_date}; {report.peers} category peers."
    )
    findings_html = (
        _table(["cause", "kind", "strength", "funnel part", "log change vs market", "beyond noise", "why"], findings)
        if findings
        else "<p>No rule fired.</p>"
    )
    evidence_html = _table(
        ["metric", "merchant a", "merchant b", "change", "peers' median change", "change vs peers"], evidence
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Merchant {html.escape(report.merchant_id)}: GMV diagnosis</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
th{{background:#eef}}.cause{{font-size:1.3em;color:#b23a48}}</style></head><body>
<h1>Merchant {html.escape(title)}</h1>
<p>{html.escape(context)}</p>
<p class="cause">Primary cause: <b>{html.escape(report.primary_cause)}</b></p>
<p>{html.escape(report.summary)}</p>
<h2>Funnel</h2>{_table(["", "period a", "period b"], funnel_rows)}
<h2>Decomposition of the change of GMV per day (Shapley, exact; intervals: bootstrap over days)</h2>
<p>Funnel counts from the {html.escape(report.funnel_source)} source.</p>
{_table(["factor", "USD per day", level, "beyond noise"], contrib_rows)}
{waterfall(report)}
{stacked_segments(report.decomposition.by_surface, "By surface")}
{stacked_segments(report.decomposition.by_product, "By product (top, then the rest)")}
<h3>By surface and product, each part with its {level}</h3>
{_table(["segment", "change", *[LABELS[f] for f in FACTORS]], segment_rows)}
<h2>Findings (rules)</h2>{findings_html}
<h2>Evidence: merchant vs category peers</h2>{evidence_html}
<h2>What the ranking model says</h2><ul>{explanations or "<li>no model explanation</li>"}</ul>
{shap_groups(report)}
<h2>History and forecast</h2>{forecast_html}
{history(settings, report, fc)}
<h2>Notes</h2><ul>{notes or "<li>none</li>"}</ul>
</body></html>
"""


def write_report(
    settings: Settings, report: DiagnosisReport, fc: ForecastResponse | None, fc_note: str | None = None
) -> Path:
    out = settings.home_dir / "reports" / f"merchant_{report.merchant_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(settings, report, fc, fc_note))
    return out
