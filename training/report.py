"""`make evaluate`: the champion's full evaluation on its frozen test window, as plots, an HTML report and
MLflow metrics/artifacts on the run that produced it."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from platform_common.registry import CHAMPION, connect, latest_version, version_by_alias  # noqa: E402
from platform_common.settings import Settings, get_settings  # noqa: E402
from training import evaluation, oracle  # noqa: E402
from training.promotion import load_ranker  # noqa: E402

console = Console(stderr=True)
CALENDAR_FILE = "campaign_calendar.parquet"  # the dbt mart serving reads the campaign days from


def _reliability(ax, y: np.ndarray, p: np.ndarray, truth: np.ndarray, title: str, n_bins: int = 10) -> None:
    edges = np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1])
    bins = np.searchsorted(edges, p, side="right")
    frame = pd.DataFrame({"b": bins, "p": p, "y": y, "t": truth}).groupby("b").mean()
    top = max(frame["p"].max(), frame["y"].max(), frame["t"].max()) * 1.1
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="perfect")
    ax.plot(frame["p"], frame["y"], "o-", label="observed rate")
    ax.plot(frame["p"], frame["t"], "s-", alpha=0.7, label="oracle mean probability")
    ax.set(title=title, xlabel="mean predicted", ylabel="rate")
    ax.legend(fontsize=8)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def make_figures(s: evaluation.Scored, bundle) -> dict[str, bytes]:
    y_click, y_conv = s.rows["clicked"].to_numpy(), s.rows["converted"].to_numpy()
    figs: dict[str, bytes] = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _reliability(axes[0], y_click, s.logged["pctr"], s.truth["p_click"].to_numpy(), "CTR reliability")
    clicked = y_click == 1
    _reliability(
        axes[1],
        y_conv[clicked],
        s.logged["pcvr"][clicked],
        s.truth["p_order_given_click"].to_numpy()[clicked],
        "CVR reliability (clicked impressions)",
    )
    figs["reliability.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, p in (("model pCTR", s.logged["pctr"]), ("oracle p_click", s.truth["p_click"].to_numpy())):
        fpr, tpr, _ = roc_curve(y_click, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    ax.set(title="CTR ROC", xlabel="false positive rate", ylabel="true positive rate")
    ax.legend()
    figs["roc.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    deciles = pd.qcut(pd.Series(s.logged["pctr"]).rank(method="first"), 10, labels=False)
    lift = pd.Series(y_click).groupby(deciles).mean() / y_click.mean()
    ax.bar(lift.index + 1, lift.to_numpy())
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.set(title="CTR lift by predicted decile", xlabel="decile (10 = highest pCTR)", ylabel="lift")
    figs["lift_by_decile.png"] = _png(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, head in zip(axes, ("ctr", "cvr"), strict=True):
        gain = pd.Series(bundle.boosters[head].get_score(importance_type="gain")).sort_values().tail(15)
        ax.barh(gain.index, gain.to_numpy())
        ax.set(title=f"{head.upper()} head: feature importance (gain)")
    figs["feature_importance.png"] = _png(fig)
    return figs


def _table(metrics: dict[str, float], rows: list[tuple[str, str, str]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{metrics.get(a, float('nan')):.4f}</td>"
        f"<td>{metrics.get(b, float('nan')):.4f}</td></tr>"
        for label, a, b in rows
    )
    return f"<table><tr><th></th><th>model</th><th>oracle</th></tr>{body}</table>"


CALENDAR_COLUMNS = (
    ("rows", "rows", "{:,.0f}"),
    ("ctr_auc", "CTR AUC", "{:.4f}"),
    ("ctr_ece_vs_oracle", "CTR ECE vs oracle", "{:.4f}"),
    ("cvr_ece_vs_oracle", "CVR ECE vs oracle (all impressions)", "{:.4f}"),
    ("cvr_ece_vs_oracle_clicked", "CVR ECE vs oracle (clicked)", "{:.4f}"),
    ("ranking_requests", "requests", "{:,.0f}"),
    ("gmv_at_10_ratio_to_oracle", "GMV@10 / oracle", "{:.1%}"),
)


def _calendar_table(rows: list[dict[str, float | str]]) -> str:
    head = "".join(f"<th>{label}</th>" for _, label, _ in CALENDAR_COLUMNS)
    body = ""
    for r in rows:
        cells = "".join(
            f"<td>{fmt.format(r[key]) if key in r and not pd.isna(r[key]) else '-'}</td>"
            for key, _, fmt in CALENDAR_COLUMNS
        )
        body += f"<tr><td>{html.escape(str(r['slice']))}</td>{cells}</tr>"
    return f"<table><tr><th>slice</th>{head}</tr>{body}</table>"


def render_html(
    name: str,
    version: str,
    metrics: dict[str, float],
    methods: dict,
    figs: dict[str, bytes],
    calendar_rows: list[dict[str, float | str]] | None = None,
) -> str:
    cls_rows = []
    for task, prefix_m, prefix_o in (("CTR", "test", "oracle"), ("CVR", "cvr_test", "cvr_oracle")):
        for metric in ("auc", "logloss", "ece"):
            cls_rows.append((f"{task} {metric}", f"{prefix_m}_{metric}", f"{prefix_o}_{metric}"))
    for metric in ("auc", "logloss", "ece"):
        cls_rows.append((f"CTCVR {metric}", f"ctcvr_test_{metric}", f"ctcvr_oracle_{metric}"))
    ranking = "".join(
        f"<tr><td>{p}</td><td>{metrics[f'gmv_at_10_{p}']:.4f}</td><td>{metrics[f'ndcg_at_10_{p}']:.4f}</td></tr>"
        for p in ("model", "oracle", "popularity")
    )
    slices = "".join(
        f"<tr><td>{html.escape(k[6:-4])}</td><td>{int(metrics[k[:-4] + '_rows'])}</td><td>{v:.4f}</td>"
        f"<td>{metrics[k[:-4] + '_oracle_auc']:.4f}</td></tr>"
        for k, v in sorted(metrics.items())
        if k.startswith("slice_") and k.endswith("_auc") and not k.endswith("_oracle_auc")
    )
    method_rows = "".join(
        f"<tr><td>{m}</td>" + "".join(f"<td>{v:.5f}</td>" for v in vals.values()) + "</tr>"
        for m, vals in methods.items()
    )
    method_head = "".join(f"<th>{k}</th>" for k in next(iter(methods.values())))
    images = "".join(
        f"<h3>{html.escape(n)}</h3><img src='data:image/png;base64,{base64.b64encode(b).decode()}'/>"
        for n, b in figs.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{name} v{version} evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{name} v{version}: evaluation on the frozen test window</h1>
<p>{int(metrics["test_rows"]):,} test impressions; the oracle is the simulator's true probability, the ceiling.
Normalized lift (AUC-0.5)/(oracle AUC-0.5): {metrics["normalized_lift"]:.3f}.</p>
<h2>Classification</h2>{_table(metrics, cls_rows)}
<h2>Ranking ({int(metrics["ranking_requests"]):,} requests, valued by true expected GMV)</h2>
<table><tr><th>policy</th><th>GMV@10</th><th>NDCG@10</th></tr>{ranking}</table>
<p>GMV@10 of the model is {metrics["gmv_at_10_ratio_to_oracle"]:.1%} of the oracle's; popularity reaches
{metrics["gmv_at_10_popularity_ratio_to_oracle"]:.1%}.</p>
<h2>Ways to form pCTCVR (test window)</h2><table><tr><th>method</th>{method_head}</tr>{method_rows}</table>
<h2>By day kind and campaign (test window)</h2>{_calendar_table(calendar_rows or [])}
<h2>Slices (CTR AUC)</h2><table><tr><th>slice</th><th>rows</th><th>model</th><th>oracle</th></tr>{slices}</table>
<h2>Figures</h2>{images}</body></html>"""


