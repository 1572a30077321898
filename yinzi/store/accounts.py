"""Users, their points and the ledger, API keys, webhook secrets, and short-video analyses (which charge).

Points move only through ledger rows: :func:`move_points` changes a balance and appends the row that explains
it in one transaction, and a balance always equals the sum of its user's ledger deltas.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from yinzi.errors import InsufficientBalance
from yinzi.store.backend import Executor, StorePart
from yinzi.store.models import ApiKey, Caller, User


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


async def move_points(db: Executor, user_id: int, delta: int, kind: str, ref: str | None, note: str) -> int:
    """Inside a transaction: changes a balance and appends the ledger row that explains it; returns the new
    balance. Raises InsufficientBalance when it would go below zero."""
    rows = await db.fetch(
        "UPDATE users SET balance = balance + ? WHERE id = ? AND balance + ? >= 0 RETURNING balance",
        (delta, user_id, delta),
    )
    if not rows:
        raise InsufficientBalance()
    balance = int(rows[0]["balance"])
    await db.execute(
        "INSERT INTO ledger (user_id, delta, balance_after, kind, ref, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, delta, balance, kind, ref, note, time.time()),
    )
    return balance


class Accounts(StorePart):
    # ---- users and points -------------------------------------------------------------------------------

    async def create_user(self, name: str, points: int = 0) -> User:
        """Raises IntegrityError when the name is taken."""
        async with self._backend.transaction() as db:
            rows = await db.fetch(
                "INSERT INTO users (name, balance, webhook_secret, created_at) VALUES (?, 0, ?, ?) RETURNING id",
                (name, new_webhook_secret(), time.time()),
            )
            user_id = int(rows[0]["id"])
            if points:
                await move_points(db, user_id, points, "grant", None, "initial points")
        user = await self.user_by_name(name)
        assert user is not None
        return user

    async def user_by_name(self, name: str) -> User | None:
        row = await self._one("SELECT id, name, balance FROM users WHERE name = ?", (name,))
        return User(row["id"], row["name"], row["balance"]) if row else None

    async def list_users(self) -> list[User]:
        rows = await self._backend.fetch("SELECT id, name, balance FROM users ORDER BY name")
        return [User(row["id"], row["name"], row["balance"]) for row in rows]

    async def balance(self, user_id: int) -> int:
        row = await self._one("SELECT balance FROM users WHERE id = ?", (user_id,))
        assert row is not None
        return int(row["balance"])

    async def grant_points(self, user_id: int, points: int, note: str = "") -> int:
        """Adds (or, negative, removes) points; returns the new balance."""
        async with self._backend.transaction() as db:
            return await move_points(db, user_id, points, "grant", None, note)

    async def ledger(self, user_id: int) -> list[dict[str, Any]]:
        rows = await self._backend.fetch(
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
        await self._backend.write(
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
        query = (
            "SELECT k.id, u.name, k.prefix, k.label, k.created_at, k.revoked_at, k.signed, k.rate_limit "
            "FROM api_keys k JOIN users u ON u.id = k.user_id"
        )
        if user_name is None:
            rows = await self._backend.fetch(query + " ORDER BY k.id")
        else:
            rows = await self._backend.fetch(query + " WHERE u.name = ? ORDER BY k.id", (user_name,))
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
        return await self._backend.write(
            "UPDATE api_keys SET rate_limit = ? WHERE prefix = ? AND revoked_at IS NULL", (rate_limit, prefix)
        )

    async def count_keys(self) -> int:
        row = await self._one("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
        return int(row[0]) if row else 0

    async def revoke_key(self, prefix: str) -> int:
        """Revokes the live keys with this prefix; returns how many."""
        return await self._backend.write(
            "UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
            (time.time(), prefix),
        )

    # ---- webhook secrets --------------------------------------------------------------------------------

    async def webhook_secret(self, user_id: int) -> str:
        row = await self._one("SELECT webhook_secret FROM users WHERE id = ?", (user_id,))
        assert row is not None
        return str(row["webhook_secret"])

    async def rotate_webhook_secret(self, user_id: int) -> str:
        secret = new_webhook_secret()
        await self._backend.write("UPDATE users SET webhook_secret = ? WHERE id = ?", (secret, user_id))
        return secret

    # ---- short-video analyses ---------------------------------------------------------------------------

    async def record_analysis(
        self, user_id: int, link: str, platform: str | None, cost: int, error: str | None = None
    ) -> int:
        """Records one analyze call and charges ``cost`` in the same transaction; returns the balance.

        Raises InsufficientBalance, recording nothing, when the balance is short.
        """
        async with self._backend.transaction() as db:
            rows = await db.fetch(
                "INSERT INTO analyses (user_id, link, platform, cost, error, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (user_id, link, platform, cost, error, time.time()),
            )
            if cost:
                return await move_points(db, user_id, -cost, "analyze", str(rows[0]["id"]), platform or "")
            balance = await db.fetch("SELECT balance FROM users WHERE id = ?", (user_id,))
            return int(balance[0]["balance"])
