"""Webhook deliveries: queued by the database when an order with a callback ends (schema.py), claimed one
attempt at a time by any sweeping process, every attempt recorded."""

from __future__ import annotations

import time
from typing import Any

from yinzi.store.backend import StorePart
from yinzi.store.models import WebhookDelivery


class Webhooks(StorePart):
    async def claim_webhook(self, now: float, lease: float) -> WebhookDelivery | None:
        """Takes the most overdue delivery for one attempt. Moving next_at past the lease keeps other
        processes off it meanwhile, and brings it back if this one dies mid-attempt."""
        row = await self._write_one(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = ? WHERE id = ("
            "  SELECT id FROM webhook_deliveries WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= ?"
            f"  ORDER BY next_at LIMIT 1{self._backend.skip_locked}) "
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
        async with self._backend.transaction() as db:
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
        rows = await self._backend.fetch(
            "SELECT d.url, d.delivered_at, d.gave_up_at, a.at, a.status, a.error, a.duration_ms "
            "FROM webhook_deliveries d LEFT JOIN webhook_attempts a ON a.delivery_id = d.id "
            "WHERE d.order_no = ? ORDER BY a.id",
            (order_no,),
        )
        return [dict(row) for row in rows]
