"""Operator credentials for the console's operator pages, made by ``yinzi operators create NAME``.

A token is ``yzop_`` + 32 random bytes, shown once; ``<data>/operators.json`` keeps only its SHA-256, as API
keys are kept. A file rather than a table: operators are a handful, made from the command line on the
machine that holds the data directory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

OPERATOR_PREFIX = "yzop_"
FILE_NAME = "operators.json"


def _file(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def _load(data_dir: Path) -> dict[str, dict[str, object]]:
    try:
        loaded: dict[str, dict[str, object]] = json.loads(_file(data_dir).read_text())
    except FileNotFoundError:
        return {}
    return loaded


def _save(data_dir: Path, operators: dict[str, dict[str, object]]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = _file(data_dir).with_suffix(".tmp")
    temporary.write_text(json.dumps(operators, indent=1))
    os.chmod(temporary, 0o600)
    temporary.replace(_file(data_dir))


def create(data_dir: Path, name: str) -> str:
    """A new token for ``name`` (replacing any earlier one); only its hash is kept."""
    token = OPERATOR_PREFIX + secrets.token_urlsafe(32)
    operators = _load(data_dir)
    operators[name] = {"sha256": hashlib.sha256(token.encode()).hexdigest(), "created_at": time.time()}
    _save(data_dir, operators)
    return token


def revoke(data_dir: Path, name: str) -> bool:
    operators = _load(data_dir)
    if operators.pop(name, None) is None:
        return False
    _save(data_dir, operators)
    return True


def names(data_dir: Path) -> list[str]:
    return sorted(_load(data_dir))


def operator_for(data_dir: Path, token: str) -> str | None:
    """The operator's name for this token, or None."""
    if not token.startswith(OPERATOR_PREFIX):
        return None
    digest = hashlib.sha256(token.encode()).hexdigest()
    for name, entry in _load(data_dir).items():
        if hmac.compare_digest(str(entry.get("sha256", "")), digest):
            return name
    return None
