"""Orders: create (with the balance check and the per-user running cap), admit, claim, progress, finish or
end, charge once, and expire results; and the views of them the console and /metrics show."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from yinzi.errors import InsufficientBalance
from yinzi.store.backend import Executor, IntegrityError, StorePart
from yinzi.store.models import Order, OrderRef, ResultFile

# Orders of one user (bound as the parameter) that hold a place under the running cap.
_ADMITTED_COUNT = (
    "SELECT count(*) FROM orders WHERE user_id = ? AND admitted = 1 AND status IN ('pending', 'processing')"
)


class Orders(StorePart):
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
        api: str | None = None,
        ref: str | None = None,
        note: dict[str, Any] | None = None,
    ) -> bool | None:
        """Inserts the order only if the user's balance covers ``min_balance``, in the same statement.

        Returns None when refused, else whether the order is admitted to the job queue now: with a
        ``running_cap``, an order beyond the user's cap waits (pending, not admitted) for :meth:`admit_waiting`.
        ``api`` names the API that made it; ``ref`` is that API's id for it, unique per user, recorded in the
        same transaction (IntegrityError when the user already has an order under that ref), with ``note``; a
        ``note`` without a ``ref`` is kept under the order number (an API whose id for the order is its number).
        """
        insert = (
            "INSERT INTO orders (order_no, user_id, order_type, stuff, priority, callback_url, api, admitted, "
            "created_at) SELECT ?, id, ?, ?, ?, ?, ?, {admitted}, ? FROM users WHERE id = ? AND balance >= ? "
            "RETURNING admitted"
        )
        values = (order_no, order_type, json.dumps(stuff, ensure_ascii=False), priority, callback_url, api)
        where = (time.time(), user_id, min_balance)
        if note is not None and ref is None:
            ref = order_no
        if not running_cap and ref is None:
            # One statement, and no count: it grows with the user's unfinished orders.
            row = await self._write_one(insert.format(admitted="1"), (*values, *where))
        else:
            async with self._backend.transaction() as db:
                if running_cap:
                    await _lock_user(db, self._backend.row_lock, user_id)
                    rows = await db.fetch(
                        insert.format(admitted=f"CASE WHEN ({_ADMITTED_COUNT}) < ? THEN 1 ELSE 0 END"),
                        (*values, user_id, running_cap, *where),
                    )
                else:
                    rows = await db.fetch(insert.format(admitted="1"), (*values, *where))
                row = rows[0] if rows else None
                if row is not None and ref is not None:
                    await db.execute(
                        "INSERT INTO order_refs (api, user_id, ref, order_no, created_at, note) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            api or "",
                            user_id,
                            ref,
                            order_no,
                            time.time(),
                            json.dumps(note or {}, ensure_ascii=False),
                        ),
                    )
        return None if row is None else bool(row["admitted"])

    async def order_for_ref(self, api: str, user_id: int, ref: str) -> str | None:
        """The order number another API's id for it stands for, among this user's orders."""
        row = await self._one(
            "SELECT order_no FROM order_refs WHERE api = ? AND user_id = ? AND ref = ?", (api, user_id, ref)
        )
        return None if row is None else str(row["order_no"])

    async def refs_since(self, api: str, user_id: int, since: float) -> tuple[int, float | None]:
        """How many orders the user made through ``api`` under an id of its own since ``since``, and when the
        first of them was made (None: none): a per-API quota's count."""
        row = await self._one(
            "SELECT count(*) AS n, min(created_at) AS first FROM order_refs "
            "WHERE api = ? AND user_id = ? AND created_at >= ?",
            (api, user_id, since),
        )
        assert row is not None
        return int(row["n"]), None if row["first"] is None else float(row["first"])

    async def order_ref(self, order_no: str) -> OrderRef | None:
        """The other API's id for this order and its note; None for an order made without one."""
        row = await self._one("SELECT api, ref, note FROM order_refs WHERE order_no = ?", (order_no,))
        if row is None:
            return None
        return OrderRef(str(row["api"]), str(row["ref"]), json.loads(row["note"] or "{}"))

    async def orders_in_month(self, user_id: int, since: float) -> list[Order]:
        """The user's orders created since ``since`` (a month's usage)."""
        rows = await self._backend.fetch(
            "SELECT * FROM orders WHERE user_id = ? AND created_at >= ? ORDER BY id", (user_id, since)
        )
        return [Order.from_row(row) for row in rows]

    async def admit_waiting(self, user_id: int, running_cap: int) -> list[tuple[str, str]]:
        """Admits the user's waiting orders while there is room under the cap, lightning first, then oldest.

        Returns (order_no, priority) of each order admitted, to be enqueued.
        """
        async with self._backend.transaction() as db:
            await _lock_user(db, self._backend.row_lock, user_id)
            if running_cap:
                admitted = await db.fetch(_ADMITTED_COUNT, (user_id,))
                room = running_cap - int(admitted[0][0])
                if room <= 0:
                    return []
            else:
                room = _NO_LIMIT  # every waiting order goes (after the cap was switched off)
            rows = await db.fetch(
                "UPDATE orders SET admitted = 1 WHERE id IN (SELECT id FROM orders "
                "WHERE user_id = ? AND admitted = 0 AND status = 'pending' "
                "ORDER BY priority = 'lightning' DESC, id LIMIT ?) RETURNING order_no, priority",
                (user_id, room),
            )
        return [(row["order_no"], row["priority"]) for row in rows]

    async def users_with_waiting_orders(self) -> list[int]:
        rows = await self._backend.fetch(
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
        rows = await self._backend.fetch(
            "SELECT order_no, priority FROM orders WHERE status IN ('pending', 'processing') AND admitted = 1 "
            "ORDER BY id"
        )
        return [(row["order_no"], row["priority"]) for row in rows]

    async def orders_of(self, user_id: int, limit: int) -> list[Order]:
        """A user's newest orders first."""
        rows = await self._backend.fetch(
            "SELECT * FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit)
        )
        return [Order.from_row(row) for row in rows]

    async def active_orders(self, limit: int) -> list[tuple[Order, str]]:
        """Unfinished orders, oldest first, with their owner's name: the queue as an operator sees it."""
        rows = await self._backend.fetch(
            "SELECT o.*, u.name AS owner_name FROM orders o JOIN users u ON u.id = o.user_id "
            "WHERE o.status IN ('pending', 'processing') ORDER BY o.id LIMIT ?",
            (limit,),
        )
        return [(Order.from_row(row), str(row["owner_name"])) for row in rows]

    async def recent_failures(self, since: float, limit: int) -> list[Order]:
        """Orders that ended failed or timed out since ``since``, newest first."""
        rows = await self._backend.fetch(
            "SELECT * FROM orders WHERE status IN ('failed', 'timeout') AND finished_at >= ? "
            "ORDER BY finished_at DESC, id DESC LIMIT ?",
            (float(since), limit),
        )
        return [Order.from_row(row) for row in rows]

    async def queue_depth(self) -> list[tuple[str, str, int]]:
        """(priority, waiting | running, count) of unfinished orders."""
        rows = await self._backend.fetch(
            "SELECT priority, CASE status WHEN 'pending' THEN 'waiting' ELSE 'running' END AS state, "
            "count(*) AS n FROM orders WHERE status IN ('pending', 'processing') GROUP BY 1, 2"
        )
        return [(row["priority"], row["state"], int(row["n"])) for row in rows]

    async def claim_order(self, order_no: str) -> Order | None:
        """Moves pending -> processing (or re-claims a processing order whose worker died).

        Returns None for a finished or unknown order, so a job delivered twice does nothing the second time.
        """
        row = await self._write_one(
            "UPDATE orders SET status = 'processing', attempts = attempts + 1, started_at = coalesce(started_at, ?) "
            "WHERE order_no = ? AND status IN ('pending', 'processing') RETURNING *",
            (time.time(), order_no),
        )
        return Order.from_row(row) if row else None

    async def set_progress(self, order_no: str, progress: int) -> None:
        """Progress only moves forward and stays below 100 until the order finishes."""
        progress = max(0, min(progress, 99))
        await self._backend.write(
            "UPDATE orders SET progress = ? WHERE order_no = ? AND status = 'processing' AND progress < ?",
            (progress, order_no, progress),
        )

    async def finish_order(
        self, order_no: str, cost: int, duration: float, results: Iterable[ResultFile]
    ) -> bool:
        payload = json.dumps([{"name": r.name, "business": r.business} for r in results], ensure_ascii=False)
        changed = await self._backend.write(
            "UPDATE orders SET status = 'finish', progress = 100, cost = ?, duration = ?, results = ?, "
            "finished_at = ? WHERE order_no = ? AND status = 'processing'",
            (cost, duration, payload, time.time(), order_no),
        )
        return changed == 1

    async def end_order(self, order_no: str, status: str, reason: str) -> bool:
        """Ends an order that produced nothing: ``failed`` or ``timeout``, never charged."""
        assert status in ("failed", "timeout")
        changed = await self._backend.write(
            "UPDATE orders SET status = ?, pay_status = 'free', cost = 0, reason = ?, finished_at = ? "
            "WHERE order_no = ? AND status IN ('pending', 'processing')",
            (status, reason, time.time(), order_no),
        )
        return changed == 1

    async def charge_order(self, order_no: str, user_id: int) -> None:
        """Debits a finished order's cost once. Raises InsufficientBalance (and changes nothing) if short.

        Safe under any number of concurrent callers in any number of processes: only the statement that flips
        pay_status from 'waiting' to 'paid' debits (through the orders_charge_when_paid trigger, see
        schema.py), and the ledger's UNIQUE(kind, ref) would refuse a second charge row for the order anyway.
        """
        try:
            await self._backend.write(
                "UPDATE orders SET pay_status = 'paid', paid_at = ? "
                "WHERE order_no = ? AND user_id = ? AND status = 'finish' AND pay_status = 'waiting' "
                "AND expired_at IS NULL",
                (time.time(), order_no, user_id),
            )
        except IntegrityError as exc:
            if "balance" in str(exc):  # the CHECK on users.balance, whatever the engine calls it
                raise InsufficientBalance() from None
            raise

    async def expire_results(self, finished_before: float) -> list[str]:
        """Marks finished orders older than the retention as expired; returns them, so their files go."""
        rows = await self._backend.write_fetch(
            "UPDATE orders SET expired_at = ?, reason = 'results expired' "
            "WHERE status = 'finish' AND expired_at IS NULL AND finished_at < ? RETURNING order_no",
            (time.time(), finished_before),
        )
        return [row["order_no"] for row in rows]


# LIMIT takes no "unlimited" that both engines read alike; this many orders is as good as no limit.
_NO_LIMIT = 2**62


async def _lock_user(db: Executor, row_lock: str, user_id: int) -> None:
    """Takes the user's turn: creates and admissions under the running cap count and admit one at a time."""
    await db.fetch(f"SELECT id FROM users WHERE id = ?{row_lock}", (user_id,))
