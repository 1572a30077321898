"""The aiohttp application: ``create_app(settings)`` wires routes, middleware and resources together.

Nothing happens at import or in ``create_app`` itself; each resource is opened and closed by its own
cleanup context when the app starts and stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from workers.jobs import JobContext, process_order
from workers.probe import ffprobe_missing
from workers.sweeper import Sweeper
from yinzi import dialects
from yinzi.appkeys import (
    DB,
    ENDPOINTS,
    FETCHER,
    LIMITER,
    LINKS,
    POLICY,
    QUEUE,
    QUICK_CHECKS,
    SERVICE,
    SETTINGS,
    SIGNER,
    STORAGE,
    UPLOADS,
)
from yinzi.console import docs, pages
from yinzi.declare import Endpoints
from yinzi.doctor import QuickChecks
from yinzi.fetch import AddressPolicy, Fetcher
from yinzi.links import LinkAnalyzer
from yinzi.metrics import metrics_middleware
from yinzi.middleware import envelope_middleware
from yinzi.queue import ArqQueue, EmbeddedQueue, JobQueue, recover
from yinzi.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from yinzi.routes import api, files, meta, orders, shortvideo, uploads
from yinzi.service import OrderService
from yinzi.settings import Settings
from yinzi.signing import Signer
from yinzi.storage import open_storage
from yinzi.store import Database
from yinzi.uploads import UploadDesk

log = logging.getLogger(__name__)

FIRST_KEY_HINT = (
    "no API keys yet: create a user and a key with\n"
    "    yinzi users create alice --points 1000\n"
    "    yinzi keys create alice"
)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, envelope_middleware], client_max_size=settings.max_json_body
    )
    app[SETTINGS] = settings
    app[POLICY] = AddressPolicy(settings.fetch_allow)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_queue)
    app.cleanup_ctx.append(_links)
    app.cleanup_ctx.append(_rate_limits)
    app[ENDPOINTS] = api_tables()
    for table in app[ENDPOINTS]:
        app.add_routes(table.routes)
    docs.add_routes(app)
    pages.add_routes(app)
    return app


def api_tables() -> tuple[Endpoints, ...]:
    """Every API the app serves: the native one, then each dialect's."""
    return (api.endpoints, *dialects.TABLES)


# The native endpoints are declared on api.endpoints when their modules are imported.
NATIVE_MODULES = (orders, uploads, shortvideo, files, meta)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = await Database.open(settings.database)
    app[DB] = db
    app[SIGNER] = Signer.for_settings(settings)
    storage = open_storage(settings)
    app[STORAGE] = storage
    app[QUICK_CHECKS] = QuickChecks(settings, storage)
    app[UPLOADS] = UploadDesk(settings, db, storage)
    await asyncio.to_thread(app[UPLOADS].clear_stale_scratch)
    if await db.count_keys() == 0:
        log.warning(FIRST_KEY_HINT)
    missing = ffprobe_missing(settings.ffprobe)
    if missing:
        log.error("%s; orders will fail until it is installed", missing)
    yield
    await storage.close()
    await db.close()


async def _queue(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        queue: JobQueue
        if settings.redis_url:
            queue = await ArqQueue.connect(settings.redis_url, settings.queue_name)
        else:
            jobs = await JobContext.open(settings, app[DB], stack, app[STORAGE])
            queue = EmbeddedQueue(functools.partial(process_order, jobs), settings.worker_concurrency)
            jobs.queue = queue
            stack.push_async_callback(Sweeper(jobs).close)
        stack.push_async_callback(queue.close)
        app[QUEUE] = queue
        app[SERVICE] = OrderService(settings, app[DB], queue, app[SIGNER], app[STORAGE])
        resumed = await recover(queue, app[DB], settings.max_running_per_user)
        if resumed:
            log.info("re-queued %d unfinished orders", resumed)
        yield


async def _links(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    fetcher = Fetcher.for_settings(settings)
    app[FETCHER] = fetcher
    app[LINKS] = LinkAnalyzer(fetcher, settings)
    yield
    await app[UPLOADS].close()  # its ingests download with this fetcher
    await fetcher.close()


async def _rate_limits(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    limiter: RateLimiter = (
        RedisRateLimiter(settings.redis_url, settings.queue_name)
        if settings.redis_url
        else MemoryRateLimiter()
    )
    app[LIMITER] = limiter
    yield
    await limiter.close()
