"""`python -m merchant_growth {diagnose,forecast,train-forecast,promote-forecast}` (behind `make diagnose|forecast`)."""

from __future__ import annotations

import os

import typer
from rich.console import Console

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Merchant GMV diagnostics and forecasts.")
console = Console(stderr=True)


@app.command("diagnose")
def diagnose_cmd(
    merchant_id: str = typer.Argument(..., help="Merchant id, e.g. m00034."),
    period_a: str = typer.Option("", help="Baseline START:END (YYYY-MM-DD:YYYY-MM-DD); default: before period b."),
    period_b: str = typer.Option("", help="Period to explain START:END; default: the last 7 days of data."),
    model: bool = typer.Option(True, help="Explain with the ranking model (SHAP)."),
    as_json: bool = typer.Option(False, "--json", help="Also print the report as JSON on stdout."),
) -> None:
    """Diagnose a merchant's GMV change and write the HTML report; prints its path."""
    from pydantic import ValidationError

    from merchant_growth.diagnosis import diagnose
    from merchant_growth.errors import MerchantGrowthError
    from merchant_growth.report import write_report
    from platform_common.settings import get_settings

    settings = get_settings()
    try:
        report = diagnose(merchant_id, period_a or None, period_b or None, settings, explain_with_model=model)
    except (ValidationError, MerchantGrowthError) as exc:
        console.print(f"[red]diagnosis failed:[/] {exc}")
        raise typer.Exit(2) from exc
    fc, note = None, None
    try:
        from merchant_growth.forecasting import forecast

        fc = forecast(report.merchant_id, settings, source="offline")
    except Exception as exc:  # the report stands without a forecast
        note = f"forecast skipped: {type(exc).__name__}: {exc}"
    path = write_report(settings, report, fc, note)
    console.print(f"primary cause: [bold]{report.primary_cause}[/]. {report.summary}")
    if as_json:
        print(report.model_dump_json(indent=2))
    print(path)


@app.command("check-planted")
def check_planted_cmd(
    days: int = typer.Option(7, help="Days of each period around the change date."),
    model: bool = typer.Option(False, help="Also run the model explanation (slower)."),
) -> None:
    """Evaluation only: diagnose every merchant of oracle/planted_causes.json, the week before its change date
    vs the week from it, and print whether the planted cause is named. A cause whose funnel part stayed within
    noise is not named (`within_noise`), which is not an error; exit 1 when a wrong cause is named."""
    import json
    from datetime import date, timedelta

    from merchant_growth.data import data_bounds
    from merchant_growth.diagnosis import diagnose
    from platform_common.settings import get_settings

    settings = get_settings()
    planted = json.loads((settings.oracle_dir / "planted_causes.json").read_text())
    start, end = data_bounds(settings)
    hits = wrong = 0
    for plant in planted:
        change = date.fromisoformat(plant["change_date"])
        a = (max(start, change - timedelta(days=days)), change - timedelta(days=1))
        b = (change, min(end, change + timedelta(days=days - 1)))
        report = diagnose(plant["merchant_id"], a, b, settings, explain_with_model=model)
        hit = report.primary_cause == plant["cause"]
        named_other = not hit and report.primary_cause not in {"within_noise", "no_clear_cause"}
        merchant = [f for f in report.findings if f.kind == "merchant"]
        named_other = named_other and bool(merchant)  # market context is not a wrong merchant cause
        hits += hit
        wrong += named_other
        strength = merchant[0].strength if merchant else 0.0
        verdict = "ok" if hit else ("WRONG" if named_other else "not named")
        print(
            f"{plant['merchant_id']}  planted {plant['cause']:<15} on {change}  diagnosed {report.primary_cause:<15} "
            f"(lever strength {strength:.2f}, orders {report.funnel_a.orders}/{report.funnel_b.orders})  {verdict}"
        )
    print(f"{hits} of {len(planted)} planted causes named, {wrong} wrong causes named")
    if wrong:
        raise typer.Exit(1)


@app.command("plan-campaign")
def plan_campaign_cmd(
    merchant_id: str = typer.Argument(..., help="Merchant id, e.g. m00034."),
    campaign: str = typer.Option(..., help="Campaign of the calendar: 11.11, 12.12, payday, ... (its next date)."),
    scenarios: str = typer.Option(
        "",
        help="YAML file: a list of scenarios {name, discount, live, price_change, new_merchant_boost, traffic_share}.",
    ),
    discount: float | None = typer.Option(None, help="One scenario beside doing nothing: discount depth 0-0.9."),
    live: bool | None = typer.Option(None, "--live/--no-live", help="... live-streaming on the day."),
    price_change: float | None = typer.Option(None, help="... relative list price change, -0.5 to 0.5."),
    boost: float | None = typer.Option(None, help="... new-merchant boost 0-1 (new merchants only)."),
    traffic_share: float | None = typer.Option(None, help="... exposure multiplier 0.5-2."),
    as_json: bool = typer.Option(False, "--json", help="Also print the plan as JSON on stdout."),
) -> None:
    """What-if plan of a merchant's GMV on an upcoming campaign day: HTML report, scenarios side by side."""
    from pydantic import ValidationError

    from merchant_growth.errors import MerchantGrowthError
    from merchant_growth.plan_report import write_plan_report
    from merchant_growth.plan_schemas import PlanRequest
    from merchant_growth.planner import plan
    from platform_common.settings import get_settings

    flags = {
        "discount": discount,
        "live": live,
        "price_change": price_change,
        "new_merchant_boost": boost,
        "traffic_share": traffic_share,
    }
    custom = {k: v for k, v in flags.items() if v is not None}
    body: dict[str, object] = {"merchant_id": merchant_id, "campaign": campaign}
    try:
        if scenarios:
            from pathlib import Path

            import yaml

            body["scenarios"] = yaml.safe_load(Path(scenarios).read_text())
        elif custom:
            name = ", ".join(f"{k} {v}" for k, v in custom.items())[:40]
            body["scenarios"] = [{"name": "do nothing"}, {"name": name, **custom}]
        response = plan(PlanRequest.model_validate(body), get_settings())
    except (ValidationError, MerchantGrowthError, OSError, ValueError) as exc:
        console.print(f"[red]plan failed:[/] {exc}")
        raise typer.Exit(2) from exc
    path = write_plan_report(get_settings(), response)
    for s in response.scenarios:
        console.print(
            f"{s.name:<32} GMV {s.gmv.value:>10,.0f} [{s.gmv.low:,.0f}, {s.gmv.high:,.0f}]  "
            f"vs doing nothing {s.uplift_vs_do_nothing.value:+.1%}"
        )
    if as_json:
        print(response.model_dump_json(indent=2))
    print(path)


@app.command("forecast")
def forecast_cmd(
    merchant_id: str = typer.Argument(...),
    source: str = typer.Option("auto", help="auto, online or offline features."),
) -> None:
    """Print the champion's next-7-day GMV forecast of a merchant as JSON."""
    from pydantic import ValidationError

    from merchant_growth.errors import MerchantGrowthError
    from merchant_growth.forecasting import forecast

    try:
        print(forecast(merchant_id, source=source).model_dump_json(indent=2))
    except (ValidationError, MerchantGrowthError) as exc:
        console.print(f"[red]forecast failed:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command("train-forecast")
def train_cmd() -> None:
    """Point-in-time dataset from Feast, rolling-origin backtest vs seasonal naive, log and register in MLflow."""
    from merchant_growth.forecast_registry import train_forecast

    result = train_forecast()
    console.print_json(data={"run_id": result.run_id, "version": result.model_version, "metrics": result.metrics})


@app.command("promote-forecast")
def promote_cmd(
    min_wape_gain: float = typer.Option(0.0, help="WAPE the candidate must gain over the champion."),
) -> None:
    """Make the newest forecast version champion if there is none or it beats the champion on the same rows."""
    from merchant_growth.forecast_registry import promote_forecast

    try:
        decision = promote_forecast(min_wape_gain=min_wape_gain)
    except LookupError as exc:
        console.print(f"[red]promotion failed:[/] {exc}")
        raise typer.Exit(2) from exc
    colour = "green" if decision.promoted else "yellow"
    console.print(f"[{colour}]{'PROMOTED' if decision.promoted else 'NOT PROMOTED'}[/]: {decision.reason}")


if __name__ == "__main__":
    app()
