"""`make monitor` (python -m serving.monitoring): exit 0 on a clean state, 1 when an alert fires, 2 on bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from platform_common.settings import get_settings
from serving.monitoring.alerts import Window
from serving.monitoring.config import DEFAULT_PATH, ThresholdError, load_thresholds

app = typer.Typer(add_completion=False, help="Monitoring: data quality, drift, freshness, online model quality.")
console = Console(stderr=True)


def window_for(day: str | None, days: int, now: datetime) -> Window:
    """`days` full UTC days ending with `day` (default: yesterday, the last full day)."""
    if day is None:
        end = datetime(now.year, now.month, now.day, tzinfo=UTC)
    else:
        try:
            end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
        except ValueError:
            raise ThresholdError(f"--day: expected YYYY-MM-DD, got {day!r}") from None
    return Window(end - timedelta(days=days), end)


def parse_as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ThresholdError(f"--as-of: expected an ISO time such as 2026-03-09T06:00, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def main(
    day: str | None = typer.Option(None, help="Last day of the window, YYYY-MM-DD (default: yesterday, UTC)."),
    days: int = typer.Option(1, min=1, max=30, help="Window length in days."),
    thresholds: Path = typer.Option(DEFAULT_PATH, help="Thresholds YAML (serving/monitoring/thresholds.yml)."),
    run_name: str | None = typer.Option(None, help="Folder name under $SHOPRANK_HOME/monitoring/."),
    mlflow: bool = typer.Option(True, help="Log the report, alerts and metrics to MLflow."),
    as_of: str | None = typer.Option(
        None, help="UTC ISO time the labels are judged at (default: now); only requests older by the delay count."
    ),
) -> None:
    try:
        th = load_thresholds(thresholds)
        window = window_for(day, days, datetime.now(UTC))
        when = parse_as_of(as_of)
    except ThresholdError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(2) from None
    from serving.monitoring.run import monitor

    outcome = monitor(get_settings(), th, window, as_of=when, run_name=run_name, log_to_mlflow=mlflow)
    for alert in outcome.result.alerts:
        # escaped: a target such as impressions[surface=search] is not rich markup
        console.print(
            f"[red]ALERT[/] {alert.check} [bold]{escape(alert.target)}[/]: {alert.measured:.4g} (threshold "
            f"{alert.threshold:.4g}) {escape(alert.message)}",
            soft_wrap=True,
        )
    console.print(f"report: {outcome.folder / 'report.html'}")
    console.print(f"alerts: {outcome.folder / 'alerts.json'} ({len(outcome.result.alerts)})")
    raise typer.Exit(1 if outcome.result.alerts else 0)
