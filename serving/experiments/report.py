"""`make experiment-report ID=<id>`: read an experiment's frames from the state folder, analyse, write the
HTML report and `summary.json`, log both to MLflow. And `make experiment-plan`: the minimum detectable lift.

Reads: the definition (registry), the exposure log (`logs/experiments/<id>/`), the outcomes that landed in the
raw zone (`raw/{impressions,clicks,orders}/dt=*/part-live-*.parquet`: only live shoppers answer the service,
and the service's request id is what links them), the oracle's truth of the same served slots
(`oracle/live/*/served.parquet`, evaluation only) and each user's GMV before the start (every raw order).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from platform_common.experiment_summary import write_summary  # noqa: E402
from platform_common.settings import Settings  # noqa: E402
from serving.experiments import stats  # noqa: E402
from serving.experiments.analysis import Analysis, Design, analyse, pick_arms  # noqa: E402
from serving.experiments.model import Experiment, ExperimentError  # noqa: E402

REPORT_FILE = "report.html"
MLFLOW_EXPERIMENT = "shoprank-online-experiments"
ORDER_HORIZON_HOURS = 48  # simulator: orders come at most 48 h after their click (the plan waits that long)
EXPOSURE_COLUMNS = (
    "request_id", "served_at", "user_id", "arm", "position", "product_id", "credit_arm", "model_version",
    "fallback", "latency_ms",
)  # fmt: skip


@dataclass(frozen=True)
class Frames:
    design: Design
    exposures: pd.DataFrame
    outcomes: pd.DataFrame
    truth: pd.DataFrame | None
    pre_gmv: pd.DataFrame
    watermark: datetime | None


def design_of(experiment: Experiment) -> Design:
    names = [a.name for a in experiment.arms]
    control, treatment = pick_arms(names)
    stopped_early = experiment.stopped_at is not None and (
        experiment.stop is None or experiment.stopped_at < experiment.stop
    )
    return Design(
        id=experiment.id,
        design=experiment.design,
        shares={a.name: a.share for a in experiment.arms},
        control=control,
        treatment=treatment,
        start=experiment.start,
        end=experiment.end,
        planned_stop=experiment.stop,
        stopped_early=stopped_early,
        versions={a.name: (f"v{a.target}" if a.target.isdigit() else a.target) for a in experiment.arms},
    )


def _glob(folder: Path, pattern: str) -> list[str]:
    return sorted(str(p) for p in folder.glob(pattern))


def read_exposures(settings: Settings, experiment_id: str) -> pd.DataFrame:
    files = _glob(settings.logs_dir / "experiments" / experiment_id, "dt=*/part-*.parquet")
    if not files:
        raise ExperimentError(
            f"experiment {experiment_id!r} has no exposures in {settings.logs_dir / 'experiments' / experiment_id}: "
            "did the service serve traffic while it ran?"
        )
    with duckdb.connect() as con:
        present = {
            r[0]
            for r in con.execute("describe select * from read_parquet(?, union_by_name = true)", [files]).fetchall()
        }
        cols = ", ".join(c for c in EXPOSURE_COLUMNS if c in present)
        return con.execute(f"select {cols} from read_parquet(?, union_by_name = true)", [files]).df()


def _run_watermarks(folder: Path) -> list[datetime]:
    """Each live run's own record of up to when it has landed everything (simulator/live/landing.py)."""
    marks = []
    for path in sorted(folder.glob("*.json")):
        try:
            marks.append(datetime.fromtimestamp(int(json.loads(path.read_text())["landed_through_us"]) / 1e6, UTC))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign file says nothing about what landed
    return marks


