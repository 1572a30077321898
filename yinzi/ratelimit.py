"""Requests per minute per API key, counted in fixed one-minute windows; and any other count of requests per
fixed window (``window_s``) under a key of the caller's choosing (an API's submits per client address, say).

With ``YINZI_REDIS_URL`` the counters live in Redis (one INCR and EXPIRE per request, pipelined), so every
API process shares them; without it, in this process's memory. If Redis stops answering, requests are let
through and a warning is logged: the limiter protects the service and must not take it down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

WINDOW_S = 60


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset: int  # seconds until the window ends and the count starts again

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset),
        }


# Where authentication leaves the caller's Quota, for the middleware to turn into headers.
QUOTA = web.RequestKey("quota", Quota)


def _window(now: float, window_s: int) -> tuple[int, int]:
    """The current window's number and the whole seconds until it ends."""
    return int(now // window_s), max(1, math.ceil(window_s - now % window_s))


class RateLimiter(Protocol):
    async def hit(self, key: int | str, limit: int, window_s: int = WINDOW_S) -> Quota:
        """Counts one request under ``key`` in the current ``window_s``-second window."""
        ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    def __init__(self) -> None:
        # Per window length: the current window's number and the counts in it.
        self._windows: dict[int, tuple[int, dict[int | str, int]]] = {}

    async def hit(self, key: int | str, limit: int, window_s: int = WINDOW_S) -> Quota:
        window, reset = _window(time.time(), window_s)
        current, counts = self._windows.get(window_s, (-1, {}))
        if window != current:  # a new window: every count starts again
            counts = {}
            self._windows[window_s] = (window, counts)
        count = counts[key] = counts.get(key, 0) + 1
        return Quota(limit, limit - count, reset)

    async def close(self) -> None:
        pass


class RedisRateLimiter:
    def __init__(self, redis_url: str, namespace: str) -> None:
        # Namespaced like the queue, so deployments sharing a Redis keep separate counts.
        self._prefix = f"{namespace}:ratelimit:"
        self._redis = Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)

    async def hit(self, key: int | str, limit: int, window_s: int = WINDOW_S) -> Quota:
        window, reset = _window(time.time(), window_s)
        counter = f"{self._prefix}{key}:{window_s}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, window_s + 5)
                count, _ = await pipe.execute()
        except (OSError, RedisError) as exc:
            log.warning("rate limiting is off while Redis is unreachable: %s", exc)
            return Quota(limit, limit, reset)
        return Quota(limit, limit - int(count), reset)

    async def close(self) -> None:
        await self._redis.aclose()
