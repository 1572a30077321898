"""API keys and who is calling: keys made here, shown once, stored only as SHA-256 hashes.

A Bearer key is ``yz_`` + 32 random bytes in URL-safe base64. With that much entropy a plain SHA-256 is the
right hash: nothing to brute-force, and a lookup by hash costs one index probe. ``prefix`` (the first
characters) names a key in listings and revocation without revealing it.

A signed pair (``yinzi keys create --signed``) is a public key ``yzpk_...`` and its secret ``yzsk_...``,
derived from the public key with the service key (see signing.py). Requests then carry ``X-Public-Key``,
``X-Timestamp`` (Unix seconds, within 5 minutes of ours) and ``X-Signature``.

Every authenticated request counts against its key's requests per minute (ratelimit.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from yinzi.appkeys import DB, LIMITER, SETTINGS, SIGNER
from yinzi.errors import TooManyRequests, Unauthorized
from yinzi.ratelimit import QUOTA
from yinzi.signing import Signer
from yinzi.store import Caller, Database, User

KEY_PREFIX = "yz_"
PUBLIC_KEY_PREFIX = "yzpk_"
PREFIX_LENGTH = 11
SIGNATURE_WINDOW_S = 300
# The caller, once known: an API that authenticates before reading the request (yinzi/declare.py) and its
# handler asking again get the same user, and the request is counted against the rate limit once.
CALLER = web.RequestKey("caller", User)


@dataclass(frozen=True)
class NewKey:
    key: str  # the Bearer key, or the public key of a signed pair
    prefix: str
    secret: str | None = None  # a signed pair's secret, shown once


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(
    db: Database,
    user: User,
    label: str = "",
    *,
    signer: Signer | None = None,
    rate_limit: int | None = None,
) -> NewKey:
    """A Bearer key, or with ``signer`` a signed-request pair."""
    if signer is None:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        made = NewKey(key=key, prefix=key[:PREFIX_LENGTH])
    else:
        public = PUBLIC_KEY_PREFIX + secrets.token_urlsafe(18)
        made = NewKey(key=public, prefix=public[:PREFIX_LENGTH], secret=signer.pair_secret(public))
    await db.add_key(
        user.id, made.prefix, hash_key(made.key), label, signed=signer is not None, rate_limit=rate_limit
    )
    return made


def presented_key(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or, failing that, ``?apiKey=<key>``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("apiKey") or None


async def authenticate(request: web.Request) -> User:
    """The calling user, by Bearer key, ``?apiKey=`` or signed headers; counts the request against the key's
    rate limit (429 past it). Asked again on the same request, the same user, counted once."""
    if CALLER in request:
        return request[CALLER]
    app = request.app
    if "X-Public-Key" in request.headers:
        caller = await _signed_caller(request, app[DB], app[SIGNER])
    else:
        key = presented_key(request)
        if key is None:
            raise Unauthorized("API Key is required")
        found = await app[DB].caller_for_key(hash_key(key))
        if found is None:
            raise Unauthorized("Invalid API Key")
        caller = found
    await count_request(request, caller)
    return caller.user


async def count_request(request: web.Request, caller: Caller) -> None:
    """Counts the request against the caller's key's requests per minute (429 past it). Every way of
    authenticating (here, and the APIs that sign requests their own way) calls this once per request."""
    app = request.app
    limit = caller.rate_limit if caller.rate_limit is not None else app[SETTINGS].rate_limit
    if limit > 0:
        quota = await app[LIMITER].hit(caller.key_id, limit)
        request[QUOTA] = quota
        if not quota.allowed:
            raise TooManyRequests(
                f"rate limit of {limit} requests per minute exceeded; retry in {quota.reset} s",
                headers={"Retry-After": str(quota.reset)},
            )
    request[CALLER] = caller.user


async def _signed_caller(request: web.Request, db: Database, signer: Signer) -> Caller:
    public = request.headers["X-Public-Key"].strip()
    timestamp = request.headers.get("X-Timestamp", "").strip()
    signature = request.headers.get("X-Signature", "").strip().lower()
    if not timestamp or not signature:
        raise Unauthorized("X-Timestamp and X-Signature are required with X-Public-Key")
    check_timestamp(timestamp)
    if not hmac.compare_digest(signer.request_signature(public, timestamp).encode(), signature.encode()):
        raise Unauthorized("Invalid signature")
    caller = await db.caller_for_key(hash_key(public), signed=True)
    if caller is None:
        raise Unauthorized("Invalid API Key")
    return caller


def check_timestamp(timestamp: str) -> None:
    """A signed request's ``X-Timestamp``: Unix seconds within :data:`SIGNATURE_WINDOW_S` of the server's
    clock, so a captured request cannot be replayed later (401 otherwise)."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise Unauthorized("X-Timestamp must be Unix time in seconds")
    if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_S:
        raise Unauthorized("X-Timestamp is more than 5 minutes away from the server's clock")
