"""Prometheus metrics (prometheus-client), served at ``GET /metrics``.

    yinzi_http_requests_total{method, route, status}             requests, by route template (not raw path)
    yinzi_http_request_duration_seconds{method, route, status}   latency histogram
    yinzi_orders_created_total{order_type, priority}
    yinzi_orders_ended_total{order_type, status, reason}         reason: a short kind (see reason_kind)
    yinzi_queue_orders{priority, state}                          read from the database at each scrape
    yinzi_engine_seconds_total{engine, model}                    engine wall time
    yinzi_engine_realtime_factor{engine, model}                  engine seconds per second of media
    yinzi_webhook_deliveries_total{outcome}                      delivered | retry | gave_up
    yinzi_upload_bytes_total                                     upload bytes stored
    yinzi_short_video_analyses_total{platform, outcome}

Several processes (``yinzi serve --processes N``, ``yinzi worker`` beside it on the same data directory) add
up through prometheus-client's multiprocess mode: ``yinzi.multiproc.use_metrics_dir`` points every process
at ``<data>/metrics`` before prometheus-client is first imported (the CLI does it), each process writes its
own files there, and any process's ``/metrics`` sums them. Queue depth comes from the database, which every
process shares anyway. Without that directory (tests, embedded use) the numbers are this process's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from yinzi.multiproc import MULTIPROC_ENV

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

HTTP_REQUESTS = Counter("yinzi_http_requests", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "yinzi_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
ORDERS_CREATED = Counter("yinzi_orders_created", "Orders created", ["order_type", "priority"])
ORDERS_ENDED = Counter(
    "yinzi_orders_ended", "Orders that reached an end state", ["order_type", "status", "reason"]
)
ENGINE_SECONDS = Counter("yinzi_engine_seconds", "Engine wall-clock seconds", ["engine", "model"])
ENGINE_RTF = Histogram(
    "yinzi_engine_realtime_factor",
    "Engine seconds per second of media",
    ["engine", "model"],
    buckets=RTF_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter("yinzi_webhook_deliveries", "Webhook delivery attempts", ["outcome"])
UPLOAD_BYTES = Counter("yinzi_upload_bytes", "Upload bytes stored")
ANALYSES = Counter("yinzi_short_video_analyses", "Short-video analyze calls", ["platform", "outcome"])

# Failure reasons are free text for people; for counting they fall into these kinds (first match wins).
REASON_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("unsupported_media", r"^unsupported media|no audio|video without an audio"),
        ("refused_address", r"refused to fetch"),
        ("download_failed", r"^download|could not connect|file too large|server could not store"),
        ("share_link", r"could not resolve the share link|image post"),
        ("upload_expired", r"upload has expired"),
        ("engine_not_installed", r"engine not installed"),
        ("model_missing", r"model .* is not installed|not installed in"),
        ("too_long", r"longest this service takes"),
        ("timeout", r"took longer than the limit|timed out"),
        ("engine_crashed", r"engine process died|engine error|engine produced no output"),
        ("queue_unavailable", r"job queue was unavailable"),
        ("disk_full", r"disk is full|could not store"),
        ("internal", r"internal error"),
    )
)


def reason_kind(reason: str | None) -> str:
    """A short, fixed name for a failure reason: the metrics label and the operator page's grouping."""
    if not reason:
        return "none"
    return next((kind for kind, pattern in REASON_KINDS if pattern.search(reason)), "other")


def route_of(request: web.Request) -> str:
    """The route template (``/files/{order_no}/{name}``), so order numbers never become label values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        labels = (request.method, route_of(request), str(status))
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_LATENCY.labels(*labels).observe(time.perf_counter() - started)


def engine_name(order_type: str, spec: str) -> str:
    """demucs or whisper for the built-in engines, else the plugged-in engine's class name."""
    if spec.startswith("workers.engines.separation:"):
        return "demucs"
    if spec.startswith("workers.engines.transcription:"):
        return "whisper"
    return spec.rpartition(":")[2] or order_type


def observe_engine(engine: str, model: str, seconds: float, media_seconds: float) -> None:
    ENGINE_SECONDS.labels(engine, model).inc(seconds)
    if media_seconds > 0:
        ENGINE_RTF.labels(engine, model).observe(seconds / media_seconds)


class _Fixed:
    """A collector of metric families already read (the database is async; collectors are not)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def queue_family(depth: Iterable[tuple[str, str, int]]) -> Metric:
    family = GaugeMetricFamily(
        "yinzi_queue_orders",
        "Unfinished orders by priority: waiting (pending) and running (processing)",
        labels=["priority", "state"],
    )
    seen = {(priority, state): count for priority, state, count in depth}
    for priority in ("lightning", "queue"):
        for state in ("waiting", "running"):
            family.add_metric([priority, state], seen.get((priority, state), 0))
    return family


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """The text format: every process's numbers when multiprocess mode is on, this process's otherwise."""
    if os.environ.get(MULTIPROC_ENV):
        registry: Any = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    text = generate_latest(registry)
    extra_registry = CollectorRegistry(auto_describe=False)
    extra_registry.register(_Fixed(extra))
    return text + generate_latest(extra_registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST
