"""What can run here, and what to do about what cannot: ``yinzi doctor``, ``/healthz`` and ``/readyz``.

:class:`QuickChecks` is the cheap answer ``/healthz`` gives, taken at most every ``QUICK_CHECK_EVERY_S``:
ffprobe, the file store, and for each order type (:func:`order_types`) whether its engine is installed (found,
not imported) and its default model is on disk. :func:`run_checks` is the deep one ``yinzi doctor`` runs
once: tools, engines imported and their models loaded, the database, Redis, disk, memory, the file store and
whether each short-video platform answers, each failure with the command or setting that fixes it.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engines import BUILTIN_ENGINES, EngineUnavailable, check_installed, engine_spec
from workers.engines.models import demucs_repo, whisper_model_file
from workers.probe import ffprobe_missing
from workers.reports import FONT_HINT
from yinzi.errors import ServiceUnavailable
from yinzi.fetch import Fetcher
from yinzi.llm import NOT_CONFIGURED, LlmError, list_models
from yinzi.metrics import engine_name
from yinzi.settings import GIB, ORDER_TYPES, Settings

if TYPE_CHECKING:
    from yinzi.storage import Storage

MIN_FREE_DISK = 2 * GIB  # one long upload and its work files
MIN_FREE_MEMORY = 2 * GIB  # one engine with a mid-sized model
PLATFORM_CHECK_TIMEOUT_S = 10.0
# A page each platform serves to anyone: any HTTP answer shows the platform can be reached from here.
PLATFORM_PAGES = {
    "douyin": "https://www.douyin.com/",
    "kuaishou": "https://v.kuaishou.com/",
    "xiaohongshu": "https://www.xiaohongshu.com/explore",
    "weibo": "https://m.weibo.cn/",
    "ytdlp": "https://www.youtube.com/",
}
SEPARATION = "workers.engines.separation:SeparationEngine"
TRANSCRIPTION = "workers.engines.transcription:TranscriptionEngine"
# What a built-in engine imports only when it loads a model; importing them here is the real check.
WHISPER_LIBRARIES = {
    "faster-whisper": ("ctranslate2", "faster_whisper"),
    "openai-whisper": ("torch", "whisper"),
}


def libraries(settings: Settings, spec: str) -> tuple[str, ...]:
    if spec == SEPARATION:
        return ("torch", "demucs.pretrained")
    if spec == TRANSCRIPTION:
        return WHISPER_LIBRARIES[settings.whisper_engine_name]
    return ()


INSTALL_ENGINES = "install the engines: make setup (or pip install -e '.[engines]', see README)"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # worth reading, not a failure


# ---- the cheap check: /healthz -----------------------------------------------------------------------------


def model_missing(settings: Settings, spec: str) -> str | None:
    """Why the default model of a built-in engine is not usable from disk, or None."""
    if spec == SEPARATION:
        repo = demucs_repo(settings.models_dir)
        bag = repo / f"{settings.demucs_model}.yaml"
        if not bag.is_file():
            return f"Demucs model {settings.demucs_model} is not in {repo}"
        signatures = re.findall(r"^\s*-\s*['\"]?([0-9a-zA-Z]+)", bag.read_text(errors="replace"), re.M)
        lacking = [sig for sig in signatures if not any(repo.glob(f"{sig}-*.th"))]
        if lacking:
            return f"Demucs model {settings.demucs_model} lacks its weights ({', '.join(lacking)}) in {repo}"
        return None
    if spec == TRANSCRIPTION:
        engine, name = settings.whisper_engine_name, settings.whisper_model
        path = whisper_model_file(settings.models_dir, engine, name)
        return None if path.is_file() else f"Whisper model {name} for {engine} is not in {path.parent}"
    return None  # a plugged-in engine knows its own models


def default_model(settings: Settings, spec: str) -> str | None:
    return {SEPARATION: settings.demucs_model, TRANSCRIPTION: settings.whisper_model}.get(spec)


# A load balancer or a monitor may ask many times a second; the file-system and store calls behind the answer
# are made at most this often per process, and requests meanwhile share the last answer.
QUICK_CHECK_EVERY_S = 2.0


class QuickChecks:
    """What ``/healthz`` says besides the database: ffprobe, the file store and which order types can run."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self._settings = settings
        self._storage = storage
        self._last: asyncio.Task[dict[str, Any]] | None = None
        self._taken = 0.0

    async def report(self) -> dict[str, Any]:
        stale = time.monotonic() - self._taken >= QUICK_CHECK_EVERY_S
        if self._last is None or (self._last.done() and stale):
            self._taken = time.monotonic()
            self._last = asyncio.ensure_future(self._check())
        # Shielded: a client that hangs up does not cancel the check the others wait on.
        return await asyncio.shield(self._last)

    async def _check(self) -> dict[str, Any]:
        storage = self._storage
        try:
            stored = {"kind": storage.kind, "ok": True, "detail": await storage.check()}
        except ServiceUnavailable as exc:
            stored = {"kind": storage.kind, "ok": False, "detail": exc.msg}
        ffprobe = ffprobe_missing(self._settings.ffprobe)
        types = order_types(self._settings)
        # With a job queue the engines run in `yinzi worker` processes, often on other hosts (each checks its own
        # with `yinzi doctor`): what this host lacks makes it no less healthy.
        engines_here = not self._settings.redis_url
        return {
            "fine": ffprobe is None
            and bool(stored["ok"])
            and (not engines_here or all(t["ok"] for t in types.values())),
            "ffprobe": ffprobe or "ok",
            "storage": stored,
            "orderTypes": types,
        }


