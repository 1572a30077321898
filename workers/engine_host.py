"""Engine processes: where models live and CPU work happens.

Each :class:`EngineHost` owns one child process (``spawn``: no inherited event loop or sockets) that imports
its engine, says it is ready, loads the model once, then serves tasks one at a time over a pipe, sending progress as it goes.
The parent waits on the pipe with ``loop.add_reader``, so the event loop never blocks. An order past its time
limit gets its child killed (its CPU is freed at once) and the next task starts a fresh child. A child also
exits on its own when its parent dies, so a SIGKILLed worker leaves no orphan burning CPU.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from workers.engines import EngineTask, check_installed, engine_spec, load_engine_class
from yinzi.errors import OrderFailed, OrderTimedOut
from yinzi.settings import Settings
from yinzi.store import ResultFile

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0
PROGRESS_EVERY_S = 0.25
# A new child's start (interpreter, imports, the engine's construction), which does not count against an
# order's time limit: on a busy machine it alone can take longer than a short limit.
START_LIMIT_S = 120.0

OnProgress = Callable[[float], Awaitable[None]]


class EngineHost:
    def __init__(self, spec: str, settings: Settings) -> None:
        self.spec = spec
        self._settings = settings
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None

    def _ensure_started(self) -> Connection:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            return self._conn
        self.kill()
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=_child_main,
            args=(self.spec, self._settings, child_end, os.getpid()),
            name=f"yinzi-engine[{self.spec}]",
            daemon=True,
        )
        proc.start()
        child_end.close()
        self._proc, self._conn = proc, parent_end
        return parent_end

    async def _started(self) -> Connection:
        """The child's pipe, once the child says it is up (a new one is started when there is none)."""
        fresh = self._proc is None or not self._proc.is_alive()
        conn = self._ensure_started()
        if fresh:
            try:
                async with asyncio.timeout(START_LIMIT_S):
                    kind, payload = await _receive(conn)
            except (TimeoutError, EOFError):
                code = self._proc.exitcode if self._proc else None
                self.kill()
                raise OrderFailed(f"the engine process did not start (exit code {code})") from None
            if kind != "ready":
                self.kill()
                raise OrderFailed(payload)
        return conn

    async def run(self, task: EngineTask, on_progress: OnProgress, time_limit: float) -> list[ResultFile]:
        conn = await self._started()
        conn.send(task)
        try:
            async with asyncio.timeout(time_limit):
                while True:
                    kind, payload = await _receive(conn)
                    if kind == "progress":
                        await on_progress(payload)
                    elif kind == "done":
                        return list(payload)
                    else:
                        raise OrderFailed(payload)
        except TimeoutError:
            self.kill()
            raise OrderTimedOut(f"processing took longer than the limit of {time_limit:.0f} s") from None
        except EOFError:
            code = self._proc.exitcode if self._proc else None
            self.kill()
            raise OrderFailed(
                f"engine process died (exit code {code}); the order can be submitted again"
            ) from None
        except BaseException:
            # Cancelled (shutdown) or anything unexpected: the child's state is unknown, start afresh next time.
            self.kill()
            raise

    def kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
            self._proc = None


class EnginePool:
    """``concurrency`` engine processes per engine, shared by every order that uses that engine."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: dict[str, asyncio.Queue[EngineHost]] = {}

    def _hosts(self, spec: str) -> asyncio.Queue[EngineHost]:
        if spec not in self._idle:
            queue: asyncio.Queue[EngineHost] = asyncio.Queue()
            for _ in range(self._settings.engine_concurrency):
                queue.put_nowait(EngineHost(spec, self._settings))
            self._idle[spec] = queue
        return self._idle[spec]

    def check_installed(self, order_type: str) -> None:
        check_installed(engine_spec(order_type, self._settings.engines))

    async def run(self, task: EngineTask, on_progress: OnProgress, time_limit: float) -> list[ResultFile]:
        spec = engine_spec(task.order_type, self._settings.engines)
        idle = self._hosts(spec)
        host = await idle.get()
        try:
            return await host.run(task, on_progress, time_limit)
        finally:
            idle.put_nowait(host)

    def close(self) -> None:
        for queue in self._idle.values():
            while not queue.empty():
                queue.get_nowait().kill()


async def _receive(conn: Connection) -> tuple[str, Any]:
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    fd = conn.fileno()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    message: tuple[str, Any] = conn.recv()  # a whole small message is there once the pipe is readable
    return message


# ---- the child side ----------------------------------------------------------------------------------------


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def _share_cores(threads: int) -> None:
    """Caps this process's compute threads before any library starts its pools (torch, CTranslate2 and BLAS
    take their defaults from these on import): engines that each start one thread per core on a shared machine
    spin against each other (measured 4-9x slower on 2 cores). Importing nothing keeps the start fast."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)


def _child_main(spec: str, settings: Settings, conn: Connection, parent_pid: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _share_cores(settings.threads_per_engine)
    try:
        engine = load_engine_class(spec)(settings)
    except Exception as exc:
        traceback.print_exc()
        conn.send(("failed", f"engine error: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            task: EngineTask = conn.recv()
        except (EOFError, OSError):
            return
        last_sent = 0.0

        def progress(fraction: float) -> None:
            nonlocal last_sent
            now = time.monotonic()
            if now - last_sent >= PROGRESS_EVERY_S:
                last_sent = now
                conn.send(("progress", max(0.0, min(1.0, fraction))))

        try:
            conn.send(("done", engine.run(task, progress)))
        except OrderFailed as exc:
            conn.send(("failed", exc.reason))
        except Exception as exc:
            traceback.print_exc()
            conn.send(("failed", f"engine error: {type(exc).__name__}: {exc}"))
