"""The prod event stream: a Redis Stream with a consumer group.

XADD appends with `MAXLEN ~ SHOPRANK_STREAM_MAXLEN` (approximate trimming: Redis drops whole macro-nodes, so
the bound costs nothing per append). Readers use XREADGROUP in a group created at the start of the stream
(MKSTREAM). A consumer first reads its own pending entries (delivered, never acknowledged: it was killed
before XACK) with id `0`, then claims the group's entries idle for longer than `claim_idle_ms` (a consumer that
died under another name) with XAUTOCLAIM, then reads new entries with `>`. XACK acknowledges. At least once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from platform_common.event_stream import Message, encode
from platform_common.settings import Settings

_FIELD = b"e"


class RedisStream:
    def __init__(self, client: Any, key: str, maxlen: int, claim_idle_ms: int = 30_000) -> None:
        self.client = client
        self.key = key
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self._groups: set[str] = set()
        self._drained_own: set[tuple[str, str]] = set()  # (group, consumer) whose own pending list was re-read
        self._own_cursor: dict[tuple[str, str], str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, consumer: bool = False) -> RedisStream:
        """`consumer=True`: no silent client retries. redis-py retries a command after a broken connection; for
        XREADGROUP `>` whose reply was lost that hands out the next entries and strands the lost ones in this
        consumer's pending list until a claim. A consumer fails fast instead and recovers from its checkpoint,
        which re-reads its own pending entries first (and counts the reconnection)."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from platform_common.connections import redis_client

        fail_fast = {"retry": Retry(NoBackoff(), 0)} if consumer else {}
        return cls(redis_client(settings, **fail_fast), settings.stream_key, settings.stream_maxlen)

    def publish(self, events: Sequence[Mapping[str, Any]]) -> int:
        return self.publish_raw([encode(e) for e in events])

    def publish_raw(self, payloads: Sequence[bytes]) -> int:
        if not payloads:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.xadd(self.key, {_FIELD: payload}, maxlen=self.maxlen, approximate=True)
            pipe.execute()
        return len(payloads)

    def _ensure_group(self, group: str) -> None:
        if group in self._groups:
            return
        import redis

        try:
            self.client.xgroup_create(self.key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(group)

    @staticmethod
    def _messages(entries: Sequence[Any]) -> list[Message]:
        out = []
        for entry_id, fields in entries:
            if not fields:  # a pending entry trimmed away by MAXLEN: nothing left to process
                continue
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append(Message(id=eid, payload=bytes(fields.get(_FIELD, b""))))
        return out

    def read(self, group: str, consumer: str, count: int, block_ms: int = 0) -> list[Message]:
        self._ensure_group(group)
        if (group, consumer) not in self._drained_own:
            # this consumer's own pending entries, oldest first: what it read before a restart and never acked;
            # the cursor walks past the ones already handed out (they stay pending until acknowledged)
            cursor = self._own_cursor.get((group, consumer), "0")
            reply = self.client.xreadgroup(group, consumer, {self.key: cursor}, count=count)
            entries = reply[0][1] if reply else []
            if entries:
                last = entries[-1][0]
                self._own_cursor[(group, consumer)] = last.decode() if isinstance(last, bytes) else str(last)
                own = self._messages(entries)
                if own:
                    return own
            else:
                self._drained_own.add((group, consumer))
        _, claimed, *_ = self.client.xautoclaim(
            self.key, group, consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=count
        )
        messages = self._messages(claimed)
        if messages:
            return messages
        reply = self.client.xreadgroup(group, consumer, {self.key: ">"}, count=count, block=block_ms or None)
        return self._messages(reply[0][1]) if reply else []

    def ack(self, group: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.xack(self.key, group, *ids)

    def lag(self, group: str) -> int:
        self._ensure_group(group)
        for info in self.client.xinfo_groups(self.key):
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name == group:
                lag = info.get("lag")
                pending = int(info.get("pending", 0))
                # Redis reports lag (entries never delivered) unless trimming made it unknowable
                return pending + (int(lag) if lag is not None else int(self.client.xlen(self.key)))
        return 0

    def close(self) -> None:
        self.client.close()
