"""The ``yinzi`` command: run the service and workers, manage users, keys and points.

Every command works on one data directory: ``--data-dir``, else YINZI_DATA_DIR, else ./data. On SQLite (no
YINZI_DATABASE_URL), administration commands refuse a directory without a database (only ``users create``
makes one), so running them from the wrong folder says so instead of showing an empty new database.

yinzi serve [--host H] [--port P]        the API (and, without YINZI_REDIS_URL, the jobs too)
yinzi worker                             an arq worker (needs YINZI_REDIS_URL)
yinzi users create NAME [--points N]
yinzi users list
yinzi users webhook-secret NAME [--rotate]   the secret that signs NAME's webhooks
yinzi keys create USER [--label L] [--signed] [--rate-limit N]
                                         prints the key (or signed pair) once; only a hash is stored
yinzi keys list [USER]
yinzi keys limit PREFIX N|default        requests per minute for one key
yinzi keys revoke PREFIX
yinzi points grant USER POINTS [--note TEXT]
yinzi models pull [NAME...] [--engine E]  official Demucs / Whisper weights into YINZI_MODEL_DIR
yinzi models add PATH [--name NAME]       a CTranslate2 Whisper folder or a whisper .pt already on disk
yinzi models list                         what is installed, for which engine
yinzi operators create|list|revoke [NAME]  tokens for the web console's operator pages
yinzi doctor [--offline]                 checks what orders need here and says how to fix what is missing
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from yinzi.logs import AccessLogger, setup_logging
from yinzi.settings import WHISPER_ENGINES, Settings, SettingsError
from yinzi.store import Database, IntegrityError, User

if TYPE_CHECKING:
    from yinzi.signing import Signer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yinzi", description="Self-hosted audio-processing order service.")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="database, results and secret key (YINZI_DATA_DIR, default ./data: the working directory's)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", help="address to listen on (YINZI_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (YINZI_PORT, default 8000)")
    serve.add_argument(
        "--processes",
        type=int,
        help="API processes sharing the port (YINZI_PROCESSES, default 1; >1 needs Redis)",
    )
    sub.add_parser("worker", help="run an arq worker (needs YINZI_REDIS_URL)")

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    create = users.add_parser("create", help="create a user")
    create.add_argument("name")
    create.add_argument("--points", type=int, default=0, help="initial balance")
    users.add_parser("list", help="list users and balances")
    webhook = users.add_parser(
        "webhook-secret", help="show (or --rotate) the secret that signs a user's webhooks"
    )
    webhook.add_argument("name")
    webhook.add_argument(
        "--rotate", action="store_true", help="replace it; the old one stops working at once"
    )

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    key_create = keys.add_parser("create", help="create an API key (shown once)")
    key_create.add_argument("user")
    key_create.add_argument("--label", default="")
    key_create.add_argument(
        "--signed", action="store_true", help="a public key and secret for X-Signature requests instead"
    )
    key_create.add_argument("--rate-limit", type=int, help="requests per minute (default YINZI_RATE_LIMIT)")
    key_limit = keys.add_parser("limit", help="set a key's requests per minute")
    key_limit.add_argument("prefix")
    key_limit.add_argument("limit", help="a number, 0 for none, or default")
    key_list = keys.add_parser("list", help="list API keys")
    key_list.add_argument("user", nargs="?")
    key_revoke = keys.add_parser("revoke", help="revoke an API key by its prefix")
    key_revoke.add_argument("prefix")

    models = sub.add_parser("models", help="manage model weights").add_subparsers(
        dest="action", required=True
    )
    pull = models.add_parser("pull", help="download official weights into YINZI_MODEL_DIR")
    pull.add_argument(
        "names", nargs="*", help="e.g. htdemucs, small, large-v3 (default: the configured models)"
    )
    pull.add_argument(
        "--engine",
        choices=WHISPER_ENGINES,
        help="the Whisper engine whose format to fetch (default: YINZI_WHISPER_ENGINE)",
    )
    add = models.add_parser("add", help="install weights already on this machine (air-gapped hosts)")
    add.add_argument("path", help="a CTranslate2 Whisper folder (model.bin, ...) or an openai-whisper .pt")
    add.add_argument("--name", help="the model's name in orders (default: the folder's or file's name)")
    models.add_parser("list", help="the installed models and the engine each serves")

    ops = sub.add_parser("operators", help="operator tokens for the console's operator pages")
    ops_actions = ops.add_subparsers(dest="action", required=True)
    ops_actions.add_parser("create", help="a new token for NAME (shown once)").add_argument("name")
    ops_actions.add_parser("list", help="operators' names")
    ops_actions.add_parser("revoke", help="remove NAME's token").add_argument("name")

    doctor = sub.add_parser("doctor", help="check this machine: tools, engines, models, services, network")
    doctor.add_argument("--offline", action="store_true", help="skip the short-video platforms' check")

    points = sub.add_parser("points", help="manage points").add_subparsers(dest="action", required=True)
    grant = points.add_parser("grant", help="add points to a user (negative to remove)")
    grant.add_argument("user")
    grant.add_argument("points", type=int)
    grant.add_argument("--note", default="")
    return parser


SHARED_SECRET_HINT = "the same long random value on every API and worker host"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"yinzi: {exc}", file=sys.stderr)
        return 2
    if args.data_dir is not None:
        settings = settings.replace(data_dir=args.data_dir)
    if args.command in ("serve", "worker") and settings.storage_url and not settings.secret_key:
        # Beside an object store hosts share no disk, so a key kept in one data directory would be each
        # host's own: URLs signed on one host would fail on the next.
        print(f"yinzi: YINZI_STORAGE_URL needs YINZI_SECRET_KEY, {SHARED_SECRET_HINT}", file=sys.stderr)
        return 2
    if args.command == "serve":
        settings = settings.replace(
            host=args.host or settings.host,
            port=args.port or settings.port,
            processes=args.processes or settings.processes,
        )
        return _serve(settings)
    if args.command == "worker":
        if settings.redis_url:  # else run() says what is missing
            _use_metrics_dir(settings)
        import yinzi.dialects  # noqa: F401  (their callback styles, for the webhooks this worker sends)
        from workers.arq_worker import run

        run(settings)
        return 0
    if args.command == "operators":
        return _operators(settings, args)
    if args.command == "doctor":
        from yinzi.doctor import doctor

        return doctor(settings, network=not args.offline)
    if args.command == "models":
        return MODELS[args.action](settings, args)
    handler = ADMIN[(args.command, args.action)]
    where = settings.data_dir.resolve()
    if settings.database_url is None:  # a PostgreSQL database exists wherever the command runs
        creates = (args.command, args.action) == ("users", "create")
        if not settings.db_path.exists() and not creates:
            # Opening would silently make a new, empty database wherever this command happens to run.
            print(f"yinzi: no database in {where}: {DATA_DIR_HINT}", file=sys.stderr)
            return 1
        if not settings.db_path.exists():
            print(f"creating a new database in {where}", file=sys.stderr)
    try:
        return asyncio.run(_with_db(settings, handler, args))
    except CommandError as exc:
        print(f"yinzi: {exc} ({database_named(settings)})", file=sys.stderr)
        return 1


def database_named(settings: Settings) -> str:
    """Which database a command used, for its messages."""
    if settings.database_url is None:
        return f"data directory {settings.data_dir.resolve()}"
    return f"database {settings.database_shown}"


def _use_metrics_dir(settings: Settings) -> None:
    from yinzi.multiproc import use_metrics_dir

    use_metrics_dir(settings.data_dir)  # before anything imports prometheus-client


def _serve(settings: Settings) -> int:
    if settings.processes <= 1:
        _use_metrics_dir(settings)
        _serve_process(settings)
        return 0
    if not settings.redis_url:
        print(
            "yinzi: --processes above 1 needs YINZI_REDIS_URL: the embedded queue runs jobs in one process",
            file=sys.stderr,
        )
        return 2
    _use_metrics_dir(settings)
    # Python serves one core per process; the kernel spreads connections over processes sharing the port.
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=_serve_process, args=(settings,), daemon=True) for _ in range(settings.processes)
    ]
    for child in children:
        child.start()

    def stop(signum: int, frame: object) -> None:
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()
    return max((child.exitcode or 0) for child in children)


def _serve_process(settings: Settings) -> None:
    from aiohttp import web

    from yinzi.app import create_app

    setup_logging()
    logging.getLogger("yinzi").info("data directory: %s", settings.data_dir.resolve())
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=settings.processes > 1,
        access_log_class=AccessLogger,
        print=lambda msg: print(msg, file=sys.stderr),
    )


def _models_pull(settings: Settings, args: argparse.Namespace) -> int:
    from workers.engines.models import known_models, pull

    engine = args.engine or settings.whisper_engine_name
    names = args.names or [settings.demucs_model, settings.whisper_model]
    known = known_models(engine)
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"yinzi: unknown model {unknown[0]!r}; known: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    for name in names:
        try:
            where = pull(name, settings.models_dir, engine)
        except OSError as exc:  # URLError, socket and hub connection errors are OSErrors
            reason = " ".join(str(getattr(exc, "reason", exc)).split())
            print(
                f"yinzi: cannot download {name}: {reason} (is this machine online? "
                "Weights already on disk install with `yinzi models add PATH`)",
                file=sys.stderr,
            )
            return 1
        print(f"{name}: ready in {where}")
    return 0


def _models_add(settings: Settings, args: argparse.Namespace) -> int:
    from workers.engines.models import add

    try:
        added = add(Path(args.path), settings.models_dir, args.name)
    except (ValueError, OSError) as exc:
        print(f"yinzi: {exc}", file=sys.stderr)
        return 2
    for model in added:
        print(f"{model.name}: ready for {model.engine} in {model.path}")
    return 0


def _models_list(settings: Settings, args: argparse.Namespace) -> int:
    from workers.engines.models import list_installed

    found = list_installed(settings.models_dir)
    if not found:
        print(f"no models in {settings.models_dir}: `yinzi models pull` or `yinzi models add PATH`")
    for model in found:
        print(f"{model.name:<24} {model.engine:<16} {model.path}")
    return 0


MODELS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "pull": _models_pull,
    "add": _models_add,
    "list": _models_list,
}


def _operators(settings: Settings, args: argparse.Namespace) -> int:
    from yinzi.console import operators

    where = settings.data_dir.resolve()
    if args.action == "create":
        print(operators.create(settings.data_dir, args.name))
        print(f"(operator {args.name} in {where}; this token is shown only once)", file=sys.stderr)
    elif args.action == "list":
        for name in operators.names(settings.data_dir):
            print(name)
    elif not operators.revoke(settings.data_dir, args.name):
        print(f"yinzi: no operator named {args.name!r} (data directory {where})", file=sys.stderr)
        return 1
    return 0


# ---- administration ------------------------------------------------------------------------------------

DATA_DIR_HINT = (
    "run this where `yinzi serve` runs, or name its data directory with YINZI_DATA_DIR or --data-dir"
)


class CommandError(Exception):
    pass


async def _with_db(
    settings: Settings, handler: Callable[..., Awaitable[None]], args: argparse.Namespace
) -> int:
    db = await Database.open(settings.database)
    try:
        await handler(db, settings, args)
    finally:
        await db.close()
    return 0


async def _user(db: Database, name: str) -> User:
    user = await db.user_by_name(name)
    if user is None:
        raise CommandError(f"no user named {name!r}: create it with `yinzi users create {name}`")
    return user


async def _users_create(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    if args.points < 0:
        raise CommandError("--points cannot be negative")
    try:
        user = await db.create_user(args.name, args.points)
    except IntegrityError:
        raise CommandError(f"a user named {args.name!r} already exists") from None
    print(f"created user {user.name} with {user.balance} points")
    print(f"next: yinzi keys create {user.name}")


async def _users_list(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    for user in await db.list_users():
        print(f"{user.name}\t{user.balance}")


async def _keys_create(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    from yinzi.accounts import create_key

    if args.rate_limit is not None and args.rate_limit < 0:
        raise CommandError("--rate-limit cannot be negative")
    user = await _user(db, args.user)
    signer = _signer(settings) if args.signed else None
    made = await create_key(db, user, args.label, signer=signer, rate_limit=args.rate_limit)
    if made.secret is None:
        print(made.key)
        print(f"(prefix {made.prefix}; this key is shown only once, store it now)", file=sys.stderr)
    else:
        print(f"public key: {made.key}\nsecret:     {made.secret}")
        print(f"(prefix {made.prefix}; the secret is shown only once, store it now)", file=sys.stderr)


async def _keys_limit(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    limit = (
        None
        if args.limit == "default"
        else int(args.limit)
        if args.limit.isascii() and args.limit.isdigit()
        else -1
    )
    if limit is not None and limit < 0:
        raise CommandError("the limit is a number of requests per minute, 0 for none, or default")
    if await db.set_rate_limit(args.prefix, limit) == 0:
        raise CommandError(f"no active key with prefix {args.prefix!r} (see `yinzi keys list`)")
    shown = f"the default ({settings.rate_limit})" if limit is None else "no limit" if limit == 0 else limit
    print(f"{args.prefix}: {shown} requests per minute")


async def _users_webhook_secret(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    user = await _user(db, args.name)
    print(await (db.rotate_webhook_secret(user.id) if args.rotate else db.webhook_secret(user.id)))


def _signer(settings: Settings) -> Signer:
    from yinzi.signing import Signer

    return Signer.for_settings(settings)


async def _keys_list(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    if args.user:
        await _user(db, args.user)
    for key in await db.list_keys(args.user):
        state = "revoked " + _date(key.revoked_at) if key.revoked_at else "active"
        kind = "signed" if key.signed else "bearer"
        limit = "default limit" if key.rate_limit is None else f"{key.rate_limit}/min"
        print(
            f"{key.prefix}\t{key.user_name}\t{kind}\t{state}\t{limit}\tcreated {_date(key.created_at)}\t{key.label}"
        )


async def _keys_revoke(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    count = await db.revoke_key(args.prefix)
    if count == 0:
        raise CommandError(f"no active key with prefix {args.prefix!r} (see `yinzi keys list`)")
    print(f"revoked {count} key(s) with prefix {args.prefix}")


async def _points_grant(db: Database, settings: Settings, args: argparse.Namespace) -> None:
    from yinzi.errors import InsufficientBalance

    user = await _user(db, args.user)
    try:
        balance = await db.grant_points(user.id, args.points, args.note)
    except InsufficientBalance:
        raise CommandError(
            f"{user.name} has only {user.balance} points; cannot remove {-args.points}"
        ) from None
    print(f"{user.name} now has {balance} points")


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


ADMIN: dict[tuple[str, str], Callable[[Database, Settings, argparse.Namespace], Awaitable[None]]] = {
    ("users", "create"): _users_create,
    ("users", "list"): _users_list,
    ("users", "webhook-secret"): _users_webhook_secret,
    ("keys", "create"): _keys_create,
    ("keys", "list"): _keys_list,
    ("keys", "limit"): _keys_limit,
    ("keys", "revoke"): _keys_revoke,
    ("points", "grant"): _points_grant,
}
