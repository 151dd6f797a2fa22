"""`python -m simulator live`: shoppers from the stored world against the running service, for a while."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from platform_common.event_stream import open_stream
from simulator.config import state_settings
from simulator.live.client import PUBLISH_SECONDS, LiveError, ProgressHook, Stats, run_live
from simulator.live.landing import LiveBusy

console = Console()


@contextmanager
def live_progress(seconds: float, out: Console | None = None) -> Iterator[ProgressHook]:
    """A progress bar over the run's planned length, fed by `run_live`'s progress hook."""
    with Progress(
        TextColumn("[bold]live[/]"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
        console=out or console,
        transient=False,
    ) as bar:
        task = bar.add_task("live", total=seconds, line="starting")

        def report(stats: Stats, now: float) -> None:
            elapsed = now - stats.started
            line = (
                f"{stats.answered:,} answered  {stats.rate(now):,.0f}/s  shed {stats.shed:,}  "
                f"errors {stats.failed - stats.shed:,}  experiment {stats.experiment_answers:,}"
            )
            bar.update(task, completed=min(elapsed, seconds), line=line)

        yield report


def live_command(
    rate: Annotated[float, typer.Option(min=0.1, max=5000.0, help="Sessions (POST /rank) per second to send.")] = 50.0,
    seconds: Annotated[float, typer.Option(min=0.1, max=86_400.0, help="Stop by itself after this long.")] = 30.0,
    url: Annotated[str, typer.Option(help="The ranking service; loopback only.")] = "http://127.0.0.1:3000",
    seed: Annotated[int | None, typer.Option(help="Seed of the sessions and reactions (default: fresh).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=512, help="Requests in flight at most (pool size).")] = 32,
    linger: Annotated[
        float, typer.Option(min=0.0, max=3600.0, help="After the last request, keep landing what happens this long.")
    ] = 0.0,
    home: Annotated[Path | None, typer.Option(help="State folder; default SHOPRANK_HOME (else .state).")] = None,
    checkout_speedup: Annotated[
        float,
        typer.Option(
            min=1.0,
            max=10_000.0,
            help="Divide the click-to-order delay (median 25 min) by this, so short runs see their orders land.",
        ),
    ] = 1.0,
    publish_seconds: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=60.0,
            help="With an event stream: publish what has happened this often (it lands in the raw zone every 5 s).",
        ),
    ] = PUBLISH_SECONDS,
) -> None:
    """Live shoppers: sessions from the world `make data` drew, ranked by the service, clicks and orders landed."""
    settings = state_settings(home)
    with live_progress(seconds) as report:
        try:
            stats = asyncio.run(
                run_live(
                    settings.raw_dir,
                    settings.oracle_dir,
                    url,
                    rate,
                    seconds,
                    seed=seed,
                    concurrency=concurrency,
                    linger_seconds=linger,
                    progress=report,
                    checkout_speedup=checkout_speedup,
                    publisher=open_stream(settings) if settings.stream_enabled else None,
                    publish_seconds=publish_seconds,
                )
            )
        except (LiveError, LiveBusy) as exc:
            console.print(f"[red]live: {exc}[/]")
            raise typer.Exit(2) from exc
    print_stats(stats, rate)


def print_stats(stats: Stats, rate: float) -> None:
    table = Table(title=f"live run {stats.run_id}", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    elapsed = stats.ended - stats.started
    lat = np.array(stats.latencies_ms) if stats.latencies_ms else np.zeros(1)
    rows = [
        ("asked rate", f"{rate:,.0f}/s"),
        ("sent", f"{stats.sent:,}"),
        ("answered", f"{stats.answered:,} in {elapsed:.1f}s = {stats.rate():,.1f}/s"),
        ("under an experiment", f"{stats.experiment_answers:,}"),
        (
            "shed (503)",
            f"{stats.shed:,}" + (f" (Retry-After {', '.join(sorted(stats.retry_after))})" if stats.shed else ""),
        ),
        ("connection errors", f"{stats.connection_errors:,}"),
        ("timeouts", f"{stats.timeouts:,}"),
        ("other HTTP errors", ", ".join(f"{k}: {v}" for k, v in sorted(stats.http_errors.items())) or "0"),
        ("unreadable answers", f"{stats.bad_answers:,}"),
        ("latency p50 / p99", f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f} ms"),
    ]
    for name in ("impressions", "clicks", "orders"):
        rows.append(
            (
                name,
                f"{stats.drawn[name]:,} drawn, {stats.landed[name]:,} landed, {stats.pending.get(name, 0):,} pending",
            )
        )
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f"oracle (evaluation only): {stats.run_dir}")
