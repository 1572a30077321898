"""Every SQL statement yinzi runs, behind one async class.

The database is the single source of truth: orders, users, API keys and the points ledger. Points move only
through ledger rows, and a balance always equals the sum of its user's ledger deltas. Money rules are enforced
here by SQLite itself (conditional updates and a unique ledger row per charge inside ``BEGIN IMMEDIATE``), so
they hold across API processes and arq workers alike.

Two connections: one for writes, whose transactions are serialised by an asyncio lock (aiosqlite shares one
connection between coroutines), and one for plain reads, which WAL lets run beside a writer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from yinzi.errors import InsufficientBalance

BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    balance     INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
-- Append-only. kind+ref is unique, so one order (ref = orderNo) can be charged once, whatever races.
CREATE TABLE IF NOT EXISTS ledger (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    delta         INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    ref           TEXT,
    note          TEXT NOT NULL DEFAULT '',
    created_at    REAL NOT NULL,
    UNIQUE (kind, ref)
);
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY,
    order_no    TEXT NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    order_type  TEXT NOT NULL,
    stuff       TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'finish', 'failed', 'timeout')),
    pay_status  TEXT NOT NULL DEFAULT 'waiting' CHECK (pay_status IN ('waiting', 'paid', 'free')),
    progress    INTEGER NOT NULL DEFAULT 0,
    cost        INTEGER NOT NULL DEFAULT 0,
    duration    REAL,
    reason      TEXT,
    results     TEXT NOT NULL DEFAULT '[]',
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    paid_at     REAL
);
CREATE INDEX IF NOT EXISTS orders_unfinished ON orders (status) WHERE status IN ('pending', 'processing');
"""

TERMINAL = ("finish", "failed", "timeout")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    balance: int


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_name: str
    prefix: str
    label: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class ResultFile:
    name: str
    business: str


