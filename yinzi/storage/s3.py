"""An S3-compatible object store (AWS S3, MinIO, Cloudflare R2, Aliyun OSS, Tencent COS):
``YINZI_STORAGE_URL=s3://bucket/prefix`` with ``YINZI_S3_ENDPOINT_URL`` and ``YINZI_S3_REGION``; credentials come
from boto3's usual places (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role).

boto3 blocks, so every call runs in a thread (``asyncio.to_thread``); its client is thread-safe and shared.

Upload sessions are S3 multipart uploads. S3 wants every part but the last to be at least 5 MiB, while a
resumable client may stop after any byte, so bytes collect in a scratch file (one part at most, unlinked from
the start so it never outlives its process) and go up as a part each time it fills. When a request ends with a
partial part, that remainder goes to the store as a small object of its own (``uploads/<id>.tail``) and the next
request, in whichever process, starts from it. The session's state (multipart upload id, the parts' ETags, the
tail's length) and its byte count live in the database, under a writer lease that keeps two requests from
writing one session at once, from any host. A whole upload smaller than a part is one plain PUT.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import mimetypes
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from yinzi.errors import Conflict, NotFound
from yinzi.settings import Settings
from yinzi.storage import CHECK_TIMEOUT_S, Storage, StorageUnavailable, StoredFile, UploadWriter, upload_key
from yinzi.store import Database, Upload

log = logging.getLogger(__name__)

# S3's smallest part but the last is 5 MiB; bigger parts mean fewer requests for the same bytes.
UPLOAD_PART_BYTES = 8 * 1024**2
# How long a request holds an upload session without storing a part before another request may take it:
# a process that died mid-request keeps its session from the client for at most this long.
UPLOAD_WRITER_LEASE_S = 120.0
# The URL ffprobe reads a completed upload through needs to live only as long as the probe.
PROBE_URL_TTL_S = 600
READ_CHUNK_BYTES = 1024**2
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 3
# Threads boto3 may hold connections for at once: the default thread pool's size is well below this.
MAX_POOL_CONNECTIONS = 32
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})

T = TypeVar("T")


class S3Storage(Storage):
    kind = "s3"

    def __init__(self, settings: Settings, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self._endpoint = settings.s3_endpoint_url
        self._scratch = settings.work_dir
        # Path-style addressing works on every S3-compatible store; AWS itself picks its own style.
        style = "path" if settings.s3_endpoint_url else "auto"
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": style},
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                max_pool_connections=MAX_POOL_CONNECTIONS,
            ),
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)

    @property
    def shown(self) -> str:
        where = f" at {self._endpoint}" if self._endpoint else ""
        return f"s3://{self.bucket}/{self._prefix}{where}"

    def local_path(self, key: str) -> None:
        return None

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _call(self, operation: Callable[..., T], **params: Any) -> T:
        return await asyncio.to_thread(_translated, operation, **params)

    async def put_file(self, key: str, source: Path) -> None:
        kind = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        await self._call(
            self._client.upload_file,
            Filename=str(source),
            Bucket=self.bucket,
            Key=self._key(key),
            ExtraArgs={"ContentType": kind},
        )

    async def publish(self, prefix: str, folder: Path) -> None:
        await self.delete_prefix(prefix)
        for path in sorted(folder.iterdir()):
            await self.put_file(f"{prefix}/{path.name}", path)

    async def fetch(self, key: str, scratch: Path) -> Path:
        scratch.parent.mkdir(parents=True, exist_ok=True)
        await self._call(
            self._client.download_file, Bucket=self.bucket, Key=self._key(key), Filename=str(scratch)
        )
        return scratch

    async def read_bytes(self, key: str) -> bytes:
        def read() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with body:
                data: bytes = body.read()
                return data

        return await self._call(read)

    async def open(self, key: str) -> StoredFile:
        answer = await self._call(self._client.get_object, Bucket=self.bucket, Key=self._key(key))
        return StoredFile(int(answer["ContentLength"]), _chunks(answer["Body"]))

    async def presigned_url(self, key: str, ttl: int, download_name: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if download_name is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        url: str = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=max(1, ttl))
        return url  # signed locally: no request, no thread

    async def keys(self, prefix: str) -> list[str]:
        def listing() -> list[str]:
            found: list[str] = []
            pages = self._client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._key(prefix) + "/"):
                found += [item["Key"][len(self._prefix) :] for item in page.get("Contents", [])]
            return found

        return await self._call(listing)

    async def delete_prefix(self, prefix: str) -> None:
        found = await self.keys(prefix)
        for start in range(0, len(found), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": self._key(key)} for key in found[start : start + 1000]]
            await self._call(self._client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch})

    async def _delete(self, key: str) -> None:
        await self._call(self._client.delete_object, Bucket=self.bucket, Key=self._key(key))

    # ---- upload sessions ----

    async def create_upload(self, upload_id: str) -> None:
        return None  # the first part (or the one PUT of a small file) starts it

    @asynccontextmanager
    async def upload_writer(self, db: Database, upload: Upload) -> AsyncIterator[UploadWriter]:
        writer = secrets.token_hex(8)
        if not await db.take_upload_writer(upload.id, writer, time.time() + UPLOAD_WRITER_LEASE_S):
            current = await db.upload(upload.id)
            if current is None:
                raise NotFound("upload not found: it expired; create a new one")
            raise Conflict("another request is writing or completing this upload; retry when it ends")
        try:
            current = await db.upload(upload.id)
            if current is None:
                raise NotFound("upload not found: it expired; create a new one")
            with tempfile.TemporaryFile(dir=_scratch(self._scratch)) as buffer:
                yield _MultipartWriter(self, db, current, writer, buffer)
        finally:
            await db.release_upload_writer(upload.id, writer)

    def upload_received(self, upload: Upload) -> int:
        return upload.received

    async def discard_upload(self, upload_id: str) -> None:
        key = upload_key(upload_id)
        found = await self._call(
            self._client.list_multipart_uploads, Bucket=self.bucket, Prefix=self._key(key)
        )
        for started in found.get("Uploads", []):
            if started["Key"] == self._key(key):
                await self._abort(key, started["UploadId"])
        await self._delete(key)
        await self._delete(key + TAIL)

    async def _abort(self, key: str, multipart: str) -> None:
        try:
            await self._call(
                self._client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=multipart,
            )
        except FileNotFoundError:
            pass  # already completed or aborted

    async def check(self) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await self._call(self._client.head_bucket, Bucket=self.bucket)
        except TimeoutError:
            raise StorageUnavailable(f"{self.shown}: no answer within {CHECK_TIMEOUT_S:g} s") from None
        except FileNotFoundError:
            raise StorageUnavailable(f"{self.shown}: no such bucket") from None
        except StorageUnavailable as exc:
            raise StorageUnavailable(f"{self.shown}: {exc.msg}") from None
        return f"{self.shown}: bucket reachable"


TAIL = ".tail"
LEASE_LOST = "this request lost its hold on the upload (it stalled too long); resume from the offset stored"


@dataclass
class _Session:
    """What the database keeps of an open upload's multipart upload (``uploads.store_state``)."""

    multipart: str | None = None
    etags: list[str] = field(default_factory=list)  # part n + 1 holds bytes [n * part, (n + 1) * part)
    tail: int = 0  # bytes in the tail object, after the parts
    whole: bool = False  # the object uploads/<id> holds every byte (assembled, or one plain PUT)

    @classmethod
    def load(cls, raw: str | None) -> _Session:
        return cls(**json.loads(raw)) if raw else cls()


