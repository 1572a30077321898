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

from workers.analysis import write_analysis
from workers.engine_host import EnginePool
from workers.engines import SEPARATION_TYPES, EngineTask, engine_spec, file_digest, stem_cache_dir
from workers.probe import probe
from workers.reports import check_font, write_report
from yinzi.errors import OrderFailed, OrderTimedOut
from yinzi.fetch import Fetcher, human_bytes
from yinzi.links import LinkAnalyzer
from yinzi.logs import order_context
from yinzi.metrics import ORDERS_ENDED, engine_name, observe_engine, reason_kind
from yinzi.orders import INPUT_LIMITS, MAX_INPUT_BYTES, MAX_INPUT_SECONDS, url_file_name
from yinzi.pricing import order_cost
from yinzi.queue import JobQueue
from yinzi.settings import Settings
from yinzi.storage import CACHE, Storage, StorageUnavailable, open_storage, results_prefix, upload_key
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
    storage: Storage
    # Where orders admitted after this one ends go; set by whoever wires these jobs to their queue.
    queue: JobQueue | None = None

    @classmethod
    async def open(
        cls, settings: Settings, db: Database, stack: AsyncExitStack, storage: Storage | None = None
    ) -> JobContext:
        fetcher = Fetcher.for_settings(settings)
        stack.push_async_callback(fetcher.close)
        engines = EnginePool(settings)
        stack.callback(engines.close)
        if storage is None:
            storage = open_storage(settings)
            stack.push_async_callback(storage.close)
        return cls(settings, db, fetcher, LinkAnalyzer(fetcher, settings), engines, storage)


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
        except StorageUnavailable as exc:
            ended = OrderFailed(f"{exc.msg}; please try again")
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
    if order.stuff.get("report") == "pdf":
        check_font(settings.report_font)
    max_bytes, max_seconds = input_limits(order, settings)
    source = await _fetch_input(ctx, order, work / INPUT_NAME, max_bytes)
    media = await probe(source, settings.ffprobe)
    if media.duration > max_seconds:
        raise OrderFailed(
            f"the media is {_clock(media.duration)} long; the longest this service takes is {_clock(max_seconds)}"
        )
    await ctx.db.set_progress(order.order_no, FETCHED_PROGRESS)

    async def on_progress(fraction: float) -> None:
        await ctx.db.set_progress(order.order_no, FETCHED_PROGRESS + int(fraction * (99 - FETCHED_PROGRESS)))

    out_dir = work / "out"
    out_dir.mkdir()
    options = {k: v for k, v in order.stuff.items() if k not in ("pathKey", "uploadId", *INPUT_LIMITS)}
    if order.order_type == "extract-text":
        model = options.get("model") or settings.whisper_model
    else:
        model = settings.demucs_model
    cache = _EngineCache(ctx.storage, work / "cache")
    digest = None
    if order.order_type in SEPARATION_TYPES:  # the stem cache is keyed by the input's bytes
        digest = await _input_digest(ctx, order, source)
        await cache.prefetch(stem_cache_dir(digest, model))
    task = EngineTask(
        order_no=order.order_no,
        order_type=order.order_type,
        input_path=source,
        out_dir=out_dir,
        duration=media.duration,
        sample_rate=media.sample_rate,
        channels=media.channels,
        model=model,
        cache_dir=cache.folder,
        options=options,
        input_sha256=digest,
    )
    started = time.monotonic()
    results = await ctx.engines.run(task, on_progress, settings.engine_timeout(media.duration))
    engine = engine_name(order.order_type, engine_spec(order.order_type, settings.engines))
    observe_engine(engine, model, time.monotonic() - started, media.duration)
    missing = [r.name for r in results if not (out_dir / r.name).is_file()]
    if not results or missing:
        raise OrderFailed(f"engine produced no output ({', '.join(missing) or 'empty result'})")
    if order.order_type == "extract-text":
        results = [*results, *await _after_transcription(ctx, order, out_dir)]
    await ctx.storage.publish(results_prefix(order.order_no), out_dir)
    await cache.keep_new()
    return order_cost(settings, order.order_type, media.duration, order.priority), media.duration, results


