"""What the store hands out: frozen values, each read from one row; nothing here knows SQL or a driver."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from yinzi.store.backend import Row

TERMINAL = ("finish", "failed", "timeout")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    balance: int


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the user and the key they used (its rate limit; None is the default)."""

    user: User
    key_id: int
    rate_limit: int | None


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_name: str
    prefix: str
    label: str
    created_at: float
    revoked_at: float | None
    signed: bool
    rate_limit: int | None


@dataclass(frozen=True)
class Upload:
    id: str
    user_id: int
    file_name: str
    mime_type: str
    size_bytes: int
    state: str
    sha256: str | None
    duration: float | None
    expires_at: float
    source_url: str | None = None  # set: yinzi fills the session itself from this URL (ingest)
    failure: str | None = None  # why filling it from source_url failed
    # Bytes stored so far, as an object store's session counts them (local disk: see yinzi/storage/local.py).
    received: int = 0
    store_state: str | None = None  # the object store's session state (yinzi/storage/s3.py), opaque here


@dataclass(frozen=True)
class WebhookDelivery:
    id: int
    order_no: str
    user_id: int
    url: str
    body: str
    attempts: int


@dataclass(frozen=True)
class OrderRef:
    """Another API's id for an order, and what that API noted beside it when the order was made."""

    api: str
    ref: str
    note: dict[str, Any]


@dataclass(frozen=True)
class IdempotentRequest:
    body_hash: str
    status: int | None  # None: the first request is still being handled
    response: str | None


@dataclass(frozen=True)
class ResultFile:
    name: str
    business: str


@dataclass(frozen=True)
class Order:
    id: int
    order_no: str
    user_id: int
    order_type: str
    stuff: dict[str, Any]
    status: str
    pay_status: str
    progress: int
    cost: int
    duration: float | None
    reason: str | None
    results: tuple[ResultFile, ...]
    attempts: int
    created_at: float
    finished_at: float | None
    priority: str
    callback_url: str | None
    expired: bool
    api: str | None  # the API that made it; None: the native one
    started_at: float | None = None  # first taken up by a worker
    paid_at: float | None = None  # charged

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: Row) -> Order:
        return cls(
            id=row["id"],
            order_no=row["order_no"],
            user_id=row["user_id"],
            order_type=row["order_type"],
            stuff=json.loads(row["stuff"]),
            status=row["status"],
            pay_status=row["pay_status"],
            progress=row["progress"],
            cost=row["cost"],
            duration=row["duration"],
            reason=row["reason"],
            results=tuple(ResultFile(**r) for r in json.loads(row["results"])),
            attempts=row["attempts"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            priority=row["priority"],
            callback_url=row["callback_url"],
            expired=row["expired_at"] is not None,
            api=row["api"],
            started_at=row["started_at"],
            paid_at=row["paid_at"],
        )
