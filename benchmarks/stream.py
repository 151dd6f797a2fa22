"""`make bench-stream`: event to feature visible in a /rank answer, and the processor's throughput (issue 17, s5).

On a prepared state (`make data features apply materialize stream-backfill`, a champion trained on
`ctr_model_v2_stream`, so /rank reads the stream views per request), per run (one live seed each):

1. **Freshness under live traffic.** The service (`bentoml serve`, as `make serve`), the stream processor (the real
   `python -m transforms.streaming run`, a child process, with `--timings`) and the live shoppers
   (`python -m simulator live --rate R`, publishing what they land) run together. Meanwhile probes: a click of a
   probe user on a probe product (ids no shopper uses, so only the probe can change their features) is published
   to the stream at wall time `t0`, and /rank is asked for that user and ten probe products every
   `--poll-ms` until the answer's pctr differs from the answer before the publication: the stream features of the
   user (missing -> one click) and the product moved the score. **Measured: `t0` -> the arrival of the first /rank
   answer that reflects the click**, the same machine's wall clock on both ends. Its parts, from the processor's
   `--timings` of the batch that took the click (found through the log row it wrote for the probe user):
   stream wait (publication -> the read returned it), batch (parse, windows, log write), Feast push (the user
   view's rows into the online store; it is pushed first, the product view after it), online read (the user view
   pushed -> that /rank answer arrived; includes the /rank call and the polling interval).
Each run is repeated with each of `--batch-sizes` (the processor's `--batch-size`: the most events one read takes;
5,000 by default since 2026-11-30, 500 before), side by side: the live shoppers land in flushes of thousands of
rows, and the Feast push costs about the same per batch whatever its size, so the batch size sets how long a click
behind a flush waits.

2. **Throughput.** The processor stopped, the stream prefilled with `--prefill` events (the landing zone's newest
   impressions, clicks and orders, re-identified and re-timed in their order over the minute before now, so
   they are accepted, not late or duplicate; the table gives the accepted share),
   then `run --until-drained`: events / (last batch acknowledged - first read started), Feast's import excluded.
   Against it, the live driver's publishing rate of step 1 (events published / its duration).

Writes `$SHOPRANK_HOME/bench-stream/<profile>.json` and prints the markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress

from platform_common.event_stream import EventStream, open_stream, raw_events
from platform_common.settings import REPO_ROOT, Settings, export_env, get_settings
from platform_common.stream_log import USER_VIEW, read_log

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
COUNT_GROUP = "bench-stream-count"  # never reads: its lag is the number of events ever published


def _ms(ns: float) -> float:
    return ns / 1e6


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def processor_cmd(timings: Path, batch_size: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "transforms.streaming", "run", "--consumer", "bench", "--timings", str(timings),
            "--metrics-seconds", "1", "--batch-size", str(batch_size), *extra]  # fmt: skip


def rank_pctr(client: httpx.Client, url: str, user: str, products: list[str]) -> tuple[float, ...]:
    """The answer's pctr per product; a shed request (503 under the live load) is asked again."""
    for _ in range(200):
        answer = client.post(f"{url}/rank", json={"user_id": user, "product_ids": products}, timeout=10)
        if answer.status_code != 503:
            break
        time.sleep(0.01)
    answer.raise_for_status()
    return tuple(r["pctr"] for r in sorted(answer.json()["ranking"], key=lambda r: r["product_id"]))


def probe(stream: EventStream, client: httpx.Client, url: str, name: str, poll_s: float, timeout_s: float) -> dict:
    """One probe: publish a click, poll /rank until the answer moves. Times in epoch ns."""
    user, products = f"zu{name}", [f"zp{name}-{j}" for j in range(10)]
    before = rank_pctr(client, url, user, products)
    t0 = time.time_ns()
    ts = t0 // 1000
    stream.publish([{"kind": "click", "event_id": f"zc{name}", "user_id": user, "product_id": products[0],
                     "event_ts": ts, "ingested_at": ts, "impression_id": f"zi{name}"}])  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now_pctr = rank_pctr(client, url, user, products)
        if now_pctr != before:
            return {"user": user, "published": t0, "seen": time.time_ns()}
        time.sleep(poll_s)
    return {"user": user, "published": t0, "seen": None}


