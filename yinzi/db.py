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
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from yinzi.errors import InsufficientBalance, ServiceUnavailable

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

# Applied in order to every database, a new one included (SCHEMA is version 1); PRAGMA user_version counts them.
MIGRATIONS = (
    """
    ALTER TABLE orders ADD COLUMN priority TEXT NOT NULL DEFAULT 'queue' CHECK (priority IN ('queue', 'lightning'));
    ALTER TABLE orders ADD COLUMN callback_url TEXT;
    -- 0 while the order waits for its user's cap on running orders; only admitted orders are in the job queue.
    ALTER TABLE orders ADD COLUMN admitted INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE orders ADD COLUMN expired_at REAL;
    CREATE INDEX orders_waiting ON orders (user_id, priority, id) WHERE admitted = 0 AND status = 'pending';
    CREATE INDEX orders_admitted ON orders (user_id) WHERE admitted = 1 AND status IN ('pending', 'processing');
    CREATE INDEX orders_retained ON orders (finished_at) WHERE status = 'finish' AND expired_at IS NULL;
    ALTER TABLE users ADD COLUMN webhook_secret TEXT;
    UPDATE users SET webhook_secret = 'whsec_' || lower(hex(randomblob(24)));
    ALTER TABLE api_keys ADD COLUMN rate_limit INTEGER;  -- requests per minute; NULL: the default
    ALTER TABLE api_keys ADD COLUMN signed INTEGER NOT NULL DEFAULT 0;  -- 1: a public key of a signed pair
    CREATE TABLE uploads (
        id           TEXT PRIMARY KEY,
        user_id      INTEGER NOT NULL REFERENCES users(id),
        file_name    TEXT NOT NULL,
        mime_type    TEXT NOT NULL,
        size_bytes   INTEGER NOT NULL,
        state        TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'complete')),
        sha256       TEXT,
        duration     REAL,
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        completed_at REAL
    );
    CREATE TABLE webhook_deliveries (
        id           INTEGER PRIMARY KEY,
        order_no     TEXT NOT NULL UNIQUE,
        user_id      INTEGER NOT NULL REFERENCES users(id),
        url          TEXT NOT NULL,
        body         TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      REAL NOT NULL,
        delivered_at REAL,
        gave_up_at   REAL,
        created_at   REAL NOT NULL
    );
    CREATE INDEX webhooks_due ON webhook_deliveries (next_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
    CREATE TABLE webhook_attempts (
        id          INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id),
        at          REAL NOT NULL,
        status      INTEGER,
        error       TEXT,
        duration_ms INTEGER NOT NULL
    );
    -- The webhook is queued by the statement that ends the order, so no crash can lose it.
    CREATE TRIGGER orders_webhook_when_ended AFTER UPDATE OF status ON orders
    WHEN new.callback_url IS NOT NULL AND new.status IN ('finish', 'failed', 'timeout')
         AND old.status NOT IN ('finish', 'failed', 'timeout')
    BEGIN
        INSERT OR IGNORE INTO webhook_deliveries (order_no, user_id, url, body, next_at, created_at)
        VALUES (new.order_no, new.user_id, new.callback_url,
                json_object('orderNo', new.order_no, 'status', new.status, 'cost', new.cost, 'reason', new.reason),
                new.finished_at, new.finished_at);
    END;
    CREATE TABLE idempotency (
        user_id    INTEGER NOT NULL REFERENCES users(id),
        key        TEXT NOT NULL,
        body_hash  TEXT NOT NULL,
        status     INTEGER,  -- NULL while the first request is still being handled
        response   TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, key)
    );
    """,
)

TERMINAL = ("finish", "failed", "timeout")

