"""`python -m training {train,promote,status}`: the commands behind `make train|promote|status`."""

from __future__ import annotations

import os

import typer
from rich.console import Console

from training.online_gate import OnlineRule

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, promote and inspect ranking models.")
console = Console()


@app.command("train")
def train_cmd(
    in_memory: bool = typer.Option(
        False, "--in-memory", help="Hold the whole training set in pandas (the old path; to compare the two)."
    ),
    max_negatives: int = typer.Option(
        None,
        "--max-negatives",
        min=1,
        help="Non-clicked train rows the CTR and CTCVR heads learn from at most; past it a weighted hash sample "
        "(default: TrainConfig.max_train_negatives).",
    ),
) -> None:
    """Build the point-in-time training set from Feast, train, evaluate against the oracle, register."""
    # The feature service comes from the settings (SHOPRANK_TRAIN_FEATURE_SERVICE, `make train FEATURE_SERVICE=`);
    # the run and the version record it, and serving reads the champion's.
    from feast.errors import FeatureServiceNotFoundException

    from platform_common.feast_config import get_feature_store
    from platform_common.settings import get_settings
    from training.config import TrainConfig
    from training.train import train

    settings = get_settings()
    name = settings.train_feature_service
    try:  # before any data is read: a misspelt name is one line, not a stack trace after the join
        get_feature_store(settings).get_feature_service(name)
    except FeatureServiceNotFoundException as exc:
        console.print(
            f"[red]SHOPRANK_TRAIN_FEATURE_SERVICE={name!r}: no such feature service in Feast's registry[/] "
            "(ctr_model_v1, ctr_model_v2_stream; run `make apply` after changing feature_repo/)",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(2) from exc
    sampling = {} if max_negatives is None else {"max_train_negatives": max_negatives}
    result = train(TrainConfig(in_memory=in_memory, feature_service=name, **sampling))
    console.print_json(data={"run_id": result.run_id, "version": result.model_version, "metrics": result.metrics})


@app.command("promote")
def promote_cmd(
    version: str = typer.Option(None, help="Version to consider (default: the newest)."),
    force: bool = typer.Option(False, "--force", help="Promote despite failed checks; recorded as forced."),
    min_auc_gain: float = typer.Option(0.0, help="CTR AUC the candidate must gain over the champion."),
    max_logloss_regression: float = typer.Option(0.0005, help="Allowed CTR/CVR log-loss increase."),
    max_ece_regression: float = typer.Option(0.005, help="Allowed CTR/CVR calibration-error increase."),
    max_gmv_regression: float = typer.Option(0.01, help="Allowed relative GMV@10 drop (with the oracle)."),
    experiment: str = typer.Option(
        None,
        help="Also require online evidence: the experiment whose summary.json (make experiment-report) tested "
        "the candidate against the champion.",
    ),
    online_rule: OnlineRule = typer.Option(
        OnlineRule.SUPERIOR,
        help="With --experiment, what the GMV/request lift's 95% interval must show: superior (ci_low > 0) or "
        "non-inferior (ci_high >= 0). docs/experiments.md.",
        case_sensitive=False,
    ),
) -> None:
    """Gate the newest version against the champion on the same frozen test rows; move `champion` if it wins."""
    from rich.table import Table

    from training.promotion import PromotionError, PromotionPolicy, promote

    policy = PromotionPolicy(
        min_auc_gain=min_auc_gain,
        max_logloss_regression=max_logloss_regression,
        max_ece_regression=max_ece_regression,
        max_gmv_regression=max_gmv_regression,
    )
    try:
        decision = promote(
            policy=policy, version=version, force=force, experiment=experiment or None, online_rule=online_rule
        )
    except (PromotionError, LookupError, ValueError, OSError) as exc:
        # soft_wrap: one line whatever the terminal's width, as the other refusals
        console.print(f"[red]promotion failed, no alias moved:[/] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from exc
    except Exception as exc:  # e.g. the registry database is unreachable
        console.print(
            f"[red]promotion failed, no alias moved:[/] {type(exc).__name__}: {str(exc).splitlines()[0]}",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(2) from exc
    if decision.candidate_metrics:
        table = Table(title=f"candidate v{decision.candidate} vs champion v{decision.champion_before or '-'}")
        for col in ("metric", "candidate", "champion", "delta"):
            table.add_column(col, justify="right")
        for key, value in decision.candidate_metrics.items():
            champ = decision.champion_metrics.get(key)
            delta = f"{value - champ:+.5f}" if champ is not None else ""
            table.add_row(key, f"{value:.5f}", f"{champ:.5f}" if champ is not None else "-", delta)
        console.print(table)
    if decision.checks:
        checks = Table(title="checks")
        for col in ("check", "result", "detail"):
            checks.add_column(col)
        for name, ok, detail in decision.checks:
            checks.add_row(name, "[green]pass[/]" if ok else "[red]FAIL[/]", detail)
        console.print(checks)
    colour = "green" if decision.promoted else "yellow"
    console.print(f"[{colour}]{'PROMOTED' if decision.promoted else 'NOT PROMOTED'}[/]: {decision.reason}")


@app.command("baseline")
def baseline_cmd(
    kind: str = typer.Option("random", help="random (a fixed pseudo-random order) or popularity (recent clicks)."),
    seed: int = typer.Option(0, help="Seed of the random baseline's scores."),
) -> None:
    """Register a clearly worse ranker (for experiments; never promoted as the newest version)."""
    from training.baseline import register_baseline

    try:
        version = register_baseline(kind, seed=seed)
    except (LookupError, ValueError) as exc:
        console.print(f"[red]baseline refused:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"[green]Registered baseline v{version}[/] ({kind}): serve it as an experiment arm, e.g. v{version}")
    print(version)


@app.command("rollback")
def rollback_cmd() -> None:
    """Restore the champion that the current champion replaced; the rollback is recorded in the history."""
    from training.promotion import PromotionError, rollback

    try:
        event = rollback()
    except (PromotionError, LookupError) as exc:
        console.print(f"[red]rollback failed, no alias moved:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"[green]ROLLED BACK[/]: champion v{event.from_version} -> v{event.to_version} by {event.by}")


@app.command("history")
def history_cmd() -> None:
    """Every promotion, refusal and rollback, oldest first."""
    from rich.table import Table

    from platform_common.registry import connect
    from platform_common.settings import get_settings
    from training.audit import history

    settings = get_settings()
    table = Table(title=f"promotion history of {settings.model_name}")
    for col in ("at (UTC)", "event", "from", "to", "by", "forced", "experiment", "reason"):
        table.add_column(col)
    for e in history(connect(settings), settings, settings.model_name):
        table.add_row(
            e.at,
            e.kind,
            e.from_version or "-",
            e.to_version or "-",
            e.by,
            "yes" if e.forced else "",
            e.experiment or "",
            e.reason,
        )
    console.print(table)


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
