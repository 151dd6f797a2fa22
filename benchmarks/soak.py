"""`make stress`: a soak of /rank at a fixed, sustainable rate; zero errors and no memory growth.

Starts the service on SHOPRANK_HOME's champion, warms it up, then sends `rate` requests/s (open loop, 100
random candidates each) for `seconds`, sampling the worker processes' resident memory every `sample_every`
seconds. Passes when no request failed (non-200 or transport error) and the workers' RSS at the end is within
`max_growth` (10%) of the RSS after warm-up. Prints a JSON report; exits non-zero on failure.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
import typer

from benchmarks import loadgen
from benchmarks.serving import _rss_mb, service_processes
from platform_common.settings import Settings, get_settings
from serving.launcher import running_service


def soak(
    settings: Settings,
    seconds: float,
    rate: float,
    warmup: float = 10.0,
    sample_every: float = 10.0,
    candidates: int = 100,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    bodies = loadgen.encode(loadgen.sample_requests(settings.marts_dir, 2000, candidates))
    with running_service(settings, extra_env=env or {}) as url:
        workers = service_processes(int(url.rsplit(":", 1)[1]))[1:]  # the serving processes, not the arbiter
        loadgen.run(loadgen.fixed_rate(url, bodies, rate=rate, seconds=warmup, name="warm-up"))
        rss = [_rss_mb(workers)]
        latencies: list[float] = []
        sent = failed = 0
        statuses: dict[str, int] = {}
        started = time.monotonic()
        offset = 0
        while time.monotonic() - started < seconds - 0.5:
            chunk = min(sample_every, seconds - (time.monotonic() - started))
            # a different slice of the sampled bodies for every chunk
            part = bodies[offset % len(bodies) :] + bodies[: offset % len(bodies)]
            res = loadgen.run(loadgen.fixed_rate(url, part, rate=rate, seconds=chunk))
            offset += res.sent
            latencies += res.latencies
            sent += res.sent
            failed += res.failed
            for k, v in {**{str(s): n for s, n in res.statuses.items()}, **res.errors}.items():
                statuses[k] = statuses.get(k, 0) + v
            rss.append(_rss_mb(workers))
        elapsed = time.monotonic() - started
    growth = (rss[-1] - rss[0]) / rss[0] if rss[0] else float("nan")
    return {
        "rate_rps": rate,
        "seconds": round(elapsed, 1),
        "candidates": candidates,
        "sent": sent,
        "errors": failed,
        "outcomes": statuses,
        "throughput_rps": round((sent - failed) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2) if latencies else None,
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2) if latencies else None,
        "max_ms": round(max(latencies) * 1e3, 2) if latencies else None,
        "rss_mb": [round(x, 1) for x in rss],
        "rss_growth": round(growth, 4),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(
    seconds: float = typer.Option(120.0, help="Length of the soak."),
    rate: float = typer.Option(150.0, help="Requests per second (open loop)."),
    warmup: float = typer.Option(10.0),
    max_growth: float = typer.Option(0.10, help="Largest tolerated growth of the workers' RSS."),
) -> None:
    report = soak(get_settings(), seconds, rate, warmup, env={"SHOPRANK_REQUEST_LOG_RATE": "0.01"})
    ok = report["errors"] == 0 and report["rss_growth"] <= max_growth
    report["result"] = "pass" if ok else "FAIL"
    typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(0 if ok else 1)


if __name__ == "__main__":
    typer.run(main)
