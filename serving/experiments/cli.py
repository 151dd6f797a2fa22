"""`python -m serving.experiments start|stop|list|show`: the commands behind `make experiment-start`,
`make experiment-stop` and `make experiments`.

A refused command prints one line saying why and exits 2, having changed nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console

from serving.experiments.model import DESIGNS, ExperimentError, build

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Online experiments of the ranker (A/B, interleaving)."
)
console = Console()
err = Console(stderr=True)


def parse_time(value: str | None, what: str) -> datetime | None:
    """ISO 8601; a time without a zone is taken as UTC; `now` is now."""
    if value is None or value == "":
        return None
    if value == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ExperimentError(f"{what} {value!r} is not an ISO time like 2026-11-30T12:00:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _refused(command: str, exc: Exception) -> typer.Exit:
    message = str(exc) if isinstance(exc, ExperimentError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    err.print(f"[red]{command} refused, nothing changed:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command("start")
def start_cmd(
    experiment_id: str = typer.Option(..., "--id", help="Experiment id: lower-case letters, digits, _ and -."),
    arms: str = typer.Option(
        ..., help="NAME=TARGET[:SHARE],...; TARGET is an alias (champion) or a version (3 or v3); no shares: equal."
    ),
    design: str = typer.Option("ab", help=f"One of {', '.join(DESIGNS)}."),
    salt: str = typer.Option(None, help="Assignment salt (default: the id). A new salt reshuffles users."),
    start: str = typer.Option(None, help="UTC start, ISO 8601 (default: now)."),
    stop: str = typer.Option(None, help="UTC stop, ISO 8601 (default: open until `stop`)."),
) -> None:
    """Start (or schedule) an experiment; the service picks it up at its next registry poll."""
    from platform_common.settings import get_settings
    from serving.experiments import store
    from training.audit import actor

    try:
        begin = parse_time(start, "start") or datetime.now(UTC)
        experiment = build(experiment_id, design, arms, salt, begin, parse_time(stop, "stop"), created_by=actor())
        store.start(get_settings(), experiment)
    except Exception as exc:  # the registry down included: one line, not a traceback
        raise _refused("experiment start", exc) from exc
    console.print(f"[green]STARTED[/] {experiment.describe()}", highlight=False, soft_wrap=True)


@app.command("stop")
def stop_cmd(experiment_id: str = typer.Argument(..., help="The experiment to stop.")) -> None:
    """Stop a running experiment now (or cancel a scheduled one)."""
    from platform_common.settings import get_settings
    from serving.experiments import store

    try:
        stopped = store.stop(get_settings(), experiment_id)
    except Exception as exc:
        raise _refused("experiment stop", exc) from exc
    console.print(f"[green]STOPPED[/] {stopped.describe()}", highlight=False, soft_wrap=True)


@app.command("list")
def list_cmd() -> None:
    """Every experiment, by start time, with its state now."""
    from rich.table import Table

    from platform_common.settings import get_settings
    from serving.experiments import store

    settings = get_settings()
    now = datetime.now(UTC)
    table = Table(title=f"experiments on {settings.model_name}")
    for col in ("id", "design", "arms", "start (UTC)", "end (UTC)", "state", "by"):
        table.add_column(col)
    for e in store.list_experiments(settings):
        state = "running" if e.running(now) else "finished" if e.finished(now) else "scheduled"
        end = e.end.isoformat(timespec="seconds") if e.end else "open"
        arms = ", ".join(a.describe() for a in e.arms)
        table.add_row(e.id, e.design, arms, e.start.isoformat(timespec="seconds"), end, state, e.created_by)
    console.print(table)


@app.command("show")
def show_cmd(experiment_id: str = typer.Argument(..., help="The experiment to show.")) -> None:
    """One experiment's stored definition, as JSON."""
    from platform_common.settings import get_settings
    from serving.experiments import store

    try:
        experiment = store.get(get_settings(), experiment_id)
    except Exception as exc:
        raise _refused("experiment show", exc) from exc
    print(json.dumps(experiment.model_dump(mode="json"), indent=2))


