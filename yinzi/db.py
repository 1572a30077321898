"""Every SQL statement yinzi runs, behind one async class.

The database is the single source of truth: orders, users, API keys and the points ledger. Points move only
through ledger rows, and a balance always equals the sum of its user's ledger deltas. Money rules are enforced
here by SQLite itself (conditional updates and a unique ledger row per charge inside ``BEGIN IMMEDIATE``), so
they hold across API processes and arq workers alike.

Two aiosqlite connections, so no statement ever runs on the event loop: one for writes, serialised by an
asyncio lock (coroutines share it), and one for reads, which WAL lets run beside a writer. Each call to the
connection's thread costs a round trip (about 0.1 ms under load), so every read is one ``execute_fetchall``
and every single-statement write one autocommit ``execute`` (atomic by itself); only writes that touch
several rows use an explicit transaction.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
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
-- Charging is one statement: flipping an order from waiting to paid makes SQLite debit its owner and append
-- the ledger row inside that same statement; CHECK (balance >= 0) aborts all of it when the balance is short.
CREATE TRIGGER IF NOT EXISTS orders_charge_when_paid AFTER UPDATE OF pay_status ON orders
WHEN old.pay_status = 'waiting' AND new.pay_status = 'paid'
BEGIN
    UPDATE users SET balance = balance - new.cost WHERE id = new.user_id;
    INSERT INTO ledger (user_id, delta, balance_after, kind, ref, created_at)
    VALUES (new.user_id, -new.cost, (SELECT balance FROM users WHERE id = new.user_id), 'order', new.order_no,
            new.paid_at);
END;
-- Every short-video/analyze call; a successful one is charged through a ledger row (kind 'analyze', ref = id).
CREATE TABLE IF NOT EXISTS analyses (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    link        TEXT NOT NULL,
    platform    TEXT,
    cost        INTEGER NOT NULL,
    error       TEXT,
    created_at  REAL NOT NULL
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

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement, committed on its own; returns how many rows it changed."""
        async with self._write_lock:
            cursor = await self._writer.execute(sql, tuple(params))
            return cursor.rowcount

    async def _write_returning(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._write_lock:
            rows = await self._writer.execute_fetchall(sql, tuple(params))
        return next(iter(rows), None)

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

    async def add_key(self, user_id: int, prefix: str, key_hash: str, label: str = "") -> None:
        await self._write(
            "INSERT INTO api_keys (user_id, prefix, key_hash, label, created_at) VALUES (?, ?, ?, ?, ?)",
            (user_id, prefix, key_hash, label, time.time()),
        )

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
        return await self._write(
            "UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
            (time.time(), prefix),
        )

    # ---- orders -----------------------------------------------------------------------------------------

    async def create_order(
        self, order_no: str, user_id: int, order_type: str, stuff: dict[str, Any], min_balance: int
    ) -> bool:
        """Inserts the order only if the user's balance covers ``min_balance``, in the same statement."""
        created = await self._write(
            "INSERT INTO orders (order_no, user_id, order_type, stuff, created_at) "
            "SELECT ?, id, ?, ?, ? FROM users WHERE id = ? AND balance >= ?",
            (order_no, order_type, json.dumps(stuff, ensure_ascii=False), time.time(), user_id, min_balance),
        )
        return created == 1

    async def order(self, order_no: str) -> Order | None:
        row = await self._one("SELECT * FROM orders WHERE order_no = ?", (order_no,))
        return Order.from_row(row) if row else None

    async def order_and_balance(self, order_no: str) -> tuple[Order, int] | None:
        """The order with its owner's balance, read in one statement so the two always agree."""
        row = await self._one(
            "SELECT o.*, u.balance AS owner_balance FROM orders o JOIN users u ON u.id = o.user_id "
            "WHERE o.order_no = ?",
            (order_no,),
        )
        return (Order.from_row(row), int(row["owner_balance"])) if row else None

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
        row = await self._write_returning(
            "UPDATE orders SET status = 'processing', attempts = attempts + 1, started_at = coalesce(started_at, ?) "
            "WHERE order_no = ? AND status IN ('pending', 'processing') RETURNING *",
            (time.time(), order_no),
        )
        return Order.from_row(row) if row else None

    async def set_progress(self, order_no: str, progress: int) -> None:
        """Progress only moves forward and stays below 100 until the order finishes."""
        progress = max(0, min(progress, 99))
        await self._write(
            "UPDATE orders SET progress = ? WHERE order_no = ? AND status = 'processing' AND progress < ?",
            (progress, order_no, progress),
        )

    async def finish_order(
        self, order_no: str, cost: int, duration: float, results: Iterable[ResultFile]
    ) -> bool:
        payload = json.dumps([{"name": r.name, "business": r.business} for r in results], ensure_ascii=False)
        changed = await self._write(
            "UPDATE orders SET status = 'finish', progress = 100, cost = ?, duration = ?, results = ?, "
            "finished_at = ? WHERE order_no = ? AND status = 'processing'",
            (cost, duration, payload, time.time(), order_no),
        )
        return changed == 1

    async def end_order(self, order_no: str, status: str, reason: str) -> bool:
        """Ends an order that produced nothing: ``failed`` or ``timeout``, never charged."""
        assert status in ("failed", "timeout")
        changed = await self._write(
            "UPDATE orders SET status = ?, pay_status = 'free', cost = 0, reason = ?, finished_at = ? "
            "WHERE order_no = ? AND status IN ('pending', 'processing')",
            (status, reason, time.time(), order_no),
        )
        return changed == 1

    async def charge_order(self, order_no: str, user_id: int) -> None:
        """Debits a finished order's cost once. Raises InsufficientBalance (and changes nothing) if short.

        Safe under any number of concurrent callers in any number of processes: only the statement that flips
        pay_status from 'waiting' to 'paid' debits (through the orders_charge_when_paid trigger), and the
        ledger's UNIQUE(kind, ref) would refuse a second charge row for the order anyway.
        """
        try:
            await self._write(
                "UPDATE orders SET pay_status = 'paid', paid_at = ? "
                "WHERE order_no = ? AND user_id = ? AND status = 'finish' AND pay_status = 'waiting'",
                (time.time(), order_no, user_id),
            )
        except sqlite3.IntegrityError as exc:
            if "balance >= 0" in str(exc):
                raise InsufficientBalance() from None
            raise

    # ---- short-video analyses ---------------------------------------------------------------------------

    async def record_analysis(
        self, user_id: int, link: str, platform: str | None, cost: int, error: str | None = None
    ) -> int:
        """Records one analyze call and charges ``cost`` in the same transaction; returns the balance.

        Raises InsufficientBalance, recording nothing, when the balance is short.
        """
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO analyses (user_id, link, platform, cost, error, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, link, platform, cost, error, time.time()),
            )
            if cost:
                return await _move_points(db, user_id, -cost, "analyze", str(cur.lastrowid), platform or "")
            rows = await db.execute_fetchall("SELECT balance FROM users WHERE id = ?", (user_id,))
            return int(next(iter(rows))["balance"])


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
    rows = await db.execute_fetchall(
        "UPDATE users SET balance = balance + ? WHERE id = ? AND balance + ? >= 0 RETURNING balance",
        (delta, user_id, delta),
    )
    if not rows:
        raise InsufficientBalance()
    balance = int(next(iter(rows))["balance"])
    await db.execute(
        "INSERT INTO ledger (user_id, delta, balance_after, kind, ref, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, delta, balance, kind, ref, note, time.time()),
    )
    return balance
