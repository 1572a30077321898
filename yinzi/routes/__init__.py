"""HTTP routes, one module per resource. Handlers stay thin: parse, call the domain or the database, answer."""

from __future__ import annotations

from aiohttp import web

from yinzi.appkeys import SETTINGS, SIGNER
from yinzi.store import Upload


def public_base(request: web.Request) -> str:
    """Where links the service hands out (result files, upload URLs) start: YINZI_PUBLIC_URL, or this request's
    own scheme and host."""
    return request.app[SETTINGS].public_url or f"{request.scheme}://{request.host}"


def upload_url(request: web.Request, upload: Upload) -> str:
    """Where an open session's bytes go, for every API: signed, so no key is needed, like a presigned
    object-store URL."""
    return public_base(request) + request.app[SIGNER].upload_path(upload.id, upload.expires_at)
