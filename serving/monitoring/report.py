"""The monitoring report: one HTML page with the alerts, every measurement and the plots (as training/report.py)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from serving.monitoring.alerts import CheckResult, Window  # noqa: E402


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _bars(values: dict[str, float], title: str, xlabel: str, lines: dict[str, float]) -> bytes:
    items = sorted(values.items(), key=lambda kv: kv[1])[-25:]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.28 * len(items) + 1)))
    ax.barh([k for k, _ in items], [min(v, 1e6) for _, v in items])
    for label, x in lines.items():
        ax.axvline(x, ls="--", lw=1, color="red" if "alert" in label else "orange", label=label)
    ax.set(title=title, xlabel=xlabel)
    if lines:
        ax.legend(fontsize=8)
    return _png(fig)


def figures(result: CheckResult, psi_warn: float, psi_alert: float) -> dict[str, bytes]:
    figs: dict[str, bytes] = {}
    s = result.series
    for key, title in (
        ("mart_psi", "Mart drift vs baseline days (PSI)"),
        ("served_psi", "Served drift vs the version's served baseline (PSI)"),
        ("training_psi", "Served vs training reference (PSI, reported)"),
    ):
        if s.get(key):
            figs[f"{key}.png"] = _bars(s[key], title, "PSI", {"warn": psi_warn, "alert": psi_alert})
    if s.get("freshness_hours"):
        finite = {k: (v if v != float("inf") else 1e3) for k, v in s["freshness_hours"].items()}
        figs["freshness.png"] = _bars(finite, "Age of the newest materialized row at the window end", "hours", {})
    if s.get("row_counts"):
        fig, ax = plt.subplots(figsize=(9, 4))
        for target, per_day in s["row_counts"].items():
            base = per_day.loc[:-1].median() or 1
            ax.plot(per_day.index, per_day.to_numpy() / base, "o-", label=target, ms=3)
        ax.set(title="Rows landed per day / baseline median (0 = the window)", xlabel="day", ylabel="ratio")
        ax.legend(fontsize=7)
        figs["row_counts.png"] = _png(fig)
    trend = s.get("quarantine_trend")
    if isinstance(trend, pd.Series) and not trend.empty:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        for table, g in trend.groupby(level=0):
            ax.plot(g.index.get_level_values(1), g.to_numpy(), "o-", label=str(table), ms=3)
        ax.set(title="Quarantined share per day (0 = the window)", xlabel="day", ylabel="share")
        ax.legend(fontsize=8)
        figs["quarantine_trend.png"] = _png(fig)
    calibration = {k: v for k, v in s.items() if k.startswith("calibration_hourly") and not v.empty}
    if calibration:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        for key, hourly in sorted(calibration.items()):
            version = key.removeprefix("calibration_hourly") or "served"
            ax.plot(hourly.index, hourly["predicted"], "o-", label=f"{version}: predicted CTR (shown slot)")
            ax.plot(hourly.index, hourly["realised"], "s--", label=f"{version}: realised CTR")
        ax.set(title="Online calibration over time", ylabel="CTR")
        ax.legend(fontsize=8)
        figs["calibration.png"] = _png(fig)
    return figs


def render(result: CheckResult, window: Window, header: dict[str, str], figs: dict[str, bytes]) -> str:
    esc = html.escape
    alerts = "".join(
        f"<tr><td>{esc(a.check)}</td><td>{esc(a.target)}</td><td>{a.measured:.4g}</td><td>{a.threshold:.4g}</td>"
        f"<td>{esc(a.message)}</td></tr>"
        for a in result.alerts
    )
    fired = {(a.check, a.target) for a in result.alerts}
    rows = "".join(
        f"<tr{' class=fired' if (m.check, m.target) in fired else ''}><td>{esc(m.check)}</td><td>{esc(m.target)}</td>"
        f"<td>{m.value:.4g}</td><td>{'' if m.threshold is None else f'{m.threshold:.4g}'}</td></tr>"
        for m in sorted(result.measurements, key=lambda m: (m.check, m.target))
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    facts = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in header.items())
    images = "".join(
        f"<h3>{esc(n)}</h3><img src='data:image/png;base64,{base64.b64encode(b).decode()}'/>" for n, b in figs.items()
    )
    status = f"{len(result.alerts)} alert(s)" if result.alerts else "no alert"
    online = online_table(result)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>shoprank monitoring {esc(window.label)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}tr.fired td{{background:#fdd}}</style></head>
<body><h1>shoprank monitoring: {status}</h1><ul><li><b>window</b>: {esc(window.label)}</li>{facts}</ul>
<h2>Alerts</h2><table><tr><th>check</th><th>target</th><th>measured</th><th>threshold</th><th>what</th></tr>
{alerts or "<tr><td colspan=5>none</td></tr>"}</table>
<h2>Online quality per day and surface</h2>
<p>Scores at the slot each impression was shown in, outcomes that had landed by the as-of time. A day's CTR, ECE
and AUC are scored once its clicks matured, its CVR and GMV once its orders' attribution window passed; the
status column says which, and when the rest will be.</p>{online}
<h2>Figures</h2>{images}
<h2>Every measurement</h2><table><tr><th>check</th><th>target</th><th>value</th><th>threshold</th></tr>{rows}</table>
<h2>Not judged</h2><ul>{notes or "<li>everything was judged</li>"}</ul></body></html>"""


ONLINE_COLUMNS = (
    "version",
    "day",
    "group",
    "status",
    "impressions",
    "clicks",
    "predicted_ctr",
    "realised_ctr",
    "ctr_ece",
    "ctr_auc",
    "orders",
    "predicted_cvr",
    "realised_cvr",
    "predicted_gmv",
    "realised_gmv",
)


def online_table(result: CheckResult) -> str:
    frames = [v for k, v in sorted(result.series.items()) if k.startswith("online_quality") and not v.empty]
    if not frames:
        return "<p>no served impression with landed outcomes in the window</p>"
    table = pd.concat(frames, ignore_index=True)
    columns = [c for c in ONLINE_COLUMNS if c in table.columns]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in columns) + "</tr>" for _, r in table.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"
