"""The live run: paced `POST /rank` calls over loopback HTTP, shoppers reacting in batches, landing as it goes.

A request is one page of a shopper's session: once a batch has been answered and its shoppers have reacted,
sessions with pages left wait (`session.Returning`) and ask for their next page when it is due, ahead of
new sessions, so a shopper's clicks of the last minutes reach the service before their next request.

One asyncio loop, one `aiohttp.ClientSession` with a bounded pool (httpx's pool spends its time rescanning
waiting requests above ~100/s). Sessions are drawn a batch ahead; each batch
is handed to the shoppers (`session.react`, vectorised) once all its requests have ended, answered or not.
Shed answers (503) and transport errors are counted, never raised. Every loop is bounded by the deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from platform_common.event_stream import EventStream
from simulator.config import SURFACES
from simulator.live.landing import AnswerMeta, LiveLanding, exclusive_run
from simulator.live.session import LiveMarket, Returning, Served, SessionBatch, next_batch, next_pages, react
from simulator.live.world_store import load_world

BATCH = 256
# Events go on the stream this often: a marketplace's services publish as events happen, and a click queued behind
# a 5-second flush of thousands waits for all of them in the processor (docs/benchmarks.md, stream freshness).
PUBLISH_SECONDS = 0.2
LATENCY_WINDOW = 200_000
_HEADERS = {"content-type": "application/json"}


class LiveError(RuntimeError):
    """A refusal with a message meant for the user (bad URL, no world, another run busy)."""


def check_loopback(url: str) -> str:
    """The URL if its host is a loopback address; live shoppers never leave the machine."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LiveError(f"--url {url!r}: expected http://<loopback host>:<port>")
    host = parts.hostname
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)}
    except OSError as exc:
        raise LiveError(f"--url {url!r}: cannot resolve {host!r} ({exc})") from exc
    if not addresses or not all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses):
        raise LiveError(f"--url {url!r}: {host} is not a loopback address; live mode only talks to this machine")
    return url.rstrip("/")


@dataclass
class Stats:
    sent: int = 0
    answered: int = 0
    experiment_answers: int = 0
    shed: int = 0
    connection_errors: int = 0
    timeouts: int = 0
    http_errors: Counter[int] = field(default_factory=Counter)
    bad_answers: int = 0
    retry_after: set[str] = field(default_factory=set)
    # the latest answers' latencies, bounded for long runs
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    landed: Counter[str] = field(default_factory=Counter)
    drawn: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0
    pending: dict[str, int] = field(default_factory=dict)
    run_id: str = ""
    run_dir: Path | None = None

    @property
    def failed(self) -> int:
        return self.shed + self.connection_errors + self.timeouts + sum(self.http_errors.values()) + self.bad_answers

    def rate(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else self.ended) - self.started
        return self.answered / elapsed if elapsed > 0 else 0.0


@dataclass
class _Pending:
    """A batch in flight: its sessions, and the answers gathered so far."""

    batch: SessionBatch
    bodies: list[bytes]
    ended: int = 0
    sent: int = 0
    answers: dict[int, tuple[int, list[int], dict[str, object] | None, str | None]] = field(default_factory=dict)


ProgressHook = Callable[[Stats, float], None]


def _bodies(batch: SessionBatch) -> list[bytes]:
    users = batch.user + 1
    bodies = []
    for i in range(batch.n):
        products = [f"p{p + 1:06d}" for p in batch.candidates(i)]
        body = {"user_id": f"u{users[i]:07d}", "product_ids": products, "surface": SURFACES[batch.surface[i]]}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


