"""The embedded event stream: one SQLite file, no server.

`events(offset integer primary key autoincrement, payload blob)` is append-only; `groups(name, committed)` holds
each consumer group's committed offset. A reader gets the events after the committed offset (in offset order);
what it read but has not acknowledged stays after the committed offset, so a restarted reader gets it again
(at least once). Acknowledgement is cumulative per group: the committed offset moves to the highest
acknowledged offset whose predecessors are all acknowledged, which is what one consumer per group processing in
order produces. WAL mode: the publisher's appends and the reader's scans do not block each other, and a
killed process loses nothing committed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from platform_common.event_stream import Message, encode

_POLL_SECONDS = 0.05  # how often a blocking read looks for new events


class SqliteStream:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # autocommit (isolation_level=None) with explicit transactions; a long busy timeout rides out a writer
        self._con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._con.execute("pragma journal_mode=wal")
        self._con.execute("pragma synchronous=normal")
        self._con.execute(
            "create table if not exists events (offset integer primary key autoincrement, payload blob not null)"
        )
        self._con.execute("create table if not exists groups (name text primary key, committed integer not null)")
        # offsets delivered to this reader and not yet acknowledged, per group (in memory: a restart re-reads them)
        self._delivered: dict[str, int] = {}
        self._acked: dict[str, set[int]] = {}

    def publish(self, events: Sequence[Mapping[str, Any]]) -> int:
        return self.publish_raw([encode(e) for e in events])

    def publish_raw(self, payloads: Sequence[bytes]) -> int:
        if not payloads:
            return 0
        with self._con:
            self._con.execute("begin immediate")
            self._con.executemany("insert into events (payload) values (?)", [(p,) for p in payloads])
        return len(payloads)

    def _committed(self, group: str) -> int:
        row = self._con.execute("select committed from groups where name = ?", (group,)).fetchone()
        if row is None:
            self._con.execute("insert or ignore into groups (name, committed) values (?, 0)", (group,))
            return 0
        return int(row[0])

    def read(self, group: str, consumer: str, count: int, block_ms: int = 0) -> list[Message]:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            after = max(self._committed(group), self._delivered.get(group, 0))
            rows = self._con.execute(
                "select offset, payload from events where offset > ? order by offset limit ?", (after, count)
            ).fetchall()
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        if rows:
            self._delivered[group] = int(rows[-1][0])
        return [Message(id=str(offset), payload=bytes(payload)) for offset, payload in rows]

    def ack(self, group: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        acked = self._acked.setdefault(group, set())
        acked.update(int(i) for i in ids)
        with self._con:
            self._con.execute("begin immediate")
            committed = self._committed(group)
            # cumulative: move past every acknowledged offset that follows the committed one without a hole
            # (offsets are dense within what was read; a hole is an event read but not yet acknowledged)
            delivered = self._delivered.get(group, committed)
            present = {
                int(r[0])
                for r in self._con.execute(
                    "select offset from events where offset > ? and offset <= ?", (committed, delivered)
                )
            }
            for offset in sorted(present):
                if offset not in acked:
                    break
                committed = offset
            self._con.execute("update groups set committed = ? where name = ?", (committed, group))
        self._acked[group] = {a for a in acked if a > committed}

    def lag(self, group: str) -> int:
        committed = self._committed(group)
        return int(self._con.execute("select count(*) from events where offset > ?", (committed,)).fetchone()[0])

    def close(self) -> None:
        self._con.close()
