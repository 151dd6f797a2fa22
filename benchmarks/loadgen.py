"""An asyncio load generator for /rank on loopback, shared by `make bench-serve` and `make stress`.

The client is aiohttp (already installed: BentoML and MLflow depend on it) on uvloop when available. On a
2-core box the load generator competes with the server for CPU: httpx's AsyncClient spent ~3.5 ms of CPU per
request here, aiohttp well under one, which is the difference between measuring the server and measuring the
client.

Two shapes:

* `fixed_rate`: open loop. Request i is due at start + i / rate and is sent then whatever happened to the
  ones before (no coordinated omission: a slow server cannot slow the offered load down). Latency is measured
  from the due time, so client-side queueing when the server falls behind is counted, as a user would see it.
* `max_rate`: closed loop. `concurrency` connections each send the next request as soon as the previous one
  answered; throughput is what the server sustains. A connection answered 503 (shed) waits the answer's
  `Retry-After` first, as a well-behaved client does: without it the excess connections would turn into a
  storm of rejections that costs the server the CPU it is being measured on.

Bodies are encoded once up front; answers are checked by status code only (parsing 100 ranked products per
answer would make the client the bottleneck on a 2-core box). Every request loop is bounded in count and time.

Each request carries `X-Request-Start: t=<µs since the epoch>` of its due time, as a proxy or load balancer in
front of the service stamps the arrival (serving/guard.py: the service then counts the wait before its worker
saw the request); `stamp=False` sends none, for the service's own clock alone.

Over capacity the service sheds with 503 (serving/guard.py): a phase reports those apart from other errors,
with how fast they came back, and its latency percentiles are the accepted (200) requests' only.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import duckdb
import numpy as np

HEADERS = {"content-type": "application/json"}
SHED_STATUS = 503


def _p(seconds: Sequence[float], q: float) -> float:
    """Percentile `q` in milliseconds (nan when there is nothing to measure)."""
    return float(np.percentile(seconds, q)) * 1e3 if len(seconds) else float("nan")


@dataclass
class PhaseResult:
    name: str
    offered_rate: float | None  # requests/s asked for (None: closed loop)
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful answers only
    shed_latencies: list[float] = field(default_factory=list)  # seconds, 503 answers (load shed) only
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # exceptions (timeouts, resets) by type
    client_cpu_seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    @property
    def shed(self) -> int:
        return self.statuses.get(SHED_STATUS, 0)

    @property
    def other_errors(self) -> int:
        """Failures that are not the documented 503 of load shedding: other statuses, timeouts, resets."""
        return self.failed - self.shed

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return _p(self.latencies, q)

    def summary(self) -> dict:
        return {
            "phase": self.name,
            "offered_rps": self.offered_rate,
            "seconds": round(self.seconds, 2),
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.failed,
            "shed": self.shed,
            "shed_share": round(self.shed / self.sent, 4) if self.sent else 0.0,
            "other_errors": self.other_errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "exceptions": dict(self.errors),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.pct(50), 2),
            "p95_ms": round(self.pct(95), 2),
            "p99_ms": round(self.pct(99), 2),
            "max_ms": round(max(self.latencies) * 1e3, 2) if self.latencies else None,
            "shed_p99_ms": round(_p(self.shed_latencies, 99), 2) if self.shed_latencies else None,
            "client_cpu_ms_per_request": round(1e3 * self.client_cpu_seconds / max(self.sent, 1), 3),
        }


def sample_requests(marts_dir: Path, n: int, candidates: int = 100, seed: int = 11) -> list[dict]:
    """`n` /rank bodies: a random known user and `candidates` distinct random known products each."""
    query = "select distinct {col} from read_parquet(?) order by 1"
    with duckdb.connect() as con:
        users = [
            r[0]
            for r in con.execute(query.format(col="user_id"), [str(marts_dir / "user_features.parquet")]).fetchall()
        ]
        products = [
            r[0]
            for r in con.execute(
                query.format(col="product_id"), [str(marts_dir / "product_features.parquet")]
            ).fetchall()
        ]
    rng = random.Random(seed)
    k = min(candidates, len(products))
    return [{"user_id": rng.choice(users), "product_ids": rng.sample(products, k)} for _ in range(n)]


def encode(bodies: Sequence[dict]) -> list[bytes]:
    return [json.dumps(b).encode() for b in bodies]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _client(connections: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers=HEADERS,
    )


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0


# perf_counter -> seconds since the epoch, for the X-Request-Start stamp (taken once: both clocks tick alike).
_EPOCH_OFFSET = time.time() - time.perf_counter()


def _stamp(due: float) -> dict[str, str]:
    return {"X-Request-Start": f"t={round((due + _EPOCH_OFFSET) * 1e6)}"}


async def _send(
    client: aiohttp.ClientSession, url: str, body: bytes, due: float, out: PhaseResult, stamp: bool = True
) -> float:
    """Send one request and record the outcome; returns the seconds to wait if it was shed, else 0."""
    try:
        async with client.post(url, data=body, headers=_stamp(due) if stamp else None) as r:
            await r.read()
            status = r.status
            retry_after = r.headers.get("Retry-After")
    except Exception as exc:  # timeouts, resets: counted, never raised
        out.errors[type(exc).__name__] += 1
        return 0.0
    out.statuses[status] += 1
    if status == 200:
        out.latencies.append(time.perf_counter() - due)
    elif status == SHED_STATUS:
        out.shed_latencies.append(time.perf_counter() - due)
        return _retry_after(retry_after)
    return 0.0


async def fixed_rate(
    base_url: str,
    bodies: Sequence[bytes],
    rate: float,
    seconds: float,
    name: str | None = None,
    connections: int = 64,
    timeout: float = 10.0,
    stamp: bool = True,
) -> PhaseResult:
    out = PhaseResult(name or f"fixed {rate:g} rps", rate, seconds)
    url = f"{base_url}/rank"
    total = int(rate * seconds)
    cpu0 = _cpu()
    async with _client(connections, timeout) as client:
        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(client, url, bodies[i % len(bodies)], due, out, stamp)))
        await asyncio.gather(*tasks)
        out.seconds = max(seconds, time.perf_counter() - start)
    out.client_cpu_seconds = _cpu() - cpu0
    return out


async def max_rate(
    base_url: str,
    bodies: Sequence[bytes],
    seconds: float,
    concurrency: int = 16,
    name: str | None = None,
    timeout: float = 10.0,
    stamp: bool = True,
) -> PhaseResult:
    out = PhaseResult(name or f"max rate ({concurrency} connections)", None, seconds)
    url = f"{base_url}/rank"
    counter = iter(range(10**9))
    cpu0 = _cpu()
    async with _client(concurrency, timeout) as client:
        start = time.perf_counter()
        stop = start + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                i = next(counter)
                backoff = await _send(client, url, bodies[i % len(bodies)], time.perf_counter(), out, stamp)
                if backoff:
                    await asyncio.sleep(min(backoff, max(0.0, stop - time.perf_counter())))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        out.seconds = time.perf_counter() - start
    out.client_cpu_seconds = _cpu() - cpu0
    return out


def run(coro):  # noqa: ANN001, ANN201 - uvloop when available: a cheaper client leaves more CPU to the server
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)