def read_outcomes(settings: Settings, request_ids: pd.Series) -> tuple[pd.DataFrame, datetime | None]:
    """Clicks and orders of live impressions of these requests, deduplicated and cleaned as staging does, and
    the landing watermark (the latest flush of live events: everything that happened before it has landed)."""
    raw = settings.raw_dir
    files = {t: _glob(raw / t, "dt=*/part-live-*.parquet") for t in ("impressions", "clicks", "orders")}
    empty = pd.DataFrame(
        {
            "request_id": [],
            "product_id": [],
            "kind": [],
            "event_ts": pd.Series([], dtype="datetime64[us, UTC]"),
            "gmv": [],
        }
    )
    if not files["impressions"]:
        return empty, None
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.register("wanted", pd.DataFrame({"request_id": request_ids.unique()}))
        marks = [
            con.execute("select max(_ingested_at) from read_parquet(?)", [f]).fetchone()[0]  # type: ignore[index]
            for f in files.values()
            if f
        ]
        con.execute(
            "create temp table imps as select impression_id, any_value(request_id) as request_id, "
            "any_value(product_id) as product_id from read_parquet(?) "
            "where request_id in (select request_id from wanted) group by impression_id",
            [files["impressions"]],
        )
        parts = []
        if files["clicks"]:
            parts.append(
                con.execute(
                    "select i.request_id, i.product_id, 'click' as kind, c.event_ts, 0.0 as gmv from ("
                    "  select click_id, any_value(impression_id) as impression_id, any_value(event_ts) as event_ts,"
                    "  any_value(_ingested_at) as ingested from read_parquet(?) group by click_id) c "
                    "join imps i using (impression_id) where c.event_ts is null or c.event_ts <= c.ingested",
                    [files["clicks"]],
                ).df()
            )
        if files["orders"]:
            parts.append(
                con.execute(
                    "select i.request_id, i.product_id, 'order' as kind, o.event_ts, o.gmv from ("
                    "  select order_id, any_value(impression_id) as impression_id, any_value(event_ts) as event_ts,"
                    "  any_value(_ingested_at) as ingested, any_value(gmv) as gmv, any_value(quantity) as quantity,"
                    "  any_value(unit_price) as unit_price from read_parquet(?) group by order_id) o "
                    "join imps i using (impression_id) "
                    "where o.event_ts is not null and o.event_ts <= o.ingested and o.quantity > 0 and o.gmv > 0 "
                    "and abs(o.gmv - o.quantity * o.unit_price) <= 1e-6 * o.gmv",
                    [files["orders"]],
                ).df()
            )
    outcomes = pd.concat(parts, ignore_index=True) if parts else empty
    marks.extend(_run_watermarks(settings.live_watermarks_dir))
    watermark = max((m for m in marks if m is not None), default=None)
    if watermark is not None:
        watermark = (
            pd.Timestamp(watermark).tz_convert("UTC").to_pydatetime()
            if pd.Timestamp(watermark).tzinfo
            else pd.Timestamp(watermark).tz_localize("UTC").to_pydatetime()
        )
    return outcomes, watermark


def read_truth(settings: Settings, experiment_id: str) -> pd.DataFrame | None:
    files = _glob(settings.oracle_dir / "live", "*/served.parquet")
    if not files:
        return None
    with duckdb.connect() as con:
        truth = con.execute(
            "select request_id, product_id, p_click, p_order_given_click, expected_gmv from read_parquet(?) "
            "where experiment_id = ?",
            [files, experiment_id],
        ).df()
    return truth if len(truth) else None


def read_pre_gmv(settings: Settings, before: datetime, users: pd.Series) -> pd.DataFrame:
    """Each user's GMV from every landed order before `before` (clean rows, each order once)."""
    files = _glob(settings.raw_dir / "orders", "dt=*/*.parquet")
    if not files:
        return pd.DataFrame({"user_id": [], "gmv": []})
    with duckdb.connect() as con:
        con.register("wanted", pd.DataFrame({"user_id": users.unique()}))
        return con.execute(
            "select user_id, sum(gmv) as gmv from ("
            "  select order_id, any_value(user_id) as user_id, any_value(gmv) as gmv, any_value(event_ts) as ts,"
            "  any_value(quantity) as quantity from read_parquet(?, union_by_name = true) group by order_id) "
            "where ts < ? and gmv > 0 and quantity > 0 and user_id in (select user_id from wanted) group by user_id",
            [files, before],
        ).df()


