"""``Idempotency-Key`` on order/create: a client that retries after a lost response never orders twice.

The first request with a key is handled and its answer kept for 24 hours; the same key with the same body
then gets that answer again (header ``Idempotent-Replayed: true``), with a different body 422, and while the
first is still being handled 409. Answers of 5xx are not kept, so a retry after one really runs again.
Bodies are compared as canonical JSON, so key order and spacing do not matter.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from yinzi.envelope import error
from yinzi.errors import BadRequest, Conflict, Unprocessable, YinziError
from yinzi.store import Database, User

HEADER = "Idempotency-Key"
TTL_S = 24 * 3600
# A key whose first request has been "in progress" this long belonged to a process that died mid-request.
ABANDONED_AFTER_S = 60
MAX_KEY_LENGTH = 255


async def idempotent(
    db: Database,
    request: web.Request,
    user: User,
    body: dict[str, Any],
    handle: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    key = request.headers.get(HEADER)
    if key is None:
        return await handle()
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body_hash = hashlib.sha256(canonical.encode()).hexdigest()
    now = time.time()
    earlier = await db.claim_idempotency_key(
        user.id, key, body_hash, expired_before=now - TTL_S, abandoned_before=now - ABANDONED_AFTER_S
    )
    if earlier is not None:
        if earlier.body_hash != body_hash:
            raise Unprocessable(f"{HEADER} {key!r} was already used with a different request body")
        if earlier.status is None or earlier.response is None:
            raise Conflict(f"the first request with {HEADER} {key!r} is still being handled; retry shortly")
        replay = web.Response(status=earlier.status, text=earlier.response, content_type="application/json")
        replay.headers["Idempotent-Replayed"] = "true"
        return replay
    try:
        response = await handle()
    except YinziError as exc:
        if exc.status >= 500:
            await db.release_idempotency_key(user.id, key)
        else:
            await db.store_idempotent_response(user.id, key, exc.status, _text(error(exc.status, exc.msg)))
        raise
    except BaseException:
        await db.release_idempotency_key(user.id, key)
        raise
    await db.store_idempotent_response(user.id, key, response.status, _text(response))
    return response


def _text(response: web.Response) -> str:
    assert isinstance(response.body, bytes)
    return response.body.decode()
