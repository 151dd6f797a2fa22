"""What the stream fault tests share (issue 17, section 5): the events, the clean run, the comparison, the process.

Both transports run the same story (tests/transforms/test_stream_faults.py on the embedded SQLite stream,
tests/prod/test_stream_faults.py on a Redis Stream): seeded events (impressions, clicks, orders; slightly out of
order, some late, some re-published duplicates, some malformed: not JSON, no user, a bad position, an unknown kind,
an event after its landing) go through the real processor process (`python -m transforms.streaming run`), which is
killed and restarted, or whose Redis is killed and restarted. Afterwards the online store, the offline log's
newest row per entity, the engine's counts and the quarantine must equal a clean run's over the same payloads: an
in-process Processor on a fresh embedded stream, never interrupted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from platform_common.event_stream.sqlite_stream import SqliteStream
from platform_common.settings import REPO_ROOT
from platform_common.stream_log import FEATURES, KEYS, PRODUCT_VIEW, USER_VIEW, read_log
from transforms.streaming.processor import GROUP, Processor, checkpoint_path, load_checkpoint, read_quarantine
from transforms.streaming.windows import Engine

S = 1_000_000
MIN = 60 * S
BATCH = 40  # small batches: many of them, so a kill lands in the middle of the stream
MALFORMED: tuple[tuple[bytes | dict[str, Any], str], ...] = (
    (b"{not json", "not_json"),
    ({"kind": "click", "event_id": "m-null-user", "user_id": None}, "null_user_id"),
    ({"kind": "view", "event_id": "m-kind"}, "unknown_kind"),
)


def _event(kind: str, eid: str, user: str, product: str, ts: int, landed: int) -> dict[str, Any]:
    e: dict[str, Any] = {"kind": kind, "event_id": eid, "user_id": user, "product_id": product, "event_ts": ts,
                         "ingested_at": landed}  # fmt: skip
    if kind == "impression":
        e |= {"request_id": f"r-{eid}", "surface": "home_feed", "position": 1 + int(ts % 20)}
    elif kind == "click":
        e |= {"impression_id": f"i-{eid}"}
    else:
        e |= {"impression_id": f"i-{eid}", "click_id": f"c-{eid}", "quantity": 1, "unit_price": 9.5, "gmv": 9.5}
    return e


def payloads(seed: int, n: int = 1200) -> list[bytes]:
    """`n` payloads in publish order, about 40 minutes of event time ending 10 minutes ago."""
    rng = random.Random(seed)
    t = time.time_ns() // 1000 - 50 * MIN
    users = [f"u{i:07d}" for i in range(1, 31)]
    products = [f"p{i:06d}" for i in range(1, 21)]
    out: list[bytes] = []
    for i in range(n):
        t += rng.randint(0, 4 * S)
        r = rng.random()
        if r < 0.03 and out:  # re-published (at least once upstream): a duplicate
            out.append(rng.choice(out[-200:]))
            continue
        if r < 0.06:
            raw, _ = rng.choice(MALFORMED)
            if isinstance(raw, dict):
                raw = json.dumps(raw | {"event_id": f"{raw['event_id']}-{i}"}).encode()
            out.append(raw)
            continue
        kind = rng.choices(("impression", "click", "order"), (0.8, 0.17, 0.03))[0]
        ts = t - rng.randint(0, 3 * MIN)  # out of order, within the 15-min allowance
        if r < 0.075:
            ts = t - 20 * MIN  # late: dropped
        landed = ts + rng.randint(S, 5 * S)
        if 0.075 <= r < 0.085:
            landed = ts - S  # claims to have happened after it landed: malformed (future_event_ts)
        event = _event(kind, f"e{seed}-{i:05d}", rng.choice(users), rng.choice(products), ts, landed)
        out.append(json.dumps(event).encode())
    return out


def clean_run(folder: Path, events: list[bytes]) -> tuple[Engine, Counter[tuple[bytes, str]]]:
    """The reference: every payload through one uninterrupted in-process Processor (no store); its engine and
    its quarantine as a multiset of (payload, reason)."""
    stream = SqliteStream(folder / "events.db")
    stream.publish_raw(events)
    processor = Processor(stream, None, folder / "stream", folder / "log", batch_size=BATCH)
    while processor.step().read:
        pass
    stream.close()
    return processor.engine, quarantine_of(folder / "stream")


def quarantine_of(stream_dir: Path) -> Counter[tuple[bytes, str]]:
    table = read_quarantine(stream_dir)
    return Counter(
        (p.encode(), r)
        for p, r in zip(table.column("payload").to_pylist(), table.column("reason").to_pylist(), strict=True)
    )


def expected_rows(engine: Engine, view: str) -> dict[str, dict[str, Any]]:
    if view == USER_VIEW:
        return {u: engine.user_row(u) for u in sorted(engine.users)}
    return {p: engine.product_row(p) for p in sorted(engine.products)}


def assert_same_features(store: Any, log_dir: Path, clean: Engine) -> None:
    """The online store and the log's newest row per entity hold the clean run's values, entity by entity."""
    for view in (USER_VIEW, PRODUCT_VIEW):
        key, names = KEYS[view], [name for name, _, _ in FEATURES[view]]
        expected = expected_rows(clean, view)
        assert expected, f"the clean run touched no {key}"
        entities = list(expected)
        online = store.get_online_features(
            features=[f"{view}:{n}" for n in names], entity_rows=[{key: e} for e in entities]
        ).to_dict()
        for name in names:
            got = dict(zip(entities, online[name], strict=True))
            want = {e: expected[e][name] for e in entities}
            assert got == want, f"online {view}.{name} differs from the clean run"
        newest: dict[str, dict[str, Any]] = {}
        for row in read_log(log_dir, view).to_pylist():  # parts in visible order; the last row per entity wins
            if row[key] not in newest or row["event_timestamp"] >= newest[row[key]]["event_timestamp"]:
                newest[row[key]] = row
        assert sorted(newest) == entities, f"the log's {key}s differ from the clean run's"
        for e in entities:
            got_row = {n: newest[e][n] for n in ("last_event_id", *names)}
            want_row = {n: expected[e][n] for n in ("last_event_id", *names)}
            assert got_row == want_row, f"log {view} {e}: {got_row} != {want_row}"


def replayed_rows(log_dir: Path) -> int:
    """Rows logged twice with the same values at two visible times: a batch replayed after a crash before its
    checkpoint (evidence that a kill landed between the log write and the checkpoint)."""
    n = 0
    for view in (USER_VIEW, PRODUCT_VIEW):
        names = [name for name, _, _ in FEATURES[view]]
        rows = read_log(log_dir, view).to_pylist()
        seen = Counter(tuple(r[c] for c in (KEYS[view], "last_event_id", *names)) for r in rows)
        n += sum(c - 1 for c in seen.values())
    return n


def processor_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "transforms.streaming", "run", "--consumer", "p1", "--batch-size", str(BATCH),
            "--block-ms", "50", "--metrics-seconds", "0.5", *args]  # fmt: skip


def run_processor(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        processor_command(*args), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_processor(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        processor_command(*args), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def checkpointed_batches(stream_dir: Path) -> int:
    return load_checkpoint(checkpoint_path(stream_dir, GROUP)).batches  # empty when there is none yet


def wait_for_batches(stream_dir: Path, at_least: int, proc: subprocess.Popen[str], timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while checkpointed_batches(stream_dir) < at_least:
        assert proc.poll() is None, f"the processor exited ({proc.returncode}): {proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, f"fewer than {at_least} batches after {timeout:.0f}s"
        time.sleep(0.02)


def kill_midstream(env: dict[str, str], stream_dir: Path) -> None:
    """Start the processor and SIGKILL it from outside after two more checkpoints, while events remain."""
    proc = start_processor(env)
    try:
        wait_for_batches(stream_dir, checkpointed_batches(stream_dir) + 2, proc)
    finally:  # killed in any case: a failed wait must not leave the process running
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def crash_runs(env: dict[str, str]) -> None:
    """The processor killed by its own failpoints (SIGKILL, like a power cut), each in its second batch: after the
    log write, the quarantine and the push (online already holds the batch, the checkpoint does not: the batch is
    replayed), and after the checkpoint, before the acknowledgement (the batch is redelivered: skipped). Each
    process start costs Feast's import (5-30 s on the shared machine), hence two stages, not all of them."""
    for stage in ("pushed", "checkpointed"):
        proc = run_processor(env, "--crash-at", f"{stage}:2")
        assert proc.returncode == -signal.SIGKILL, (stage, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
        assert f"crash-at {stage}:2" in proc.stdout
