"""`python -m simulator generate`: simulate the marketplace into `$SHOPRANK_HOME/raw` and `/oracle`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulator.config import SimConfig, env_scale, state_settings, utc_today
from simulator.incidents import Incident, plant
from simulator.live.cli import live_command
from simulator.run import Summary, generate

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()


class Scale(StrEnum):
    tiny = "tiny"
    small = "small"
    medium = "medium"
    large = "large"


@app.callback()
def main() -> None:
    """Seeded marketplace simulator standing in for production logs."""


app.command("live")(live_command)


@app.command("generate")
def generate_command(
    scale: Annotated[Scale | None, typer.Option(help="Marketplace size; default SHOPRANK_SCALE (else small).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and end date give identical bytes.")] = 42,
    end_date: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Exclusive end of the period (UTC); default today."),
    ] = None,
    flaw_rate: Annotated[
        float, typer.Option(min=0.0, max=0.05, help="Share of rows per event table and flaw family.")
    ] = 0.005,
    days: Annotated[
        int | None,
        typer.Option(min=7, max=800, help="Days of history (default: the scale's); each day keeps its volume."),
    ] = None,
    home: Annotated[Path | None, typer.Option(help="State folder; default SHOPRANK_HOME (else .state).")] = None,
    incident: Annotated[
        list[str] | None,
        typer.Option(help="Plant an incident, KIND[:TARGET]@YYYY-MM-DD (simulator/incidents.py); repeatable."),
    ] = None,
) -> None:
    """Wipe and rewrite raw/ and oracle/ with a freshly simulated period."""
    try:
        incidents = [Incident.parse(text) for text in incident or []]
    except ValueError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(2) from None
    settings = state_settings(home)
    config = SimConfig(
        scale=(scale.value if scale is not None else env_scale()),
        seed=seed,
        end_date=end_date.date() if end_date is not None else utc_today(),
        flaw_rate=flaw_rate,
        home=settings.home_dir,
        days=days,
    )
    console.print(
        f"simulating [bold]{config.scale}[/] marketplace, seed {config.seed}, "
        f"{config.start_date} .. {config.end_date} (exclusive) into {settings.home_dir}"
    )
    with Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=config.spec.n_days)

        def report(label: str, done: int, total: int) -> None:
            if total:
                progress.update(task, description=label, completed=done, total=total)
            else:
                progress.update(task, description=label)

        summary = generate(config, progress=report)
    print_summary(summary)
    for name, rows in plant(settings.raw_dir, incidents).items():
        console.print(f"[yellow]planted incident[/] {name}: {rows:,} rows")


@app.command("panel")
def panel_command(
    scale: Annotated[Scale | None, typer.Option(help="Marketplace size; default SHOPRANK_SCALE (else small).")] = None,
    seed: Annotated[int, typer.Option(help="The seed `generate` used.")] = 42,
    end_date: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="The end date `generate` used; default today.")
    ] = None,
    home: Annotated[Path | None, typer.Option(help="State folder; default SHOPRANK_HOME (else .state).")] = None,
) -> None:
    """Redraw only the merchant funnel panels (merchant_panels/) of a home; `generate` writes them too."""
    from simulator.merchant_panel import build_world, write_panel

    settings = state_settings(home)
    config = SimConfig(
        scale=(scale.value if scale is not None else env_scale()),
        seed=seed,
        end_date=end_date.date() if end_date is not None else utc_today(),
        home=settings.home_dir,
    )
    stats = write_panel(settings.home_dir, config, build_world(config))
    console.print_json(data=stats)


def print_summary(summary: Summary) -> None:
    table = Table(title=f"raw tables ({summary.raw_dir})", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("planted flaws", justify="right")
    for name, rows in summary.rows.items():
        flaws = summary.flaw_counts.get(name)
        table.add_row(name, f"{rows:,}", f"{sum(flaws.values()):,}" if flaws else "")
    console.print(table)
    console.print(
        f"CTR {summary.ctr:.2%}  post-click CVR {summary.cvr:.2%}  oracle AUC {summary.oracle_auc:.3f}  "
        f"planted causes {len(summary.planted)}  ({summary.seconds:.1f}s)"
    )
    console.print(f"oracle (evaluation only): {summary.oracle_dir}")
    if summary.merchant_panel:
        mp = summary.merchant_panel
        console.print(
            f"merchant funnel panels: {mp['orders_per_day']:,.0f} orders/day, top 1% / 10% of merchants "
            f"{mp['top_1pct_gmv_share']:.0%} / {mp['top_10pct_gmv_share']:.0%} of GMV, orders per merchant-week "
            f"mean {mp['orders_per_merchant_week_mean']:.1f}, median {mp['orders_per_merchant_week_median']:.1f}"
        )
