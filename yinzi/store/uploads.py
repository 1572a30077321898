"""Upload sessions: created, completed once, and deleted when they expire."""

from __future__ import annotations

import time

from yinzi.store.backend import StorePart
from yinzi.store.models import Upload


class Uploads(StorePart):
    async def create_upload(
        self,
        upload_id: str,
        user_id: int,
        file_name: str,
        mime_type: str,
        size_bytes: int,
        expires_at: float,
        source_url: str | None = None,
    ) -> None:
        await self._backend.write(
            "INSERT INTO uploads (id, user_id, file_name, mime_type, size_bytes, created_at, expires_at, "
            "source_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (upload_id, user_id, file_name, mime_type, size_bytes, time.time(), expires_at, source_url),
        )

    async def upload(self, upload_id: str) -> Upload | None:
        row = await self._one(
            "SELECT id, user_id, file_name, mime_type, size_bytes, state, sha256, duration, expires_at, "
            "source_url, failure, received, store_state FROM uploads WHERE id = ?",
            (upload_id,),
        )
        return Upload(*row) if row else None

    async def complete_upload(self, upload_id: str, sha256: str, duration: float, expires_at: float) -> None:
        await self._backend.write(
            "UPDATE uploads SET state = 'complete', sha256 = ?, duration = ?, completed_at = ?, expires_at = ? "
            "WHERE id = ? AND state = 'open'",
            (sha256, duration, time.time(), expires_at, upload_id),
        )

    async def set_upload_size(self, upload_id: str, size_bytes: int) -> None:
        """An ingested session's size, known once its bytes have arrived."""
        await self._backend.write(
            "UPDATE uploads SET size_bytes = ? WHERE id = ? AND state = 'open'", (size_bytes, upload_id)
        )

    async def fail_upload(self, upload_id: str, reason: str) -> None:
        await self._backend.write(
            "UPDATE uploads SET failure = ? WHERE id = ? AND state = 'open'", (reason, upload_id)
        )

    async def take_upload_writer(self, upload_id: str, writer: str, until: float) -> bool:
        """Makes ``writer`` the one request that may change an open upload's bytes until ``until`` (or until it
        lets go); False while another holds it. A writer that died holds it only until its time runs out."""
        changed = await self._backend.write(
            "UPDATE uploads SET writer = ?, writer_until = ? "
            "WHERE id = ? AND state = 'open' AND (writer IS NULL OR writer = ? OR writer_until < ?)",
            (writer, until, upload_id, writer, time.time()),
        )
        return changed == 1

    async def save_upload_state(
        self, upload_id: str, writer: str, received: int, store_state: str, until: float
    ) -> bool:
        """Records the bytes stored and the store's session state, and extends the writer's time; False when
        ``writer`` no longer holds the upload (its time ran out and another took it)."""
        changed = await self._backend.write(
            "UPDATE uploads SET received = ?, store_state = ?, writer_until = ? "
            "WHERE id = ? AND writer = ? AND state = 'open'",
            (received, store_state, until, upload_id, writer),
        )
        return changed == 1

    async def release_upload_writer(self, upload_id: str, writer: str) -> None:
        await self._backend.write(
            "UPDATE uploads SET writer = NULL, writer_until = NULL WHERE id = ? AND writer = ?",
            (upload_id, writer),
        )

    async def expire_uploads(self, now: float) -> list[str]:
        """Deletes sessions past their expiry (open ones, and complete ones kept long enough); returns their
        ids, so their files go too."""
        rows = await self._backend.write_fetch(
            "DELETE FROM uploads WHERE expires_at < ? RETURNING id", (now,)
        )
        return [row["id"] for row in rows]
