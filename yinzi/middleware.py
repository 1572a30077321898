"""Request ids and the error envelope, for every response the service sends."""

from __future__ import annotations

import logging
import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from yinzi.declare import REQUEST_ID
from yinzi.envelope import error
from yinzi.errors import YinziError
from yinzi.logs import log_context
from yinzi.ratelimit import QUOTA

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's own id is kept when it is harmless to echo into logs and headers.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# aiohttp's own errors (no such route, wrong method, body too large), reworded for people.
_HTTP_MESSAGES = {
    404: "no such endpoint: see /openapi.json",
    405: "method not allowed",
    413: "request body too large",
}


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _CALLER_ID.fullmatch(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    with log_context(request_id):
        response: web.StreamResponse
        try:
            response = await handler(request)
        except YinziError as exc:
            response = error(exc.status, exc.msg)
            response.headers.update(exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error(exc.status, _HTTP_MESSAGES.get(exc.status, exc.reason))
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error(500, f"internal server error (request id {request_id})")
    response.headers[REQUEST_ID_HEADER] = request_id
    quota = request.get(QUOTA)
    if quota is not None:
        response.headers.update(quota.headers())
    return response
