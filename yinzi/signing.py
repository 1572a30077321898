"""Every HMAC made with the service's secret key (``<data_dir>/secret.key`` or ``YINZI_SECRET_KEY``).

- Result URLs: ``/files/{orderNo}/{name}?expires=<unix>&sig=<hex>``, HMAC-SHA256 over
  ``"{orderNo}/{name}:{expires}"``, so a URL cannot be altered to reach another file or to live longer, and
  nothing about it needs storing.
- Signed-request key pairs: the secret of a public key is derived from it with the service key, so the
  database holds no secret (a stolen copy of it signs nothing); requests carry ``X-Signature`` = hex
  HMAC-SHA256 over ``public_key + "\n" + timestamp`` under that secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from yinzi.errors import Forbidden

if TYPE_CHECKING:
    from yinzi.settings import Settings

SECRET_FILE = "secret.key"
PAIR_SECRET_PREFIX = "yzsk_"


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


class Signer:
    def __init__(self, secret: bytes, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl  # of result URLs

    @classmethod
    def for_settings(cls, settings: Settings) -> Signer:
        """Every process of one service signs alike: YINZI_SECRET_KEY, or the data directory's key."""
        return cls(settings.secret_key or load_or_create_secret(settings.data_dir), settings.result_url_ttl)

    def _sign(self, subject: str, expires: int) -> str:
        return hmac.new(self._secret, f"{subject}:{expires}".encode(), hashlib.sha256).hexdigest()

    def _check(self, subject: str, expires: str, sig: str, fresh: str) -> None:
        # Bytes, not str: compare_digest refuses non-ASCII text, and a URL may carry anything.
        if not (expires.isascii() and expires.isdigit()) or not hmac.compare_digest(
            self._sign(subject, int(expires)).encode(), sig.encode()
        ):
            raise Forbidden(f"invalid signature: {fresh}")
        if int(expires) < time.time():
            raise Forbidden(f"URL expired: {fresh}")

    def path(self, order_no: str, name: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl)
        sig = self._sign(f"{order_no}/{name}", expires)
        return f"/files/{quote(order_no)}/{quote(name)}?expires={expires}&sig={sig}"

    def verify(self, order_no: str, name: str, expires: str, sig: str) -> None:
        self._check(f"{order_no}/{name}", expires, sig, "request a fresh URL with order/query")

    # Order numbers are 18 characters, so "upload/<id>" never names a result file.
    def upload_path(self, upload_id: str, expires: float) -> str:
        sig = self._sign(f"upload/{upload_id}", int(expires))
        return f"/uploads/{quote(upload_id)}?expires={int(expires)}&sig={sig}"

    def verify_upload(self, upload_id: str, expires: str, sig: str) -> None:
        self._check(f"upload/{upload_id}", expires, sig, "the uploadUrl from POST /api/open/v1/uploads")

    def pair_secret(self, public_key: str) -> str:
        """The secret half of a signed-request key pair."""
        digest = hmac.new(self._secret, f"key-pair:{public_key}".encode(), hashlib.sha256).hexdigest()
        return PAIR_SECRET_PREFIX + digest

    def request_signature(self, public_key: str, timestamp: str) -> str:
        secret = self.pair_secret(public_key).encode()
        return hmac.new(secret, f"{public_key}\n{timestamp}".encode(), hashlib.sha256).hexdigest()
