"""`make plan-campaign`: the campaign what-if plan as one self-contained HTML file, scenarios side by side.

A bar chart of each scenario's forecast GMV with its 95% interval (and the ordinary-day reference), a table of
the scenarios' levers, GMV, uplifts and funnel parts, the GMV by surface, and the lever effects the model learned.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from merchant_growth.plan_schemas import PlanResponse, ScenarioResult  # noqa: E402
from merchant_growth.planner import SURFACES  # noqa: E402
from merchant_growth.report import _png  # noqa: E402
from platform_common.settings import Settings  # noqa: E402


def scenario_chart(response: PlanResponse) -> str:
    names = [s.name for s in response.scenarios]
    values = [s.gmv.value for s in response.scenarios]
    low = [s.gmv.value - s.gmv.low for s in response.scenarios]
    high = [s.gmv.high - s.gmv.value for s in response.scenarios]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    ax.barh(names[::-1], values[::-1], xerr=[low[::-1], high[::-1]], color="#3d5a80", ecolor="#293241", capsize=3)
    normal = response.normal_day_gmv
    ax.axvline(normal.value, color="#ee6c4d", linestyle="--", label=f"ordinary day, do nothing ({normal.value:,.0f})")
    ax.set_xlabel("forecast GMV on the day (USD), 95% interval")
    ax.set_title(f"{response.merchant_id}: {response.campaign} on {response.campaign_date} ({response.day_kind})")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _levers(s: ScenarioResult) -> str:
    lv = s.levers
    parts = [f"discount {lv.discount:.2f}", "live" if lv.live else "not live"]
    if lv.price_change:
        parts.append(f"price {lv.price_change * 100:+.0f}%")
    if lv.new_merchant_boost:
        parts.append(f"boost {lv.new_merchant_boost:.2f}")
    if lv.traffic_share != 1.0:
        parts.append(f"traffic x{lv.traffic_share:.2f}")
    return ", ".join(parts)


def render(response: PlanResponse) -> str:
    e = html.escape
    rows = []
    for s in response.scenarios:
        f = s.funnel
        rows.append(
            "<tr>"
            f"<td>{e(s.name)}</td><td>{e(_levers(s))}</td>"
            f"<td><b>{s.gmv.value:,.0f}</b> [{s.gmv.low:,.0f}, {s.gmv.high:,.0f}]</td>"
            f"<td>{_pct(s.uplift_vs_do_nothing.value)} [{_pct(s.uplift_vs_do_nothing.low)}, "
            f"{_pct(s.uplift_vs_do_nothing.high)}]</td>"
            f"<td>{_pct(s.uplift_vs_normal_day.value)} [{_pct(s.uplift_vs_normal_day.low)}, "
            f"{_pct(s.uplift_vs_normal_day.high)}]</td>"
            f"<td>{f.impressions:,.0f}</td><td>{f.ctr:.2%}</td><td>{f.cvr:.2%}</td><td>{f.aov:,.2f}</td>"
            f"<td>{f.orders:,.1f}</td>"
            "</tr>"
        )
    surface_rows = "".join(
        f"<tr><td>{e(s.name)}</td>" + "".join(f"<td>{s.gmv_by_surface[sf]:,.0f}</td>" for sf in SURFACES) + "</tr>"
        for s in response.scenarios
    )
    effects = "".join(
        f"<tr><td>{x.part}</td><td>{x.covariate}</td>"
        + (
            f"<td>{x.coefficient:+.3f}</td><td>{x.std_error:.3f}</td>"
            if x.coefficient is not None and x.std_error is not None
            else "<td colspan=2>not in this part's model</td>"
        )
        + "</tr>"
        for x in response.effects
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in response.notes)
    dn = response.do_nothing
    new = "a new merchant (the boost applies)" if response.new_merchant else "not a new merchant"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Campaign plan {e(response.merchant_id)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 7px;font-size:13px}}th{{background:#eee}}</style></head><body>
<h1>Campaign plan: {e(response.merchant_id)}, {e(response.campaign)} on {response.campaign_date}</h1>
<p>Day kind <b>{response.day_kind}</b>, {response.days_ahead} days after the data ends ({response.data_end});
funnel source <b>{response.funnel_source}</b>; {new}.
Doing nothing means discount {dn.discount:.2f} (its mean over the last 7 days), not
streaming, no boost, traffic share 1. An ordinary day on the same weekday, doing nothing:
<b>{response.normal_day_gmv.value:,.0f}</b> [{response.normal_day_gmv.low:,.0f}, {response.normal_day_gmv.high:,.0f}]
USD.</p>
{scenario_chart(response)}
<h2>Scenarios side by side</h2>
<table><tr><th>scenario</th><th>levers</th><th>GMV (USD) [95%]</th><th>vs doing nothing</th>
<th>vs an ordinary day</th><th>impressions</th><th>CTR</th><th>CVR</th><th>order value</th><th>orders</th></tr>
{"".join(rows)}</table>
<h2>GMV by surface</h2>
<table><tr><th>scenario</th>{"".join(f"<th>{s}</th>" for s in SURFACES)}</tr>{surface_rows}</table>
<h2>What the model learned (log scale, standard errors clustered by day)</h2>
<table><tr><th>part</th><th>covariate</th><th>coefficient</th><th>s.e.</th></tr>{effects}</table>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""


def write_plan_report(settings: Settings, response: PlanResponse) -> Path:
    out = settings.home_dir / "reports" / f"plan_{response.merchant_id}_{response.campaign_date}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(response))
    return out