def decompose(probes: list[dict], timings: list[dict], log_dir: Path) -> list[dict]:
    """Each seen probe with its batch's step times (matched by the visible time of the log row of its user)."""
    first_visible: dict[str, int] = {}
    for row in read_log(log_dir, USER_VIEW).select(["user_id", "event_timestamp"]).to_pylist():
        us = int(row["event_timestamp"].timestamp() * 1_000_000)
        if row["user_id"].startswith("zu") and row["user_id"] not in first_visible:
            first_visible[row["user_id"]] = us
    by_visible = {t["visible_us"]: t for t in timings}
    out = []
    for p in probes:
        if p["seen"] is None:
            continue
        batch = by_visible.get(first_visible.get(p["user"], -1))
        parts: dict[str, Any] = {"end_to_end": p["seen"] - p["published"]}
        if batch is not None:
            # the user view is pushed first: the answer moves as soon as the probe user's row is online
            user_pushed = batch[f"pushed_{USER_VIEW}"]
            parts |= {
                "stream_wait": batch["read_done"] - p["published"],
                "batch": batch["push_started"] - batch["read_done"],
                "push": user_pushed - batch["push_started"],
                "online_read": p["seen"] - user_pushed,
                "push_both": batch["push_done"] - batch["push_started"],
            }
        out.append(parts)
    return out


def prefill_events(settings: Settings, n: int, tag: str) -> list[dict]:
    """The landing zone's newest `n` rows as stream events, re-identified and shifted to end now."""
    import duckdb

    events: list[dict] = []
    con = duckdb.connect()
    for name in ("impressions", "clicks", "orders"):
        path = settings.raw_dir / name
        table = con.sql(
            f"select * from read_parquet('{path}/**/*.parquet', union_by_name = true) "
            "order by _ingested_at desc limit $n",
            params={"n": n},
        ).to_arrow_table()
        events += raw_events(name, table)
    con.close()
    events = [e for e in events if e["event_ts"] is not None and e["ingested_at"] is not None]
    events.sort(key=lambda e: (e["ingested_at"], e["event_id"] or ""))
    events = events[-n:]
    # Re-timed, in their order, evenly over the minute before now: the processor drops an event more than 15 min
    # behind the newest it accepted as late (the live phase's events are at now), and the landing zone's newest
    # rows can span days; a late event is quarantined at a fraction of an accepted one's cost, which would
    # inflate the throughput (the result reports the accepted share).
    now = time.time_ns() // 1000
    step = 60_000_000 // max(len(events), 1)
    for i, e in enumerate(events):
        lag = min(max(e["ingested_at"] - e["event_ts"], 0), 10_000_000)
        e["event_id"] = f"{e['event_id']}-{tag}"
        e["event_ts"] = now - 60_000_000 + i * step - lag
        e["ingested_at"] = e["event_ts"] + lag
    return events