def load_frames(settings: Settings, experiment: Experiment) -> Frames:
    exposures = read_exposures(settings, experiment.id)
    outcomes, watermark = read_outcomes(settings, exposures["request_id"])
    return Frames(
        design_of(experiment),
        exposures,
        outcomes,
        read_truth(settings, experiment.id),
        read_pre_gmv(settings, experiment.start, exposures["user_id"]),
        watermark,
    )


# --- figures and the page -------------------------------------------------------------------------------------
def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def figures(a: Analysis) -> dict[str, bytes]:
    s = a.summary
    figs: dict[str, bytes] = {}
    t = a.timeline
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(t):
        ax.fill_between(t["at"], t["ci_low"] * 100, t["ci_high"] * 100, alpha=0.25, label="95% interval")
        ax.plot(t["at"], t["lift"] * 100, "o-", label="estimated lift")
        if t["true_lift"].notna().any():
            ax.plot(t["at"], t["true_lift"].astype(float) * 100, "s--", color="black", label="oracle's true lift")
    ax.axhline(0, color="grey", lw=1)
    ax.set(
        title=f"GMV per request: {s.treatment} over {s.control}, cumulative",
        xlabel="served up to (UTC)",
        ylabel="lift (%)",
    )
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    figs["cumulative_lift.png"] = _png(fig)

    arms = a.arms
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    steps = ("impressions", "clicks", "orders")
    x = np.arange(len(steps))
    width = 0.8 / max(len(arms), 1)
    for i, (arm, row) in enumerate(arms.iterrows()):
        axes[0].bar(x + i * width, [row[k] / row["requests"] for k in steps], width, label=str(arm))
    axes[0].set(title="funnel per request", xticks=x + width * (len(arms) - 1) / 2, xticklabels=steps, yscale="log")
    axes[0].legend(fontsize=8)
    names = [str(v) for v in arms.index]
    axes[1].bar(names, arms["ctr"] * 100, label="observed")
    if "true_ctr" in arms:
        axes[1].plot(names, arms["true_ctr"] * 100, "ks", label="oracle")
    axes[1].set(title="CTR (%)")
    axes[1].legend(fontsize=8)
    axes[2].bar(names, arms["gmv_per_request"], label="observed (landed)")
    if "true_gmv_per_request" in arms:
        axes[2].plot(names, arms["true_gmv_per_request"], "ks", label="oracle expected")
    axes[2].set(title="GMV per request")
    axes[2].legend(fontsize=8)
    figs["funnels.png"] = _png(fig)
    return figs


def _pct(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.1%}"


def render_html(a: Analysis, figs: dict[str, bytes]) -> str:
    s = a.summary
    extra = s.model_extra or {}
    arm_rows = "".join(
        f"<tr><td>{html.escape(str(arm))}</td><td>{html.escape(str(extra_of(sm, 'target')))}</td>"
        f"<td>{sm.model_version or 'varied'}</td><td>{sm.requests:,}</td><td>{sm.users:,}</td>"
        f"<td>{int(r['impressions']):,}</td><td>{int(r['clicks']):,}</td><td>{int(r['orders']):,}</td>"
        f"<td>{r['ctr']:.3%}</td><td>{_num(r['cvr'], '.2%')}</td><td>{r['gmv_per_request']:.4f}</td>"
        f"<td>{r['gmv_per_user']:.3f}</td><td>{_num(r.get('true_gmv_per_request'), '.4f')}</td></tr>"
        for (arm, sm), (_, r) in zip(s.arms.items(), a.arms.iterrows(), strict=True)
    )
    metric_rows = ""
    for name, m in s.metrics.items():
        me = m.model_extra or {}
        cuped = (
            f"{_pct(me['cuped_lift'])} [{_pct(me['cuped_ci_low'])}, {_pct(me['cuped_ci_high'])}], "
            f"variance -{me['cuped_variance_reduction']:.1%}"
            if "cuped_lift" in me
            else "-"
        )
        covered = "" if m.true_lift is None else ("yes" if m.ci_low <= m.true_lift <= m.ci_high else "<b>no</b>")
        metric_rows += (
            f"<tr><td>{name}</td><td>{_pct(m.lift)}</td><td>[{_pct(m.ci_low)}, {_pct(m.ci_high)}]</td>"
            f"<td>{m.p_value:.3g}</td><td>{_pct(m.true_lift)}</td><td>{covered}</td><td>{cuped}</td></tr>"
        )
    guard_rows = "".join(
        f"<tr><td>{html.escape(g.name)}</td><td>{'pass' if g.passed else '<b>FAIL</b>'}</td>"
        f"<td>{html.escape(g.detail)}</td></tr>"
        for g in s.guardrails
    )
    inter = ""
    if a.interleaving is not None:
        rows = "".join(
            f"<tr><td>{r.outcome}</td><td>{r.treatment_share:.1%}</td><td>[{r.ci_low:.1%}, {r.ci_high:.1%}]</td>"
            f"<td>{r.p_value:.3g}</td><td>{_num(r.true_share, '.1%')}</td></tr>"
            for r in a.interleaving.itertuples()
        )
        inter = (
            f"<h2>Interleaving: share won by {html.escape(s.treatment)}</h2><table><tr><th>credited</th><th>share</th>"
            f"<th>95% interval (by user)</th><th>p (vs 50%)</th><th>oracle</th></tr>{rows}</table>"
        )
    images = "".join(
        f"<h3>{html.escape(n)}</h3><img src='data:image/png;base64,{base64.b64encode(b).decode()}'/>"
        for n, b in figs.items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in [*a.notes])
    verdict = "readable" if s.readable else "NOT readable yet"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>experiment {html.escape(s.id)}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>Experiment {html.escape(s.id)} ({s.design}): {html.escape(s.treatment)} vs {html.escape(s.control)}</h1>