@app.command("report")
def report_cmd(
    experiment_id: str = typer.Argument(..., help="The experiment to analyse."),
    window_minutes: float = typer.Option(
        1440.0, min=0.1, max=43_200.0, help="Attribution window: outcomes within this long after serving count."
    ),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not log the analysis to MLflow."),
) -> None:
    """Analyse an experiment: per-arm metrics, lifts with intervals by user, SRM, CUPED, guardrails, the
    oracle's truth; writes the HTML report and summary.json (and logs them to MLflow)."""
    from datetime import timedelta

    from platform_common.settings import get_settings
    from serving.experiments.report import write_report

    try:
        analysis, report, summary_path = write_report(
            get_settings(), experiment_id, timedelta(minutes=window_minutes), log_mlflow=not no_mlflow
        )
    except Exception as exc:
        raise _refused("experiment report", exc) from exc
    s = analysis.summary
    m = s.metrics["gmv_per_request"]
    truth = f"; oracle's true lift {m.true_lift:+.1%}" if m.true_lift is not None else ""
    console.print(
        f"GMV per request, {s.treatment} over {s.control}: {m.lift:+.1%} "
        f"(95% CI {m.ci_low:+.1%} .. {m.ci_high:+.1%}, p = {m.p_value:.3g}){truth}"
        + ("" if (m.model_extra or {}).get("estimable", True) else " [not estimable: no order in an arm yet]"),
        highlight=False,
        soft_wrap=True,
    )
    for name in ("ctr", "cvr"):
        x = s.metrics[name]
        t = f", true {x.true_lift:+.1%}" if x.true_lift is not None else ""
        console.print(f"{name.upper()}: {x.lift:+.1%} ({x.ci_low:+.1%} .. {x.ci_high:+.1%}{t})", highlight=False)
    if s.srm_p_value is not None:
        console.print(f"sample-ratio p-value {s.srm_p_value:.3g}", highlight=False)
    failed = [g.name for g in s.guardrails if not g.passed]
    console.print(f"guardrails: {'all pass' if not failed else 'FAILED ' + ', '.join(failed)}", highlight=False)
    colour = "green" if s.readable else "yellow"
    console.print(
        f"[{colour}]{'readable' if s.readable else 'not readable yet'}[/]: {s.readable_reason}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"report: {report}\nsummary: {summary_path}", highlight=False, soft_wrap=True)


@app.command("plan")
def plan_cmd(
    rate: float = typer.Option(..., min=0.001, help="Requests per second the experiment will get."),
    seconds: float = typer.Option(None, min=1.0, help="Duration in seconds (or --days)."),
    days: float = typer.Option(None, min=0.0001, help="Duration in days (or --seconds)."),
    alpha: float = typer.Option(0.05, min=0.0001, max=0.5, help="Two-sided significance level."),
    power: float = typer.Option(0.8, min=0.05, max=0.9999, help="Power to detect the lift."),
    share: float = typer.Option(0.5, min=0.01, max=0.99, help="Treatment's share of users (A/B)."),
) -> None:
    """Minimum detectable GMV-per-request lift for a rate and duration, from the history's user-level variance."""
    from platform_common.settings import get_settings
    from serving.experiments.report import plan

    if (seconds is None) == (days is None):
        err.print("[red]experiment plan refused:[/] give exactly one of --seconds or --days", highlight=False)
        raise typer.Exit(2)
    duration = seconds if seconds is not None else days * 86_400.0
    try:
        p = plan(get_settings(), rate, duration, alpha, power, share)
    except Exception as exc:
        raise _refused("experiment plan", exc) from exc
    console.print(
        f"history: {p.history_users:,} users, {p.history_requests:,} requests, GMV per request "
        f"{p.mean_gmv_per_request:.4f} (variance per request {p.per_request_variance:.4f}, by user)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"{p.requests:,} requests ({rate:g}/s for {duration:g} s), {p.requests_per_arm:,.0f} in the smaller arm: "
        f"[bold]minimum detectable GMV-per-request lift {p.mde:.1%}[/] (two-sided alpha {alpha:g}, power {power:.0%})",
        highlight=False,
        soft_wrap=True,
    )
