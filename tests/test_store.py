"""The store on both engines: one chain of migrations, upgrades in place, and the rules the database itself
keeps however many processes write at once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from yinzi.errors import InsufficientBalance
from yinzi.settings import Settings
from yinzi.store import Database, ResultFile
from yinzi.store.schema import BASE, MIGRATIONS, POSTGRESQL, SQLITE

PROCESSES = 4


async def open_several(settings: Settings) -> list[Database]:
    """Several Database objects on one database behave like several processes."""
    return list(await asyncio.gather(*(Database.open(settings.database) for _ in range(PROCESSES))))


async def close_all(dbs: list[Database]) -> None:
    for db in dbs:
        await db.close()


async def test_a_database_from_before_migrations_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "yinzi.db"
    with sqlite3.connect(path) as conn:  # the first layout, as the first release left it
        conn.executescript(BASE.script(SQLITE))
        conn.execute("INSERT INTO users (name, balance, created_at) VALUES ('old', 7, 0)")
        conn.execute(
            "INSERT INTO ledger (user_id, delta, balance_after, kind, created_at) VALUES (1, 7, 7, 'grant', 0)"
        )
    conn.close()
    db = await Database.open(path)
    try:
        user = await db.user_by_name("old")
        assert user is not None and user.balance == 7
        assert (await db.webhook_secret(user.id)).startswith("whsec_")
        assert await db.create_order("o1", user.id, "extract-text", {}, min_balance=1, priority="lightning")
        order = await db.order("o1")
        assert order is not None and order.priority == "lightning"
    finally:
        await db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
    db = await Database.open(path)  # opening again changes nothing
    await db.close()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_postgresql_database_at_the_first_layout_upgrades(settings: Settings) -> None:
    """PostgreSQL runs the same chain, step by step: a database left at version 0 takes migration 1."""
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(BASE.script(POSTGRESQL))
        await conn.execute(
            "CREATE TABLE yinzi_schema (version INTEGER NOT NULL); INSERT INTO yinzi_schema VALUES (0)"
        )
        await conn.execute("INSERT INTO users (name, balance, created_at) VALUES ('old', 7, 0)")
    finally:
        await conn.close()
    db = await Database.open(settings.database)
    try:
        user = await db.user_by_name("old")
        assert user is not None and (await db.webhook_secret(user.id)).startswith("whsec_")
        assert await db._all("SELECT version FROM yinzi_schema") == [(len(MIGRATIONS),)]
    finally:
        await db.close()


async def test_processes_starting_together_migrate_once(settings: Settings) -> None:
    dbs = await open_several(settings)
    try:
        user = await dbs[0].create_user("first", 5)
        assert [await db.balance(user.id) for db in dbs] == [5] * PROCESSES
    finally:
        await close_all(dbs)
    db = await Database.open(settings.database)  # and again, with the schema in place
    await db.close()


async def test_the_running_cap_holds_across_processes(settings: Settings) -> None:
    dbs = await open_several(settings)
    try:
        user = await dbs[0].create_user("capped", 100)
        admitted = await asyncio.gather(
            *(
                dbs[i % PROCESSES].create_order(
                    f"cap{i:03d}", user.id, "extract-text", {}, min_balance=0, running_cap=3
                )
                for i in range(40)
            )
        )
        assert admitted.count(True) == 3 and admitted.count(False) == 37
        for order_no in [f"cap{i:03d}" for i, ok in enumerate(admitted) if ok]:
            assert await dbs[0].end_order(order_no, "failed", "test")
        rounds = await asyncio.gather(*(db.admit_waiting(user.id, 3) for db in dbs for _ in range(3)))
        assert sum(len(r) for r in rounds) == 3
    finally:
        await close_all(dbs)


async def test_money_moved_from_many_processes_keeps_the_books(settings: Settings) -> None:
    """Grants, analyze charges and order charges at once: each order charged once, no balance below zero,
    every balance the sum of its ledger."""
    dbs = await open_several(settings)
    try:
        user = await dbs[0].create_user("busy", 50)
        orders = []
        for i in range(10):
            order_no = f"busy{i:03d}"
            assert await dbs[0].create_order(order_no, user.id, "extract-text", {}, min_balance=0)
            assert await dbs[0].claim_order(order_no) is not None
            assert await dbs[0].finish_order(order_no, 7, 1.0, [ResultFile("a.txt", "text")])
            orders.append(order_no)

        async def attempt(coro: object) -> None:
            try:
                await coro  # type: ignore[misc]
            except InsufficientBalance:
                pass

        work = []
        for i, db in enumerate(dbs):
            work += [attempt(db.charge_order(order_no, user.id)) for order_no in orders]
            work += [
                attempt(db.record_analysis(user.id, "https://v.douyin.com/x/", "douyin", 3)) for _ in range(5)
            ]
            work += [attempt(db.grant_points(user.id, 4 if i % 2 else -4)) for _ in range(5)]
        await asyncio.gather(*work)

        ledger = await dbs[1].ledger(user.id)
        balance = await dbs[2].balance(user.id)
        assert balance >= 0 and balance == sum(row["delta"] for row in ledger)
        charges = [row["ref"] for row in ledger if row["kind"] == "order"]
        assert len(charges) == len(set(charges))
        for order_no in orders:
            order = await dbs[3].order(order_no)
            assert order is not None
            assert (order.pay_status == "paid") == (order_no in charges)
    finally:
        await close_all(dbs)


async def test_the_views_of_orders_read_alike_on_both_engines(settings: Settings) -> None:
    """What the console and /metrics read: a user's orders, the unfinished ones with their owners, recent
    failures, and the queue's depth by priority and state."""
    db = await Database.open(settings.database)
    try:
        ann = await db.create_user("ann", 100)
        bo = await db.create_user("bo", 100)
        for order_no, user, priority in [
            ("v1", ann, "queue"),
            ("v2", bo, "lightning"),
            ("v3", ann, "queue"),
            ("v4", ann, "lightning"),
            ("v5", bo, "queue"),
        ]:
            assert await db.create_order(
                order_no, user.id, "extract-text", {}, min_balance=0, priority=priority
            )
        assert await db.claim_order("v3") is not None
        assert await db.claim_order("v4") is not None
        before = time.time()
        assert await db.end_order("v1", "failed", "the input is not audio")
        assert await db.end_order("v4", "timeout", "took too long")

        assert [o.order_no for o in await db.orders_of(ann.id, 10)] == ["v4", "v3", "v1"]
        assert [o.order_no for o in await db.orders_of(ann.id, 2)] == ["v4", "v3"]
        active = await db.active_orders(10)
        assert [(o.order_no, o.status, owner) for o, owner in active] == [
            ("v2", "pending", "bo"),
            ("v3", "processing", "ann"),
            ("v5", "pending", "bo"),
        ]
        assert [o.order_no for o, _ in await db.active_orders(1)] == ["v2"]
        failures = await db.recent_failures(before, 10)
        assert [(o.order_no, o.status, o.reason) for o in failures] == [
            ("v4", "timeout", "took too long"),
            ("v1", "failed", "the input is not audio"),
        ]
        assert await db.recent_failures(time.time() + 60, 10) == []
        assert sorted(await db.queue_depth()) == [
            ("lightning", "waiting", 1),
            ("queue", "running", 1),
            ("queue", "waiting", 1),
        ]
    finally:
        await db.close()
