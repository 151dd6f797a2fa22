"""`python -m training {train,promote,status}`: the commands behind `make train|promote|status`."""

from __future__ import annotations

import os

import typer
from rich.console import Console

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, promote and inspect ranking models.")
console = Console()


@app.command("train")
def train_cmd() -> None:
    """Build the point-in-time training set from Feast, train, evaluate against the oracle, register."""
    from training.train import train

    result = train()
    console.print_json(data={"run_id": result.run_id, "version": result.model_version, "metrics": result.metrics})


@app.command("promote")
def promote_cmd(
    min_auc_gain: float = typer.Option(0.0, help="AUC the candidate must gain over the champion."),
) -> None:
    """Make the newest version champion if no champion exists or it beats the champion on the same rows."""
    from training.promotion import promote

    try:
        decision = promote(min_auc_gain=min_auc_gain)
    except (LookupError, ValueError) as exc:
        console.print(f"[red]promotion failed:[/] {exc}")
        raise typer.Exit(2) from exc
    colour = "green" if decision.promoted else "yellow"
    console.print(f"[{colour}]{'PROMOTED' if decision.promoted else 'NOT PROMOTED'}[/]: {decision.reason}")


@app.command("evaluate")
def evaluate_cmd(version: str = typer.Option(None, help="Model version (default: the champion).")) -> None:
    """Full evaluation against the oracle: metrics, slices, plots and an HTML report, logged to MLflow."""
    from training.report import evaluate

    try:
        evaluate(version=version)
    except (LookupError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]evaluation failed:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command("status")
def status_cmd() -> None:
    """Print tracking URI, champions with test metrics, and feature views with materialization times."""
    from training.status import status_json

    print(status_json())


if __name__ == "__main__":
    app()
