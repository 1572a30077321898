"""All configuration, read once from ``YINZI_*`` environment variables into one frozen object.

Tests build :class:`Settings` directly; the command line builds it with :meth:`Settings.from_env`.
Every limit, timeout and price lives here, so an operator finds every knob in one file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ORDER_TYPES = ("track-separation", "extract-voice", "extract-music", "extract-text")

# Points per started minute of media. The seed's example charges 10 points for a short song.
DEFAULT_PRICES: Mapping[str, int] = {
    "track-separation": 10,
    "extract-voice": 10,
    "extract-music": 10,
    "extract-text": 5,
}

# Short-video platforms with their own link resolver, and "ytdlp" for every other site yt-dlp knows.
PLATFORMS = ("douyin", "kuaishou", "xiaohongshu", "weibo", "ytdlp")

# The engine processes a worker may run at once: one per kind (separation, transcription) and concurrency.
ENGINE_KINDS = ("demucs", "whisper")
WHISPER_ENGINES = ("faster-whisper", "openai-whisper")

GIB = 1024**3
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A ``YINZI_*`` variable has a value that cannot be used."""


@dataclass(frozen=True)
class PlatformOptions:
    """How link resolvers talk to one platform (``YINZI_<PLATFORM>_COOKIE`` and so on)."""

    cookie: str | None = None  # a Cookie header copied from a logged-in browser, for pages that demand one
    proxy: str | None = None  # http://host:port; put its address in YINZI_FETCH_ALLOW when it is private
    user_agent: str | None = None  # None: the resolver's own choice (a mobile browser for the share pages)
    timeout: float = 15.0  # seconds for one link, end to end


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    # API processes sharing the port (SO_REUSEPORT). More than one needs the arq queue.
    processes: int = 1
    # None: SQLite in <data_dir>/yinzi.db. postgresql://...: PostgreSQL, shared by API and worker hosts.
    database_url: str | None = None
    # None: jobs run in the API process (embedded queue). Set: arq carries them to `yinzi worker`s.
    redis_url: str | None = None
    queue_name: str = "yinzi:queue"
    model_dir: Path | None = None  # None: <data_dir>/models
    demucs_model: str = "htdemucs"
    whisper_model: str = "small"
    # faster-whisper or openai-whisper; None: faster-whisper where it is installed.
    whisper_engine: str | None = None
    # CIDRs or host names that may be fetched although they are not public addresses.
    fetch_allow: tuple[str, ...] = ()
    # Addresses or CIDRs of reverse proxies in front of the API: their X-Forwarded-For names the client (for
    # per-address limits and the access log). Empty: the connecting address is the client.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # host -> base URL: requests for that host go to the base URL, Host header kept (mirrors; test stand-ins).
    host_map: Mapping[str, str] = field(default_factory=dict)
    platforms: Mapping[str, PlatformOptions] = field(default_factory=dict)
    # Points per successful short-video/analyze call.
    analyze_price: int = 1
    # priority "lightning" costs this many times the queue price and starts before queued orders.
    lightning_multiplier: float = 2.0
    # Requests per minute per API key (0: no limit); `yinzi keys create --rate-limit` overrides it per key.
    rate_limit: int = 600
    # Orders of one user running (or queued for a worker) at once; more wait, pending, in order. 0: no cap.
    max_running_per_user: int = 0
    # Result files are deleted this many seconds after the order finished.
    result_retention: int = 24 * 3600
    # Upload sessions not completed within this many seconds are deleted.
    upload_ttl: int = 24 * 3600
    # Seconds between two webhook attempts; one attempt more than there are delays.
    webhook_retry_delays: tuple[float, ...] = (10.0, 60.0, 600.0, 3600.0)
    webhook_timeout: float = 10.0
    # How often background sweeps (webhooks due, expired results and uploads) look for work, seconds.
    sweep_interval: float = 1.0
    # arq mode: how often unfinished orders are put back into Redis in case it lost them, seconds.
    requeue_interval: float = 60.0
    # Base of signed result URLs, e.g. https://audio.example.com. None: taken from each request's Host.
    public_url: str | None = None
    # HMAC key for result URLs. None: generated once and kept in <data_dir>/secret.key.
    secret_key: bytes | None = None
    prices: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    # Embedded queue: orders processed at once by the API process.
    worker_concurrency: int = 2
    max_download_bytes: int = 2 * GIB
    # The longest media an order may process (and order/calculate quote), seconds.
    max_duration: int = 10 * 3600
    max_redirects: int = 5
    fetch_connect_timeout: float = 10.0
    fetch_read_timeout: float = 60.0
    fetch_total_timeout: float = 1800.0
    max_json_body: int = 64 * 1024
    result_url_ttl: int = 3600
    # Longest one order may run, end to end. arq also retries a job whose worker died after this (+10 s).
    job_timeout: int = 3 * 3600
    # Engine processes per engine (Demucs, Whisper) in each worker process: one is right on a CPU machine.
    engine_concurrency: int = 1
    # Threads for torch and CTranslate2 in each engine process. 0: the cores this process may use, divided
    # among the engine processes that can run at once, so engines share the cores instead of fighting.
    engine_threads: int = 0
    # An order's engine time limit is base + factor x media duration, capped by job_timeout.
    engine_timeout_base: float = 300.0
    engine_timeout_factor: float = 10.0
    # orderType -> "module:Class" overrides of the built-in engines (see workers/engines).
    engines: Mapping[str, str] = field(default_factory=dict)
    ffprobe: str = "ffprobe"
    # ---- transcript reports and AI analysis (extract-text's stuff.report and stuff.aiPrompt) ----
    # The font of PDF reports: TrueType or OpenType (a .ttc collection works); Chinese and Japanese need its CJK
    # glyphs. Debian: apt-get install fonts-wqy-microhei.
    report_font: Path = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
    # An OpenAI-compatible chat-completions API (Ollama: http://127.0.0.1:11434/v1, vLLM, a hosted one), its
    # model (None: the first one it lists) and key. No URL: analysis is off and says so.
    llm_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    # How much transcript one request may carry, in characters; a longer one is summarised in parts of this
    # size, then the summaries as a whole. Set it below the model's context (about 3 characters a token).
    llm_context_chars: int = 12_000
    # Seconds one chat-completions request may take.
    llm_timeout: float = 300.0
    # abcpen offline ASR (yinzi/dialects/abcpen.py): its document's limits. Results are kept result_retention.
    abcpen_submits_per_second: int = 5  # task submits per client IP address per second (0: no limit)
    abcpen_daily_tasks: int = 100  # tasks per app (account) in the last 24 hours (0: no limit)
    abcpen_max_bytes: int = 500 * 1024**2  # one task's audio, bytes
    abcpen_max_duration: int = 4 * 3600  # one task's audio, seconds
    # The Orpheus-compatible API (yinzi/dialects/orpheus.py): the largest upload session it opens, bytes
    # (its document says 2 GB; the stricter of this and max_download_bytes applies).
    orpheus_max_upload_bytes: int = 2 * GIB
    # Bella transcriptions/file API (yinzi/dialects/bella.py): its model names -> installed Whisper models (a name
    # not listed runs whisper_model), and the largest result answered inline, in bytes of JSON (a larger one is
    # answered with a file_id to fetch it by).
    bella_models: Mapping[str, str] = field(default_factory=dict)
    bella_result_limit: int = 1024 * 1024
    # ---- OpenAI-compatible transcription (yinzi/dialects/openai_audio.py): synchronous requests ----
    # The priority its orders run with (queue or lightning, which costs more and starts sooner).
    openai_priority: str = "queue"
    # Seconds a request waits for its order before answering 504; the order runs on and stays queryable.
    # Under the openai package's own 600 s, so the client hears why instead of timing out and retrying.
    openai_wait: float = 540.0
    # The largest file it takes (OpenAI's own limit); larger files go through the resumable uploads.
    openai_max_file_bytes: int = 25 * 1024 * 1024
    # ---- object storage (scale-out: hosts that share no disk) ----
    # None: files under data_dir (uploads/, results/, cache/). s3://bucket/prefix: an S3-compatible store
    # (AWS S3, MinIO, R2, OSS, COS); credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    storage_url: str | None = None
    s3_endpoint_url: str | None = None  # None: AWS itself; http(s)://host:port for every other store
    s3_region: str | None = None
    # True: result files stream through yinzi instead of a redirect to a presigned URL, for stores that
    # clients cannot reach.
    storage_proxy: bool = False

    @property
    def db_path(self) -> Path:
        return self.data_dir / "yinzi.db"

    @property
    def database(self) -> Path | str:
        """What :meth:`Database.open` opens: the PostgreSQL URL, or the SQLite file."""
        return self.database_url or self.db_path

    @property
    def database_shown(self) -> str:
        """The database, for messages: the SQLite file, or the PostgreSQL URL without its password."""
        if not self.database_url:
            return str(self.db_path.resolve())
        parts = urlsplit(self.database_url)
        if parts.password is None:
            return self.database_url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def work_dir(self) -> Path:
        """Scratch space: a job's input and outputs while it runs, an upload's part in flight. Empty when idle."""
        return self.data_dir / "work"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def models_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    @property
    def threads_per_engine(self) -> int:
        if self.engine_threads > 0:
            return self.engine_threads
        busy = min(self.worker_concurrency, len(ENGINE_KINDS) * self.engine_concurrency)
        return max(1, len(os.sched_getaffinity(0)) // max(1, busy))

    @property
    def whisper_engine_name(self) -> str:
        if self.whisper_engine:
            return self.whisper_engine
        import importlib.util

        return "faster-whisper" if importlib.util.find_spec("faster_whisper") else "openai-whisper"

    def engine_timeout(self, duration: float) -> float:
        return min(self.engine_timeout_base + self.engine_timeout_factor * duration, float(self.job_timeout))

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def platform(self, name: str) -> PlatformOptions:
        return self.platforms.get(name) or PlatformOptions()

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"YINZI_{name}", "").strip()
            return value or None

        def integer(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                raise SettingsError(f"YINZI_{name} must be an integer, got {raw!r}") from None

        def pairs(name: str) -> dict[str, str]:
            raw = get(name)
            out: dict[str, str] = {}
            for item in (raw or "").split(","):
                if item.strip():
                    key, sep, value = item.partition("=")
                    if not sep:
                        raise SettingsError(f"YINZI_{name} items must look like key=value, got {item!r}")
                    out[key.strip()] = value.strip()
            return out

        def networks(name: str) -> tuple[IPNetwork, ...]:
            items = [item.strip() for item in (get(name) or "").split(",") if item.strip()]
            try:
                return tuple(ipaddress.ip_network(item, strict=False) for item in items)
            except ValueError as exc:
                raise SettingsError(f"YINZI_{name} takes IP addresses or CIDRs: {exc}") from None

        prices = dict(DEFAULT_PRICES)
        for order_type, points in pairs("PRICES").items():
            if order_type not in ORDER_TYPES or not (points.isascii() and points.isdigit()):
                raise SettingsError(f"YINZI_PRICES: {order_type}={points} is not <orderType>=<points>")
            prices[order_type] = int(points)

        def number(name: str, default: float) -> float:
            raw = get(name)
            try:
                return default if raw is None else float(raw)
            except ValueError:
                raise SettingsError(f"YINZI_{name} must be a number, got {raw!r}") from None

        platforms = {
            name: PlatformOptions(
                cookie=get(f"{name.upper()}_COOKIE"),
                proxy=get(f"{name.upper()}_PROXY"),
                user_agent=get(f"{name.upper()}_USER_AGENT"),
                timeout=number(f"{name.upper()}_TIMEOUT", PlatformOptions.timeout),
            )
            for name in PLATFORMS
        }

        def choice(name: str, choices: tuple[str, ...]) -> str | None:
            raw = get(name)
            if raw is not None and raw not in choices:
                raise SettingsError(f"YINZI_{name} must be one of {', '.join(choices)}, got {raw!r}")
            return raw

        def flag(name: str) -> bool:
            raw = (get(name) or "0").lower()
            if raw not in ("0", "1", "true", "false", "yes", "no"):
                raise SettingsError(f"YINZI_{name} must be 1 or 0, got {raw!r}")
            return raw in ("1", "true", "yes")

        storage_url = get("STORAGE_URL")
        if storage_url is not None and not (storage_url.startswith("s3://") and len(storage_url) > 5):
            raise SettingsError(f"YINZI_STORAGE_URL must look like s3://bucket/prefix, got {storage_url!r}")
        secret = get("SECRET_KEY")
        model_dir = get("MODEL_DIR")
        return cls(
            data_dir=Path(get("DATA_DIR") or "data"),
            host=get("HOST") or cls.host,
            port=integer("PORT", cls.port),
            processes=integer("PROCESSES", cls.processes),
            database_url=get("DATABASE_URL"),
            redis_url=get("REDIS_URL"),
            queue_name=get("QUEUE_NAME") or cls.queue_name,
            model_dir=Path(model_dir) if model_dir else None,
            demucs_model=get("DEMUCS_MODEL") or cls.demucs_model,
            whisper_model=get("WHISPER_MODEL") or cls.whisper_model,
            whisper_engine=choice("WHISPER_ENGINE", WHISPER_ENGINES),
            fetch_allow=tuple(p.strip() for p in (get("FETCH_ALLOW") or "").split(",") if p.strip()),
            trusted_proxies=networks("TRUSTED_PROXIES"),
            host_map=pairs("HOST_MAP"),
            platforms=platforms,
            analyze_price=integer("ANALYZE_PRICE", cls.analyze_price),
            lightning_multiplier=number("LIGHTNING_MULTIPLIER", cls.lightning_multiplier),
            rate_limit=integer("RATE_LIMIT", cls.rate_limit),
            max_running_per_user=integer("MAX_RUNNING_PER_USER", cls.max_running_per_user),
            result_retention=integer("RESULT_RETENTION", cls.result_retention),
            upload_ttl=integer("UPLOAD_TTL", cls.upload_ttl),
            requeue_interval=number("REQUEUE_INTERVAL", cls.requeue_interval),
            webhook_timeout=number("WEBHOOK_TIMEOUT", cls.webhook_timeout),
            public_url=(get("PUBLIC_URL") or "").rstrip("/") or None,
            secret_key=secret.encode() if secret else None,
            prices=prices,
            worker_concurrency=integer("WORKER_CONCURRENCY", cls.worker_concurrency),
            max_download_bytes=integer("MAX_DOWNLOAD_BYTES", cls.max_download_bytes),
            max_duration=integer("MAX_DURATION", cls.max_duration),
            job_timeout=integer("JOB_TIMEOUT", cls.job_timeout),
            engine_concurrency=integer("ENGINE_CONCURRENCY", cls.engine_concurrency),
            engine_threads=integer("ENGINE_THREADS", cls.engine_threads),
            engine_timeout_base=integer("ENGINE_TIMEOUT_BASE", int(cls.engine_timeout_base)),
            engine_timeout_factor=integer("ENGINE_TIMEOUT_FACTOR", int(cls.engine_timeout_factor)),
            result_url_ttl=integer("RESULT_URL_TTL", cls.result_url_ttl),
            engines=pairs("ENGINES"),
            report_font=Path(get("REPORT_FONT") or cls.report_font),
            llm_url=(get("LLM_URL") or "").rstrip("/") or None,
            llm_model=get("LLM_MODEL"),
            llm_api_key=get("LLM_API_KEY"),
            llm_context_chars=integer("LLM_CONTEXT_CHARS", cls.llm_context_chars),
            llm_timeout=number("LLM_TIMEOUT", cls.llm_timeout),
            abcpen_submits_per_second=integer("ABCPEN_SUBMITS_PER_SECOND", cls.abcpen_submits_per_second),
            abcpen_daily_tasks=integer("ABCPEN_DAILY_TASKS", cls.abcpen_daily_tasks),
            abcpen_max_bytes=integer("ABCPEN_MAX_BYTES", cls.abcpen_max_bytes),
            abcpen_max_duration=integer("ABCPEN_MAX_DURATION", cls.abcpen_max_duration),
            orpheus_max_upload_bytes=integer("ORPHEUS_MAX_UPLOAD_BYTES", cls.orpheus_max_upload_bytes),
            bella_models=pairs("BELLA_MODELS"),
            bella_result_limit=integer("BELLA_RESULT_LIMIT", cls.bella_result_limit),
            openai_priority=choice("OPENAI_PRIORITY", ("queue", "lightning")) or cls.openai_priority,
            openai_wait=number("OPENAI_WAIT", cls.openai_wait),
            openai_max_file_bytes=integer("OPENAI_MAX_FILE_BYTES", cls.openai_max_file_bytes),
            storage_url=storage_url,
            s3_endpoint_url=get("S3_ENDPOINT_URL"),
            s3_region=get("S3_REGION"),
            storage_proxy=flag("STORAGE_PROXY"),
        )
