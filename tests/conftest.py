from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.worker import Worker

from tests.support.media import make_media, media_app
from tests.support.models import DEMUCS_NAME, WHISPER_NAME, save_tiny_demucs, save_tiny_whisper
from workers.arq_worker import worker_options
from yinzi.accounts import create_key
from yinzi.app import create_app
from yinzi.appkeys import DB
from yinzi.settings import ORDER_TYPES, Settings
from yinzi.store import Database, Order

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
# Tests' schemas live in a database of their own, created on first use.
POSTGRES_TEST_DATABASE = "yinzi_test"
BACKENDS = ("sqlite", "postgresql")
COPY_ENGINE = "tests.support.engines:CopyEngine"


@dataclass
class Account:
    name: str
    user_id: int
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def add_account(db: Database, name: str | None = None, points: int = 1000) -> Account:
    user = await db.create_user(name or f"user-{uuid.uuid4().hex[:8]}", points)
    made = await create_key(db, user)
    return Account(user.name, user.id, made.key)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
async def media_server(aiohttp_server: Callable[..., Any], media_dir: Path) -> TestServer:
    server: TestServer = await aiohttp_server(media_app(media_dir))
    return server


@pytest.fixture
def media_url(media_server: TestServer) -> Callable[[str], str]:
    return lambda path: str(media_server.make_url(path))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on: every database test runs on both. A module whose subject is not
    the database (engines, link resolvers, ...) overrides this with one backend."""
    backend: str = request.param
    return backend


@pytest.fixture
async def database_url(backend: str) -> AsyncIterator[str | None]:
    """None for SQLite (the file under the data directory); for PostgreSQL a fresh schema of its own,
    dropped after the test."""
    if backend == "sqlite":
        yield None
        return
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = await postgres_admin()
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
    finally:
        await admin.close()
    yield f"{POSTGRES_SERVER}/{POSTGRES_TEST_DATABASE}?search_path={schema}"
    admin = await postgres_admin()
    try:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


async def postgres_admin() -> asyncpg.Connection:
    """A connection to the tests' database, creating that database the first time."""
    try:
        return await asyncpg.connect(f"{POSTGRES_SERVER}/{POSTGRES_TEST_DATABASE}")
    except asyncpg.InvalidCatalogNameError:
        server = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
        try:
            await server.execute(f"CREATE DATABASE {POSTGRES_TEST_DATABASE}")
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await server.close()
        return await asyncpg.connect(f"{POSTGRES_SERVER}/{POSTGRES_TEST_DATABASE}")
    except OSError as exc:
        pytest.fail(
            f"PostgreSQL does not answer on 127.0.0.1:5432 ({exc}): start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=b"test-secret",
        fetch_allow=("127.0.0.1/32",),  # the stand-in media hosts run on loopback
        engines={order_type: COPY_ENGINE for order_type in ORDER_TYPES},
        fetch_read_timeout=5.0,
    )


@pytest.fixture
async def make_client(aiohttp_client: Callable[..., Any]) -> Callable[[Settings], Any]:
    async def make(settings: Settings) -> TestClient:
        client: TestClient = await aiohttp_client(create_app(settings))
        return client

    return make


@pytest.fixture
async def client(make_client: Callable[[Settings], Any], settings: Settings) -> TestClient:
    client: TestClient = await make_client(settings)
    return client


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_tiny_demucs(folder)
    save_tiny_whisper(folder)
    return folder


@pytest.fixture
def engine_settings(settings: Settings, model_dir: Path) -> Settings:
    return settings.replace(
        engines={},
        model_dir=model_dir,
        demucs_model=DEMUCS_NAME,
        whisper_model=WHISPER_NAME,
        whisper_engine="openai-whisper",  # the tiny random Whisper is an openai-whisper checkpoint
    )


@pytest.fixture
async def engine_client(make_client: Callable[[Settings], Any], engine_settings: Settings) -> TestClient:
    client: TestClient = await make_client(engine_settings)
    return client


@pytest.fixture
async def account(client: TestClient) -> Account:
    return await add_account(client.app[DB])


# How long a condition may take before a test gives up: a bound for a machine busy with other work, not a pace.
# Waits return as soon as their condition holds.
PATIENCE = 600.0


async def wait_for_order(
    db: Database,
    order_no: str,
    until: Callable[[Order], bool] = lambda o: o.terminal,
    timeout: float = PATIENCE,
) -> Order:
    """Polls the database (not the API, which would charge) until the order matches."""
    deadline = time.monotonic() + timeout
    while True:
        order = await db.order(order_no)
        assert order is not None
        if until(order):
            return order
        if time.monotonic() > deadline:
            raise AssertionError(
                f"order {order_no} still {order.status} ({order.progress}%) after {timeout}s"
            )
        await asyncio.sleep(0.05)


async def create_order(
    client: TestClient, account: Account, path_key: str, order_type: str = "extract-text"
) -> str:
    resp = await client.post(
        "/api/open/v1/order/create",
        json={"orderType": order_type, "stuff": {"pathKey": path_key}},
        headers=account.headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    order_no: str = body["data"]["orderNo"]
    return order_no


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    if not redis_available():
        pytest.fail("Redis does not answer on 127.0.0.1:6379: start it with `redis-server --daemonize yes`")
    return REDIS_URL


@pytest.fixture
def queue_name() -> str:
    return f"yinzi-test:{uuid.uuid4().hex}"


@pytest.fixture
async def arq_settings(settings: Settings, redis_url: str, queue_name: str) -> AsyncIterator[Settings]:
    yield settings.replace(redis_url=redis_url, queue_name=queue_name)


@pytest.fixture
async def run_worker() -> AsyncIterator[Callable[[Settings], Any]]:
    workers: list[Worker] = []

    async def run(settings: Settings) -> Worker:
        """Runs a worker, as `yinzi worker` would, until the queue is empty; then it stops."""
        worker = Worker(**worker_options(settings), burst=True, handle_signals=False, poll_delay=0.05)
        workers.append(worker)
        await worker.main()
        return worker

    yield run
    for worker in workers:
        await worker.close()