async def _one(client: aiohttp.ClientSession, url: str, pending: _Pending, i: int, stats: Stats) -> None:
    t0 = time.perf_counter()
    try:
        async with client.post(url, data=pending.bodies[i], headers=_HEADERS) as resp:
            status = resp.status
            retry_after = resp.headers.get("retry-after", "1")
            body = await resp.read() if status == 200 else b""
    except TimeoutError:
        stats.timeouts += 1
        return
    except aiohttp.ClientError:
        stats.connection_errors += 1
        return
    finally:
        pending.ended += 1
    if status == 503:
        # counted, not obeyed: shoppers arrive on their own (open loop), and shedding is the service's defence
        stats.shed += 1
        stats.retry_after.add(retry_after)
        return
    if status != 200:
        stats.http_errors[status] += 1
        return
    try:
        answer = json.loads(body)
        served = [int(item["product_id"][1:]) - 1 for item in answer["ranking"]]
    except (ValueError, KeyError, TypeError):
        stats.bad_answers += 1
        return
    # the shoppers can only see what they asked about, once each
    if not served or len(set(served)) != len(served) or not set(served) <= set(pending.batch.candidates(i).tolist()):
        stats.bad_answers += 1
        return
    stats.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
    stats.answered += 1
    experiment = answer.get("experiment")
    if experiment:
        stats.experiment_answers += 1
    pending.answers[i] = (time.time_ns() // 1000, served, experiment, answer.get("request_id"))


def _served(pending: _Pending) -> tuple[Served, AnswerMeta]:
    order = sorted(pending.answers)
    lengths = [len(pending.answers[i][1]) for i in order]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    product = np.array([p for i in order for p in pending.answers[i][1]], dtype=np.int64)
    served = Served(
        session=np.array(order, dtype=np.int64),
        answered_us=np.array([pending.answers[i][0] for i in order], dtype=np.int64),
        offsets=offsets,
        product=product,
    )
    experiment_id: list[str | None] = []
    arm: list[str | None] = []
    credit: list[str | None] = []
    for i, n in zip(order, lengths, strict=True):
        exp = pending.answers[i][2]
        exp_id = str(exp["id"]) if exp else None
        exp_arm = str(exp["arm"]) if exp else None
        experiment_id.append(exp_id)
        arm.append(exp_arm)
        per_slot = exp.get("credit") if exp else None
        credit.extend([str(c) for c in per_slot] if isinstance(per_slot, list) else [exp_arm] * n)
    meta = AnswerMeta(
        request_id=np.array([pending.answers[i][3] for i in order], dtype=object),
        experiment_id=experiment_id,
        arm=arm,
        credit=np.array(credit, dtype=object),
    )
    return served, meta


def _settle(
    rng: np.random.Generator, market: LiveMarket, landing: LiveLanding, pending: _Pending, returning: Returning
) -> None:
    """The shoppers of a finished batch react to what they were served; sessions with pages left come back."""
    if not pending.answers:
        return
    served, meta = _served(pending)
    outcome = react(rng, market, pending.batch, served)
    landing.add(outcome, served, meta, pending.batch.user[served.session])
    returning.add(next_pages(rng, market, pending.batch, served, outcome))


async def run_live(
    home_raw: Path,
    home_oracle: Path,
    url: str,
    rate: float,
    seconds: float,
    seed: int | None = None,
    concurrency: int = 32,
    timeout_s: float = 5.0,
    flush_seconds: float = 5.0,
    linger_seconds: float = 0.0,
    progress: ProgressHook | None = None,
    checkout_speedup: float = 1.0,
    publisher: EventStream | None = None,
    publish_seconds: float = PUBLISH_SECONDS,
) -> Stats:
    """`publisher`: the event stream every impression, click and order is published to as it happens, every
    `publish_seconds` (issue 17); they land in the raw landing zone every `flush_seconds` all the same. None
    publishes nothing."""
    if rate <= 0 or seconds <= 0:
        raise LiveError("--rate and --seconds must be positive")
    base = check_loopback(url)
    try:
        world = load_world(home_oracle)
    except RuntimeError as exc:
        raise LiveError(str(exc)) from exc
    seed = seed if seed is not None else secrets.randbits(63)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{secrets.token_hex(3)}"
    stats = Stats(run_id=run_id)
    session_rng = np.random.default_rng([seed, 1])
    react_rng = np.random.default_rng([seed, 2])
    with exclusive_run(home_oracle):
        market = LiveMarket(world, time.time_ns() // 1000, checkout_speedup)
        landing = LiveLanding(home_raw, home_oracle, world, run_id, seed, publisher=publisher)
        stats.run_dir = landing.run_dir
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 2.0))
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            await _drive(
                client,
                base + "/rank",
                market,
                landing,
                stats,
                session_rng,
                react_rng,
                rate,
                seconds,
                concurrency,
                flush_seconds,
                publish_seconds,
                progress,
            )
        # after the last request, shoppers still scroll and click: publish and land what happens while we linger
        linger_end = time.monotonic() + linger_seconds
        next_flush = time.monotonic() + flush_seconds
        tick = publish_seconds if publisher is not None else flush_seconds
        while landing.ledger_rows() and time.monotonic() < linger_end:
            await asyncio.sleep(max(0.0, min(tick, linger_end - time.monotonic())))
            if time.monotonic() >= next_flush:
                landing.flush(time.time_ns() // 1000)
                next_flush = time.monotonic() + flush_seconds
            else:
                landing.publish(time.time_ns() // 1000)
        stats.pending = landing.close(time.time_ns() // 1000)
        stats.landed.update(landing.landed)
        stats.drawn.update(landing.drawn)
    return stats


async def _drive(
    client: aiohttp.ClientSession,
    url: str,
    market: LiveMarket,
    landing: LiveLanding,
    stats: Stats,
    session_rng: np.random.Generator,
    react_rng: np.random.Generator,
    rate: float,
    seconds: float,
    concurrency: int,
    flush_seconds: float,
    publish_seconds: float,
    progress: ProgressHook | None,
) -> None:
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    stats.started = time.perf_counter()
    deadline = start + seconds
    interval = 1.0 / rate
    total = int(round(rate * seconds))  # the loop's bound: never more requests than the rate asks for
    slots = asyncio.Semaphore(concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    batches: list[_Pending] = []
    next_flush = start + flush_seconds
    next_publish = start + publish_seconds
    next_report = start
    current: _Pending | None = None
    returning = Returning()  # sessions waiting to ask for their next page
    next_session = 0

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        slots.release()

    def settle_done() -> None:
        while batches and batches[0].ended == batches[0].sent and batches[0] is not current:
            _settle(react_rng, market, landing, batches.pop(0), returning)

    for k in range(total):
        now = time.monotonic()
        if now >= deadline:
            break
        due = start + k * interval
        wait = due - now
        if wait > 0:
            await asyncio.sleep(min(wait, deadline - now))
            if time.monotonic() >= deadline:
                break
        await slots.acquire()
        if current is None or current.sent == current.batch.n:
            batch = next_batch(session_rng, market, returning, BATCH, time.time_ns() // 1000, next_session)
            next_session += int((batch.page == 1).sum())
            current = _Pending(batch, _bodies(batch))
            batches.append(current)
        i = current.sent
        current.sent += 1
        stats.sent += 1
        task = loop.create_task(_one(client, url, current, i, stats))
        in_flight.add(task)
        task.add_done_callback(finished)
        now = time.monotonic()
        if current.sent == current.batch.n:
            current = None
        settle_done()
        if now >= next_flush:
            landing.flush(time.time_ns() // 1000)
            next_flush = now + flush_seconds
            next_publish = now + publish_seconds
        elif now >= next_publish:
            landing.publish(time.time_ns() // 1000)
            next_publish = now + publish_seconds
        if progress is not None and now >= next_report:
            progress(stats, time.perf_counter())
            next_report = now + 0.25
    # the stragglers get their timeout, no more
    if in_flight:
        await asyncio.wait(in_flight)
    stats.ended = time.perf_counter()
    current = None
    settle_done()
    if progress is not None:
        progress(stats, stats.ended)
