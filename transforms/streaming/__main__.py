"""`python -m transforms.streaming run|backfill`: the stream processor (`make stream`) and its backfill."""

from __future__ import annotations

import json
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from platform_common.event_stream import open_stream
from platform_common.settings import get_settings
from platform_common.stream_log import ensure_log

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()


# What a broken connection raises: the processor reconnects and resumes from its checkpoint instead of exiting.
# A Redis restart (ConnectionError, and BusyLoadingError while it reloads its append-only file; NOGROUP, a
# ResponseError, if it came back without the stream), a locked or vanished SQLite file, a socket error.
def transient_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    import redis

    return (redis.RedisError, sqlite3.OperationalError, OSError)


def parse_crash_at(value: str | None) -> tuple[str, int] | None:
    from transforms.streaming.processor import STAGES

    if value is None:
        return None
    stage, _, batch = value.partition(":")
    if stage not in STAGES or not batch.isdigit() or int(batch) < 1:
        raise typer.BadParameter(f"expected STAGE:BATCH with STAGE one of {', '.join(STAGES)}, got {value!r}")
    return stage, int(batch)


@app.command()
def run(
    seconds: Annotated[
        float | None, typer.Option(min=0.1, max=10_000_000.0, help="Stop after this long (default: until Ctrl-C).")
    ] = None,
    # 5,000: the Feast push costs about the same per batch up to thousands of rows (docs/benchmarks.md, "Stream
    # freshness and throughput"), and the live shoppers land in flushes of thousands: a click behind a flush
    # waits one batch instead of ten. When caught up a read returns what is there, so small batches stay small.
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Events read per batch at most.")] = 5_000,
    block_ms: Annotated[int, typer.Option(min=1, max=60_000, help="Wait this long for events when idle.")] = 200,
    consumer: Annotated[str | None, typer.Option(help="Consumer name in the group (default: host name).")] = None,
    metrics_seconds: Annotated[
        float, typer.Option(min=0.1, max=3600.0, help="Rewrite the Prometheus textfile this often (and at exit).")
    ] = 5.0,
    until_drained: Annotated[
        bool, typer.Option(help="Stop once a read finds nothing and the group's lag is 0 (benchmarks, tests).")
    ] = False,
    timings: Annotated[
        Path | None,
        typer.Option(help="Append one JSON line per batch: visible time, events, step times (benchmarks/stream.py)."),
    ] = None,
    crash_at: Annotated[
        str | None,
        typer.Option(hidden=True, help="Fault tests: SIGKILL this process at STAGE:BATCH (read, logged, pushed, ...)"),
    ] = None,
) -> None:
    """Consume the event stream: windowed features per user and product, pushed online and logged for training."""
    import os

    from platform_common.feast_config import get_feature_store
    from transforms.streaming.catalogue import load_catalogue
    from transforms.streaming.metrics import StreamMetrics, metrics_path
    from transforms.streaming.processor import GROUP, FeastPusher, Processor

    crash = parse_crash_at(crash_at)

    def failpoint(stage: str, batch: int) -> None:
        if crash == (stage, batch):
            console.print(f"crash-at {stage}:{batch}: SIGKILL", highlight=False)
            os.kill(os.getpid(), signal.SIGKILL)

    settings = get_settings()
    ensure_log(settings)
    stream = open_stream(settings, consumer=True)
    consumer = consumer or socket.gethostname()
    processor = Processor(
        stream,
        FeastPusher(get_feature_store(settings)),
        settings.stream_dir,
        settings.stream_log_dir,
        batch_size=batch_size,
        consumer=consumer,
        failpoint=failpoint if crash else None,
        catalogue=load_catalogue(settings.raw_dir),
    )
    metrics = StreamMetrics(metrics_path(settings.stream_dir, consumer), GROUP)
    transient = transient_errors()
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    deadline = None if seconds is None else time.monotonic() + seconds
    started = time.monotonic()
    next_write = 0.0
    read = accepted = quarantined = recoveries = failing = 0
    lag = -1
    with Progress(
        TextColumn("[bold]stream[/]"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
        console=console,
    ) as bar:
        task = bar.add_task("stream", total=seconds, line="waiting for events")
        # bounded: stops at the deadline, on SIGINT/SIGTERM or (--until-drained) when caught up; each wait at most
        # block_ms, each reconnection attempt at most 5 s apart
        while not stop and (deadline is None or time.monotonic() < deadline):
            try:
                result = processor.step(block_ms=block_ms, should_stop=lambda: stop)
                metrics.observe(result)
                if timings is not None and result.visible_at is not None:
                    record = {"visible_us": result.visible_at, "read": result.read, "accepted": result.accepted}
                    record |= {"rows": sum(result.rows.values())} | result.timings
                    with open(timings, "a") as out:
                        out.write(json.dumps(record) + "\n")
                if time.monotonic() >= next_write or (until_drained and not result.read):
                    lag = processor.stream.lag(GROUP)
                    metrics.write(lag)
                    next_write = time.monotonic() + metrics_seconds
            except transient as exc:
                recoveries += 1
                failing += 1  # consecutive failures: the wait doubles from 0.5 s up to 5 s
                wait = min(0.25 * 2 ** min(failing, 5), 5.0)
                console.print(f"stream: {type(exc).__name__}: {exc}; resuming from the checkpoint in {wait:.2f}s")
                time.sleep(wait)
                try:
                    processor.recover(open_stream(settings, consumer=True))
                except transient as again:
                    console.print(f"stream: still unavailable ({type(again).__name__}: {again})")
                continue
            failing = 0
            read += result.read
            accepted += result.accepted
            quarantined += sum(result.quarantined.values())
            elapsed = time.monotonic() - started
            rate = read / max(elapsed, 1e-9)
            line = f"{read:,} read  {accepted:,} accepted  {quarantined:,} quarantined  {rate:,.0f}/s  lag {lag:,}"
            bar.update(task, completed=elapsed if seconds else None, line=line)
            if until_drained and not result.read and lag == 0:
                break
    try:
        metrics.write(processor.stream.lag(GROUP))
    except transient as exc:  # stopping while the transport is down: the textfile keeps its last values
        console.print(f"stream: metrics not rewritten at exit ({exc})")
    processor.stream.close()
    processor.writer.close()  # a snapshot being written in the background is finished before the process ends
    console.print(f"metrics: {metrics.path}")
    counts = dict(sorted(processor.engine.counts.items()))
    console.print(
        f"stream: {read:,} events read, {accepted:,} accepted, {recoveries} reconnections; counts {counts}",
        highlight=False,
    )


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
    from transforms.streaming.processor import GROUP, checkpoint_exists, checkpoint_path, save_checkpoint

    settings = get_settings()
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    ensure_log(settings)
    with console.status("replaying the raw landing zone"):
        result = backfill(settings.raw_dir, settings.stream_log_dir, until)
    path = checkpoint_path(settings.stream_dir, GROUP)
    if seed_processor and not checkpoint_exists(path):
        save_checkpoint(path, as_checkpoint(result))
    console.print(
        f"backfill: {result.events:,} events, {result.accepted:,} accepted, rows {result.rows}; "
        f"counts {dict(sorted(result.engine.counts.items()))}"
    )


if __name__ == "__main__":
    app()
