"""The aiohttp application: ``create_app(settings)`` wires routes, middleware and resources together.

Nothing happens at import or in ``create_app`` itself; each resource is opened and closed by its own
cleanup context when the app starts and stops.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from workers.jobs import JobContext, process_order
from workers.probe import ffprobe_missing
from workers.sweeper import Sweeper
from yinzi.appkeys import DB, FETCHER, LIMITER, LINKS, POLICY, QUEUE, SETTINGS, SIGNER
from yinzi.console import docs, pages
from yinzi.fetch import AddressPolicy, Fetcher
from yinzi.links import LinkAnalyzer
from yinzi.metrics import metrics_middleware
from yinzi.middleware import envelope_middleware
from yinzi.queue import ArqQueue, EmbeddedQueue, JobQueue, recover
from yinzi.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from yinzi.routes import files, meta, orders, shortvideo, uploads
from yinzi.settings import Settings
from yinzi.signing import Signer, load_or_create_secret
from yinzi.store import Database

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
    app.add_routes(orders.routes)
    app.add_routes(shortvideo.routes)
    app.add_routes(uploads.routes)
    app.add_routes(files.routes)
    app.add_routes(meta.routes)
    docs.add_routes(app)
    pages.add_routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = await Database.open(settings.database)
    app[DB] = db
    app[SIGNER] = Signer(
        settings.secret_key or load_or_create_secret(settings.data_dir), settings.result_url_ttl
    )
    if await db.count_keys() == 0:
        log.warning(FIRST_KEY_HINT)
    missing = ffprobe_missing(settings.ffprobe)
    if missing:
        log.error("%s; orders will fail until it is installed", missing)
    yield
    await db.close()


async def _queue(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        queue: JobQueue
        if settings.redis_url:
            queue = await ArqQueue.connect(settings.redis_url, settings.queue_name)
        else:
            jobs = await JobContext.open(settings, app[DB], stack)
            queue = EmbeddedQueue(functools.partial(process_order, jobs), settings.worker_concurrency)
            jobs.queue = queue
            stack.push_async_callback(Sweeper(jobs).close)
        stack.push_async_callback(queue.close)
        app[QUEUE] = queue
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
