"""The store's one entry point: :class:`Database`, every query yinzi runs, grouped by concern."""

from __future__ import annotations

from pathlib import Path

from yinzi.store.accounts import Accounts
from yinzi.store.backend import Backend, Params, Row
from yinzi.store.idempotency import IdempotencyKeys
from yinzi.store.orders import Orders
from yinzi.store.postgres import PostgresBackend
from yinzi.store.sqlite import SqliteBackend
from yinzi.store.uploads import Uploads
from yinzi.store.webhooks import Webhooks


class Database(Accounts, Orders, Uploads, Webhooks, IdempotencyKeys):
    """Users, keys and the ledger; orders; uploads; webhooks; idempotency keys, on one backend."""

    @classmethod
    async def open(cls, target: Path | str) -> Database:
        """Opens (creating or upgrading its schema) the database at ``target``: a SQLite file path, a
        ``sqlite:///path`` URL, or a ``postgresql://`` URL."""
        return cls(await open_backend(target))

    @property
    def backend(self) -> str:
        return self._backend.name

    async def close(self) -> None:
        await self._backend.close()

    async def ping(self) -> None:
        await self._one("SELECT 1")

    async def _all(self, sql: str, params: Params = ()) -> list[Row]:
        """Any read, for tests and benchmarks that check what the database holds."""
        return await self._backend.fetch(sql, params)


async def open_backend(target: Path | str) -> Backend:
    if isinstance(target, Path):
        return await SqliteBackend.open(target)
    scheme = target.partition(":")[0]
    if scheme == "sqlite":
        return await SqliteBackend.open(Path(target.removeprefix("sqlite:").removeprefix("//")))
    if scheme in POSTGRES_SCHEMES:
        return await PostgresBackend.open(target)
    raise ValueError(f"unsupported database URL {target!r}: use postgresql://... or sqlite:///path")


POSTGRES_SCHEMES = ("postgresql", "postgres")
