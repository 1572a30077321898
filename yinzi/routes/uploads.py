"""Resumable uploads: a session, its bytes (whole or in ranges), its state, and its completion.

    POST /api/open/v1/uploads {fileName, mimeType, sizeBytes}   -> uploadId, uploadUrl (signed), expiresAt
    PUT  <uploadUrl>  [Content-Range: bytes a-b/size]           -> the bytes at a..b (no range: the whole file)
    GET  /api/open/v1/uploads/{id}                              -> state and bytes received: where to resume
    POST /api/open/v1/uploads/{id}/complete [{sha256}]          -> checks size, hash and media; idempotent

Bytes stream straight to ``<data>/uploads/<id>.part``: memory does not grow with the file. The file's size on
disk is the number of bytes received, so a broken connection resumes exactly where its bytes stopped, in
whichever API process takes the next request. A lock on the file keeps two requests from writing it at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import secrets
import time
from io import BufferedReader
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from workers.probe import probe
from yinzi.accounts import authenticate
from yinzi.appkeys import DB, SETTINGS, SIGNER
from yinzi.envelope import ok, read_json_object, reject_unknown
from yinzi.errors import (
    BadRequest,
    Conflict,
    NotFound,
    OrderFailed,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from yinzi.fetch import human_bytes
from yinzi.metrics import UPLOAD_BYTES
from yinzi.routes import public_base
from yinzi.store import Database, Upload, User

routes = web.RouteTableDef()

FIELDS = frozenset({"fileName", "mimeType", "sizeBytes"})
MEDIA_TYPES = ("audio/", "video/")
CHUNK_BYTES = 256 * 1024
MAX_FILE_NAME = 255
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
SHA256 = re.compile(r"[0-9a-f]{64}")


@routes.post("/api/open/v1/uploads")
async def create_upload(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    user = await authenticate(request)
    body = await read_json_object(request)
    reject_unknown(body, FIELDS)
    file_name, mime_type, size = body.get("fileName"), body.get("mimeType"), body.get("sizeBytes")
    if not isinstance(file_name, str) or not 0 < len(file_name) <= MAX_FILE_NAME:
        raise BadRequest(f"fileName must be a string of 1 to {MAX_FILE_NAME} characters")
    if "/" in file_name or "\\" in file_name or "\0" in file_name or file_name in (".", ".."):
        raise BadRequest("fileName must be a plain file name, without folders")
    if not isinstance(mime_type, str) or not mime_type:
        raise BadRequest("mimeType is required, such as audio/mpeg or video/mp4")
    if not mime_type.lower().startswith(MEDIA_TYPES):
        raise UnsupportedMediaType(f"mimeType {mime_type} is not audio or video")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BadRequest("sizeBytes must be a whole number of bytes, at least 1")
    if size > settings.max_download_bytes:
        raise PayloadTooLarge(f"file too large: the limit is {human_bytes(settings.max_download_bytes)}")
    upload_id = "up_" + secrets.token_urlsafe(18)
    expires_at = time.time() + settings.upload_ttl
    await asyncio.to_thread(_create_part, _part(settings.uploads_dir, upload_id))
    await app[DB].create_upload(upload_id, user.id, file_name, mime_type.lower(), size, expires_at)
    upload = await app[DB].upload(upload_id)
    assert upload is not None
    return ok(_view(request, upload))


@routes.put("/uploads/{uploadId}")
async def put_bytes(request: web.Request) -> web.Response:
    """The signed uploadUrl: no API key needed, like a presigned object-store URL."""
    app = request.app
    upload_id = request.match_info["uploadId"]
    app[SIGNER].verify_upload(upload_id, request.query.get("expires", ""), request.query.get("sig", ""))
    upload = await app[DB].upload(upload_id)
    if upload is None:
        raise NotFound("upload not found: it expired or never existed; create a new one")
    if upload.state == "complete":
        raise Conflict("the upload is already complete")
    start, end = _content_range(request.headers.get("Content-Range"), upload.size_bytes)
    path = _part(app[SETTINGS].uploads_dir, upload_id)
    try:
        f = path.open("r+b")
    except FileNotFoundError:
        raise NotFound("upload not found: it expired; create a new one") from None
    with f:
        _lock(f)
        received = os.fstat(f.fileno()).st_size
        if start is None:  # the whole file: start again from its first byte
            start, end = 0, upload.size_bytes - 1
            f.truncate(0)
        elif start != received:
            raise Conflict(
                f"this range starts at byte {start} but {received} bytes are stored: resume from byte {received}",
                headers={"Upload-Offset": str(received)},
            )
        await _receive(request, f, start, end)
    return ok(_view(request, upload))


@routes.get("/api/open/v1/uploads/{uploadId}")
async def upload_state(request: web.Request) -> web.Response:
    user = await authenticate(request)
    return ok(_view(request, await _owned(request.app[DB], user, request.match_info["uploadId"])))


@routes.post("/api/open/v1/uploads/{uploadId}/complete")
async def complete(request: web.Request) -> web.Response:
    app = request.app
    db, settings = app[DB], app[SETTINGS]
    user = await authenticate(request)
    upload = await _owned(db, user, request.match_info["uploadId"])
    body = await read_json_object(request) if request.can_read_body else {}
    expected = body.get("sha256")
    if expected is not None and (not isinstance(expected, str) or not SHA256.fullmatch(expected.lower())):
        raise BadRequest("sha256 must be 64 hexadecimal characters")
    expected = expected.lower() if expected else None
    if upload.state == "complete":  # idempotent
        if expected and expected != upload.sha256:
            raise Unprocessable("sha256 does not match the completed upload")
        return ok(_view(request, upload))
    path = _part(settings.uploads_dir, upload.id)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return ok(_view(request, await _owned(db, user, upload.id)))  # completed by a concurrent request
    with f:
        _lock(f)
        received = os.fstat(f.fileno()).st_size
        if received != upload.size_bytes:
            raise Conflict(f"received {received} of {upload.size_bytes} bytes: PUT the rest first")
        digest = await asyncio.to_thread(_sha256, f)
        if expected and expected != digest:
            raise Unprocessable(f"sha256 does not match the uploaded bytes ({digest}); upload the file again")
        try:
            media = await probe(path, settings.ffprobe)
        except OrderFailed as exc:
            raise UnsupportedMediaType(exc.reason) from None
        path.rename(path.with_suffix(""))
    await db.complete_upload(upload.id, digest, media.duration, time.time() + settings.upload_ttl)
    return ok(_view(request, await _owned(db, user, upload.id)))


async def completed_upload(db: Database, user: User, upload_id: str) -> Upload:
    """An upload an order or a price may use: the caller's, and complete."""
    upload = await _owned(db, user, upload_id)
    if upload.state != "complete":
        raise Conflict(f"upload {upload_id} is not complete: POST /api/open/v1/uploads/{upload_id}/complete")
    return upload


