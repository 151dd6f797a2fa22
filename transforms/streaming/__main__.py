"""`python -m transforms.streaming run|backfill`: the stream processor (`make stream`) and its backfill."""

from __future__ import annotations

import signal
import socket
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from platform_common.event_stream import open_stream
from platform_common.settings import get_settings
from platform_common.stream_log import ensure_log

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()


@app.command()
def run(
    seconds: Annotated[
        float | None, typer.Option(min=0.1, max=10_000_000.0, help="Stop after this long (default: until Ctrl-C).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Events read per batch at most.")] = 500,
    block_ms: Annotated[int, typer.Option(min=1, max=60_000, help="Wait this long for events when idle.")] = 200,
    consumer: Annotated[str | None, typer.Option(help="Consumer name in the group (default: host name).")] = None,
    metrics_seconds: Annotated[
        float, typer.Option(min=0.1, max=3600.0, help="Rewrite the Prometheus textfile this often (and at exit).")
    ] = 5.0,
) -> None:
    """Consume the event stream: windowed features per user and product, pushed online and logged for training."""
    from platform_common.feast_config import get_feature_store
    from transforms.streaming.metrics import StreamMetrics, metrics_path
    from transforms.streaming.processor import GROUP, FeastPusher, Processor

    settings = get_settings()
    ensure_log(settings)
    stream = open_stream(settings)
    consumer = consumer or socket.gethostname()
    processor = Processor(
        stream,
        FeastPusher(get_feature_store(settings)),
        settings.stream_dir,
        settings.stream_log_dir,
        batch_size=batch_size,
        consumer=consumer,
    )
    metrics = StreamMetrics(metrics_path(settings.stream_dir, consumer), GROUP)
    metrics.write(stream.lag(GROUP))
    next_write = time.monotonic() + metrics_seconds
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    deadline = None if seconds is None else time.monotonic() + seconds
    started = time.monotonic()
    read = accepted = quarantined = 0
    with Progress(
        TextColumn("[bold]stream[/]"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
        console=console,
    ) as bar:
        task = bar.add_task("stream", total=seconds, line="waiting for events")
        # bounded: stops at the deadline or on SIGINT/SIGTERM, each wait at most block_ms
        while not stop and (deadline is None or time.monotonic() < deadline):
            result = processor.step(block_ms=block_ms, should_stop=lambda: stop)
            read += result.read
            accepted += result.accepted
            quarantined += sum(result.quarantined.values())
            metrics.observe(result)
            if time.monotonic() >= next_write:
                metrics.write(stream.lag(GROUP))
                next_write = time.monotonic() + metrics_seconds
            elapsed = time.monotonic() - started
            line = (
                f"{read:,} read  {accepted:,} accepted  {quarantined:,} quarantined  "
                f"{read / max(elapsed, 1e-9):,.0f}/s  lag {stream.lag(GROUP):,}"
            )
            bar.update(task, completed=elapsed if seconds else None, line=line)
    metrics.write(stream.lag(GROUP))
    stream.close()
    console.print(f"metrics: {metrics.path}")
    counts = dict(sorted(processor.engine.counts.items()))
    console.print(f"stream: {read:,} events read, {accepted:,} accepted; counts {counts}")


@app.command("backfill")
def backfill_command(
    until: Annotated[
        datetime | None,
        typer.Option(help="Replay events landed before this UTC time (default: all landed events)."),
    ] = None,
    seed_processor: Annotated[
        bool, typer.Option(help="Start the processor from the history's state if it has no checkpoint yet.")
    ] = True,
) -> None:
    """The stream features over the raw landing zone's history, written to the offline log."""
    from transforms.streaming.backfill import as_checkpoint, backfill
    from transforms.streaming.processor import GROUP, checkpoint_path, save_checkpoint

    settings = get_settings()
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    ensure_log(settings)
    with console.status("replaying the raw landing zone"):
        result = backfill(settings.raw_dir, settings.stream_log_dir, until)
    path = checkpoint_path(settings.stream_dir, GROUP)
    if seed_processor and not path.exists():
        save_checkpoint(path, as_checkpoint(result))
    console.print(
        f"backfill: {result.events:,} events, {result.accepted:,} accepted, rows {result.rows}; "
        f"counts {dict(sorted(result.engine.counts.items()))}"
    )


if __name__ == "__main__":
    app()
