"""Connections to the prod profile's servers: PostgreSQL (Feast + MLflow registries) and Redis (online store).

One place decides how to reach them, checks that they answer with a message that says how to start them, and
prepares what each deployment needs: its own database (`SHOPRANK_PG_DATABASE`, created on first use) with the
schemas `feast` and `mlflow`. Passwords come from `SHOPRANK_PG_PASSWORD` / `SHOPRANK_REDIS_PASSWORD` and are only
ever handed to the client libraries, never put in a URI, an error message or a file.

`python -m platform_common.connections check|ensure|drop` backs `make prod-check` and `make prod-drop`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Iterator
from typing import Any

from platform_common.settings import FEAST_SCHEMA, MLFLOW_SCHEMA, Settings, get_settings

START_POSTGRES = (
    "start PostgreSQL (Debian: `apt-get install -y postgresql && pg_ctlcluster --skip-systemctl-redirect "
    "$(ls /etc/postgresql) main start`) or point SHOPRANK_PG_HOST/SHOPRANK_PG_PORT at a running server"
)
START_REDIS = (
    "start Redis (Debian: `apt-get install -y redis-server && redis-server --daemonize yes --bind 127.0.0.1 "
    '--port 6379 --save "" --appendonly no`) or point SHOPRANK_REDIS_URL at a running server'
)

_ensured: set[tuple[str, int, str]] = set()


class BackendUnavailableError(ConnectionError):
    """A server of the prod profile does not answer. The message names it and says how to start it."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- PostgreSQL ---------------------------------------------------------------------------------------------


def pg_connect_kwargs(settings: Settings, database: str | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": settings.pg_host,
        "port": settings.pg_port,
        "user": settings.pg_user,
        "dbname": database or settings.pg_database,
        "connect_timeout": settings.pg_connect_timeout,
        "application_name": "shoprank",
    }
    if settings.pg_password is not None:
        kwargs["password"] = settings.pg_password.get_secret_value()
    return kwargs


class _MissingDatabaseError(Exception):
    pass


def pg_connect(settings: Settings, database: str | None = None, *, _missing_ok: bool = False):
    """A psycopg2 connection (autocommit), or BackendUnavailableError naming the server and the way to start it."""
    import psycopg2

    dbname = database or settings.pg_database
    try:
        conn = psycopg2.connect(**pg_connect_kwargs(settings, dbname))
    except psycopg2.OperationalError as exc:
        if _missing_ok and f'database "{dbname}" does not exist' in str(exc):
            raise _MissingDatabaseError(dbname) from None
        where = f"postgresql://{settings.pg_user}@{settings.pg_host}:{settings.pg_port}/{dbname}"
        raise BackendUnavailableError(
            f"PostgreSQL is unavailable at {where} ({_first_line(exc)}): {START_POSTGRES}"
        ) from None  # the libpq error can echo connection parameters; keep the chain out of logs
    conn.autocommit = True
    return conn


def _database_exists(settings: Settings) -> bool:
    conn = pg_connect(settings, "postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (settings.pg_database,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def _create_database(settings: Settings) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = pg_connect(settings, "postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(settings.pg_database)))
    except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
        pass  # created concurrently by another process of the same deployment
    except psycopg2.errors.InsufficientPrivilege:
        raise BackendUnavailableError(
            f"cannot create database {settings.pg_database} as {settings.pg_user}: create it once "
            f"(`createdb -h {settings.pg_host} -p {settings.pg_port} {settings.pg_database}`) or grant CREATEDB"
        ) from None
    finally:
        conn.close()


def ensure_postgres(settings: Settings | None = None) -> None:
    """Check PostgreSQL answers; create the deployment's database and its `feast` and `mlflow` schemas if missing.

    Idempotent and safe against concurrent first runs; done once per process and deployment."""
    import psycopg2
    from psycopg2 import sql

    settings = settings or get_settings()
    key = (settings.pg_host, settings.pg_port, settings.pg_database)
    if key in _ensured:
        return
    try:
        conn = pg_connect(settings, _missing_ok=True)
    except _MissingDatabaseError:
        _create_database(settings)
        conn = pg_connect(settings)
    try:
        with conn.cursor() as cur:
            for schema in (FEAST_SCHEMA, MLFLOW_SCHEMA):
                with contextlib.suppress(psycopg2.errors.UniqueViolation):  # concurrent `if not exists`
                    cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    finally:
        conn.close()
    _ensured.add(key)


