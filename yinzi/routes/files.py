"""GET /files/{orderNo}/{name}: result files behind signed, expiring URLs.

On local disk yinzi serves the file. With an object store the signed URL redirects to a URL the store
presigned, which dies when the signed one does; with ``YINZI_STORAGE_PROXY=1`` (a store the clients cannot
reach) yinzi streams the file through instead.
"""

from __future__ import annotations

import mimetypes
import time

from aiohttp import web

from yinzi.appkeys import DB, SETTINGS, SIGNER, STORAGE
from yinzi.errors import NotFound
from yinzi.routes.api import SignedUrl, endpoints
from yinzi.storage import Storage, result_key

GONE = "file not found: the results have been deleted"


@endpoints.get(
    "/files/{order_no}/{name}",
    summary="Download a result file through the signed URL that order/query gives",
    description="On local disk the file itself; with an object store a 302 to the store's own presigned URL, "
    "which expires when this one does (or the file streamed through, with YINZI_STORAGE_PROXY=1).",
    query=SignedUrl,
    media_types=("*/*",),  # the file's own type: audio, JSON, SRT, text, ...
    errors=(403, 404),
    secured=False,
)
async def result_file(request: web.Request, signed: SignedUrl) -> web.StreamResponse:
    order_no = request.match_info["order_no"]
    name = request.match_info["name"]
    request.app[SIGNER].verify(order_no, name, signed.expires, signed.sig)
    order = await request.app[DB].order(order_no)
    # Only names the order itself lists are served, so no path can be smuggled in through {name}.
    if order is None or name not in {r.name for r in order.results}:
        raise NotFound("file not found")
    if order.expired:
        raise NotFound(GONE)
    disposition = f'attachment; filename="{name}"'
    return await serve_stored(
        request, result_key(order_no, name), int(signed.expires), name, disposition, GONE
    )


async def serve_stored(
    request: web.Request, key: str, expires: int, name: str, disposition: str | None, gone: str
) -> web.StreamResponse:
    """A stored file as the answer to a signed URL that lives until ``expires``: the file itself, a redirect
    to the store's own URL with the same end of life, or the file streamed through."""
    storage: Storage = request.app[STORAGE]
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            raise NotFound(gone)
        headers = {"Content-Disposition": disposition} if disposition else None
        return web.FileResponse(path, headers=headers)
    if not request.app[SETTINGS].storage_proxy:
        url = await storage.presigned_url(key, expires - int(time.time()), name if disposition else None)
        assert url is not None
        raise web.HTTPFound(url)
    try:
        stored = await storage.open(key)
    except FileNotFoundError:
        raise NotFound(gone) from None
    response = web.StreamResponse(headers={"Content-Disposition": disposition} if disposition else None)
    response.content_length = stored.size
    response.content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    await response.prepare(request)
    async for chunk in stored.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
