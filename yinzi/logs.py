"""Logging with a context id on every line: the request id inside a request, ``order:<orderNo>`` inside a job.

A ``contextvars`` variable carries it, so code anywhere below a request or job logs with it and asyncio tasks
started there inherit it.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from yinzi.declare import CLIENT

current_id: contextvars.ContextVar[str] = contextvars.ContextVar("yinzi_log_id", default="-")

FORMAT = "%(asctime)s %(levelname)s [%(log_id)s] %(name)s: %(message)s"


class _ContextIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.log_id = current_id.get()
        return True


@contextmanager
def log_context(value: str) -> Iterator[None]:
    token = current_id.set(value)
    try:
        yield
    finally:
        current_id.reset(token)


def order_context(order_no: str) -> AbstractContextManager[None]:
    return log_context(f"order:{order_no}")


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ContextIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class AccessLogger(AbstractAccessLogger):
    """One line per request, tagged with its request id, with ``apiKey`` values masked."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = request.path_qs
        if "apiKey" in request.query:
            query = urlencode(
                [(k, "***" if k == "apiKey" else v) for k, v in request.query.items()], safe="*"
            )
            target = f"{request.path}?{query}"
        with log_context(response.headers.get("X-Request-Id", "-")):
            self.logger.info(
                '%s "%s %s" %d %d %.1fms',
                request.get(CLIENT, request.remote),
                request.method,
                target,
                response.status,
                response.body_length,
                time * 1000,
            )
