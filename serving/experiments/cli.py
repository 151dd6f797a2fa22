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