def order_types(settings: Settings) -> dict[str, dict[str, object]]:
    """For each order type: can it run now, and if not, why and what to do."""
    out: dict[str, dict[str, object]] = {}
    for order_type in ORDER_TYPES:
        spec = engine_spec(order_type, settings.engines)
        try:
            check_installed(spec)
        except EngineUnavailable as exc:
            out[order_type] = {"ok": False, "reason": exc.reason}
            continue
        missing = model_missing(settings, spec)
        if missing:
            model = default_model(settings, spec)
            out[order_type] = {"ok": False, "reason": f"{missing}: run `yinzi models pull {model}`"}
        else:
            out[order_type] = {"ok": True, "reason": None}
    return out


# ---- the deep checks: yinzi doctor ---------------------------------------------------------------------------


def _tool(name: str) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(
            name, False, "not found on PATH", "apt-get install -y ffmpeg (macOS: brew install ffmpeg)"
        )
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check(name, False, f"{path} does not run: {exc}", "reinstall ffmpeg")
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return Check(name, True, f"{path} ({' '.join(first.split()[:3])})")


def _load_builtin(spec: str, settings: Settings) -> None:
    """Loads the default model the way the engine does, with the library's own loader."""
    if spec == SEPARATION:
        from demucs.pretrained import get_model

        get_model(settings.demucs_model, repo=demucs_repo(settings.models_dir))
    elif spec == TRANSCRIPTION:
        from workers.engines.whisper_backends import load_backend

        load_backend(settings.whisper_engine_name, settings.models_dir, settings.whisper_model, 1)


def _engine_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    specs: dict[str, list[str]] = {}
    for order_type in ORDER_TYPES:
        specs.setdefault(engine_spec(order_type, settings.engines), []).append(order_type)
    for spec, types in specs.items():
        label = f"engine {engine_name(types[0], spec)}"
        modules = [spec.partition(":")[0], *libraries(settings, spec)]
        try:
            for module in modules:
                importlib.import_module(module)
        except ImportError as exc:
            checks.append(Check(label, False, f"{module} does not import: {exc}", INSTALL_ENGINES))
            continue
        checks.append(Check(label, True, f"{', '.join(modules)} import; for {', '.join(types)}"))
        model = default_model(settings, spec)
        if model is None:
            if spec not in BUILTIN_ENGINES.values():
                checks.append(Check(f"{label} model", True, "a plugged-in engine: it loads its own models"))
            continue
        missing = model_missing(settings, spec)
        if missing:
            checks.append(Check(f"model {model}", False, missing, f"yinzi models pull {model}"))
            continue
        started = time.monotonic()
        try:
            _load_builtin(spec, settings)
        except Exception as exc:
            checks.append(
                Check(
                    f"model {model}",
                    False,
                    f"present but does not load: {type(exc).__name__}: {exc}",
                    f"pull it again: yinzi models pull {model}",
                )
            )
            continue
        checks.append(Check(f"model {model}", True, f"loads ({time.monotonic() - started:.1f} s)"))
    return checks


async def _database(settings: Settings) -> Check:
    from yinzi.store import Database

    where = settings.database_shown
    if settings.database_url is None and not settings.db_path.exists():
        return Check(
            "database",
            True,
            f"none yet at {where}: `yinzi serve` or `yinzi users create` makes it",
            warning=True,
        )
    try:
        db = await Database.open(settings.database)
        try:
            await db.ping()
            users = len(await db.list_users())
            keys = await db.count_keys()
        finally:
            await db.close()
    except Exception as exc:
        fix = (
            "check the file's permissions and free disk"
            if settings.database_url is None
            else "check YINZI_DATABASE_URL and that PostgreSQL answers there"
        )
        return Check("database", False, f"{where}: {exc}", fix)
    detail = f"{where}: {users} users, {keys} active keys"
    if keys == 0:
        return Check(
            "database", True, detail, "yinzi users create NAME; yinzi keys create NAME", warning=True
        )
    return Check("database", True, detail)


async def _redis(settings: Settings) -> Check | None:
    if not settings.redis_url:
        return None
    from redis.asyncio import Redis

    client = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        return Check(
            "redis",
            False,
            f"{settings.redis_url}: {exc}",
            "start Redis, or unset YINZI_REDIS_URL to run jobs inside yinzi serve",
        )
    finally:
        await client.aclose()
    return Check("redis", True, settings.redis_url)


