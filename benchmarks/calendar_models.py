"""`make bench-calendar`: ctr_model_v1 beside ctr_model_v3_calendar per day kind, over seeds and periods (issue 18, 4).

Each cell (seed, END_DATE) gets its own state folder `<root>/s<seed>-<end>`: `make data features apply train` (v1 on
ctr_model_v1), `make train FEATURE_SERVICE=ctr_model_v3_calendar` (v2 of the registry, on the same frozen test rows:
same labels, same split), then `python -m training evaluate --version N` for both. The figures are the evaluation's
own (`eval_calendar_day_kind_<kind>_*` in MLflow): CTR AUC, CVR ECE vs the oracle, GMV@10 / oracle, per day kind.
A cell whose JSON exists is not run again; `render` prints the markdown table and the spread over cells.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)

SERVICES = {"1": "ctr_model_v1", "2": "ctr_model_v3_calendar"}
KINDS = ("normal", "campaign", "mega")
FIGURES = (
    "ctr_auc",
    "ctr_ece_vs_oracle",
    "cvr_ece_vs_oracle",
    "cvr_ece_vs_oracle_clicked",
    "gmv_at_10_ratio_to_oracle",
    "rows",
)
ROOT = Path(__file__).resolve().parents[1]


def _make(home: Path, scale: str, *targets: str, env: dict[str, str] | None = None) -> None:
    full = os.environ | {"SHOPRANK_HOME": str(home)} | (env or {})
    subprocess.run(["make", "--no-print-directory", *targets, f"SCALE={scale}"], cwd=ROOT, env=full, check=True)


def _metrics(home: Path, service: str) -> dict[str, float]:
    """The evaluation of the newest version trained on `service` in the cell (a cell re-trained after a change
    of the training code keeps its data and labels; the newest version is the one that says what the code does)."""
    os.environ["SHOPRANK_HOME"] = str(home)
    from mlflow import MlflowClient

    from platform_common.registry import connect
    from platform_common.settings import Settings

    settings = Settings()
    connect(settings)
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    mv = max((v for v in versions if v.tags.get("feature_service") == service), key=lambda v: int(v.version))
    run = client.get_run(str(mv.run_id))
    return {k.removeprefix("eval_"): v for k, v in run.data.metrics.items() if k.startswith("eval_")}


@app.command()
def cell(
    seed: int = typer.Option(...),
    end_date: str = typer.Option(..., help="END_DATE (exclusive) of the simulated period."),
    scale: str = typer.Option("small"),
    root: Path = typer.Option(Path("/tmp/calendar-bench"), help="Folder of the cells' state folders and results."),
    history_days: int | None = typer.Option(
        None, help="Days of simulated history (HISTORY_DAYS; default the scale's): earlier campaigns to learn from."
    ),
) -> None:
    """Simulate, build, train v1 and v3_calendar, evaluate both; write <root>/<scale>-s<seed>-<end>[-d<days>].json."""
    name = f"{scale}-s{seed}-{end_date}" + (f"-d{history_days}" if history_days else "")
    out = root / f"{name}.json"
    if out.exists():
        typer.echo(f"{out} exists: skipped")
        return
    home = root / name
    env = {"SEED": str(seed), "END_DATE": end_date, "HISTORY_DAYS": str(history_days or "")}
    _make(home, scale, "data", "features", "apply", "train", env=env)
    _make(home, scale, "train", env={"FEATURE_SERVICE": SERVICES["2"]})
    for version in SERVICES:
        subprocess.run(
            [sys.executable, "-m", "training", "evaluate", "--version", version],
            cwd=ROOT,
            env=os.environ | {"SHOPRANK_HOME": str(home), "SHOPRANK_SCALE": scale},
            check=True,
        )
    result = {
        "seed": seed,
        "end_date": end_date,
        "scale": scale,
        "history_days": history_days,
        "models": {service: _metrics(home, service) for service in SERVICES.values()},
    }
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    typer.echo(f"wrote {out}")


@app.command()
def refresh(root: Path = typer.Option(Path("/tmp/calendar-bench"))) -> None:
    """Re-read every cell's figures from its MLflow (the newest version per model): after a model was re-trained in
    a cell's home with `make train FEATURE_SERVICE=...` and evaluated with `python -m training evaluate`."""
    for out in sorted(root.glob("*.json")):
        result = json.loads(out.read_text())
        result["models"] = {service: _metrics(root / out.stem, service) for service in SERVICES.values()}
        out.write_text(json.dumps(result, indent=1, sort_keys=True))
        typer.echo(f"refreshed {out}")


def _fmt(value: float | None, figure: str) -> str:
    if value is None:
        return "-"
    if figure == "gmv_at_10_ratio_to_oracle":
        return f"{value:.1%}"
    if figure == "rows":
        return f"{value:,.0f}"
    return f"{value:.4f}"


@app.command()
def render(root: Path = typer.Option(Path("/tmp/calendar-bench"))) -> None:
    """Markdown: one row per cell, model and day kind present in its test window; then the spread per kind."""
    cells = [json.loads(p.read_text()) for p in sorted(root.glob("*.json"))]
    print(
        "| scale | history days | seed | END_DATE | model | day kind | rows | CTR AUC | CTR ECE vs oracle "
        "| CVR ECE vs oracle (all impressions) | CVR ECE vs oracle (clicked) | GMV@10 / oracle |"
    )
    print("|---|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    spread: dict[tuple[str, str, str, str], list[float]] = {}
    for c in cells:
        for model, m in c["models"].items():
            for kind in (*KINDS, "all"):
                key = f"calendar_day_kind_{kind}_" if kind != "all" else ""
                if kind != "all" and f"{key}rows" not in m:
                    continue
                names = {
                    "rows": f"{key}rows" if kind != "all" else "test_rows",
                    "ctr_auc": f"{key}ctr_auc" if kind != "all" else "test_auc",
                    "ctr_ece_vs_oracle": f"{key}ctr_ece_vs_oracle" if kind != "all" else "test_ece_vs_oracle",
                    "cvr_ece_vs_oracle": f"{key}cvr_ece_vs_oracle" if kind != "all" else "cvr_test_ece_vs_oracle",
                    "cvr_ece_vs_oracle_clicked": f"{key}cvr_ece_vs_oracle_clicked"
                    if kind != "all"
                    else "cvr_test_ece_vs_oracle_clicked",
                    "gmv_at_10_ratio_to_oracle": f"{key}gmv_at_10_ratio_to_oracle"
                    if kind != "all"
                    else "gmv_at_10_ratio_to_oracle",
                }
                vals = {f: m.get(names[f]) for f in FIGURES}
                days = c.get("history_days") or "scale's"
                for f in FIGURES[:5]:
                    if vals[f] is not None:
                        spread.setdefault((str(days), model, kind, f), []).append(float(vals[f]))
                print(
                    f"| {c['scale']} | {days} | {c['seed']} | {c['end_date']} | {model} | {kind} | "
                    + " | ".join(_fmt(vals[f], f) for f in ("rows", *FIGURES[:5]))
                    + " |"
                )
    print()
    print("| history days | model | day kind | figure | cells | min | mean | max |")
    print("|---:|---|---|---|---:|---:|---:|---:|")
    for (days, model, kind, f), series in sorted(spread.items()):
        print(
            f"| {days} | {model} | {kind} | {f} | {len(series)} | {_fmt(min(series), f)} | "
            f"{_fmt(sum(series) / len(series), f)} | {_fmt(max(series), f)} |"
        )


if __name__ == "__main__":
    app()
