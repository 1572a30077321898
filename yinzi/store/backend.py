"""The one seam between the store and a database engine.

Every query in the store is written once, with ``?`` placeholders, against :class:`Backend`. A backend
(``sqlite.py``, ``postgres.py``) owns everything that differs between engines: connections, how a transaction
takes its locks, placeholder style, how the schema version is kept, and the translation of driver errors
into :class:`IntegrityError` or a 503.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Params = Sequence[Any]


class Row(Protocol):
    """A result row: ``sqlite3.Row`` and ``asyncpg.Record`` alike, by column name or position."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def keys(self) -> Any: ...


class IntegrityError(Exception):
    """The database refused a write that breaks one of its constraints (UNIQUE, CHECK, foreign key)."""


class Executor(Protocol):
    """A connection inside a transaction: its statements commit or roll back together."""

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Runs one statement; returns how many rows it changed."""
        ...


class Backend(Protocol):
    name: str  # "sqlite" or "postgresql"
    # Appended to a SELECT inside a transaction: keeps other writers off the rows it read until commit.
    # Empty on SQLite, whose BEGIN IMMEDIATE already holds the whole database's write lock.
    row_lock: str
    # Appended to a sub-SELECT that picks one row to claim: concurrent claimers each take a different row.
    skip_locked: str

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        """A read (never waits for writers)."""
        ...

    async def write(self, sql: str, params: Params = ()) -> int:
        """One statement, committed on its own (atomic by itself); returns how many rows it changed."""
        ...

    async def write_fetch(self, sql: str, params: Params = ()) -> list[Row]:
        """One statement with RETURNING, committed on its own; returns its rows."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """Several statements that commit together, serialised against every other writer of what they read
        with ``row_lock``."""
        ...

    async def close(self) -> None: ...


class StorePart:
    """Base of the store's parts (accounts, orders, ...): each holds the backend and writes portable SQL."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def _one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._backend.fetch(sql, params)
        return rows[0] if rows else None

    async def _write_one(self, sql: str, params: Params = ()) -> Row | None:
        return next(iter(await self._backend.write_fetch(sql, params)), None)
