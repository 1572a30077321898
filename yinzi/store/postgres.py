"""PostgreSQL, for the production shape: API and worker hosts that share no disk share this database.

``YINZI_DATABASE_URL=postgresql://user:password@host:5432/dbname``; any query parameter the driver does not
know is a server setting for every connection (``?search_path=yinzi`` keeps yinzi's tables in a schema of
their own). One asyncpg pool per process; each statement is prepared once per connection and cached.

The store's SQL is written with ``?`` placeholders; here they become ``$1, $2, ...``. Transactions run at
READ COMMITTED: single-statement writes are atomic, a conditional UPDATE that lost a race re-checks its
condition on the row the winner committed (so an order flips to ``paid`` once), and transactions that read
before writing lock what they read (``row_lock``, ``skip_locked``).

The schema version is the one row of ``yinzi_schema``; migrations run in one transaction (DDL is
transactional here) under an advisory lock, so processes starting together take turns.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import asyncpg

from yinzi.errors import ServiceUnavailable
from yinzi.store.backend import IntegrityError, Params, Row
from yinzi.store.schema import BASE, MIGRATIONS, POSTGRESQL

# Connections per process. An API process waits on the database for well under a millisecond per
# statement, so a few connections carry thousands of requests a second; workers need fewer still.
POOL_MIN = 1
POOL_MAX = 10
# Seconds to wait for a connection (at start-up, or from an exhausted pool) before answering 503.
CONNECT_TIMEOUT_S = 10.0
# pg_advisory_xact_lock key taken while migrating: any fixed number no other application uses.
MIGRATION_LOCK = 0x79_69_6E_7A_69  # "yinzi"


if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection lent by the pool.
    _Connection = PoolConnectionProxy[asyncpg.Record]


class _Transaction:
    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        with _translated():
            return list(await self._conn.fetch(_numbered(sql), *params))

    async def execute(self, sql: str, params: Params = ()) -> int:
        with _translated():
            return _rowcount(await self._conn.execute(_numbered(sql), *params))


class PostgresBackend:
    name = "postgresql"
    row_lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresBackend:
        with _translated():
            pool = await asyncpg.create_pool(
                url, min_size=POOL_MIN, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT_S, reset=_session_kept
            )
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        with _translated():
            return list(await self._pool.fetch(_numbered(sql), *params))

    async def write(self, sql: str, params: Params = ()) -> int:
        with _translated():
            return _rowcount(await self._pool.execute(_numbered(sql), *params))

    async def write_fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.fetch(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        with _translated():
            async with self._pool.acquire() as conn, conn.transaction():
                yield _Transaction(conn)


async def _session_kept(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool: nothing. The store changes no session state (no
    SET, LISTEN, cursors or session locks; an open transaction is rolled back by the pool itself), so the
    default reset, a RESET ALL round trip after every statement, would only halve the pool's throughput."""


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` (the store's SQL has no ``?`` inside literals)."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _rowcount(status: str) -> int:
    """Rows changed, from a command tag such as ``UPDATE 3`` or ``INSERT 0 1``."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(str(exc)) from exc
    except asyncpg.exceptions.DiskFullError:
        raise ServiceUnavailable(
            "the database server's disk is full: nothing was changed; please retry later"
        ) from None
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
    ) as exc:
        raise ServiceUnavailable(f"the database is unreachable right now ({exc}); please retry") from None


async def _migrate(conn: _Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        if await conn.fetchval("SELECT to_regclass('yinzi_schema')") is None:
            await conn.execute(BASE.script(POSTGRESQL))
            await conn.execute(
                "CREATE TABLE yinzi_schema (version INTEGER NOT NULL); INSERT INTO yinzi_schema VALUES (0)"
            )
        version = int(await conn.fetchval("SELECT version FROM yinzi_schema"))
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(step.script(POSTGRESQL))
            await conn.execute("UPDATE yinzi_schema SET version = $1", number)