def evaluate(settings: Settings | None = None, version: str | None = None) -> Path:
    settings = settings or get_settings()
    client = connect(settings)
    mv = (
        client.get_model_version(settings.model_name, version)
        if version
        else version_by_alias(client, settings.model_name, CHAMPION) or latest_version(client, settings.model_name)
    )
    if mv is None:
        raise LookupError(f"no version of {settings.model_name} to evaluate: run `make train`")
    bundle = load_ranker(settings, str(mv.version))
    rows = pd.read_parquet(mv.tags["test_set_path"])
    truth = oracle.load_truth(settings, rows["impression_id"])
    eta = oracle.examination_eta(settings)
    value = oracle.top_slot_value(truth, rows["surface"], rows["position"], eta)
    scored = evaluation.score(bundle, rows, truth, value)
    metrics = evaluation.classification_metrics(scored) | evaluation.ranking_metrics(scored, eta)
    metrics |= evaluation.slice_metrics(scored)
    calendar_rows = evaluation.calendar_slices(scored, eta, pd.read_parquet(settings.marts_dir / CALENDAR_FILE))
    for r in calendar_rows:
        key = str(r["slice"]).replace("=", "_").replace(".", "_")
        metrics |= {f"calendar_{key}_{k}": float(v) for k, v in r.items() if k != "slice" and not pd.isna(v)}
    metrics |= {"test_rows": float(len(rows)), "test_ctr": float(rows["clicked"].mean())}
    methods = evaluation.compare_cvr_methods(bundle, rows, truth)
    for method, vals in methods.items():
        metrics |= {f"method_{method}_{k}": v for k, v in vals.items()}
    figs = make_figures(scored, bundle)
    out_dir = settings.home_dir / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / f"evaluation_{settings.model_name}_v{mv.version}.html"
    report.write_text(render_html(settings.model_name, mv.version, metrics, methods, figs, calendar_rows))
    with mlflow.start_run(run_id=mv.run_id):
        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items()})
        for name, png in figs.items():
            (out_dir / name).write_bytes(png)
            mlflow.log_artifact(str(out_dir / name), artifact_path="evaluation")
        mlflow.log_artifact(str(report), artifact_path="evaluation")
    console.print(
        f"[green]{settings.model_name} v{mv.version}[/]: CTR AUC {metrics['test_auc']:.4f} / oracle "
        f"{metrics['oracle_auc']:.4f}, CTR ECE {metrics['test_ece']:.4f}, CVR ECE {metrics['cvr_test_ece']:.4f}, "
        f"GMV@10 {metrics['gmv_at_10_ratio_to_oracle']:.1%} of oracle (popularity "
        f"{metrics['gmv_at_10_popularity_ratio_to_oracle']:.1%})"
    )
    for r in calendar_rows:
        console.print(
            f"  {r['slice']}: "
            + ", ".join(
                f"{label} {fmt.format(r[key])}"
                for key, label, fmt in CALENDAR_COLUMNS
                if key in r and not pd.isna(r[key])
            ),
            highlight=False,
        )
    console.print(f"report: {report}")
    return report
