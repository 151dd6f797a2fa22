"""The Redis writer's one RESP round trip, over a socket pair standing in for redis-server (no server needed)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from platform_common.feast_fast_engine.redis_writer import _CountedReplies, roundtrip, roundtrip_integers


class FakeConnection:
    """What the round trip uses of a redis-py connection: `send_packed_command` and the socket it reads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sent = b""

    def send_packed_command(self, parts: list[bytes], check_health: bool = True) -> None:
        self.sent += b"".join(parts)


@pytest.fixture
def pair() -> Iterator[tuple[FakeConnection, socket.socket]]:
    ours, server = socket.socketpair()
    try:
        yield FakeConnection(ours), server
    finally:
        ours.close()
        server.close()


def test_parsed_replies_come_back_in_order(pair):
    conn, server = pair
    server.sendall(b"*3\r\n$1\r\na\r\n$-1\r\n$0\r\n\r\n:7\r\n")
    assert roundtrip(conn, b"PAYLOAD", 2) == [[b"a", None, b""], 7]
    assert conn.sent == b"PAYLOAD"


def test_an_error_reply_is_raised_with_its_message(pair):
    conn, server = pair
    server.sendall(b"-ERR unknown command 'NOPE'\r\n")
    with pytest.raises(ResponseError, match="unknown command 'NOPE'"):
        roundtrip(conn, b"x", 1)
    server.sendall(b":1\r\n-WRONGTYPE Operation against a key\r\n")
    with pytest.raises(ResponseError, match="^WRONGTYPE Operation against a key$"):
        roundtrip_integers(conn, b"x", 2)


def test_integer_replies_are_counted_across_reads():
    replies = _CountedReplies()
    for piece in (b":1", b"\r", b"\n:0\r\n:12", b"3\r\n"):
        replies.feed(piece)
    assert replies.count == 3
    assert replies.tail == b""


def test_a_closed_connection_and_extra_replies_are_connection_errors(pair):
    conn, server = pair
    server.sendall(b":1\r\n:1\r\n")
    with pytest.raises(RedisConnectionError, match="expected 1 replies, got 2: connection out of sync"):
        roundtrip_integers(conn, b"x", 1)
    server.sendall(b":1\r\n")
    server.close()
    with pytest.raises(RedisConnectionError, match="Connection closed by server"):
        roundtrip_integers(conn, b"x", 2)
