"""The arq worker: ``yinzi worker``, or ``arq workers.arq_worker.WorkerSettings`` with the same environment.

Each worker process opens the database, an HTTP session and its engine processes once, at start-up, and runs
up to ``YINZI_WORKER_CONCURRENCY`` orders at a time. arq delivers at least once; ``process_order`` is
idempotent. A job whose worker died is retried by arq once its in-progress mark expires, which is the job
timeout plus a few seconds: ``YINZI_JOB_TIMEOUT`` trades the longest order against recovery time.
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from typing import Any

from arq.connections import RedisSettings
from arq.worker import func, run_worker
from redis.exceptions import RedisError

from workers.jobs import JobContext, process_order
from workers.sweeper import Sweeper
from yinzi.logs import setup_logging
from yinzi.queue import JOB_NAME, ArqQueue, recover
from yinzi.settings import Settings
from yinzi.store import Database

# process_order ends an order itself when it passes job_timeout; arq's own limit is only a backstop.
ARQ_TIMEOUT_MARGIN_S = 5
MAX_TRIES = 5
# Seconds between attempts to start again after losing Redis.
RECONNECT_DELAYS = (1, 2, 5, 10, 30)

log = logging.getLogger(__name__)


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    stack = AsyncExitStack()
    db = await Database.open(settings.database)
    stack.push_async_callback(db.close)
    ctx["stack"] = stack
    jobs = await JobContext.open(settings, db, stack)
    jobs.queue = ArqQueue(ctx["redis"], settings.queue_name)
    stack.push_async_callback(Sweeper(jobs).close)
    ctx["jobs"] = jobs
    await recover(jobs.queue, db, settings.max_running_per_user)


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["stack"].aclose()


async def _process_order(ctx: dict[str, Any], order_no: str) -> str:
    return await process_order(ctx["jobs"], order_no)


def worker_options(settings: Settings) -> dict[str, Any]:
    if not settings.redis_url:
        raise SystemExit("yinzi worker needs YINZI_REDIS_URL (without it, `yinzi serve` runs jobs itself)")
    return {
        "functions": [
            func(
                _process_order,
                name=JOB_NAME,
                timeout=settings.job_timeout + ARQ_TIMEOUT_MARGIN_S,
                max_tries=MAX_TRIES,
            )
        ],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_concurrency,
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "ctx": {"settings": settings},
        "keep_result": 3600,
    }


def run(settings: Settings) -> None:
    """Runs the worker until it is stopped; when Redis goes away it starts again once Redis is back, so an
    outage needs no supervisor to restart anything."""
    options = worker_options(settings)
    setup_logging()
    failures = 0
    while True:
        started = time.monotonic()
        try:
            run_worker(options)
            return
        except (OSError, RedisError) as exc:  # redis-py's ConnectionError is both
            failures = 1 if time.monotonic() - started > RECONNECT_DELAYS[-1] else failures + 1
            delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS)) - 1]
            log.error("lost Redis (%s); starting again in %d s", exc, delay)
            time.sleep(delay)


def __getattr__(name: str) -> Any:
    # `arq workers.arq_worker.WorkerSettings` gets a settings class built from the environment on first use,
    # so importing this module reads and checks nothing.
    if name == "WorkerSettings":
        return type("WorkerSettings", (), worker_options(Settings.from_env()))
    raise AttributeError(name)
