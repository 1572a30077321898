"""The `yinzi` administration commands against a real database file."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest

from workers.engines.models import list_installed
from yinzi.cli import main
from yinzi.settings import WHISPER_ENGINES, Settings
from yinzi.store import Database


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None) -> Path:
    monkeypatch.setenv("YINZI_DATA_DIR", str(tmp_path / "data"))
    if database_url is not None:
        monkeypatch.setenv("YINZI_DATABASE_URL", database_url)
    return tmp_path / "data"


def stored(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    async def read() -> list[tuple[object, ...]]:
        db = await Database.open(Settings.from_env().database)
        try:
            return [tuple(row) for row in await db._all(sql)]
        finally:
            await db.close()

    return asyncio.run(read())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_users_keys_and_points(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "users", "create", "alice", "--points", "100")[0] == 0
    code, out, err = run(capsys, "keys", "create", "alice", "--label", "laptop")
    key = out.strip()
    assert code == 0 and key.startswith("yz_") and "shown only once" in err

    keys = stored(data_dir, "SELECT key_hash, prefix, label FROM api_keys")
    assert keys == [(hashlib.sha256(key.encode()).hexdigest(), key[:11], "laptop")]
    if (data_dir / "yinzi.db").exists():  # only the hash is kept
        assert key not in (data_dir / "yinzi.db").read_bytes().decode("latin-1")

    code, out, _ = run(capsys, "keys", "list")
    assert code == 0 and key[:11] in out and "active" in out and key not in out
    assert (
        run(capsys, "points", "grant", "alice", "25", "--note", "bonus")[1].strip()
        == "alice now has 125 points"
    )
    assert "alice\t125" in run(capsys, "users", "list")[1]

    assert run(capsys, "keys", "revoke", key[:11])[0] == 0
    assert "revoked" in run(capsys, "keys", "list", "alice")[1]

    async def user_for_key() -> object:
        db = await Database.open(Settings.from_env().database)
        try:
            return await db.caller_for_key(hashlib.sha256(key.encode()).hexdigest())
        finally:
            await db.close()

    assert asyncio.run(user_for_key()) is None


def test_errors_are_one_clear_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], database_url: str | None
) -> None:
    run(capsys, "users", "create", "bob", "--points", "5")
    code, _, err = run(capsys, "keys", "create", "nobody")
    assert code == 1 and "no user named 'nobody'" in err and "yinzi users create nobody" in err
    used = f"data directory {data_dir.resolve()}" if database_url is None else f"database {database_url}"
    assert f"({used})" in err and err.count("\n") == 1
    code, _, err = run(capsys, "users", "create", "bob")
    assert code == 1 and "already exists" in err
    code, _, err = run(capsys, "points", "grant", "bob", "-6")
    assert code == 1 and "has only 5 points" in err
    code, _, err = run(capsys, "keys", "revoke", "yz_missing")
    assert code == 1 and "no active key" in err


def test_bad_setting_is_reported(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YINZI_PORT", "eighty")
    code, _, err = run(capsys, "users", "list")
    assert code == 2 and "YINZI_PORT must be an integer" in err


def test_worker_needs_redis(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YINZI_REDIS_URL", raising=False)
    with pytest.raises(SystemExit, match="needs YINZI_REDIS_URL"):
        main(["worker"])


def test_several_api_processes_need_redis(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "serve", "--processes", "2")
    assert code == 2 and "needs YINZI_REDIS_URL" in err


@pytest.mark.parametrize("engine", WHISPER_ENGINES)
def test_models_pull_fails_in_one_clear_line_offline(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.setenv("YINZI_WHISPER_ENGINE", engine)
    code, _, err = run(capsys, "models", "pull", "klingon")
    assert code == 2 and "unknown model 'klingon'" in err and "htdemucs" in err and "large-v3" in err

    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # The network edge: no name resolves, as on a machine without internet. The real download code runs.
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    code, _, err = run(capsys, "models", "pull", "tiny")
    assert code == 1 and err.startswith("yinzi: cannot download tiny:") and err.count("\n") == 1
    assert "yinzi models add PATH" in err
    # nothing half-downloaded is left to look installed
    assert list_installed(data_dir / "models") == [] and not list(data_dir.rglob("*.partial"))


def test_a_directory_without_a_database_is_named_not_silently_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YINZI_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # somewhere without ./data, as when run from the wrong folder
    code, out, err = run(capsys, "users", "list")
    assert code == 1 and out == ""
    assert f"no database in {tmp_path / 'data'}" in err and "YINZI_DATA_DIR" in err and "--data-dir" in err
    assert not (tmp_path / "data").exists()

    served = tmp_path / "elsewhere"
    code, _, err = run(capsys, "--data-dir", str(served), "users", "create", "carol", "--points", "3")
    assert code == 0 and f"creating a new database in {served}" in err
    code, out, _ = run(capsys, "--data-dir", str(served), "users", "list")
    assert code == 0 and out == "carol\t3\n"
