"""Resumable uploads, for every API: a session, its bytes (whole or in ranges), its state, and its completion.

Bytes go to the store as they arrive (yinzi/storage: a growing file on local disk, a multipart upload in a
bucket): memory does not grow with the file. The store counts the bytes received where every API process
sees them, so a broken connection resumes exactly where its bytes stopped, in whichever process takes the
next request, and one request at a time holds a session's bytes. A session may also be filled by yinzi itself
from a URL (:meth:`UploadDesk.ingest`), in a background task of the API process, or from a file a request
received whole (:meth:`UploadDesk.adopt`); how an ingest went is kept in the database, so any process reads the
same state. No HTTP here: the APIs (yinzi/routes/uploads.py and the dialects) check their own fields and call
these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from yarl import URL

from workers.probe import probe
from yinzi.errors import (
    BadRequest,
    Conflict,
    NotFound,
    OrderFailed,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    YinziError,
)
from yinzi.fetch import human_bytes
from yinzi.links import LinkAnalyzer
from yinzi.metrics import UPLOAD_BYTES
from yinzi.settings import Settings
from yinzi.storage import Storage, UploadWriter, open_storage
from yinzi.store import Database, Upload, User

log = logging.getLogger(__name__)

MEDIA_TYPES = ("audio/", "video/")
MAX_FILE_NAME = 255
# What sessions accept, as JSON Schema patterns for the APIs' declarations (this module checks the same).
PLAIN_NAME = r"^(?!\.\.?$)[^/\\\x00]+$"  # a file name without folders
MEDIA_TYPE = r"^([Aa][Uu][Dd][Ii][Oo]|[Vv][Ii][Dd][Ee][Oo])/"
INCOMING = "incoming"  # the folder of files still arriving in a request (scratch_path)
SHA256_HEX = r"^[0-9a-fA-F]{64}$"  # a completed file's checksum, as clients send it
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
# An ingest still unfinished this long after its fetch's own time limit died with its process (a restart).
INGEST_GRACE_S = 300.0
INTERRUPTED = "fetching the URL was interrupted (the server stopped); ingest it again"
INGEST_FILE_NAME = "ingest"  # an ingested session's name when its URL's path ends in none


FILE_CHUNK = 1024 * 1024  # a received file is stored in pieces of this size


class UploadDesk:
    def __init__(self, settings: Settings, db: Database, storage: Storage | None = None) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage if storage is not None else open_storage(settings)
        self._ingests: set[asyncio.Task[None]] = set()

    async def open(self, user: User, file_name: str, mime_type: str, size: int) -> Upload:
        """A new session for ``size`` bytes of audio or video (415 for other types, 413 past the limit)."""
        if not mime_type.lower().startswith(MEDIA_TYPES):
            raise UnsupportedMediaType(f"mimeType {mime_type} is not audio or video")
        return await self._session(user, file_name, mime_type, size)

    async def _session(
        self, user: User, file_name: str, mime_type: str, size: int, source_url: str | None = None
    ) -> Upload:
        if size > self.settings.max_download_bytes:
            raise PayloadTooLarge(
                f"file too large: the limit is {human_bytes(self.settings.max_download_bytes)}"
            )
        upload_id = "up_" + secrets.token_urlsafe(18)
        expires_at = time.time() + self.settings.upload_ttl
        await self.storage.create_upload(upload_id)
        await self.db.create_upload(
            upload_id, user.id, file_name[:MAX_FILE_NAME], mime_type.lower(), size, expires_at,
            source_url=source_url,
        )  # fmt: skip
        return await self._reread(upload_id)

    async def adopt(self, user: User, path: Path, file_name: str, mime_type: str) -> Upload:
        """A file a request received whole (a multipart form's file part, at :meth:`scratch_path`) as a
        completed upload, checked like any upload (size, media; 413, 415). The file is gone afterwards."""
        upload: Upload | None = None
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
            upload = await self._session(user, file_name, mime_type, size)
            await self._store_file(upload, path)
            return await self._complete(upload, None)
        except BaseException:
            if upload is not None:  # a refused file goes at once; its session, left open, expires
                await self.storage.discard_upload(upload.id)
            raise
        finally:
            path.unlink(missing_ok=True)

    def scratch_path(self) -> Path:
        """Where a request may stream a file it will hand to :meth:`adopt`. Left behind by a process that died,
        it is deleted after ``upload_ttl``."""
        folder = self.settings.uploads_dir / INCOMING
        folder.mkdir(parents=True, exist_ok=True)
        return folder / secrets.token_urlsafe(12)

    def clear_stale_scratch(self) -> None:
        """Deletes scratch files older than ``upload_ttl``: what a process that died mid-request left."""
        cutoff = time.time() - self.settings.upload_ttl
        for path in (self.settings.uploads_dir / INCOMING).glob("*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    async def write(self, upload_id: str, content_range: str | None, chunks: AsyncIterator[bytes]) -> Upload:
        """Stores the bytes of ``chunks`` at the range's start (no range: the whole file, from byte 0)."""
        upload = await self.db.upload(upload_id)
        if upload is None:
            raise NotFound("upload not found: it expired or never existed; create a new one")
        if upload.state == "complete":
            raise Conflict("the upload is already complete")
        start, end = _content_range(content_range, upload.size_bytes)
        # A range that cannot fit is refused before the session is taken, so it never holds up one that can.
        if start is not None:
            _check_start(start, self.storage.upload_received(upload))
        async with self.storage.upload_writer(self.db, upload) as writer:
            if start is None:  # the whole file: start again from its first byte
                start, end = 0, upload.size_bytes - 1
                await writer.restart()
            else:
                _check_start(start, writer.received)
            await _receive(chunks, writer, end - start + 1)
        return await self.db.upload(upload_id) or upload

    async def owned(self, user: User, upload_id: str) -> Upload:
        upload = await self.db.upload(upload_id)
        if upload is None or upload.user_id != user.id:
            raise NotFound("upload not found")  # another user's upload looks like a missing one
        return upload

    async def completed(self, user: User, upload_id: str) -> Upload:
        """An upload an order or a price may use: the caller's, and complete."""
        upload = await self.owned(user, upload_id)
        if upload.state != "complete":
            raise Conflict(f"upload {upload_id} is not complete: complete it first")
        return upload

    def received(self, upload: Upload) -> int:
        if upload.state == "complete":
            return upload.size_bytes
        return self.storage.upload_received(upload)

    async def complete(self, user: User, upload_id: str, sha256: str | None) -> Upload:
        """Checks size, hash and media, then the upload may be used. Idempotent."""
        upload = await self.owned(user, upload_id)
        if upload.state == "complete":
            if sha256 and sha256 != upload.sha256:
                raise Unprocessable("sha256 does not match the completed upload")
            return upload
        if upload.source_url is not None:  # an ingest completes itself
            failure = self.failure(upload)
            raise Conflict(
                f"the upload could not be fetched from its URL: {failure}"
                if failure
                else "the upload is still being fetched from its URL; it completes itself"
            )
        return await self._complete(upload, sha256)

    async def _complete(self, upload: Upload, sha256: str | None) -> Upload:
        try:
            async with self.storage.upload_writer(self.db, upload) as writer:
                if writer.received != upload.size_bytes:
                    raise Conflict(
                        f"received {writer.received} of {upload.size_bytes} bytes: PUT the rest first"
                    )
                media_at = await writer.media()
                digest = await writer.sha256()
                if sha256 and sha256 != digest:
                    raise Unprocessable(
                        f"sha256 does not match the uploaded bytes ({digest}); upload the file again"
                    )
                try:
                    media = await probe(media_at, self.settings.ffprobe)
                except OrderFailed as exc:
                    raise UnsupportedMediaType(exc.reason) from None
                await writer.commit()
        except (NotFound, Conflict):
            again = await self._reread(upload.id)
            if again.state == "complete":  # completed by a concurrent request
                return again
            raise
        await self.db.complete_upload(
            upload.id, digest, media.duration, time.time() + self.settings.upload_ttl
        )
        return await self._reread(upload.id)

    async def _store_file(self, upload: Upload, path: Path) -> None:
        async with self.storage.upload_writer(self.db, upload) as writer:
            await writer.restart()
            await _receive(_file_chunks(path), writer, upload.size_bytes)

    async def _reread(self, upload_id: str) -> Upload:
        upload = await self.db.upload(upload_id)
        if upload is None:
            raise NotFound("upload not found")
        return upload

    async def ingest(self, user: User, url: str, links: LinkAnalyzer, *, max_bytes: int) -> Upload:
        """A session yinzi fills itself from ``url`` (checked by the caller against the address policy), in
        the background: a share link is resolved to its media first, the download obeys the address policy
        on every hop, and the session completes as if its bytes had been PUT. A failure is kept with the
        session (:meth:`failure`)."""
        name = PurePosixPath(URL(url).path).name[:MAX_FILE_NAME] or INGEST_FILE_NAME
        mime_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        upload = await self._session(user, name, mime_type, 0, source_url=url)
        task = asyncio.create_task(
            self._fill(upload.id, url, links, max_bytes), name=f"yinzi-ingest-{upload.id}"
        )
        self._ingests.add(task)
        task.add_done_callback(self._ingests.discard)
        return upload

    async def _fill(self, upload_id: str, url: str, links: LinkAnalyzer, max_bytes: int) -> None:
        scratch = self.scratch_path()
        try:
            await links.download(url, scratch, max_bytes)
            size = (await asyncio.to_thread(scratch.stat)).st_size
            await self.db.set_upload_size(upload_id, size)
            upload = await self._reread(upload_id)
            await self._store_file(upload, scratch)
            await self._complete(upload, None)
            return
        except asyncio.CancelledError:  # this process is stopping: say so now rather than after the grace
            await self.db.fail_upload(upload_id, INTERRUPTED)
            raise
        except OrderFailed as exc:  # the download's reasons are worded for an order's pathKey
            reason = exc.reason.replace("pathKey", "the URL")
        except YinziError as exc:
            reason = exc.msg
        except Exception:
            log.exception("ingest of %s failed", upload_id)
            reason = "internal error while fetching the URL"
        finally:
            scratch.unlink(missing_ok=True)
        await self.db.fail_upload(upload_id, reason)

    def failure(self, upload: Upload) -> str | None:
        """Why an ingested session will not complete; None while it may (and for other sessions)."""
        if upload.state == "complete" or upload.source_url is None:
            return None
        if upload.failure is not None:
            return upload.failure
        started = upload.expires_at - self.settings.upload_ttl
        if time.time() > started + self.settings.fetch_total_timeout + INGEST_GRACE_S:
            return INTERRUPTED
        return None

    async def close(self) -> None:
        """Stops the ingests of this process (their sessions end as interrupted, see :meth:`failure`)."""
        for task in self._ingests:
            task.cancel()
        await asyncio.gather(*self._ingests, return_exceptions=True)


def _check_start(start: int, received: int) -> None:
    if start != received:
        raise Conflict(
            f"this range starts at byte {start} but {received} bytes are stored: resume from byte {received}",
            headers={"Upload-Offset": str(received)},
        )


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


async def _receive(chunks: AsyncIterator[bytes], writer: UploadWriter, allowed: int) -> None:
    """Stores the chunks; more bytes than the range allows is 413, and what came before stays."""
    written = 0
    try:
        async for chunk in chunks:
            if written + len(chunk) > allowed:
                raise PayloadTooLarge(f"more bytes than the range or sizeBytes allows ({allowed})")
            await writer.write(chunk)
            written += len(chunk)
            UPLOAD_BYTES.inc(len(chunk))
    finally:
        # Whatever arrived before a broken connection counts: the client resumes after it. Shielded, so a
        # cancelled request still stores what it took.
        await asyncio.shield(writer.flush())


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, FILE_CHUNK):
            yield chunk
