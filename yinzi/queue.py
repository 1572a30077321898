"""Getting order numbers to the job function (``workers.jobs.process_order``), in one of two modes.

- :class:`EmbeddedQueue` (no ``YINZI_REDIS_URL``): jobs run inside the API process, ``worker_concurrency``
  at a time. Nothing to run besides ``yinzi serve``. Whoever wires the app hands it the job function, so
  this module knows nothing of the workers.
- :class:`ArqQueue` (``YINZI_REDIS_URL`` set): jobs go to Redis with the order number as arq job id, and
  ``yinzi worker`` processes, as many as you like, run them.

The database, not the queue, is durable: an order row is committed before it is enqueued, and ``recover``
re-enqueues every order still pending or processing when a process starts. Enqueueing twice is harmless:
a job id already in Redis is left alone, the embedded queue skips one it holds, and jobs are idempotent.

Priority ``lightning`` orders start before ``queue`` ones: first in the embedded queue's order, and in arq
with a score an hour earlier than their enqueue time (arq takes jobs in score order).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from yinzi.errors import ServiceUnavailable
from yinzi.store import Database

log = logging.getLogger(__name__)

JOB_NAME = "process_order"
LIGHTNING_HEAD_START_MS = 3600 * 1000


class JobQueue(Protocol):
    async def enqueue(self, order_no: str, priority: str = "queue") -> None: ...

    async def ping(self) -> None:
        """Raises ServiceUnavailable when orders could not be enqueued now."""

    async def close(self) -> None: ...


async def recover(queue: JobQueue, db: Database, running_cap: int) -> int:
    """Enqueues every order a stopped process may have left behind, after admitting waiting orders there is
    now room for (a process may have died between ending an order and admitting the next); returns how many."""
    for user_id in await db.users_with_waiting_orders():
        await db.admit_waiting(user_id, running_cap)
    backlog = await db.unfinished_orders()
    for order_no, priority in backlog:
        await queue.enqueue(order_no, priority)
    return len(backlog)


# Runs one order to its end, given its number.
Job = Callable[[str], Awaitable[object]]


class EmbeddedQueue:
    def __init__(self, job: Job, concurrency: int) -> None:
        self._job = job
        # (rank, arrival, order_no): lightning (rank 0) first, then first come first served.
        self._pending: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()
        self._queued: set[str] = set()
        self._workers = [asyncio.create_task(self._work(), name=f"yinzi-job-{i}") for i in range(concurrency)]

    async def enqueue(self, order_no: str, priority: str = "queue") -> None:
        if order_no not in self._queued:
            self._queued.add(order_no)
            self._pending.put_nowait((0 if priority == "lightning" else 1, next(self._arrivals), order_no))

    async def ping(self) -> None:
        return None  # in this process: there whenever the process is

    async def _work(self) -> None:
        while True:
            _, _, order_no = await self._pending.get()
            self._queued.discard(order_no)
            try:
                await self._job(order_no)
            except Exception:  # the job already ends orders on errors; this is the last guard
                log.exception("job for order %s crashed", order_no)

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)


class ArqQueue:
    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self._redis = redis
        self._queue_name = queue_name

    @classmethod
    async def connect(cls, redis_url: str, queue_name: str) -> ArqQueue:
        settings = RedisSettings.from_dsn(redis_url)
        settings.conn_retries = 0  # fail fast: a request should not hang while Redis is down
        try:
            redis = await create_pool(settings, default_queue_name=queue_name)
        except (OSError, RedisError) as exc:
            raise ServiceUnavailable(f"cannot reach Redis at {redis_url}: {exc}") from None
        return cls(redis, queue_name)

    async def enqueue(self, order_no: str, priority: str = "queue") -> None:
        # The record arq's enqueue_job writes, in one round trip instead of its three (WATCH, EXISTS, MULTI):
        # both writes happen only if absent. A job that already ran and is enqueued again runs again and
        # does nothing, because process_order skips finished orders.
        now = timestamp_ms()
        score = now - LIGHTNING_HEAD_START_MS if priority == "lightning" else now
        job = serialize_job(JOB_NAME, (order_no,), {}, None, now)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(job_key_prefix + order_no, job, px=expires_extra_ms, nx=True)
                pipe.zadd(self._queue_name, {order_no: score}, nx=True)
                await pipe.execute()
        except (OSError, RedisError) as exc:
            log.error("enqueue of %s failed: %s", order_no, exc)
            raise ServiceUnavailable("the job queue is unavailable right now; please retry shortly") from None

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (OSError, RedisError) as exc:
            raise ServiceUnavailable(f"not ready: the job queue (Redis) is unreachable: {exc}") from None

    async def close(self) -> None:
        await self._redis.aclose()
