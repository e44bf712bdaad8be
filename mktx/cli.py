"""The `mkt-x` console script: dev, api, worker, migrate, sandbox, token, analytics-rebuild,
analytics-fold, postman."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from mktx.metrics import MULTIPROC_DIR_ENV
from mktx.settings import ConfigurationError, Settings, load_settings

EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h: the configuration is wrong


def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from mktx.dev import run_dev

    return run_dev(settings)


def _api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from mktx.logs import configure_logging

    configure_logging(settings.log_level)
    settings.require_database_url()
    if (args.workers or 1) > 1 and not os.environ.get(MULTIPROC_DIR_ENV):
        # Each process writes its metrics' samples here and GET /metrics sums them all
        # (mktx/metrics.py); a fresh folder per start, or the last run's counts would add up.
        os.environ[MULTIPROC_DIR_ENV] = tempfile.mkdtemp(prefix="mktx-metrics-")
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        workers=args.workers,
    )
    return _leave(0)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    import worker

    return _leave(worker.main(settings))


def _leave(code: int) -> int:
    """End a process that held a Temporal client, once it has shut down cleanly: the SDK's
    native threads can outlive the event loop and abort the interpreter's own teardown
    (temporalio/sdk-python#300: "PyGILState_Release ... finalizing", exit by SIGABRT), which
    would report a clean stop as a crash. Logs and output are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from migrations.runner import upgrade_database
    from mktx.logs import configure_logging

    configure_logging(settings.log_level)
    upgrade_database(settings.require_database_url())
    return 0


def _sandbox(settings: Settings, args: argparse.Namespace) -> int:
    from sandbox.server import serve

    return serve(settings, host=args.host or "127.0.0.1", port=args.port or settings.sandbox_port)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from services.core.auth import Role, issue_token

    try:
        roles = [Role(role) for role in (args.role or ["admin"])]
    except ValueError:
        print(f"unknown role; choose from {', '.join(r.value for r in Role)}", file=sys.stderr)
        return 2
    print(
        issue_token(
            settings,
            merchant_id=args.merchant_id,
            user_id=args.user_id,
            roles=roles,
            ttl_seconds=args.ttl,
        )
    )
    return 0


def _analytics(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild the analytics rollups from the raw tables, or fold their deltas."""
    import asyncio

    from mktx.logs import configure_logging
    from models.db import make_engine, make_sessionmaker
    from services import analytics

    configure_logging(settings.log_level)

    async def run() -> None:
        engine = make_engine(settings.require_database_url(), pool_size=1)
        sessions = make_sessionmaker(engine)
        try:
            if args.command == "analytics-rebuild":
                async with sessions() as session, session.begin():
                    await analytics.rebuild(session, args.merchant_id)
                print(f"analytics rebuilt for {args.merchant_id or 'every merchant'}")
            else:
                print(f"{await analytics.fold_everything(sessions)} delta rows folded")
        finally:
            await engine.dispose()

    asyncio.run(run())
    return 0


def _postman(settings: Settings, args: argparse.Namespace) -> int:
    """Print the Postman collection the API serves, generated from its OpenAPI document."""
    import json

    from api.app import create_app
    from api.postman import postman_collection

    base = args.base_url or f"http://127.0.0.1:{settings.port}"
    collection = postman_collection(create_app(settings).openapi(), base)
    print(json.dumps(collection, indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mkt-x", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("dev", help="start everything for development (embedded parts)")

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int, default=1)

    commands.add_parser("worker", help="run the Temporal worker")
    commands.add_parser("migrate", help="apply database migrations")

    sandbox = commands.add_parser("sandbox", help="serve the X API + LLM emulator")
    sandbox.add_argument("--host")
    sandbox.add_argument("--port", type=int)

    token = commands.add_parser("token", help="print a bearer token signed with MKTX_JWT_SECRET")
    token.add_argument("--merchant-id", required=True)
    token.add_argument("--user-id", required=True)
    token.add_argument("--role", action="append", help="admin (default), agent or viewer")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")

    rebuild = commands.add_parser(
        "analytics-rebuild",
        help="recompute the analytics facts and rollups from the raw tables (locks them meanwhile)",
    )
    rebuild.add_argument("--merchant-id", help="one merchant (default: all)")
    commands.add_parser("analytics-fold", help="fold every merchant's analytics deltas")

    postman = commands.add_parser("postman", help="print the API's Postman collection (JSON)")
    postman.add_argument("--base-url", help="the server's origin (default: this machine's API)")
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "dev": _dev,
    "api": _api,
    "worker": _worker,
    "migrate": _migrate,
    "sandbox": _sandbox,
    "token": _token,
    "analytics-rebuild": _analytics,
    "analytics-fold": _analytics,
    "postman": _postman,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except ConfigurationError as exc:
        print(f"mkt-x: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
