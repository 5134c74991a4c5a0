"""`agent-endpoint`: the one console command.

agent-endpoint serve [--host H] [--port P] [--workers N] [--reload]
agent-endpoint worker            (runs async jobs from Redis: REDIS_URL)
agent-endpoint schema [--presets]
agent-endpoint card --url https://my-agent.example.com [--async] [--json]

More commands come from installed packages through the `agent_endpoint.commands` entry point
(this repository's `coordinator` registers `agent-endpoint coordinator ...`), so this module
never imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import cast

from app.card import CardError, build_card
from app.entrypoint import AgentLoadError
from app.input_schema import InputSchema, SchemaFileError
from app.redaction import mask_standard_streams
from app.settings import Settings, SettingsError, load_settings

CONFIG_ERRORS = (SettingsError, AgentLoadError, SchemaFileError, CardError)
EXIT_CONFIG = 2
PLUGIN_GROUP = "agent_endpoint.commands"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agent-endpoint",
        description="Serve an AI agent behind Arize AI's agent-experiment contract.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the endpoint (settings from env / .env)")
    serve.add_argument("--host", help="bind address (default AGENT_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="bind port (default AGENT_PORT or PORT, 8000)")
    serve.add_argument(
        "--workers", type=int, help="server processes (default AGENT_WORKERS or WEB_CONCURRENCY, 1)"
    )
    serve.add_argument("--reload", action="store_true", help="restart on code changes (dev)")

    commands.add_parser("worker", help="run async jobs from Redis (REDIS_URL; AGENT_JOBS=redis)")

    schema = commands.add_parser("schema", help="print the input JSON Schema to paste into Arize")
    schema.add_argument("--presets", action="store_true", help="print the presets instead")

    card = commands.add_parser(
        "card", help="print what to paste into Arize's New Agent form (never a key)"
    )
    card.add_argument(
        "--url", required=True, help="the public base URL (or the exact route URL) of this server"
    )
    card.add_argument(
        "--async", dest="asynchronous", action="store_true", help="register POST /invoke/async"
    )
    card.add_argument("--name", help="the agent's name in Arize (default OTEL_SERVICE_NAME)")
    card.add_argument("--description", help="one line (default the agent function's docstring)")
    card.add_argument("--json", action="store_true", help="print the card as JSON")

    for plugin in entry_points(group=PLUGIN_GROUP):
        plugin.load()(commands)

    args = parser.parse_args(argv)
    if hasattr(args, "handler"):  # a plugin's command: it reads its own configuration
        return int(args.handler(args))
    # As with uvicorn's --app-dir default: an agent module next to .env imports as `my_agent:run`.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        settings = load_settings()
        if args.command == "schema":
            return _print_schema(settings, presets=args.presets)
        if args.command == "card":
            return _print_card(settings, args)
        if args.command == "worker":
            from app.worker import run_worker  # noqa: PLC0415 - only this command needs it

            return run_worker(settings)
        return _serve(settings, args.host, args.port, args.workers, reload=args.reload)
    except CONFIG_ERRORS as exc:
        print(f"agent-endpoint: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _print_schema(settings: Settings, *, presets: bool) -> int:
    schema = InputSchema.from_files(settings.input_schema_file, settings.presets_file)
    print(json.dumps(schema.presets if presets else schema.schema, indent=2, ensure_ascii=False))
    return 0


def _print_card(settings: Settings, args: argparse.Namespace) -> int:
    card = build_card(
        settings,
        args.url,
        asynchronous=args.asynchronous,
        name=args.name,
        description=args.description,
    )
    if args.json:
        print(json.dumps(card.as_json(), indent=2, ensure_ascii=False))
    else:
        print(card.as_text(), end="")
    return 0


def _serve(
    settings: Settings, host: str | None, port: int | None, workers: int | None, *, reload: bool
) -> int:
    import uvicorn  # noqa: PLC0415 - only the serve command needs it

    from app.logs import configure_logging  # noqa: PLC0415
    from app.main import create_app  # noqa: PLC0415

    mask_standard_streams(settings.secret_values())  # the agent's print too
    try:
        from app.server_limits import LimitedHttpToolsProtocol, ServerLimits  # noqa: PLC0415
    except ImportError as exc:  # httptools comes with uvicorn[standard]
        raise SettingsError(
            f"agent-endpoint serve runs uvicorn's httptools parser with its limits ({exc}); "
            "install it: pip install 'uvicorn[standard]'"
        ) from None

    configure_logging(settings, uvicorn_loggers=True)
    # Build once up front so a bad configuration fails here, with one readable line.
    application = create_app(settings)
    processes = workers or settings.workers
    target = "app.main:app" if processes > 1 or reload else application
    # Header size, count and time limits and a connection cap (app/server_limits.py); a
    # partial, not a class, so the limits reach worker processes too.
    protocol = partial(LimitedHttpToolsProtocol, limits=ServerLimits.from_settings(settings))
    uvicorn.run(
        target,
        http=cast("type[asyncio.Protocol]", protocol),
        host=host or settings.host,
        port=port or settings.port,
        workers=processes,
        # Scheme and client address from a load balancer's X-Forwarded-* headers, from the
        # proxies listed (the status URLs of async jobs are built from them).
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        reload=reload,
        # Seconds, fractions and 0 (no wait) included: uvicorn hands it to asyncio.wait_for.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # type: ignore[arg-type]
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers propagate to ours (text or JSON, with trace ids)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
