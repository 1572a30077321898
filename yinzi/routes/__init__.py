"""HTTP routes, one module per resource. Handlers stay thin: parse, call the domain or the database, answer."""

from __future__ import annotations

from aiohttp import web

from yinzi.appkeys import SETTINGS


def public_base(request: web.Request) -> str:
    """Where links the service hands out (result files, upload URLs) start: YINZI_PUBLIC_URL, or this request's
    own scheme and host."""
    return request.app[SETTINGS].public_url or f"{request.scheme}://{request.host}"
