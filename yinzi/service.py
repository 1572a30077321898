"""The order core every API stands on: place an order, find it by another API's id, deliver it (charging it
once), read its results, wait for it to end. No HTTP here: each API (yinzi/routes for the native one,
yinzi/dialects for the others) translates its requests into these calls and the answers back.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from yinzi.errors import InsufficientBalance, NotFound, ServiceUnavailable
from yinzi.metrics import ORDERS_CREATED, ORDERS_ENDED, reason_kind
from yinzi.orders import OrderRequest, new_order_no
from yinzi.pricing import order_cost
from yinzi.queue import JobQueue
from yinzi.settings import Settings
from yinzi.signing import Signer
from yinzi.storage import Storage, open_storage, result_key
from yinzi.store import Database, IntegrityError, Order, User

# How often a caller waiting on an order (a synchronous API) looks at it: often at first, then less.
WAIT_POLL_S = (0.05, 1.0)


@dataclass(frozen=True)
class Placed:
    order_no: str
    created: bool  # False: the API's id named an order the user already had; nothing new was made


@dataclass(frozen=True)
class Delivery:
    """An order as a caller may see it: results only once they are paid for."""

    order: Order
    balance: int
    short: bool  # finished, unpaid, and the balance cannot pay: the results wait for a top-up

    @property
    def paid(self) -> bool:
        o = self.order
        return o.status == "finish" and o.pay_status == "paid" and not o.expired


class OrderService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        queue: JobQueue,
        signer: Signer,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self.signer = signer
        self.storage = storage if storage is not None else open_storage(settings)

    async def place(
        self,
        user: User,
        order: OrderRequest,
        *,
        api: str | None = None,
        ref: str | None = None,
        note: dict[str, Any] | None = None,
    ) -> Placed:
        """Commits the order, then enqueues it. Refused (402, nothing made) when the balance cannot pay one
        minute. With ``ref`` (another API's id for it) a second call with the same ref makes nothing. ``note``
        is kept beside the ref (the order number when there is no ref) for that API: ``Database.order_ref``."""
        if ref is not None:
            existing = await self.db.order_for_ref(api or "", user.id, ref)
            if existing is not None:
                return Placed(existing, created=False)
        order_no = new_order_no()
        try:
            admitted = await self.db.create_order(
                order_no,
                user.id,
                order.order_type,
                order.stuff,
                min_balance=order_cost(self.settings, order.order_type, 0, order.priority),
                priority=order.priority,
                callback_url=order.callback_url,
                running_cap=self.settings.max_running_per_user,
                api=api,
                ref=ref,
                note=note,
            )
        except IntegrityError:
            if ref is None:
                raise
            existing = await self.db.order_for_ref(api or "", user.id, ref)  # a concurrent twin won
            assert existing is not None
            return Placed(existing, created=False)
        if admitted is None:
            raise InsufficientBalance()
        ORDERS_CREATED.labels(order.order_type, order.priority).inc()
        if admitted:  # else it waits, pending, until one of the user's running orders ends
            try:
                await self.queue.enqueue(order_no, order.priority)
            except ServiceUnavailable:
                reason = "the job queue was unavailable when the order was created"
                if await self.db.end_order(order_no, "failed", reason):
                    ORDERS_ENDED.labels(order.order_type, "failed", reason_kind(reason)).inc()
                raise
        return Placed(order_no, created=True)

    async def find(self, user: User, order_no: str) -> Order:
        """The user's order; another user's order looks exactly like a missing one."""
        order = await self.db.order(order_no)
        if order is None or order.user_id != user.id:
            raise NotFound("Order not found")
        return order

    async def find_ref(self, user: User, api: str, ref: str) -> Order:
        order_no = await self.db.order_for_ref(api, user.id, ref)
        if order_no is None:
            raise NotFound("Order not found")
        return await self.find(user, order_no)

    async def deliver(self, user: User, order_no: str) -> Delivery:
        """The order as its results are handed over: a finished order is charged here, exactly once,
        whoever gets here first. A short balance charges nothing and withholds the results."""
        found = await self.db.order_and_balance(order_no)
        if found is None or found[0].user_id != user.id:
            raise NotFound("Order not found")
        order, _ = found
        short = False
        if order.status == "finish" and order.pay_status == "waiting" and not order.expired:
            try:
                await self.db.charge_order(order_no, user.id)
            except InsufficientBalance:
                short = True
            found = await self.db.order_and_balance(order_no)
            assert found is not None
        return Delivery(found[0], found[1], short)

    async def wait(self, order_no: str, seconds: float) -> Order:
        """The order once it has ended, or as it is when ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        pause, longest = WAIT_POLL_S
        while True:
            order = await self.db.order(order_no)
            assert order is not None
            remaining = deadline - time.monotonic()
            if order.terminal or remaining <= 0:
                return order
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, longest)

    def result_path(self, order: Order, name: str) -> str:
        """The signed path (no host) of one of a paid order's result files."""
        return self.signer.path(order.order_no, name)

    async def result_bytes(self, order: Order, name: str) -> bytes:
        """One result file's content (NotFound once the results have expired)."""
        if order.expired or name not in {r.name for r in order.results}:
            raise NotFound(f"{name}: no such result")
        try:
            return await self.storage.read_bytes(result_key(order.order_no, name))
        except FileNotFoundError:
            raise NotFound(f"{name}: the results have been deleted") from None

    async def transcript(self, order: Order) -> dict[str, Any]:
        """An extract-text order's transcript.json (see workers/engines/transcription.py)."""
        data: dict[str, Any] = json.loads(await self.result_bytes(order, "transcript.json"))
        return data