<p><b>{verdict}</b>: {html.escape(s.readable_reason)}</p>
<p>{extra.get("requests", 0):,} requests analysed; outcomes attributed within
{extra.get("window_seconds", 0) / 60:g} min of serving; landing zone complete up to
{extra.get("watermark") or "-"}; analysed at {extra.get("analysed_at")}.
Lifts are {html.escape(s.treatment)} over {html.escape(s.control)}; intervals are 95%, by user (delta method on
user-level sums). The oracle's true lift is the simulator's expected value for the very lists served.
Sample-ratio p-value: {s.srm_p_value if s.srm_p_value is not None else "-"}.</p>
<h2>Arms</h2><table><tr><th>arm</th><th>target</th><th>version</th><th>requests</th><th>users</th>
<th>impressions</th><th>clicks</th><th>orders</th><th>CTR</th><th>CVR</th><th>GMV/request</th><th>GMV/user</th>
<th>oracle GMV/request</th></tr>
{arm_rows}</table>
<h2>Lifts</h2><table><tr><th>metric</th><th>lift</th><th>95% interval</th><th>p</th><th>oracle's true lift</th>
<th>covered</th><th>CUPED (pre-period GMV)</th></tr>{metric_rows}</table>
{inter}
<h2>Guardrails</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>{guard_rows}</table>
{"<h2>Notes</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Figures</h2>{images}</body></html>"""


def extra_of(model: object, key: str) -> object:
    return (getattr(model, "model_extra", None) or {}).get(key, "")


def _num(v: object, fmt: str) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return format(f, fmt) if math.isfinite(f) else "-"


def write_report(
    settings: Settings, experiment_id: str, window: timedelta, log_mlflow: bool = True
) -> tuple[Analysis, Path, Path]:
    """Analyse `experiment_id` and write `<experiments_dir>/<id>/report.html` and `summary.json`."""
    from serving.experiments import store

    experiment = store.get(settings, experiment_id)
    frames = load_frames(settings, experiment)
    analysis = analyse(
        frames.design,
        frames.exposures,
        frames.outcomes,
        frames.truth,
        frames.pre_gmv,
        window=window,
        watermark=frames.watermark,
        now=datetime.now(UTC),
    )
    figs = figures(analysis)
    out = settings.experiments_dir / experiment_id
    out.mkdir(parents=True, exist_ok=True)
    report = out / REPORT_FILE
    report.write_text(render_html(analysis, figs))
    for name, png in figs.items():
        (out / name).write_bytes(png)
    summary_path = write_summary(settings.experiments_dir, analysis.summary)
    if log_mlflow:
        log_to_mlflow(settings, analysis, out, [report, summary_path, *(out / n for n in figs)])
    return analysis, report, summary_path


def log_to_mlflow(settings: Settings, a: Analysis, out: Path, files: list[Path]) -> str:
    import mlflow

    from platform_common.registry import connect, ensure_experiment

    connect(settings)
    experiment_id = ensure_experiment(settings, MLFLOW_EXPERIMENT)
    s = a.summary
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{s.id}-{datetime.now(UTC):%Y%m%dT%H%M%S}") as run:
        mlflow.set_tags({"shoprank.experiment": s.id, "design": s.design, "readable": str(s.readable).lower()})
        mlflow.log_params(
            {
                "control": s.control,
                "treatment": s.treatment,
                **{f"arm_{k}_version": v.model_version for k, v in s.arms.items()},
            }
        )
        values: dict[str, float] = {}
        for name, m in s.metrics.items():
            for key, v in m.model_dump().items():
                if isinstance(v, int | float) and math.isfinite(v):
                    values[f"{name}_{key}"] = float(v)
        for arm, sm in s.arms.items():
            values[f"{arm}_requests"], values[f"{arm}_users"] = float(sm.requests), float(sm.users)
        if s.srm_p_value is not None:
            values["srm_p_value"] = s.srm_p_value
        mlflow.log_metrics(values)
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="experiment")
        (out / "mlflow_run.json").write_text(json.dumps({"run_id": run.info.run_id}) + "\n")
        return str(run.info.run_id)