def drop_postgres(settings: Settings | None = None) -> bool:
    """Drop the deployment's database (closing other sessions on it); True if it existed."""
    from psycopg2 import sql

    settings = settings or get_settings()
    _ensured.discard((settings.pg_host, settings.pg_port, settings.pg_database))
    if settings.pg_database in ("postgres", "template0", "template1"):
        raise ValueError(f"refusing to drop the maintenance database {settings.pg_database}")
    if not _database_exists(settings):
        return False
    conn = pg_connect(settings, "postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.pg_database)))
    finally:
        conn.close()
    return True


def use_pg_password(settings: Settings) -> None:
    """Hand SHOPRANK_PG_PASSWORD to libpq through PGPASSWORD in this process, so URIs never carry it."""
    if settings.pg_password is not None and "PGPASSWORD" not in os.environ:
        os.environ["PGPASSWORD"] = settings.pg_password.get_secret_value()


# --- Redis --------------------------------------------------------------------------------------------------


def redis_client(settings: Settings, **kwargs: Any):
    import redis

    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=password,
        ssl=settings.redis_ssl,
        socket_connect_timeout=kwargs.pop("socket_connect_timeout", 5),
        **kwargs,
    )


def check_redis(settings: Settings | None = None) -> None:
    import redis

    settings = settings or get_settings()
    client = redis_client(settings)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BackendUnavailableError(
            f"Redis is unavailable at {settings.redis_display} ({_first_line(exc)}): {START_REDIS}"
        ) from None
    finally:
        client.close()


def watermark_key(project: str) -> bytes:
    """The fast materialization engine's record of how far the online store holds each view."""
    from platform_common.feast_fast_engine import RedisWriter

    return RedisWriter.watermark_key(project)


def key_project(key: bytes) -> bytes | None:
    """The Feast project a Redis online-store key belongs to: what follows its v3-serialized entity key."""
    try:
        (n,) = struct.unpack_from("<I", key, 0)
        offset = 4
        for _ in range(2 * n):  # n join-key names, then n values: each <type u32><length u32><bytes>
            (length,) = struct.unpack_from("<I", key, offset + 4)
            offset += 8 + length
    except struct.error:
        return None
    return key[offset:] if offset <= len(key) else None


def redis_project_keys(settings: Settings, count: int = 1000) -> Iterator[bytes]:
    """Every online-store key of this deployment's Feast project (Feast suffixes keys with the project name)."""
    project = settings.feast_project.encode()
    client = redis_client(settings)
    try:
        for key in client.scan_iter(match=b"*" + project, count=count):
            # `*shoprank` also matches keys of a project `x_shoprank`: check the entity key ends where it should.
            if key_project(key) == project:
                yield key
    finally:
        client.close()


def drop_redis_project(settings: Settings | None = None) -> int:
    """Delete this deployment's online-store keys; returns how many."""
    settings = settings or get_settings()
    client = redis_client(settings)
    deleted = 0
    batch: list[bytes] = []
    try:
        for key in redis_project_keys(settings):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
        deleted += client.unlink(watermark_key(settings.feast_project))
    finally:
        client.close()
    return deleted


def check_prod(settings: Settings | None = None) -> None:
    """Both servers answer and the deployment's database is ready; raises BackendUnavailableError otherwise."""
    settings = settings or get_settings()
    check_redis(settings)
    ensure_postgres(settings)


def main(argv: list[str]) -> int:
    settings = get_settings()
    command = argv[0] if argv else "check"
    try:
        if command == "check":
            check_prod(settings)
            print(f"ok: {settings.redis_display} (project {settings.feast_project}), {settings.pg_display}")
        elif command == "ensure":
            ensure_postgres(settings)
            print(f"ok: {settings.pg_display} with schemas {FEAST_SCHEMA}, {MLFLOW_SCHEMA}")
        elif command == "drop":
            dropped = drop_postgres(settings)
            keys = drop_redis_project(settings)
            print(f"dropped database {settings.pg_database}: {dropped}; deleted {keys} Redis keys", end="")
            print(f" of project {settings.feast_project}")
        else:
            print(f"usage: python -m platform_common.connections check|ensure|drop (got {command!r})", file=sys.stderr)
            return 2
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