# Orders of one user (bound as the parameter) that hold a place under the running cap.
_ADMITTED_COUNT = (
    "SELECT count(*) FROM orders WHERE user_id = ? AND admitted = 1 AND status IN ('pending', 'processing')"
)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    balance: int


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the user and the key they used (its rate limit; None is the default)."""

    user: User
    key_id: int
    rate_limit: int | None


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_name: str
    prefix: str
    label: str
    created_at: float
    revoked_at: float | None
    signed: bool
    rate_limit: int | None


@dataclass(frozen=True)
class Upload:
    id: str
    user_id: int
    file_name: str
    mime_type: str
    size_bytes: int
    state: str
    sha256: str | None
    duration: float | None
    expires_at: float


@dataclass(frozen=True)
class WebhookDelivery:
    id: int
    order_no: str
    user_id: int
    url: str
    body: str
    attempts: int


@dataclass(frozen=True)
class IdempotentRequest:
    body_hash: str
    status: int | None  # None: the first request is still being handled
    response: str | None


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
    priority: str
    callback_url: str | None
    expired: bool

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
            priority=row["priority"],
            callback_url=row["callback_url"],
            expired=row["expired_at"] is not None,
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
            await _migrate(writer)
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
        async with self._write_lock, _disk_full_is_503():
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                await self._writer.commit()
            except (
                BaseException
            ):  # the commit too: a failed one (disk full) must not leave the transaction open
                await self._writer.rollback()
                raise

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement, committed on its own; returns how many rows it changed."""
        async with self._write_lock, _disk_full_is_503():
            cursor = await self._writer.execute(sql, tuple(params))
            return cursor.rowcount

    async def _write_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        """One statement with RETURNING, committed on its own; returns its rows."""
        async with self._write_lock, _disk_full_is_503():
            return list(await self._writer.execute_fetchall(sql, tuple(params)))

    async def _write_returning(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        return next(iter(await self._write_all(sql, params)), None)

    async def ping(self) -> None:
        await self._one("SELECT 1")

    # ---- users and points -------------------------------------------------------------------------------

    async def create_user(self, name: str, points: int = 0) -> User:
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO users (name, balance, webhook_secret, created_at) VALUES (?, 0, ?, ?)",
                (name, new_webhook_secret(), time.time()),
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

    async def add_key(
        self,
        user_id: int,
        prefix: str,
        key_hash: str,
        label: str = "",
        *,
        signed: bool = False,
        rate_limit: int | None = None,
    ) -> None:
        await self._write(
            "INSERT INTO api_keys (user_id, prefix, key_hash, label, signed, rate_limit, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user_id, prefix, key_hash, label, int(signed), rate_limit, time.time()),
        )

    async def caller_for_key(self, key_hash: str, *, signed: bool = False) -> Caller | None:
        """The live key with this hash; a signed pair's public key never works as a Bearer key."""
        row = await self._one(
            "SELECT u.id, u.name, u.balance, k.id AS key_id, k.rate_limit FROM api_keys k "
            "JOIN users u ON u.id = k.user_id WHERE k.key_hash = ? AND k.revoked_at IS NULL AND k.signed = ?",
            (key_hash, int(signed)),
        )
        if row is None:
            return None
        return Caller(User(row["id"], row["name"], row["balance"]), row["key_id"], row["rate_limit"])

    async def list_keys(self, user_name: str | None = None) -> list[ApiKey]:
        rows = await self._all(
            "SELECT k.id, u.name, k.prefix, k.label, k.created_at, k.revoked_at, k.signed, k.rate_limit "
            "FROM api_keys k JOIN users u ON u.id = k.user_id WHERE ? IS NULL OR u.name = ? ORDER BY k.id",
            (user_name, user_name),
        )
        return [
            ApiKey(
                id=row["id"],
                user_name=row["name"],
                prefix=row["prefix"],
                label=row["label"],
                created_at=row["created_at"],
                revoked_at=row["revoked_at"],
                signed=bool(row["signed"]),
                rate_limit=row["rate_limit"],
            )
            for row in rows
        ]

    async def set_rate_limit(self, prefix: str, rate_limit: int | None) -> int:
        return await self._write(
            "UPDATE api_keys SET rate_limit = ? WHERE prefix = ? AND revoked_at IS NULL", (rate_limit, prefix)
        )

    async def webhook_secret(self, user_id: int) -> str:
        row = await self._one("SELECT webhook_secret FROM users WHERE id = ?", (user_id,))
        assert row is not None
        return str(row["webhook_secret"])

    async def rotate_webhook_secret(self, user_id: int) -> str:
        secret = new_webhook_secret()
        await self._write("UPDATE users SET webhook_secret = ? WHERE id = ?", (secret, user_id))
        return secret

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
        self,
        order_no: str,
        user_id: int,
        order_type: str,
        stuff: dict[str, Any],
        *,
        min_balance: int,
        priority: str = "queue",
        callback_url: str | None = None,
        running_cap: int = 0,
    ) -> bool | None:
        """Inserts the order only if the user's balance covers ``min_balance``, in the same statement.

        Returns None when refused, else whether the order is admitted to the job queue now: with a
        ``running_cap``, an order beyond the user's cap waits (pending, not admitted) for :meth:`admit_waiting`.
        """
        # Without a cap the count is skipped altogether: it grows with the user's unfinished orders.
        admitted, cap_params = (
            (f"({_ADMITTED_COUNT}) < ?", (user_id, running_cap)) if running_cap else ("1", ())
        )
        row = await self._write_returning(
            "INSERT INTO orders (order_no, user_id, order_type, stuff, priority, callback_url, admitted, created_at) "
            f"SELECT ?, id, ?, ?, ?, ?, {admitted}, ? FROM users WHERE id = ? AND balance >= ? RETURNING admitted",
            (
                order_no,
                order_type,
                json.dumps(stuff, ensure_ascii=False),
                priority,
                callback_url,
                *cap_params,
                time.time(),
                user_id,
                min_balance,
            ),
        )
        return None if row is None else bool(row["admitted"])

    async def admit_waiting(self, user_id: int, running_cap: int) -> list[tuple[str, str]]:
        """Admits the user's waiting orders while there is room under the cap, lightning first, then oldest.

        Returns (order_no, priority) of each order admitted, to be enqueued.
        """
        # LIMIT -1 is no limit: without a cap every waiting order goes (after the cap was switched off).
        limit, params = (
            (f"max(0, ? - ({_ADMITTED_COUNT}))", (running_cap, user_id)) if running_cap else ("-1", ())
        )
        rows = await self._write_all(
            "UPDATE orders SET admitted = 1 WHERE id IN (SELECT id FROM orders "
            "WHERE user_id = ? AND admitted = 0 AND status = 'pending' "
            f"ORDER BY priority = 'lightning' DESC, id LIMIT {limit}) RETURNING order_no, priority",
            (user_id, *params),
        )
        return [(row["order_no"], row["priority"]) for row in rows]

    async def users_with_waiting_orders(self) -> list[int]:
        rows = await self._all(
            "SELECT DISTINCT user_id FROM orders WHERE admitted = 0 AND status = 'pending'"
        )
        return [row["user_id"] for row in rows]

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

    async def unfinished_orders(self) -> list[tuple[str, str]]:
        """Admitted orders a crash may have left behind, oldest first, with their priority: the queue's
        durable backlog."""
        rows = await self._all(
            "SELECT order_no, priority FROM orders WHERE status IN ('pending', 'processing') AND admitted = 1 "
            "ORDER BY id"
        )
        return [(row["order_no"], row["priority"]) for row in rows]

    async def orders_of(self, user_id: int, limit: int) -> list[Order]:
        """A user's newest orders first."""
        rows = await self._all(
            "SELECT * FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit)
        )
        return [Order.from_row(row) for row in rows]

    async def active_orders(self, limit: int) -> list[tuple[Order, str]]:
        """Unfinished orders, oldest first, with their owner's name: the queue as an operator sees it."""
        rows = await self._all(
            "SELECT o.*, u.name AS owner_name FROM orders o JOIN users u ON u.id = o.user_id "
            "WHERE o.status IN ('pending', 'processing') ORDER BY o.id LIMIT ?",
            (limit,),
        )
        return [(Order.from_row(row), str(row["owner_name"])) for row in rows]

    async def recent_failures(self, since: float, limit: int) -> list[Order]:
        rows = await self._all(
            "SELECT * FROM orders WHERE status IN ('failed', 'timeout') AND finished_at >= ? "
            "ORDER BY finished_at DESC LIMIT ?",
            (since, limit),
        )
        return [Order.from_row(row) for row in rows]

    async def queue_depth(self) -> list[tuple[str, str, int]]:
        """(priority, waiting | running, count) of unfinished orders."""
        rows = await self._all(
            "SELECT priority, CASE status WHEN 'pending' THEN 'waiting' ELSE 'running' END AS state, "
            "count(*) AS n FROM orders WHERE status IN ('pending', 'processing') GROUP BY 1, 2"
        )
        return [(row["priority"], row["state"], int(row["n"])) for row in rows]

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
                "WHERE order_no = ? AND user_id = ? AND status = 'finish' AND pay_status = 'waiting' "
                "AND expired_at IS NULL",
                (time.time(), order_no, user_id),
            )
        except sqlite3.IntegrityError as exc:
            if "balance >= 0" in str(exc):
                raise InsufficientBalance() from None
            raise

    # ---- retention ----------------------------------------------------------------------------------------

    async def expire_results(self, finished_before: float) -> list[str]:
        """Marks finished orders older than the retention as expired; returns them, so their files go."""
        rows = await self._write_all(
            "UPDATE orders SET expired_at = ?, reason = 'results expired' "
            "WHERE status = 'finish' AND expired_at IS NULL AND finished_at < ? RETURNING order_no",
            (time.time(), finished_before),
        )
        return [row["order_no"] for row in rows]

    # ---- idempotent create ------------------------------------------------------------------------------

    async def claim_idempotency_key(
        self, user_id: int, key: str, body_hash: str, *, expired_before: float, abandoned_before: float
    ) -> IdempotentRequest | None:
        """None if this request now owns the key (new, expired, or left unfinished by a crashed process);
        otherwise what the first request with that key left."""
        owned = await self._write_returning(
            "INSERT INTO idempotency (user_id, key, body_hash, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_id, key) DO UPDATE SET body_hash = excluded.body_hash, status = NULL, "
            "response = NULL, created_at = excluded.created_at "
            "WHERE idempotency.created_at < ? OR (idempotency.status IS NULL AND idempotency.created_at < ?) "
            "RETURNING 1",
            (user_id, key, body_hash, time.time(), expired_before, abandoned_before),
        )
        if owned is not None:
            return None
        row = await self._one(
            "SELECT body_hash, status, response FROM idempotency WHERE user_id = ? AND key = ?",
            (user_id, key),
        )
        assert row is not None
        return IdempotentRequest(row["body_hash"], row["status"], row["response"])

    async def store_idempotent_response(self, user_id: int, key: str, status: int, response: str) -> None:
        await self._write(
            "UPDATE idempotency SET status = ?, response = ? WHERE user_id = ? AND key = ?",
            (status, response, user_id, key),
        )

    async def release_idempotency_key(self, user_id: int, key: str) -> None:
        await self._write("DELETE FROM idempotency WHERE user_id = ? AND key = ?", (user_id, key))

    async def forget_idempotency_keys(self, created_before: float) -> int:
        return await self._write("DELETE FROM idempotency WHERE created_at < ?", (created_before,))

    # ---- uploads ----------------------------------------------------------------------------------------

    async def create_upload(
        self, upload_id: str, user_id: int, file_name: str, mime_type: str, size_bytes: int, expires_at: float
    ) -> None:
        await self._write(
            "INSERT INTO uploads (id, user_id, file_name, mime_type, size_bytes, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (upload_id, user_id, file_name, mime_type, size_bytes, time.time(), expires_at),
        )

    async def upload(self, upload_id: str) -> Upload | None:
        row = await self._one(
            "SELECT id, user_id, file_name, mime_type, size_bytes, state, sha256, duration, expires_at "
            "FROM uploads WHERE id = ?",
            (upload_id,),
        )
        return Upload(*row) if row else None

    async def complete_upload(self, upload_id: str, sha256: str, duration: float, expires_at: float) -> None:
        await self._write(
            "UPDATE uploads SET state = 'complete', sha256 = ?, duration = ?, completed_at = ?, expires_at = ? "
            "WHERE id = ? AND state = 'open'",
            (sha256, duration, time.time(), expires_at, upload_id),
        )

    async def expire_uploads(self, now: float) -> list[str]:
        """Deletes sessions past their expiry (open ones, and complete ones kept long enough); returns their
        ids, so their files go too."""
        rows = await self._write_all("DELETE FROM uploads WHERE expires_at < ? RETURNING id", (now,))
        return [row["id"] for row in rows]

    # ---- webhooks ---------------------------------------------------------------------------------------

    async def claim_webhook(self, now: float, lease: float) -> WebhookDelivery | None:
        """Takes the most overdue delivery for one attempt. Moving next_at past the lease keeps other
        processes off it meanwhile, and brings it back if this one dies mid-attempt."""
        row = await self._write_returning(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = ? WHERE id = ("
            "  SELECT id FROM webhook_deliveries WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= ?"
            "  ORDER BY next_at LIMIT 1) "
            "RETURNING id, order_no, user_id, url, body, attempts",
            (now + lease, now),
        )
        return WebhookDelivery(*row) if row else None

    async def record_webhook_attempt(
        self,
        delivery_id: int,
        *,
        status: int | None,
        error: str | None,
        duration_ms: int,
        delivered: bool,
        retry_at: float | None,
    ) -> None:
        """Logs one attempt; then the delivery is done, due again at ``retry_at``, or given up (None)."""
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO webhook_attempts (delivery_id, at, status, error, duration_ms) VALUES (?, ?, ?, ?, ?)",
                (delivery_id, now, status, error, duration_ms),
            )
            if delivered:
                await db.execute(
                    "UPDATE webhook_deliveries SET delivered_at = ? WHERE id = ?", (now, delivery_id)
                )
            elif retry_at is not None:
                await db.execute(
                    "UPDATE webhook_deliveries SET next_at = ? WHERE id = ?", (retry_at, delivery_id)
                )
            else:
                await db.execute(
                    "UPDATE webhook_deliveries SET gave_up_at = ? WHERE id = ?", (now, delivery_id)
                )

    async def webhook_history(self, order_no: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT d.url, d.delivered_at, d.gave_up_at, a.at, a.status, a.error, a.duration_ms "
            "FROM webhook_deliveries d LEFT JOIN webhook_attempts a ON a.delivery_id = d.id "
            "WHERE d.order_no = ? ORDER BY a.id",
            (order_no,),
        )
        return [dict(row) for row in rows]

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


@asynccontextmanager
async def _disk_full_is_503() -> AsyncIterator[None]:
    """SQLite refuses a write it has no room for and keeps the database intact; callers get a clear 503."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "full" not in str(exc):
            raise
        raise ServiceUnavailable(
            "the server's disk is full: nothing was changed; please retry later"
        ) from None


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


async def _migrate(db: aiosqlite.Connection) -> None:
    """Brings the schema up to date; BEGIN IMMEDIATE makes processes starting together take turns."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        rows = await db.execute_fetchall("PRAGMA user_version")
        version = int(next(iter(rows))[0])
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
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
