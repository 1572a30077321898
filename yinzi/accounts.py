"""API keys: made here, shown once, stored only as SHA-256 hashes, checked on every request.

A key is ``yz_`` + 32 random bytes in URL-safe base64. With that much entropy a plain SHA-256 is the right
hash: nothing to brute-force, and a lookup by hash costs one index probe. ``prefix`` (the first characters)
names a key in listings and revocation without revealing it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from aiohttp import web

from yinzi.db import Database, User
from yinzi.errors import Unauthorized

KEY_PREFIX = "yz_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8


@dataclass(frozen=True)
class NewKey:
    key: str  # the secret, shown once
    prefix: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(key=key, prefix=key[:PREFIX_LENGTH])


async def create_key(db: Database, user: User, label: str = "") -> NewKey:
    made = new_key()
    await db.add_key(user.id, made.prefix, hash_key(made.key), label)
    return made


def presented_key(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or, failing that, ``?apiKey=<key>``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("apiKey") or None


async def authenticate(db: Database, request: web.Request) -> User:
    key = presented_key(request)
    if key is None:
        raise Unauthorized("API Key is required")
    user = await db.user_for_key(hash_key(key))
    if user is None:
        raise Unauthorized("Invalid API Key")
    return user
