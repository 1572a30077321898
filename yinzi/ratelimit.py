"""Requests per minute per API key, counted in fixed one-minute windows.

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


def _window(now: float) -> tuple[int, int]:
    """The current window's number and the whole seconds until it ends."""
    return int(now // WINDOW_S), max(1, math.ceil(WINDOW_S - now % WINDOW_S))


class RateLimiter(Protocol):
    async def hit(self, key_id: int, limit: int) -> Quota: ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._window = -1
        self._counts: dict[int, int] = {}

    async def hit(self, key_id: int, limit: int) -> Quota:
        window, reset = _window(time.time())
        if window != self._window:  # a new minute: every count starts again
            self._window, self._counts = window, {}
        count = self._counts[key_id] = self._counts.get(key_id, 0) + 1
        return Quota(limit, limit - count, reset)

    async def close(self) -> None:
        pass


class RedisRateLimiter:
    def __init__(self, redis_url: str, namespace: str) -> None:
        # Namespaced like the queue, so deployments sharing a Redis keep separate counts.
        self._prefix = f"{namespace}:ratelimit:"
        self._redis = Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)

    async def hit(self, key_id: int, limit: int) -> Quota:
        window, reset = _window(time.time())
        key = f"{self._prefix}{key_id}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_S + 5)
                count, _ = await pipe.execute()
        except (OSError, RedisError) as exc:
            log.warning("rate limiting is off while Redis is unreachable: %s", exc)
            return Quota(limit, limit, reset)
        return Quota(limit, limit - int(count), reset)

    async def close(self) -> None:
        await self._redis.aclose()
