"""Background duties of every process that runs jobs: deliver webhooks, delete expired results and uploads,
and (arq mode) put back into Redis any unfinished order Redis has lost, say after a restart without its data.

Each sweep claims its work from the database with one conditional statement, so any number of processes
can sweep side by side without doing anything twice.

Whoever wires the jobs (the app in embedded mode, ``yinzi worker`` in arq mode) starts one sweeper beside
them: webhooks, expiry and lost-job recovery run wherever jobs run.

Webhooks: the statement that ends an order with a ``callbackUrl`` also queues its delivery (a trigger in
yinzi/store/schema.py). A delivery is one POST of ``{"orderNo", "status", "cost", "reason"}``, signed with the user's webhook
secret in ``X-Yinzi-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``; anything but a 2xx
answer within the timeout is retried after each of ``webhook_retry_delays`` and then given up, every attempt
recorded. Each delivery runs in its own task, so a slow receiver holds up neither jobs nor other deliveries,
and the address rules of ``pathKey`` apply (no redirects are followed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time

import aiohttp

from workers.jobs import JobContext
from yinzi.callbacks import STYLES
from yinzi.errors import ServiceUnavailable
from yinzi.fetch import BlockedAddress, FetchError
from yinzi.idempotency import TTL_S as IDEMPOTENCY_TTL_S
from yinzi.metrics import WEBHOOK_DELIVERIES
from yinzi.queue import recover
from yinzi.service import OrderService
from yinzi.signing import Signer
from yinzi.storage import results_prefix
from yinzi.store import WebhookDelivery

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Yinzi-Signature"
MAX_DELIVERIES_IN_FLIGHT = 16
# Results, uploads and idempotency keys need no second-by-second precision.
SLOW_SWEEP_EVERY = 30


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Sweeper:
    def __init__(self, jobs: JobContext) -> None:
        self._jobs = jobs
        self._settings = jobs.settings
        self._db = jobs.db
        self._fetcher = jobs.fetcher
        assert jobs.queue is not None, "wire the jobs to their queue before sweeping"
        self._service = OrderService(
            jobs.settings, jobs.db, jobs.queue, Signer.for_settings(jobs.settings), jobs.storage
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._run(), name="yinzi-sweeper")

    async def close(self) -> None:
        tasks = [self._task, *self._in_flight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        sweeps = 0
        last_requeue = time.monotonic()
        while True:
            try:
                await self._start_due_deliveries()
                if sweeps % SLOW_SWEEP_EVERY == 0:
                    await self.expire()
                if time.monotonic() - last_requeue > self._settings.requeue_interval:
                    last_requeue = time.monotonic()
                    await self._requeue_lost()
            except ServiceUnavailable as exc:  # Redis is down: said once per sweep, retried on the next
                log.warning("background sweep: %s", exc.msg)
            except Exception:  # a failed sweep is retried on the next one
                log.exception("background sweep failed")
            sweeps += 1
            await asyncio.sleep(self._settings.sweep_interval)

    async def _requeue_lost(self) -> None:
        """arq mode only: enqueueing is idempotent there (a job still in Redis is left alone), so putting every
        unfinished order back restores exactly the ones Redis no longer has. The embedded queue loses nothing
        while its process lives, and its process re-queues everything when it starts."""
        queue = self._jobs.queue
        if self._settings.redis_url and queue is not None:
            await recover(queue, self._db, self._settings.max_running_per_user)

    async def expire(self) -> None:
        settings, now, storage = self._settings, time.time(), self._jobs.storage
        for order_no in await self._db.expire_results(now - settings.result_retention):
            await storage.delete_prefix(results_prefix(order_no))
            log.info("results of %s expired", order_no)
        for upload_id in await self._db.expire_uploads(now):
            await storage.discard_upload(upload_id)
        await self._db.forget_idempotency_keys(now - IDEMPOTENCY_TTL_S)

    async def _start_due_deliveries(self) -> None:
        lease = self._settings.webhook_timeout + 30
        while len(self._in_flight) < MAX_DELIVERIES_IN_FLIGHT:
            delivery = await self._db.claim_webhook(time.time(), lease)
            if delivery is None:
                return
            task = asyncio.create_task(self._deliver(delivery), name=f"yinzi-webhook-{delivery.order_no}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        settings = self._settings
        status: int | None = None
        error: str | None = None
        started = time.monotonic()
        delays = settings.webhook_retry_delays
        try:
            body, headers, delays = await self._request(delivery)
        except Exception as exc:  # recorded like a failed attempt, so the delivery is retried, then given up
            log.exception("webhook for %s could not be written", delivery.order_no)
            error = f"the callback could not be written: {type(exc).__name__}: {exc}"
        else:
            status, error = await self._send(delivery.url, body, headers)
        delivered = status is not None and 200 <= status < 300
        if status is not None and not delivered:
            error = f"HTTP {status}"
        retry_at = None
        if not delivered and delivery.attempts <= len(delays):
            retry_at = time.time() + delays[delivery.attempts - 1]
        await self._db.record_webhook_attempt(
            delivery.id,
            status=status,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
            delivered=delivered,
            retry_at=retry_at,
        )
        WEBHOOK_DELIVERIES.labels(
            "delivered" if delivered else "retry" if retry_at is not None else "gave_up"
        ).inc()
        if not delivered:
            log.warning(
                "webhook for %s, attempt %d: %s%s",
                delivery.order_no,
                delivery.attempts,
                error,
                "" if retry_at else "; giving up",
            )

    async def _request(self, delivery: WebhookDelivery) -> tuple[bytes, dict[str, str], tuple[float, ...]]:
        """The body, headers and retry delays of a delivery: the native shape, or the order's API's own."""
        settings = self._settings
        secret = await self._db.webhook_secret(delivery.user_id)
        order = await self._db.order(delivery.order_no)
        style = STYLES.get(order.api) if order is not None and order.api else None
        if style is not None and order is not None:  # another API's order: that API's shape
            outgoing = await style.render(self._service, order, secret)
            headers = {"Content-Type": "application/json", "User-Agent": "yinzi-webhooks", **outgoing.headers}
            return outgoing.body, headers, outgoing.retry_delays or settings.webhook_retry_delays
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "yinzi-webhooks",
            SIGNATURE_HEADER: webhook_signature(secret, int(time.time()), body),
        }
        return body, headers, settings.webhook_retry_delays

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        """One POST: the receiver's status, or why there is none."""
        timeout = self._settings.webhook_timeout
        try:
            async with asyncio.timeout(timeout):
                async with self._fetcher.request(
                    "POST", url, max_redirects=0, headers=headers, data=body
                ) as (_, resp):
                    await resp.read()
                    return resp.status, None
        except TimeoutError:
            return None, f"no answer within {timeout:g} s"
        except (BlockedAddress, FetchError) as exc:
            return None, str(exc)
        except aiohttp.ClientConnectorError as exc:
            cause = exc.__cause__
            return None, str(cause) if isinstance(cause, BlockedAddress) else f"cannot connect: {exc}"
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}"
