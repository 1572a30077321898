"""Request ids, the client's address and the error envelope, for every request the service answers."""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from yinzi.appkeys import SETTINGS
from yinzi.declare import CLIENT, REQUEST_ID
from yinzi.envelope import error
from yinzi.errors import YinziError
from yinzi.logs import log_context
from yinzi.ratelimit import QUOTA
from yinzi.settings import IPNetwork

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
    request[CLIENT] = client_address(
        request.remote, request.headers.getall("X-Forwarded-For", ()), request.app[SETTINGS].trusted_proxies
    )
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


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[IPNetwork, ...]) -> str:
    """The client's address. From a trusted proxy, the nearest address in X-Forwarded-For that is not a trusted
    proxy: each proxy appends the address it was reached from, so what stands left of that one is the client's
    own word, which anyone can forge. From anywhere else, the connecting address, whatever the headers say."""
    address = peer or "unknown"
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    while hops and _is_trusted(address, trusted):
        address = hops.pop()
    return address


def _is_trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