async def _storage(settings: Settings) -> list[Check]:
    """Where uploads and results live; beside an object store, the key every host must share."""
    from yinzi.storage import open_storage

    checks: list[Check] = []
    try:
        storage = open_storage(settings)
        try:
            checks.append(Check("storage", True, await storage.check()))
        finally:
            await storage.close()
    except (ServiceUnavailable, ValueError) as exc:
        fix = (
            "check YINZI_STORAGE_URL, YINZI_S3_ENDPOINT_URL, YINZI_S3_REGION, the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and that the bucket exists"
            if settings.storage_url
            else "check the data directory's permissions and free disk"
        )
        checks.append(Check("storage", False, str(getattr(exc, "msg", exc)), fix))
    if settings.storage_url and not settings.secret_key:
        checks.append(
            Check(
                "secret key",
                False,
                "YINZI_SECRET_KEY is not set: each host would sign URLs with its own key",
                "set YINZI_SECRET_KEY to the same long random value on every API and worker host",
            )
        )
    return checks


def _disk(settings: Settings) -> Check:
    folder = settings.data_dir if settings.data_dir.exists() else Path(".")
    free = shutil.disk_usage(folder).free
    detail = f"{free / GIB:.1f} GiB free for {settings.data_dir.resolve()}"
    if free < MIN_FREE_DISK:
        return Check(
            "disk", False, detail, f"free at least {MIN_FREE_DISK // GIB} GiB, or move YINZI_DATA_DIR"
        )
    return Check("disk", True, detail)


def _memory() -> Check:
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return Check("memory", True, "unknown (no /proc/meminfo)", warning=True)
    detail = f"{available / GIB:.1f} GiB available"
    if available < MIN_FREE_MEMORY:
        return Check(
            "memory",
            False,
            detail,
            f"an engine needs about {MIN_FREE_MEMORY // GIB} GiB: stop other work or use smaller models",
        )
    return Check("memory", True, detail)


async def _platform(fetcher: Fetcher, settings: Settings, name: str, url: str) -> Check:
    options = settings.platform(name)
    try:
        async with asyncio.timeout(min(options.timeout, PLATFORM_CHECK_TIMEOUT_S)):
            async with fetcher.request("GET", url, max_redirects=5, proxy=options.proxy) as (_, resp):
                status = resp.status
    except TimeoutError:
        detail = "no answer in time"
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
    else:
        return Check(f"platform {name}", True, f"{url} answered HTTP {status}")
    return Check(
        f"platform {name}",
        False,
        f"{url}: {detail}",
        f"check this machine's network, or set YINZI_{name.upper()}_PROXY",
    )


def _report_font(settings: Settings) -> Check:
    font = settings.report_font
    if not font.is_file():
        return Check("report font", False, f"{font} is missing: PDF reports fail", FONT_HINT)
    return Check("report font", True, str(font))


async def _language_model(settings: Settings) -> Check:
    if not settings.llm_url:
        return Check("language model", True, f"none: {NOT_CONFIGURED}", warning=True)
    try:
        models = [m["id"] for m in await list_models(settings)]
    except LlmError as exc:
        return Check("language model", False, exc.reason, "check YINZI_LLM_URL and that the server runs")
    if settings.llm_model and settings.llm_model not in models:
        return Check(
            "language model", False, f"{settings.llm_model} is not among {', '.join(models) or 'no models'}",
            "set YINZI_LLM_MODEL to one of them",
        )  # fmt: skip
    return Check("language model", True, f"{settings.llm_url}: {', '.join(models)}")


async def run_checks(settings: Settings, *, network: bool = True) -> list[Check]:
    checks = [
        _tool("ffmpeg"),
        _tool(settings.ffprobe),
        _report_font(settings),
        await _language_model(settings),
    ]
    checks += await asyncio.to_thread(_engine_checks, settings)
    checks.append(await _database(settings))
    checks += await _storage(settings)
    redis = await _redis(settings)
    if redis is not None:
        checks.append(redis)
    checks += [_disk(settings), _memory()]
    if network:
        fetcher = Fetcher.for_settings(settings)
        try:
            checks += await asyncio.gather(
                *(_platform(fetcher, settings, name, url) for name, url in PLATFORM_PAGES.items())
            )
        finally:
            await fetcher.close()
    return checks


def report(checks: list[Check], settings: Settings, say: Callable[[str], object] = print) -> int:
    say(f"data directory: {settings.data_dir.resolve()}  models: {settings.models_dir.resolve()}")
    width = max(len(check.name) for check in checks)
    for check in checks:
        mark = "ok  " if check.ok and not check.warning else "note" if check.ok else "FAIL"
        say(f"{mark}  {check.name:<{width}}  {check.detail}")
        if check.fix:
            say(f"{'':4}  {'':<{width}}  -> {check.fix}")
    failed = [check for check in checks if not check.ok]
    say(f"{len(failed)} problem(s)" if failed else "everything needed is in place")
    return 1 if failed else 0


def doctor(settings: Settings, *, network: bool = True) -> int:
    # Engines take every core by default; one thread is plenty to load a model.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return report(asyncio.run(run_checks(settings, network=network)), settings)
