"""Where files live: local disk (the default) or an S3-compatible store, behind one interface.

Every file has a key, the same on both: ``uploads/<uploadId>`` (a completed upload), ``results/<orderNo>/<name>``
(an order's result files), ``cache/...`` (work worth reusing across orders, such as separated stems). On local
disk a key is a path under the data directory, exactly the layout yinzi always had; in a bucket it is the
object's name under the URL's prefix.

- ``local.py``  :class:`LocalStorage`, the embedded default
- ``s3.py``     :class:`S3Storage` (``YINZI_STORAGE_URL=s3://bucket/prefix``): every blocking call of boto3 runs
                in a thread, never on the event loop

Besides the files themselves a store keeps the bytes of open upload sessions (:class:`UploadWriter`): on local
disk a growing ``.part`` file, in a bucket a multipart upload whose state the database holds, so that whichever
API process on whichever host takes a session's next request carries on where its bytes stopped.

A process writes nothing outside its store except its scratch space (``Settings.work_dir``), which it empties
when the work is done.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

from yinzi.errors import ServiceUnavailable
from yinzi.settings import Settings, SettingsError
from yinzi.store import Database, Upload

UPLOADS = "uploads"
RESULTS = "results"
CACHE = "cache"
# How long /healthz and `yinzi doctor` wait for the store to answer.
CHECK_TIMEOUT_S = 5.0


def upload_key(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}"


def results_prefix(order_no: str) -> str:
    return f"{RESULTS}/{order_no}"


def result_key(order_no: str, name: str) -> str:
    return f"{RESULTS}/{order_no}/{name}"


class StorageUnavailable(ServiceUnavailable):
    """The store did not answer, or refused a request for a reason other than a missing file."""


@dataclass(frozen=True)
class StoredFile:
    """A file being read from the store in chunks, without holding it in memory."""

    size: int
    chunks: AsyncIterator[bytes]


class UploadWriter(ABC):
    """One request's hold on an open upload session's bytes: no other request, in any process, writes or
    completes the session while it is held."""

    received: int  # bytes stored so far; a range must start here

    @abstractmethod
    async def restart(self) -> None:
        """Discards every byte stored: the client sends the whole file again."""

    @abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Appends ``chunk``; it counts in ``received`` at once."""

    @abstractmethod
    async def flush(self) -> None:
        """Makes every byte written so far durable: the request ends here, normally or broken off."""

    @abstractmethod
    async def media(self) -> Path | str:
        """All ``received`` bytes as one thing ffprobe reads: a file, or a short-lived URL."""

    @abstractmethod
    async def sha256(self) -> str: ...

    @abstractmethod
    async def commit(self) -> None:
        """The bytes become the completed upload, under :func:`upload_key`."""


class Storage(ABC):
    kind: str  # "local" or "s3"

    @property
    @abstractmethod
    def shown(self) -> str:
        """Where the files are, for messages."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The file that holds ``key`` on this machine, when the store is local disk; else None."""

    @abstractmethod
    async def put_file(self, key: str, source: Path) -> None: ...

    @abstractmethod
    async def publish(self, prefix: str, folder: Path) -> None:
        """The files of ``folder`` become ``prefix/<name>``, replacing whatever was there (an earlier attempt's
        files). ``folder`` is consumed."""

    @abstractmethod
    async def fetch(self, key: str, scratch: Path) -> Path:
        """A local file with ``key``'s bytes: the file itself on local disk, else a copy at ``scratch``.
        FileNotFoundError when there is no such file."""

    @abstractmethod
    async def read_bytes(self, key: str) -> bytes:
        """FileNotFoundError when there is no such file."""

    @abstractmethod
    async def open(self, key: str) -> StoredFile:
        """FileNotFoundError when there is no such file."""

    @abstractmethod
    async def presigned_url(self, key: str, ttl: int, download_name: str | None = None) -> str | None:
        """A URL that fetches ``key`` without credentials for ``ttl`` seconds; None where the store makes
        none (local disk: yinzi serves the file itself)."""

    @abstractmethod
    async def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix/``."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> None:
        """Deletes every file under ``prefix/``."""

    # ---- upload sessions ----

    @abstractmethod
    async def create_upload(self, upload_id: str) -> None: ...

    @abstractmethod
    def upload_writer(self, db: Database, upload: Upload) -> AbstractAsyncContextManager[UploadWriter]:
        """Holds an open session for one request: 409 while another holds it, 404 when its bytes are gone."""

    @abstractmethod
    def upload_received(self, upload: Upload) -> int:
        """Bytes an open session has stored, as every process sees them."""

    @abstractmethod
    async def discard_upload(self, upload_id: str) -> None:
        """Deletes an upload's bytes, complete or not."""

    # ---- health ----

    @abstractmethod
    async def check(self) -> str:
        """A line saying the store can be written; StorageUnavailable when it cannot."""

    async def close(self) -> None:
        return None


def open_storage(settings: Settings) -> Storage:
    """The store ``settings`` name: ``YINZI_STORAGE_URL``, or local disk under the data directory."""
    if not settings.storage_url:
        from yinzi.storage.local import LocalStorage

        return LocalStorage(settings)
    from yinzi.storage.s3 import S3Storage

    bucket, prefix = parse_s3_url(settings.storage_url)
    return S3Storage(settings, bucket, prefix)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix"); SettingsError for anything else."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket:
        raise SettingsError(f"YINZI_STORAGE_URL must look like s3://bucket/prefix, got {url!r}")
    return bucket, prefix.strip("/")