async def _after_transcription(ctx: JobContext, order: Order, out_dir: Path) -> list[ResultFile]:
    """What an extract-text order asks for beyond the transcript: its AI analysis, then its PDF report (which
    carries the analysis)."""
    stuff = order.stuff
    prompt = stuff.get("aiPrompt")
    report = stuff.get("report") == "pdf"
    if (prompt or report) and not (out_dir / "transcript.json").is_file():
        raise OrderFailed(
            "the transcription engine wrote no transcript.json, which the report and analysis need"
        )
    extra: list[ResultFile] = []
    if prompt:
        extra.append(await write_analysis(ctx.settings, str(prompt), out_dir))
    if report:
        name = await _source_name(ctx, order)
        extra.append(
            await asyncio.to_thread(write_report, ctx.settings.report_font, out_dir, name, order.created_at)
        )
    return extra


async def _source_name(ctx: JobContext, order: Order) -> str | None:
    """The media's file name as its owner knows it: stuff.fileName, the upload's name, or the URL's."""
    stuff = order.stuff
    if stuff.get("fileName"):
        return str(stuff["fileName"])
    if stuff.get("uploadId"):
        upload = await ctx.db.upload(str(stuff["uploadId"]))
        return upload.file_name if upload is not None else None
    return url_file_name(str(stuff.get("pathKey", "")))


def input_limits(order: Order, settings: Settings) -> tuple[int, int]:
    """The most bytes and seconds of input this order takes: the service's limits, or the order's own tighter
    ones (yinzi/orders.py, INPUT_LIMITS)."""
    own_bytes = order.stuff.get(MAX_INPUT_BYTES, settings.max_download_bytes)
    own_seconds = order.stuff.get(MAX_INPUT_SECONDS, settings.max_duration)
    return min(settings.max_download_bytes, int(own_bytes)), min(settings.max_duration, int(own_seconds))


class _EngineCache:
    """What engines reuse across orders (separated stems) under the store's ``cache/``: on local disk the
    engines use the store's folder itself; beside an object store they use a scratch folder, filled with what
    the order may reuse beforehand and sent back with whatever the engine added afterwards."""

    def __init__(self, storage: Storage, scratch: Path) -> None:
        self._storage = storage
        shared = storage.local_path(CACHE)
        self.folder = shared if shared is not None else scratch
        self._remote = shared is None
        self._fetched: set[str] = set()

    async def prefetch(self, relative: str) -> None:
        if not self._remote:
            return
        for key in await self._storage.keys(f"{CACHE}/{relative}"):
            name = key.removeprefix(f"{CACHE}/")
            await self._storage.fetch(key, self.folder / name)
            self._fetched.add(name)

    async def keep_new(self) -> None:
        if not self._remote or not self.folder.is_dir():
            return
        made = await asyncio.to_thread(
            lambda: [p for p in self.folder.rglob("*") if p.is_file() and ".partial-" not in str(p)]
        )
        for path in made:
            name = str(path.relative_to(self.folder))
            if name not in self._fetched:
                await self._storage.put_file(f"{CACHE}/{name}", path)


async def _input_digest(ctx: JobContext, order: Order, source: Path) -> str:
    """The input's SHA-256: an upload's was taken when it completed; a download is hashed here."""
    upload_id = order.stuff.get("uploadId")
    if upload_id is not None:
        upload = await ctx.db.upload(str(upload_id))
        if upload is not None and upload.sha256:
            return upload.sha256
    return await asyncio.to_thread(file_digest, source)


async def _fetch_input(ctx: JobContext, order: Order, dest: Path, max_bytes: int) -> Path:
    upload_id = order.stuff.get("uploadId")
    if upload_id is not None:
        upload = await ctx.db.upload(str(upload_id))
        if upload is not None and upload.size_bytes > max_bytes:  # said before a byte is copied
            raise OrderFailed(f"file too large: the limit is {human_bytes(max_bytes)}")
        try:
            return await ctx.storage.fetch(upload_key(str(upload_id)), dest)
        except FileNotFoundError:
            raise OrderFailed("the upload has expired; upload the file again") from None
    # A share link (Douyin, Bilibili, ...) is resolved to its media first; any other URL is the media itself.
    return await ctx.links.download(order.stuff["pathKey"], dest, max_bytes)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
