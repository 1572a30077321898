"""Files on this machine's disk, under the data directory: the embedded default.

An open upload's bytes stream into ``uploads/<id>.part``; the file's size is the number of bytes received, so
a broken connection resumes exactly where its bytes stopped, in whichever process (on this machine) takes the
next request. A lock on the file keeps two requests from writing it at once; the kernel lets go of it when
its process dies.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from io import BufferedRandom, BufferedReader
from pathlib import Path

from yinzi.errors import Conflict, NotFound, ServiceUnavailable
from yinzi.settings import Settings
from yinzi.storage import Storage, StoredFile, UploadWriter, upload_key
from yinzi.store import Database, Upload

READ_CHUNK_BYTES = 256 * 1024


class LocalStorage(Storage):
    kind = "local"

    def __init__(self, settings: Settings) -> None:
        self._root = settings.data_dir

    @property
    def shown(self) -> str:
        return f"local disk, {self._root.resolve()}"

    def local_path(self, key: str) -> Path:
        return self._root / key

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(_copy, source, self.local_path(key))

    async def publish(self, prefix: str, folder: Path) -> None:
        await asyncio.to_thread(_replace_dir, folder, self.local_path(prefix))

    async def fetch(self, key: str, scratch: Path) -> Path:
        path = self.local_path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path

    async def read_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self.local_path(key).read_bytes)

    async def open(self, key: str) -> StoredFile:
        f = await asyncio.to_thread(self.local_path(key).open, "rb")
        return StoredFile(os.fstat(f.fileno()).st_size, _chunks(f))

    async def presigned_url(self, key: str, ttl: int, download_name: str | None = None) -> None:
        return None

    async def keys(self, prefix: str) -> list[str]:
        root = self.local_path(prefix)
        found = await asyncio.to_thread(lambda: [p for p in root.rglob("*") if p.is_file()])
        return [str(p.relative_to(self._root)) for p in found]

    async def delete_prefix(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.local_path(prefix), True)

    # ---- upload sessions ----

    def _part(self, upload_id: str) -> Path:
        return self.local_path(upload_key(upload_id) + ".part")

    async def create_upload(self, upload_id: str) -> None:
        await asyncio.to_thread(_touch, self._part(upload_id))

    @asynccontextmanager
    async def upload_writer(self, db: Database, upload: Upload) -> AsyncIterator[UploadWriter]:
        try:
            f = self._part(upload.id).open("r+b")
        except FileNotFoundError:
            raise NotFound("upload not found: it expired; create a new one") from None
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict(
                    "another request is writing or completing this upload; retry when it ends"
                ) from None
            yield _PartWriter(f, self._part(upload.id), self.local_path(upload_key(upload.id)))

    def upload_received(self, upload: Upload) -> int:
        try:
            return self._part(upload.id).stat().st_size
        except FileNotFoundError:
            return 0

    async def discard_upload(self, upload_id: str) -> None:
        for path in (self.local_path(upload_key(upload_id)), self._part(upload_id)):
            path.unlink(missing_ok=True)

    async def check(self) -> str:
        def probe() -> None:
            self._root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._root):
                pass

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise ServiceUnavailable(f"{self.shown}: {exc.strerror or exc}") from None
        return self.shown


class _PartWriter(UploadWriter):
    def __init__(self, f: BufferedRandom, part: Path, final: Path) -> None:
        self._f = f
        self._part = part
        self._final = final
        self.received = os.fstat(f.fileno()).st_size
        f.seek(self.received)

    async def restart(self) -> None:
        self._f.seek(0)
        self._f.truncate(0)
        self.received = 0

    async def write(self, chunk: bytes) -> None:
        try:
            await asyncio.to_thread(self._f.write, chunk)
        except OSError as exc:
            raise ServiceUnavailable(f"the server could not store the upload: {exc.strerror}") from None
        self.received += len(chunk)

    async def flush(self) -> None:
        self._f.flush()

    async def media(self) -> Path:
        return self._part

    async def sha256(self) -> str:
        def digest() -> str:
            self._f.seek(0)
            return hashlib.file_digest(self._f, "sha256").hexdigest()

        return await asyncio.to_thread(digest)

    async def commit(self) -> None:
        self._part.rename(self._final)


async def _chunks(f: BufferedReader) -> AsyncIterator[bytes]:
    with f:
        while chunk := await asyncio.to_thread(f.read, READ_CHUNK_BYTES):
            yield chunk


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _replace_dir(folder: Path, target: Path) -> None:
    """One rename, replacing what an earlier, killed attempt left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    folder.rename(target)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
