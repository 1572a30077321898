"""SQLite, the embedded default: one file under the data directory.

Two aiosqlite connections, so no statement ever runs on the event loop: one for writes, serialised by an
asyncio lock (coroutines share it), and one for reads, which WAL lets run beside a writer. Each call to the
connection's thread costs a round trip (about 0.1 ms under load), so every read is one ``execute_fetchall``
and every single-statement write one autocommit ``execute`` (atomic by itself); only writes that touch
several rows use an explicit transaction, ``BEGIN IMMEDIATE``, which takes SQLite's write lock up front so
two processes never both read-then-write.

The schema version is ``PRAGMA user_version``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiosqlite

from yinzi.errors import ServiceUnavailable
from yinzi.store.backend import IntegrityError, Params, Row
from yinzi.store.schema import BASE, MIGRATIONS, SQLITE

BUSY_TIMEOUT_MS = 10_000
OPEN_RETRY_S = 0.05


class _Transaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        with _translated():
            return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def execute(self, sql: str, params: Params = ()) -> int:
        with _translated():
            cursor = await self._conn.execute(sql, tuple(params))
        return cursor.rowcount


class SqliteBackend:
    name = "sqlite"
    row_lock = ""
    skip_locked = ""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteBackend:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            await _opening(writer, "PRAGMA journal_mode = WAL")
            await _migrate(writer)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def write(self, sql: str, params: Params = ()) -> int:
        async with self._write_lock:
            with _translated():
                cursor = await self._writer.execute(sql, tuple(params))
            return cursor.rowcount

    async def write_fetch(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._write_lock:
            with _translated():
                return list(await self._writer.execute_fetchall(sql, tuple(params)))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        async with self._write_lock:
            with _translated():
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield _Transaction(self._writer)
                    await self._writer.commit()
                except BaseException:  # the commit too: a failed one (disk full) must not leave it open
                    await self._writer.rollback()
                    raise


@contextmanager
def _translated() -> Iterator[None]:
    """Constraint failures become IntegrityError. A full disk makes SQLite refuse the write and keep the
    database intact; callers get a clear 503."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(str(exc)) from exc
    except sqlite3.OperationalError as exc:
        if "full" not in str(exc):
            raise
        raise ServiceUnavailable(
            "the server's disk is full: nothing was changed; please retry later"
        ) from None


async def _opening(conn: aiosqlite.Connection, sql: str) -> None:
    """Runs a statement of the opening sequence. While another process is creating the same new file (and
    switching it to WAL, a lasting setting of the file), SQLite answers "locked" at once instead of waiting
    for the busy timeout, so the wait happens here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await conn.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(OPEN_RETRY_S)


async def _migrate(db: aiosqlite.Connection) -> None:
    """Brings the schema up to date; BEGIN IMMEDIATE makes processes starting together take turns."""
    await _opening(db, "BEGIN IMMEDIATE")
    try:
        for statement in _statements(BASE.script(SQLITE)):
            await db.execute(statement)
        rows = await db.execute_fetchall("PRAGMA user_version")
        version = int(next(iter(rows))[0])
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(step.script(SQLITE)):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        await db.rollback()
        raise
    await db.commit()


def _statements(script: str) -> list[str]:
    """Splits a script into statements (executescript would commit mid-transaction); triggers stay whole."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # In WAL mode NORMAL cannot corrupt the database; a power cut may lose only the last commits.
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute("PRAGMA foreign_keys = ON")
    return conn
