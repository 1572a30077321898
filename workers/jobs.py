"""The one job: take an order from pending to finish, failed or timeout.

Both queue modes call :func:`process_order` with the order number only; everything else is read from the
database. It is idempotent: a finished order is skipped, and an order left ``processing`` by a dead worker is
simply run again (its partial files are discarded), so at-least-once delivery never does anything twice.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from workers.engine_host import EnginePool
from workers.engines import EngineTask, engine_spec
from workers.probe import probe
from yinzi.errors import OrderFailed, OrderTimedOut
from yinzi.fetch import Fetcher, download
from yinzi.links import LinkAnalyzer
from yinzi.logs import order_context
from yinzi.metrics import ORDERS_ENDED, engine_name, observe_engine, reason_kind
from yinzi.pricing import order_cost
from yinzi.queue import JobQueue
from yinzi.settings import Settings
from yinzi.store import Database, Order, ResultFile

log = logging.getLogger(__name__)

INPUT_NAME = "input"
# Progress shown once the input is downloaded and probed; the engine's share is the rest, up to 99.
FETCHED_PROGRESS = 5


@dataclass
class JobContext:
    """What jobs need, opened once per process and shared by every job it runs."""

    settings: Settings
    db: Database
    fetcher: Fetcher
    links: LinkAnalyzer
    engines: EnginePool
    # Where orders admitted after this one ends go; set by whoever wires these jobs to their queue.
    queue: JobQueue | None = None

    @classmethod
    async def open(cls, settings: Settings, db: Database, stack: AsyncExitStack) -> JobContext:
        fetcher = Fetcher.for_settings(settings)
        stack.push_async_callback(fetcher.close)
        engines = EnginePool(settings)
        stack.callback(engines.close)
        return cls(settings, db, fetcher, LinkAnalyzer(fetcher, settings), engines)


async def process_order(ctx: JobContext, order_no: str) -> str:
    """Runs one order to a terminal state; returns that state (or ``skipped``)."""
    order = await ctx.db.claim_order(order_no)
    if order is None:
        return "skipped"
    try:
        return await _process(ctx, order)
    finally:
        # The order no longer holds a place under its user's running cap: let the next one in.
        if ctx.settings.max_running_per_user and ctx.queue is not None:
            for admitted, priority in await ctx.db.admit_waiting(
                order.user_id, ctx.settings.max_running_per_user
            ):
                await ctx.queue.enqueue(admitted, priority)


async def _process(ctx: JobContext, order: Order) -> str:
    order_no = order.order_no
    with order_context(order_no):
        log.info("processing %s (attempt %d)", order.order_type, order.attempts)
        work = ctx.settings.work_dir / order_no
        await asyncio.to_thread(_fresh_dir, work)
        ended: OrderFailed | None = None
        try:
            async with asyncio.timeout(ctx.settings.job_timeout):
                done = await _run(ctx, order, work)
        except TimeoutError:
            ended = OrderTimedOut(f"the order took longer than the limit of {ctx.settings.job_timeout} s")
        except OrderFailed as exc:
            ended = exc
        except Exception:
            log.exception("unexpected error")
            ended = OrderFailed("internal error while processing; please try again")
        finally:
            # Gone before the order is marked done: a terminal order never leaves work files behind.
            await asyncio.to_thread(shutil.rmtree, work, True)
        if ended is not None:
            if await ctx.db.end_order(order_no, ended.status, ended.reason):
                ORDERS_ENDED.labels(order.order_type, ended.status, reason_kind(ended.reason)).inc()
            log.warning("%s: %s", ended.status, ended.reason)
            return ended.status
        if await ctx.db.finish_order(order_no, *done):
            ORDERS_ENDED.labels(order.order_type, "finish", "none").inc()
        log.info("finished")
        return "finish"


async def _run(ctx: JobContext, order: Order, work: Path) -> tuple[int, float, list[ResultFile]]:
    """Does the work; returns the finished order's cost, duration and result files."""
    settings = ctx.settings
    ctx.engines.check_installed(order.order_type)  # before spending a download on it
    source = await _fetch_input(ctx, order, work / INPUT_NAME)
    media = await probe(source, settings.ffprobe)
    if media.duration > settings.max_duration:
        raise OrderFailed(
            f"the media is {_clock(media.duration)} long; the longest this service takes is {_clock(settings.max_duration)}"
        )
    await ctx.db.set_progress(order.order_no, FETCHED_PROGRESS)

    async def on_progress(fraction: float) -> None:
        await ctx.db.set_progress(order.order_no, FETCHED_PROGRESS + int(fraction * (99 - FETCHED_PROGRESS)))

    out_dir = work / "out"
    out_dir.mkdir()
    options = {k: v for k, v in order.stuff.items() if k not in ("pathKey", "uploadId")}
    if order.order_type == "extract-text":
        model = options.get("model") or settings.whisper_model
    else:
        model = settings.demucs_model
    task = EngineTask(
        order_no=order.order_no,
        order_type=order.order_type,
        input_path=source,
        out_dir=out_dir,
        duration=media.duration,
        sample_rate=media.sample_rate,
        channels=media.channels,
        model=model,
        cache_dir=settings.cache_dir,
        options=options,
    )
    started = time.monotonic()
    results = await ctx.engines.run(task, on_progress, settings.engine_timeout(media.duration))
    engine = engine_name(order.order_type, engine_spec(order.order_type, settings.engines))
    observe_engine(engine, model, time.monotonic() - started, media.duration)
    missing = [r.name for r in results if not (out_dir / r.name).is_file()]
    if not results or missing:
        raise OrderFailed(f"engine produced no output ({', '.join(missing) or 'empty result'})")
    await asyncio.to_thread(_publish, out_dir, settings.results_dir / order.order_no)
    return order_cost(settings, order.order_type, media.duration, order.priority), media.duration, results


async def _fetch_input(ctx: JobContext, order: Order, dest: Path) -> Path:
    settings = ctx.settings
    upload_id = order.stuff.get("uploadId")
    if upload_id is not None:
        path: Path = settings.uploads_dir / str(upload_id)
        if not path.is_file():
            raise OrderFailed("the upload has expired; upload the file again")
        return path
    # A share link (Douyin, Bilibili, ...) is resolved to its media first; any other URL is the media itself.
    media_url, headers = await ctx.links.media_source(order.stuff["pathKey"])
    return await download(
        ctx.fetcher,
        media_url,
        dest,
        max_bytes=settings.max_download_bytes,
        max_redirects=settings.max_redirects,
        total_timeout=settings.fetch_total_timeout,
        headers=headers,
    )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _publish(out_dir: Path, target: Path) -> None:
    """Moves finished files into place in one rename, replacing what an earlier, killed attempt left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    out_dir.rename(target)