class _MultipartWriter(UploadWriter):
    def __init__(self, store: S3Storage, db: Database, upload: Upload, writer: str, buffer: BinaryIO) -> None:
        self._store = store
        self._db = db
        self._upload = upload
        self._writer = writer
        self._buffer = buffer
        self._buffered = 0  # bytes in the buffer, which begin at len(etags) * part
        self._session = _Session.load(upload.store_state)
        self._tail_loaded = False
        self._key = upload_key(upload.id)
        self._renewed = time.monotonic()
        self.received = upload.received

    async def restart(self) -> None:
        session = self._session
        if session.multipart is not None:
            await self._store._abort(self._key, session.multipart)
        if session.whole:
            await self._store._delete(self._key)
        self._session = _Session()
        self._buffer.seek(0)
        self._buffer.truncate(0)
        self._buffered = 0
        self._tail_loaded = True  # nothing of the old tail counts
        self.received = 0
        await self._save()

    async def write(self, chunk: bytes) -> None:
        if not self._tail_loaded:
            await self._load_tail()
        if time.monotonic() - self._renewed > UPLOAD_WRITER_LEASE_S / 4:  # a slow client keeps its session
            if not await self._db.take_upload_writer(
                self._upload.id, self._writer, time.time() + UPLOAD_WRITER_LEASE_S
            ):
                raise Conflict(LEASE_LOST)
            self._renewed = time.monotonic()
        while chunk:
            if (
                self._buffered == UPLOAD_PART_BYTES
            ):  # (a tail can be a whole part when a part failed to go up)
                await self._send_part()
            room = UPLOAD_PART_BYTES - self._buffered
            head, chunk = chunk[:room], chunk[room:]
            await asyncio.to_thread(self._buffer.write, head)
            self._buffered += len(head)
            self.received += len(head)
        if self._buffered == UPLOAD_PART_BYTES:
            await self._send_part()

    async def flush(self) -> None:
        if self._buffered == 0:
            return
        if self.received == self._upload.size_bytes:
            if not self._session.etags and self._session.multipart is None:
                await self._put_whole()
            else:
                await self._send_part()
            return
        self._buffer.seek(0)
        await self._store._call(
            self._store._client.put_object,
            Bucket=self._store.bucket,
            Key=self._store._key(self._key + TAIL),
            Body=self._buffer,
            ContentLength=self._buffered,
        )
        self._session.tail = self._buffered
        await self._save()

    async def _load_tail(self) -> None:
        """A session that ended with part of a part stored that part as the tail: it heads the buffer."""
        self._tail_loaded = True
        if self._session.tail == 0:
            return

        def load() -> None:
            answer = self._store._client.get_object(
                Bucket=self._store.bucket, Key=self._store._key(self._key + TAIL)
            )
            with answer["Body"] as body:
                while data := body.read(READ_CHUNK_BYTES):
                    self._buffer.write(data)

        await self._store._call(load)
        self._buffered = self._buffer.tell()
        if self._buffered != self._session.tail:
            raise StorageUnavailable("the store lost part of this upload; upload the file again")

    async def _put_whole(self) -> None:
        self._buffer.seek(0)
        await self._store._call(
            self._store._client.put_object,
            Bucket=self._store.bucket,
            Key=self._store._key(self._key),
            Body=self._buffer,
            ContentLength=self._buffered,
        )
        had_tail = self._session.tail
        self._session.whole = True
        self._session.tail = 0
        self._buffered = 0
        await self._save()
        if had_tail:  # its bytes headed the buffer, so they are in the object now
            await self._store._delete(self._key + TAIL)

    async def _send_part(self) -> None:
        store, session = self._store, self._session
        if session.multipart is None:
            started = await store._call(
                store._client.create_multipart_upload, Bucket=store.bucket, Key=store._key(self._key)
            )
            session.multipart = started["UploadId"]
        self._buffer.seek(0)
        answer = await store._call(
            store._client.upload_part,
            Bucket=store.bucket,
            Key=store._key(self._key),
            UploadId=session.multipart,
            PartNumber=len(session.etags) + 1,
            Body=self._buffer,
            ContentLength=self._buffered,
        )
        session.etags.append(answer["ETag"])
        had_tail = session.tail
        session.tail = 0
        self._buffer.seek(0)
        self._buffer.truncate(0)
        self._buffered = 0
        await self._save()
        if had_tail:  # its bytes headed this part
            await store._delete(self._key + TAIL)

    async def _save(self) -> None:
        """Records the bytes stored and extends the lease; a writer whose lease another request took stops
        here. Called only when nothing is buffered that the store does not hold (as a part or the tail)."""
        saved = await self._db.save_upload_state(
            self._upload.id,
            self._writer,
            self.received,
            json.dumps(asdict(self._session)),
            time.time() + UPLOAD_WRITER_LEASE_S,
        )
        if not saved:
            raise Conflict(LEASE_LOST)
        self._renewed = time.monotonic()

    async def media(self) -> str:
        session, store = self._session, self._store
        if not session.whole:
            parts = [{"PartNumber": n + 1, "ETag": etag} for n, etag in enumerate(session.etags)]
            await store._call(
                store._client.complete_multipart_upload,
                Bucket=store.bucket,
                Key=store._key(self._key),
                UploadId=session.multipart,
                MultipartUpload={"Parts": parts},
            )
            self._session = _Session(whole=True)
            await self._save()
        return await store.presigned_url(self._key, PROBE_URL_TTL_S)

    async def sha256(self) -> str:
        def digest() -> str:
            answer = self._store._client.get_object(
                Bucket=self._store.bucket, Key=self._store._key(self._key)
            )
            hasher = hashlib.sha256()
            with answer["Body"] as body:
                while data := body.read(READ_CHUNK_BYTES):
                    hasher.update(data)
            return hasher.hexdigest()

        return await self._store._call(digest)

    async def commit(self) -> None:
        return None  # media() put every byte in place


def _translated(operation: Callable[..., T], /, **params: Any) -> T:
    """Runs one boto3 call: a missing object becomes FileNotFoundError, any other failure StorageUnavailable."""
    try:
        return operation(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in NOT_FOUND_CODES:
            raise FileNotFoundError(code) from None
        raise StorageUnavailable(
            f"the file store refused a request: {code} {error.get('Message', '')}".strip()
        ) from None
    except (BotoCoreError, Boto3Error) as exc:
        raise StorageUnavailable(f"the file store is unavailable: {exc}") from None


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(body.read, READ_CHUNK_BYTES):
            yield chunk
    finally:
        body.close()


def _scratch(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