@dataclass(frozen=True)
class Order:
    id: int
    order_no: str
    user_id: int
    order_type: str
    stuff: dict[str, Any]
    status: str
    pay_status: str
    progress: int
    cost: int
    duration: float | None
    reason: str | None
    results: tuple[ResultFile, ...]
    attempts: int
    created_at: float
    finished_at: float | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Order:
        return cls(
            id=row["id"],
            order_no=row["order_no"],
            user_id=row["user_id"],
            order_type=row["order_type"],
            stuff=json.loads(row["stuff"]),
            status=row["status"],
            pay_status=row["pay_status"],
            progress=row["progress"],
            cost=row["cost"],
            duration=row["duration"],
            reason=row["reason"],
            results=tuple(ResultFile(**r) for r in json.loads(row["results"])),
            attempts=row["attempts"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
        )


class Database:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            await writer.execute("PRAGMA journal_mode = WAL")
            await writer.executescript(SCHEMA)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE takes SQLite's write lock up front, so two processes never both read-then-write."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.rollback()
                raise
            await self._writer.commit()

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._reader.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._reader.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def ping(self) -> None:
        await self._one("SELECT 1")

    # ---- users and points -------------------------------------------------------------------------------

    async def create_user(self, name: str, points: int = 0) -> User:
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO users (name, balance, created_at) VALUES (?, 0, ?)", (name, time.time())
            )
            user_id = cur.lastrowid
            assert user_id is not None
            if points:
                await _move_points(db, user_id, points, "grant", None, "initial points")
        user = await self.user_by_name(name)
        assert user is not None
        return user

    async def user_by_name(self, name: str) -> User | None:
        row = await self._one("SELECT id, name, balance FROM users WHERE name = ?", (name,))
        return User(row["id"], row["name"], row["balance"]) if row else None

    async def list_users(self) -> list[User]:
        rows = await self._all("SELECT id, name, balance FROM users ORDER BY name")
        return [User(row["id"], row["name"], row["balance"]) for row in rows]

    async def balance(self, user_id: int) -> int:
        row = await self._one("SELECT balance FROM users WHERE id = ?", (user_id,))
        assert row is not None
        return int(row["balance"])

    async def grant_points(self, user_id: int, points: int, note: str = "") -> int:
        """Adds (or, negative, removes) points; returns the new balance."""
        async with self._transaction() as db:
            return await _move_points(db, user_id, points, "grant", None, note)

    async def ledger(self, user_id: int) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT delta, balance_after, kind, ref, note, created_at FROM ledger WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        return [dict(row) for row in rows]

    # ---- API keys ---------------------------------------------------------------------------------------

    async def add_key(self, user_id: int, prefix: str, key_hash: str, label: str = "") -> int:
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO api_keys (user_id, prefix, key_hash, label, created_at) VALUES (?, ?, ?, ?, ?)",
                (user_id, prefix, key_hash, label, time.time()),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def user_for_key(self, key_hash: str) -> User | None:
        row = await self._one(
            "SELECT u.id, u.name, u.balance FROM api_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.key_hash = ? AND k.revoked_at IS NULL",
            (key_hash,),
        )
        return User(row["id"], row["name"], row["balance"]) if row else None

    async def list_keys(self, user_name: str | None = None) -> list[ApiKey]:
        rows = await self._all(
            "SELECT k.id, u.name, k.prefix, k.label, k.created_at, k.revoked_at "
            "FROM api_keys k JOIN users u ON u.id = k.user_id WHERE ? IS NULL OR u.name = ? ORDER BY k.id",
            (user_name, user_name),
        )
        return [ApiKey(*row) for row in rows]

    async def count_keys(self) -> int:
        row = await self._one("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
        return int(row[0]) if row else 0

    async def revoke_key(self, prefix: str) -> int:
        """Revokes the live keys with this prefix; returns how many."""
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
                (time.time(), prefix),
            )
            return cur.rowcount

    # ---- orders -----------------------------------------------------------------------------------------

    async def create_order(self, order_no: str, user_id: int, order_type: str, stuff: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO orders (order_no, user_id, order_type, stuff, created_at) VALUES (?, ?, ?, ?, ?)",
                (order_no, user_id, order_type, json.dumps(stuff, ensure_ascii=False), time.time()),
            )

    async def order(self, order_no: str) -> Order | None:
        row = await self._one("SELECT * FROM orders WHERE order_no = ?", (order_no,))
        return Order.from_row(row) if row else None

    async def unfinished_orders(self) -> list[str]:
        """Orders a crash may have left behind, oldest first: the queue's durable backlog."""
        rows = await self._all(
            "SELECT order_no FROM orders WHERE status IN ('pending', 'processing') ORDER BY id"
        )
        return [row["order_no"] for row in rows]

    async def claim_order(self, order_no: str) -> Order | None:
        """Moves pending -> processing (or re-claims a processing order whose worker died).

        Returns None for a finished or unknown order, so a job delivered twice does nothing the second time.
        """
        async with self._transaction() as db:
            async with db.execute(
                "UPDATE orders SET status = 'processing', attempts = attempts + 1, "
                "started_at = coalesce(started_at, ?) "
                "WHERE order_no = ? AND status IN ('pending', 'processing') RETURNING *",
                (time.time(), order_no),
            ) as cur:
                row = await cur.fetchone()
        return Order.from_row(row) if row else None

    async def set_progress(self, order_no: str, progress: int) -> None:
        """Progress only moves forward and stays below 100 until the order finishes."""
        progress = max(0, min(progress, 99))
        async with self._transaction() as db:
            await db.execute(
                "UPDATE orders SET progress = ? WHERE order_no = ? AND status = 'processing' AND progress < ?",
                (progress, order_no, progress),
            )

    async def finish_order(
        self, order_no: str, cost: int, duration: float, results: Iterable[ResultFile]
    ) -> bool:
        payload = json.dumps([{"name": r.name, "business": r.business} for r in results], ensure_ascii=False)
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE orders SET status = 'finish', progress = 100, cost = ?, duration = ?, results = ?, "
                "finished_at = ? WHERE order_no = ? AND status = 'processing'",
                (cost, duration, payload, time.time(), order_no),
            )
            return cur.rowcount == 1

    async def end_order(self, order_no: str, status: str, reason: str) -> bool:
        """Ends an order that produced nothing: ``failed`` or ``timeout``, never charged."""
        assert status in ("failed", "timeout")
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE orders SET status = ?, pay_status = 'free', cost = 0, reason = ?, finished_at = ? "
                "WHERE order_no = ? AND status IN ('pending', 'processing')",
                (status, reason, time.time(), order_no),
            )
            return cur.rowcount == 1

    async def charge_order(self, order_no: str, user_id: int) -> None:
        """Debits a finished order's cost once. Raises InsufficientBalance (and changes nothing) if short.

        Safe under any number of concurrent callers in any number of processes: only the transaction that
        flips pay_status from 'waiting' to 'paid' debits, and the ledger's UNIQUE(kind, ref) backs it up.
        """
        async with self._transaction() as db:
            async with db.execute(
                "SELECT cost FROM orders WHERE order_no = ? AND user_id = ? "
                "AND status = 'finish' AND pay_status = 'waiting'",
                (order_no, user_id),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return  # already paid, or not finished: nothing to do
            cost = int(row["cost"])
            await db.execute(
                "UPDATE orders SET pay_status = 'paid', paid_at = ? WHERE order_no = ? AND pay_status = 'waiting'",
                (time.time(), order_no),
            )
            await _move_points(db, user_id, -cost, "order", order_no, "")


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # In WAL mode NORMAL cannot corrupt the database; a power cut may lose only the last commits.
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute("PRAGMA foreign_keys = ON")
    return conn


async def _move_points(
    db: aiosqlite.Connection, user_id: int, delta: int, kind: str, ref: str | None, note: str
) -> int:
    """Inside a transaction: changes a balance and appends the ledger row that explains it."""
    cur = await db.execute(
        "UPDATE users SET balance = balance + ? WHERE id = ? AND balance + ? >= 0", (delta, user_id, delta)
    )
    if cur.rowcount != 1:
        raise InsufficientBalance()
    async with db.execute("SELECT balance FROM users WHERE id = ?", (user_id,)) as c:
        row = await c.fetchone()
    assert row is not None
    balance = int(row["balance"])
    await db.execute(
        "INSERT INTO ledger (user_id, delta, balance_after, kind, ref, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, delta, balance, kind, ref, note, time.time()),
    )
    return balance