async def _owned(db: Database, user: User, upload_id: str) -> Upload:
    upload = await db.upload(upload_id)
    if upload is None or upload.user_id != user.id:
        raise NotFound("upload not found")  # another user's upload looks like a missing one
    return upload


def _content_range(header: str | None, size: int) -> tuple[int | None, int]:
    if header is None:
        return None, size - 1
    match = CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise BadRequest("Content-Range must look like: bytes <first>-<last>/<sizeBytes>")
    first, last, total = (int(g) for g in match.groups())
    if total != size:
        raise BadRequest(f"Content-Range total {total} differs from the session's sizeBytes {size}")
    if first > last or last >= size:
        raise BadRequest(f"Content-Range {first}-{last} is not within 0-{size - 1}")
    return first, last


async def _receive(request: web.Request, f: BinaryIO, start: int, end: int) -> None:
    """Writes the body at ``start``; more bytes than the range allows is 413, and what came before stays."""
    allowed = end - start + 1
    f.seek(start)
    written = 0
    try:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            if written + len(chunk) > allowed:
                raise PayloadTooLarge(f"more bytes than the range or sizeBytes allows ({allowed})")
            try:
                await asyncio.to_thread(f.write, chunk)
            except OSError as exc:
                raise ServiceUnavailable(f"the server could not store the upload: {exc.strerror}") from None
            written += len(chunk)
            UPLOAD_BYTES.inc(len(chunk))
    finally:
        f.flush()  # whatever arrived before a broken connection counts: the client resumes after it


def _lock(f: BinaryIO) -> None:
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Conflict("another request is writing or completing this upload; retry when it ends") from None


def _sha256(f: BufferedReader) -> str:
    f.seek(0)
    return hashlib.file_digest(f, "sha256").hexdigest()


def _part(folder: Path, upload_id: str) -> Path:
    return folder / f"{upload_id}.part"


def _create_part(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _view(request: web.Request, upload: Upload) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    view: dict[str, Any] = {
        "uploadId": upload.id,
        "fileName": upload.file_name,
        "mimeType": upload.mime_type,
        "sizeBytes": upload.size_bytes,
        "state": upload.state,
        "expiresAt": int(upload.expires_at),
    }
    if upload.state == "open":
        try:
            view["received"] = _part(settings.uploads_dir, upload.id).stat().st_size
        except FileNotFoundError:
            view["received"] = 0
        view["uploadUrl"] = public_base(request) + request.app[SIGNER].upload_path(
            upload.id, upload.expires_at
        )
    else:
        view.update(received=upload.size_bytes, sha256=upload.sha256, durationSeconds=upload.duration)
    return view