def read_timings(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def one_run(
    settings: Settings, run: int, seed: int, batch_size: int, publish_s: float, opts: dict[str, Any], progress: Progress
) -> dict:
    from serving.launcher import running_service

    folder = settings.home / "bench-stream" / f"{settings.profile}-run{run}-{time.time_ns()}"
    folder.mkdir(parents=True)
    env = dict(os.environ) | export_env(settings)
    stream = open_stream(settings)
    result: dict[str, Any] = {"run": run, "seed": seed, "batch_size": batch_size, "publish_seconds": publish_s,
                              "transport": type(stream).__name__, "folder": str(folder)}  # fmt: skip
    ready = settings.stream_dir / "metrics" / "stream-bench.prom"  # written once the processor's loop runs
    ready.unlink(missing_ok=True)
    with running_service(settings, timeout=300) as url, httpx.Client() as client:
        proc = start(processor_cmd(folder / "live-timings.jsonl", batch_size), env, folder / "processor.log")
        live = None
        try:
            while not ready.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"the processor exited; see {folder / 'processor.log'}")
                time.sleep(0.2)
            published_before = stream.lag(COUNT_GROUP)
            live_started = time.monotonic()
            live = start(
                [
                    sys.executable,
                    "-m",
                    "simulator",
                    "live",
                    "--rate",
                    str(opts["live_rate"]),
                    "--seconds",
                    str(opts["live_seconds"]),
                    "--url",
                    url,
                    "--seed",
                    str(seed),
                    "--publish-seconds",
                    str(publish_s),
                ],  # fmt: skip
                env,
                folder / "live.log",
            )
            time.sleep(opts["warmup"])
            rng = np.random.default_rng(seed)
            probes = []
            task = progress.add_task(f"run {run}, batch {batch_size}, publish {publish_s:g} s", total=opts["probes"])
            for k in range(opts["probes"]):
                name = f"{folder.name[-12:]}x{k}"  # unique per invocation: a reused id would be a duplicate
                probes.append(probe(stream, client, url, name, opts["poll_s"], opts["probe_timeout"]))
                progress.advance(task)
                time.sleep(float(rng.uniform(0.1, 0.6)))  # a random phase against the processor's batches
            if live.wait(timeout=opts["live_seconds"] + 300) != 0:
                raise RuntimeError(f"live failed; see {folder / 'live.log'}")
            live_elapsed = time.monotonic() - live_started
            published = stream.lag(COUNT_GROUP) - published_before - len(probes)
        finally:
            if live is not None:
                stop(live)
            stop(proc)
    timings = read_timings(folder / "live-timings.jsonl")
    parts = decompose(probes, timings, settings.stream_log_dir)
    result |= {
        "probes": len(probes),
        "seen": len(parts),
        "parts_ms": [{k: _ms(v) for k, v in p.items()} for p in parts],
    }
    result["live_events_per_s"] = published / live_elapsed
    # throughput: a prefilled stream, drained by a fresh processor process
    events = prefill_events(settings, opts["prefill"], f"b{run}x{seed}")
    stream.publish(events)
    drained = subprocess.run(
        processor_cmd(folder / "drain-timings.jsonl", batch_size, "--until-drained"),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if drained.returncode != 0:
        raise RuntimeError(drained.stdout[-3000:] + drained.stderr[-3000:])
    drain = read_timings(folder / "drain-timings.jsonl")
    read = sum(t["read"] for t in drain)
    # a quarantined event costs far less than an accepted one: the throughput is only read with accepted ~ read
    result["drain_accepted"] = sum(t.get("accepted", t["read"]) for t in drain)
    result["drain_batches"] = len(drain)
    seconds = (drain[-1]["acked"] - drain[0]["read_started"]) / 1e9
    result |= {"prefill": len(events), "drained": read, "drain_seconds": seconds, "max_events_per_s": read / seconds}
    stream.close()
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


def summarise(result: dict) -> dict[str, float]:
    parts = result["parts_ms"]
    # a probe not seen within the timeout counts as infinitely late: the percentiles cover every probe
    unseen = [float("inf")] * (result["probes"] - result["seen"])
    e2e = np.array([p["end_to_end"] for p in parts] + unseen)
    out = {
        "p50": float(np.percentile(e2e, 50, method="higher")),
        "p99": float(np.percentile(e2e, 99, method="higher")),
        "max": float(e2e.max()),
    }
    for k in ("stream_wait", "batch", "push", "online_read", "push_both"):
        values = [p[k] for p in parts if k in p]
        out[k] = float(median(values)) if values else float("nan")
    return out


def fmt_ms(value: float) -> str:
    return f"{value:.0f}" if np.isfinite(value) else "not seen"


def markdown(results: list[dict]) -> str:
    head = (
        "| transport | run (live seed) | batch size | live publishes every | probes seen "
        "| event -> /rank p50 ms | p99 ms | max ms "
        "| stream wait ms | batch ms | Feast push (user view) ms | online read ms | push both views ms "
        "| processor max events/s | live driver events/s | headroom |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in results:
        s = summarise(r)
        lines.append(
            f"| {r['transport']} | {r['run']} ({r['seed']}) | {r.get('batch_size', 500):,} | "
            f"{r.get('publish_seconds', 5.0):g} s | "
            f"{r['seen']}/{r['probes']} | {fmt_ms(s['p50'])} | "
            f"{fmt_ms(s['p99'])} | {fmt_ms(s['max'])} | {s['stream_wait']:.0f} | {s['batch']:.0f} | {s['push']:.0f} | "
            f"{s['online_read']:.0f} | {s['push_both']:.0f} | {r['max_events_per_s']:,.0f} "
            f"({r.get('drain_accepted', r['drained']) / r['drained']:.0%} accepted) | "
            f"{r['live_events_per_s']:,.0f} | "
            f"{r['max_events_per_s'] / r['live_events_per_s']:.0f}x |"
        )
    return head + "\n".join(lines) + "\n"


@app.command()
def run(
    runs: Annotated[int, typer.Option(min=1, max=10, help="Runs, one live seed each.")] = 3,
    seeds: Annotated[str, typer.Option(help="Live seeds, comma-separated (the first `runs`).")] = "7,42,123",
    probes: Annotated[int, typer.Option(min=5, max=1000, help="Probes per run.")] = 60,
    live_rate: Annotated[float, typer.Option(min=1, max=2000, help="Live sessions/s (make live's RATE).")] = 50.0,
    live_seconds: Annotated[float, typer.Option(min=10, max=3600, help="Live driver duration per run.")] = 60.0,
    warmup: Annotated[float, typer.Option(min=0, max=600, help="Live seconds before the first probe.")] = 5.0,
    poll_ms: Annotated[float, typer.Option(min=1, max=1000, help="Pause between two /rank polls of a probe.")] = 10.0,
    probe_timeout: Annotated[float, typer.Option(min=1, max=120, help="A probe not seen by then is lost.")] = 15.0,
    prefill: Annotated[int, typer.Option(min=1000, max=2_000_000, help="Events prefilled for throughput.")] = 20_000,
    batch_sizes: Annotated[
        str, typer.Option(help="The processor's --batch-size, comma-separated: each run is repeated with each.")
    ] = "5000,500",
    publish_seconds: Annotated[
        str,
        typer.Option(help="The live driver's --publish-seconds, comma-separated: each run is repeated with each."),
    ] = "0.2",
) -> None:
    """Freshness (event -> /rank) under live traffic and throughput, on the current profile's transport."""
    settings = get_settings()
    seed_list = [int(s) for s in seeds.split(",")][:runs]
    try:
        sizes = [int(b) for b in batch_sizes.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--batch-sizes: comma-separated integers, got {batch_sizes!r}") from None
    if not sizes or min(sizes) < 1 or max(sizes) > 100_000:
        raise typer.BadParameter(f"--batch-sizes: each in 1..100000, got {batch_sizes!r}")
    try:
        publish = [float(b) for b in publish_seconds.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--publish-seconds: comma-separated numbers, got {publish_seconds!r}") from None
    if not publish or min(publish) < 0.01 or max(publish) > 60:
        raise typer.BadParameter(f"--publish-seconds: each in 0.01..60, got {publish_seconds!r}")
    opts = {"probes": probes, "live_rate": live_rate, "live_seconds": live_seconds, "warmup": warmup,
            "poll_s": poll_ms / 1000, "probe_timeout": probe_timeout, "prefill": prefill}  # fmt: skip
    results = []
    with Progress(console=console) as progress:
        for i, seed in enumerate(seed_list, start=1):
            for size in sizes:
                for every in publish:
                    results.append(one_run(settings, i, seed, size, every, opts, progress))
                    s = summarise(results[-1])
                    line = f"run {i}, batch {size}, publish every {every:g} s: p50 {s['p50']:.0f} ms"
                    console.print(f"{line}, p99 {s['p99']:.0f} ms, {results[-1]['max_events_per_s']:,.0f} events/s max")
    out = settings.home / "bench-stream" / f"{settings.profile}.json"
    out.write_text(json.dumps(results, indent=1))
    console.print(markdown(results), markup=False)
    console.print(f"results: {out}")


@app.command()
def report(files: list[Path]) -> None:
    """The markdown table of result files written by `run` (one per profile)."""
    results = [r for f in files for r in json.loads(f.read_text())]
    print(markdown(results))


if __name__ == "__main__":
    app()
