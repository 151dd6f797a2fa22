"""Both transports of the event stream: publish, read in a group, acknowledge, redelivery after a restart.

The Redis one runs against the real server at 127.0.0.1:6379 (fails if it is missing), on a stream key of its
own that is deleted afterwards.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from platform_common.event_stream.redis_stream import RedisStream
from platform_common.event_stream.sqlite_stream import SqliteStream


@pytest.fixture
def sqlite_factory(tmp_path):
    path = tmp_path / "events.db"
    return lambda: SqliteStream(path)


@pytest.fixture
def redis_factory():
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    client.ping()  # no Redis: the test fails here, never skips
    key = f"shoprank:test:events:{uuid.uuid4().hex}"
    yield lambda: RedisStream(redis.Redis(host="127.0.0.1", port=6379), key, maxlen=10_000, claim_idle_ms=50)
    client.delete(key)
    client.close()


@pytest.fixture(params=["sqlite", "redis"])
def factory(request):
    return request.getfixturevalue(f"{request.param}_factory")


def ids(messages):
    return [json.loads(m.payload)["n"] for m in messages]


def test_read_ack_and_restart_redelivers_only_the_unacknowledged(factory):
    producer = factory()
    assert producer.publish([{"n": i} for i in range(10)]) == 10
    consumer = factory()
    first = consumer.read("g", "c1", count=4)
    assert ids(first) == [0, 1, 2, 3]
    consumer.ack("g", [m.id for m in first])
    second = consumer.read("g", "c1", count=4)
    assert ids(second) == [4, 5, 6, 7]
    assert consumer.lag("g") == 6  # 4..9 not acknowledged
    consumer.close()  # killed before acknowledging 4..7

    restarted = factory()
    again = restarted.read("g", "c1", count=10)
    assert ids(again)[:4] == [4, 5, 6, 7]  # at least once: redelivered first
    rest = again[4:] or restarted.read("g", "c1", count=10)
    assert ids(rest) == [8, 9]
    restarted.ack("g", [m.id for m in again + ([] if again[4:] else rest)])
    assert restarted.lag("g") == 0
    assert restarted.read("g", "c1", count=10, block_ms=50) == []
    # another group reads everything from the start, independently
    assert ids(restarted.read("other", "c1", count=100)) == list(range(10))
    restarted.close()
    producer.close()


def test_a_blocking_read_waits_for_a_publish(factory):
    stream = factory()
    assert stream.read("g", "c1", count=5, block_ms=100) == []
    stream.publish([{"n": 1}])
    assert ids(stream.read("g", "c1", count=5, block_ms=100)) == [1]
    stream.close()


def test_redis_claims_what_a_dead_consumer_left_pending(redis_factory):
    stream = redis_factory()
    stream.publish([{"n": i} for i in range(3)])
    assert ids(stream.read("g", "dead", count=3)) == [0, 1, 2]  # read, never acknowledged
    import time

    time.sleep(0.1)  # longer than claim_idle_ms
    other = redis_factory()
    claimed = other.read("g", "alive", count=10)
    assert ids(claimed) == [0, 1, 2]
    other.ack("g", [m.id for m in claimed])
    assert other.lag("g") == 0
    stream.close()
    other.close()
