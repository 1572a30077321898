"""Signed, expiring URLs for result files: ``/files/{orderNo}/{name}?expires=<unix>&sig=<hex>``.

The signature is HMAC-SHA256 over ``"{orderNo}/{name}:{expires}"`` with the service's secret key, so a URL
cannot be altered to reach another file or to live longer, and nothing about it needs storing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from yinzi.errors import Forbidden

SECRET_FILE = "secret.key"


def load_or_create_secret(data_dir: Path) -> bytes:
    """The key kept in ``<data_dir>/secret.key``, made on first use, so URLs survive restarts."""
    path = data_dir / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    # O_EXCL: when two processes start at once, one writes and both read the winner's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


class UrlSigner:
    def __init__(self, secret: bytes, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl

    def _sign(self, order_no: str, name: str, expires: int) -> str:
        message = f"{order_no}/{name}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def path(self, order_no: str, name: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl)
        sig = self._sign(order_no, name, expires)
        return f"/files/{quote(order_no)}/{quote(name)}?expires={expires}&sig={sig}"

    def verify(self, order_no: str, name: str, expires: str, sig: str) -> None:
        if not expires.isdigit() or not hmac.compare_digest(self._sign(order_no, name, int(expires)), sig):
            raise Forbidden("invalid signature: request a fresh URL with order/query")
        if int(expires) < time.time():
            raise Forbidden("URL expired: request a fresh URL with order/query")
