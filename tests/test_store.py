"""The store's schema: one chain of migrations; data directories from earlier versions upgrade in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from yinzi.store import Database
from yinzi.store.schema import BASE, MIGRATIONS, SQLITE


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