# --- planning ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    requests: int
    requests_per_arm: float
    mean_gmv_per_request: float
    per_request_variance: float
    history_users: int
    history_requests: int
    mde: float
    alpha: float
    power: float


def history_users(settings: Settings) -> pd.DataFrame:
    """Per user: requests and the GMV of their orders, over the landed history whose orders have all landed
    (requests older than ORDER_HORIZON before the newest impression: an order comes at most 48 h after its
    click), clean orders, each once."""
    raw = settings.raw_dir
    imps, orders = _glob(raw / "impressions", "dt=*/*.parquet"), _glob(raw / "orders", "dt=*/*.parquet")
    if not imps:
        raise ExperimentError(f"no impressions in {raw}: run `make data` first")
    with duckdb.connect() as con:
        con.execute(
            "create temp table imps as select impression_id, any_value(user_id) as user_id, "
            "any_value(request_id) as request_id, any_value(event_ts) as ts "
            "from read_parquet(?, union_by_name = true) group by impression_id",
            [imps],
        )
        con.execute(
            "delete from imps where user_id is null or ts is null "
            f"or ts >= (select max(ts) from imps) - interval {ORDER_HORIZON_HOURS} hour"
        )
        if not orders:
            return con.execute(
                "select user_id, count(distinct request_id) as requests, 0.0 as gmv from imps group by user_id"
            ).df()
        return con.execute(
            "with o as (select order_id, any_value(impression_id) as impression_id, any_value(gmv) as gmv,"
            "  any_value(quantity) as quantity from read_parquet(?, union_by_name = true) group by order_id),"
            " g as (select i.user_id, sum(o.gmv) as gmv from o join imps i using (impression_id)"
            "  where o.gmv > 0 and o.quantity > 0 group by i.user_id),"
            " r as (select user_id, count(distinct request_id) as requests from imps group by user_id)"
            " select r.user_id, r.requests, coalesce(g.gmv, 0) as gmv from r left join g using (user_id)",
            [orders],
        ).df()


def plan(
    settings: Settings, rate: float, seconds: float, alpha: float = 0.05, power: float = 0.8, share: float = 0.5
) -> Plan:
    users = history_users(settings)
    mean, var = stats.per_request_variance(users["gmv"].to_numpy(), users["requests"].to_numpy())
    total = int(rate * seconds)
    per_arm = total * min(share, 1 - share)
    return Plan(
        total, per_arm, mean, var, len(users), int(users["requests"].sum()),
        stats.mde(var, mean, per_arm, alpha, power), alpha, power,
    )  # fmt: skip
