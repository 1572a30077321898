"""Idempotency keys of order/create: claimed by the first request, its answer kept for replays."""

from __future__ import annotations

import time

from yinzi.store.backend import StorePart
from yinzi.store.models import IdempotentRequest


class IdempotencyKeys(StorePart):
    async def claim_idempotency_key(
        self, user_id: int, key: str, body_hash: str, *, expired_before: float, abandoned_before: float
    ) -> IdempotentRequest | None:
        """None if this request now owns the key (new, expired, or left unfinished by a crashed process);
        otherwise what the first request with that key left."""
        owned = await self._write_one(
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
        await self._backend.write(
            "UPDATE idempotency SET status = ?, response = ? WHERE user_id = ? AND key = ?",
            (status, response, user_id, key),
        )

    async def release_idempotency_key(self, user_id: int, key: str) -> None:
        await self._backend.write("DELETE FROM idempotency WHERE user_id = ? AND key = ?", (user_id, key))

    async def forget_idempotency_keys(self, created_before: float) -> int:
        return await self._backend.write("DELETE FROM idempotency WHERE created_at < ?", (created_before,))
