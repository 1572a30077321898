"""Upload sessions: created, completed once, and deleted when they expire."""

from __future__ import annotations

import time

from yinzi.store.backend import StorePart
from yinzi.store.models import Upload


class Uploads(StorePart):
    async def create_upload(
        self, upload_id: str, user_id: int, file_name: str, mime_type: str, size_bytes: int, expires_at: float
    ) -> None:
        await self._backend.write(
            "INSERT INTO uploads (id, user_id, file_name, mime_type, size_bytes, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (upload_id, user_id, file_name, mime_type, size_bytes, time.time(), expires_at),
        )

    async def upload(self, upload_id: str) -> Upload | None:
        row = await self._one(
            "SELECT id, user_id, file_name, mime_type, size_bytes, state, sha256, duration, expires_at "
            "FROM uploads WHERE id = ?",
            (upload_id,),
        )
        return Upload(*row) if row else None

    async def complete_upload(self, upload_id: str, sha256: str, duration: float, expires_at: float) -> None:
        await self._backend.write(
            "UPDATE uploads SET state = 'complete', sha256 = ?, duration = ?, completed_at = ?, expires_at = ? "
            "WHERE id = ? AND state = 'open'",
            (sha256, duration, time.time(), expires_at, upload_id),
        )

    async def expire_uploads(self, now: float) -> list[str]:
        """Deletes sessions past their expiry (open ones, and complete ones kept long enough); returns their
        ids, so their files go too."""
        rows = await self._backend.write_fetch(
            "DELETE FROM uploads WHERE expires_at < ? RETURNING id", (now,)
        )
        return [row["id"] for row in rows]
