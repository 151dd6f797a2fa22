"""Into Feast's Redis online store: its hash layout, written as raw pipelined RESP over the store's client."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from feast import FeatureView
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.repo_config import RepoConfig
from google.protobuf.timestamp_pb2 import Timestamp

from platform_common.feast_fast_engine.encode import EPOCH, EncodedRows, cached, from_micros, redis_ts
from platform_common.feast_fast_engine.layout import log, utc
from platform_common.feast_fast_engine.online_writer import OnlineWriter

hiredis: Any
try:
    import hiredis
except ImportError:  # optional: redis-py's parser is used instead
    hiredis = None


class RedisWriter(OnlineWriter):
    """Feast's Redis hash layout, written as raw pipelined RESP over one connection of the store's client."""

    timestamp_kind = "redis"

    def __init__(self, store: RedisOnlineStore) -> None:
        self.store = store

    @staticmethod
    def watermark_key(project: str) -> bytes:
        """A hash per Feast project: view name -> microseconds up to which the store holds the view."""
        return f"shoprank:feast_fast_engine:watermarks:{project}".encode()

    def resume_from(self, config: RepoConfig, fv: FeatureView, start: datetime, end: datetime) -> datetime:
        """The requested start, unless the store itself says it holds less: a Redis without persistence that
        restarted (the watermark went with the data) or one restored from an older snapshot. Then from the
        watermark, or with none from the TTL horizon (all the history when the view has no TTL), which is the
        whole window a read can still see."""
        client = self.store._get_client(config.online_store)
        stored = client.hget(self.watermark_key(config.project), fv.name)
        held = from_micros(int(stored)) if stored else None
        if held is not None and held >= utc(start):
            return start
        horizon = utc(end) - fv.ttl if fv.ttl else EPOCH
        resume = held if held is not None else horizon
        if resume < utc(start):
            log.warning(
                "%s: the online store holds it up to %s, though the registry says %s; reading from there",
                fv.name,
                held.isoformat(timespec="seconds") if held else "nothing (restarted or flushed)",
                utc(start).isoformat(timespec="seconds"),
            )
            return resume
        return start

    def written_up_to(self, config: RepoConfig, fv: FeatureView, end: datetime) -> None:
        client = self.store._get_client(config.online_store)
        micros = (utc(end) - EPOCH) // timedelta(microseconds=1)
        client.hset(self.watermark_key(config.project), fv.name, str(micros))

    def write(self, config: RepoConfig, fv: FeatureView, chunks: Iterator[EncodedRows], chunk_rows: int) -> None:
        store_config = config.online_store
        client = self.store._get_client(store_config)
        view = compute_versioned_name(fv, config.registry.enable_online_feature_view_versioning)
        ts_field = f"_ts:{view}".encode()
        project = config.project.encode("utf-8")
        ttl = store_config.key_ttl_seconds
        features = [f.name for f in fv.features]
        # HSET <key> _ts:<view> <Timestamp> <mmh3(view:feature)> <Value> ...: each "field value" pair is encoded
        # once per column, each key once, then every command is one join.
        hset_head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (len(features) + 1))
        ts_cell = cached(lambda dt: _bulk(ts_field) + _bulk(redis_ts(dt)))
        heads = [_bulk(_mmh3(f"{view}:{name}")) for name in features]
        expire = b"$%d\r\n%d\r\n" % (len(str(ttl)), ttl) if ttl else b""
        # Two connections: while redis-server applies one chunk's HSETs (read back on `sender` by a thread that
        # waits in recv, without the GIL), this thread checks stored timestamps for the next chunk and builds it.
        # Chunks hold distinct entity keys (one latest row per entity), so their order between them is free.
        pool = client.connection_pool
        conn, sender = pool.get_connection(), pool.get_connection()
        in_flight: Future | None = None
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-write") as executor:
                for rows in chunks:  # as the reading thread encodes them
                    values = [rows.values[name] for name in features]
                    keys = [b"$%d\r\n%s%s\r\n" % (len(k) + len(project), k, project) for k in rows.entity_keys]
                    for lo in range(0, rows.n, chunk_rows):
                        hi = min(lo + chunk_rows, rows.n)
                        keep: Sequence[int] = range(lo, hi)
                        if not store_config.skip_dedup:
                            keep = self._newer(conn, keys, ts_field, rows.event_us, lo, hi)
                        columns = [_resp_pairs(head, col[lo:hi]) for head, col in zip(heads, values, strict=True)]
                        out: list[bytes] = []
                        for i in keep:
                            cells = [c[i - lo] for c in columns]
                            out.append(b"".join([hset_head, keys[i], ts_cell(rows.event_us[i]), *cells]))
                            if ttl:
                                out.append(b"*3\r\n$6\r\nEXPIRE\r\n" + keys[i] + expire)
                        if in_flight is not None:
                            in_flight.result()  # raises the chunk's error; at most one chunk is in flight
                            in_flight = None
                        if out:
                            in_flight = executor.submit(roundtrip_integers, sender, b"".join(out), len(out))
                if in_flight is not None:
                    in_flight.result()
        except BaseException:
            conn.disconnect()
            sender.disconnect()
            raise
        finally:
            pool.release(conn)
            pool.release(sender)

    @staticmethod
    def _newer(
        conn: Any, keys: Sequence[bytes], ts_field: bytes, event_us: Sequence[int], lo: int, hi: int
    ) -> list[int]:
        """Rows whose event time is newer than the one stored (Feast skips a row whose timestamp is not newer)."""
        # One EVAL returning every stored timestamp as one array: parsed in C, not reply by reply in Python.
        n = hi - lo
        head = b"*%d\r\n$4\r\nEVAL\r\n%s$%d\r\n%d\r\n" % (n + 4, _bulk(_HGET_ALL), len(str(n)), n)
        (stored,) = roundtrip(conn, b"".join([head, *keys[lo:hi], _bulk(ts_field)]), 1)
        parsed: dict[bytes, int] = {}
        keep = []
        for i, previous in zip(range(lo, hi), stored, strict=True):
            if previous:
                nanos = parsed.get(previous)
                if nanos is None:
                    ts = Timestamp()
                    ts.ParseFromString(previous)
                    nanos = parsed[previous] = ts.seconds * 1_000_000_000 + ts.nanos
                if event_us[i] * 1000 <= nanos:
                    continue
            keep.append(i)
        return keep


_HGET_ALL = b"local out = {} for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end return out"


def _resp_pairs(head: bytes, values: list[bytes]) -> list[bytes]:
    """`head` followed by each value as a RESP bulk string; one numpy pass when the values share a length."""
    lengths = {len(v) for v in values}
    if len(lengths - {0}) != 1 or not values:
        return [b"%s$%d\r\n%s\r\n" % (head, len(v), v) for v in values]
    (width,) = lengths - {0}
    prefix = head + b"$%d\r\n" % width
    n = len(values)
    filled = [v or bytes(width) for v in values] if 0 in lengths else values
    cells = np.empty((n, len(prefix) + width + 2), dtype=np.uint8)
    cells[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    cells[:, len(prefix) : len(prefix) + width] = np.frombuffer(b"".join(filled), dtype=np.uint8).reshape(n, width)
    cells[:, -2:] = np.frombuffer(b"\r\n", dtype=np.uint8)
    raw, step = cells.tobytes(), cells.shape[1]
    out = [raw[i : i + step] for i in range(0, n * step, step)]
    if 0 in lengths:
        empty = head + b"$0\r\n\r\n"
        for i, v in enumerate(values):
            if not v:
                out[i] = empty
    return out


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


# --- one RESP round trip ---------------------------------------------------------------------------------------
# Commands are sent pipelined in one packed payload on a redis-py connection, and their replies read off its socket
# directly: redis-py's per-reply Python path costs more than building the commands. What differs between callers
# is only how the bytes read become replies (_Replies).


class _Replies(Protocol):
    count: int  # complete replies read so far

    def feed(self, data: bytes) -> None:
        """Take the next bytes read off the socket; an error reply is raised as redis.exceptions.ResponseError."""


class _ParsedReplies:
    """Any replies, parsed by hiredis (in C)."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.replies: list[Any] = []
        self.count = 0

    def feed(self, data: bytes) -> None:
        from redis.exceptions import ResponseError

        self.reader.feed(data)
        gets = self.reader.gets
        while (reply := gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
            self.replies.append(reply)
        self.count = len(self.replies)


class _CountedReplies:
    """Replies that are non-negative integers (HSET, EXPIRE): each is one `:<n>` line, so counting lines is parsing
    them; an error reply (`-ERR ...`) is the only one with a `-`."""

    def __init__(self) -> None:
        self.count = 0
        self.tail = b""  # the incomplete last line of what was read

    def feed(self, data: bytes) -> None:
        from redis.exceptions import ResponseError

        data = self.tail + data
        if b"-" in data:
            start = data.index(b"-")
            raise ResponseError(data[start + 1 :].split(b"\r\n", 1)[0].decode(errors="replace"))
        self.count += data.count(b"\r\n")
        self.tail = data[data.rfind(b"\r\n") + 2 :] if b"\r\n" in data else data


def _exchange(conn: Any, payload: bytes, expected: int, replies: _Replies) -> None:
    """Send `payload` and read until `expected` replies are complete."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    conn.send_packed_command([payload], check_health=False)
    sock = conn._sock
    while replies.count < expected:
        try:
            data = sock.recv(1 << 20)
        except OSError as exc:
            raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc
        if not data:
            raise RedisConnectionError("Connection closed by server.")
        replies.feed(data)
    if replies.count > expected:
        raise RedisConnectionError(f"expected {expected} replies, got {replies.count}: connection out of sync")


def roundtrip(conn: Any, payload: bytes, replies: int) -> list[Any]:
    """The replies of `replies` pipelined commands, parsed."""
    if hiredis is None:  # redis-py's own parser, slower
        from redis.exceptions import ResponseError

        conn.send_packed_command([payload], check_health=False)
        out = [conn.read_response() for _ in range(replies)]
        for reply in out:
            if isinstance(reply, ResponseError):
                raise reply
        return out
    parsed = _ParsedReplies()
    _exchange(conn, payload, replies, parsed)
    return parsed.replies


def roundtrip_integers(conn: Any, payload: bytes, replies: int) -> None:
    """Like `roundtrip` for commands whose replies are non-negative integers, which it checks and drops."""
    _exchange(conn, payload, replies, _CountedReplies())
