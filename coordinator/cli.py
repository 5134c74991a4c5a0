"""`agent-endpoint coordinator …`: Arize's side, on your machine.

    agent-endpoint coordinator run --url URL --dataset FILE --template FILE_OR_JSON
        [--header 'Name: value' ...] [--concurrency N] [--timeout S] [--retries N]
        [--results FILE] [--space-id ID] [--project NAME] [--allow-failures]
    agent-endpoint coordinator log-api [--host H] [--port P] --api-key K --space-key S

Registered with the console command through the `agent_endpoint.commands` entry point, so
`app/` never imports this package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from coordinator.dataset import Dataset, DatasetError
from coordinator.log_api import LogStore, create_log_api
from coordinator.runner import Experiment, RunResult, open_results, run_experiment
from coordinator.schema import body_validator, schema_document, with_preset
from coordinator.summary import Summary
from coordinator.template import TemplateError, check_template

EXIT_FAILED_RUNS = 1
EXIT_USAGE = 2


def register(commands: Any) -> None:
    """Add the `coordinator` command to the console command's subparsers."""
    parser = commands.add_parser(
        "coordinator", help="run a dataset through an endpoint as Arize does"
    )
    sub = parser.add_subparsers(dest="coordinator_command", required=True)

    run = sub.add_parser("run", help="send every dataset row to the endpoint")
    run.add_argument("--url", required=True, help="the endpoint's full URL, e.g. .../invoke")
    run.add_argument("--dataset", required=True, type=Path, help=".csv, .jsonl or .json")
    run.add_argument("--template", required=True, help="body template: a file or inline JSON")
    run.add_argument(
        "--header", action="append", default=[], help="'Name: value', repeatable (auth headers)"
    )
    run.add_argument("--concurrency", type=int, default=10)
    run.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    run.add_argument("--retries", type=int, default=3, help="on connection errors, 429, 5xx")
    run.add_argument("--rate", type=float, help="at most this many requests per second")
    run.add_argument(
        "--schema",
        help="validate each body before sending: 'auto' (GET /schema of the endpoint's host), "
        "a URL, or a file (the /schema document or a bare JSON Schema)",
    )
    run.add_argument("--preset", help="put this named preset (from the schema document) in config")
    run.add_argument("--results", type=Path, default=Path("results.jsonl"))
    run.add_argument("--space-id", default="sp_local")
    run.add_argument("--project", default="local-experiments")
    run.add_argument("--allow-failures", action="store_true", help="exit 0 even when runs failed")
    run.set_defaults(handler=_run)

    log_api = sub.add_parser("log-api", help="serve the stand-in of Arize's log API")
    log_api.add_argument("--host", default="127.0.0.1")
    log_api.add_argument("--port", type=int, default=8900)
    log_api.add_argument("--api-key", action="append", required=True)
    log_api.add_argument("--space-key", action="append", required=True)
    log_api.set_defaults(handler=_log_api)


def _run(args: argparse.Namespace) -> int:
    try:
        template = _template(args.template)
        dataset = Dataset.open(args.dataset)
        check_template(template, dataset.columns())
        headers = _headers(args.header)
        validate = None
        if args.schema or args.preset:
            document = schema_document(args.schema or "auto", args.url, headers)
            validate = body_validator(document) if args.schema else None
            if args.preset:
                template = with_preset(template, document, args.preset)
    except (DatasetError, TemplateError, ValueError, httpx.HTTPError) as exc:
        print(f"agent-endpoint coordinator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    experiment = Experiment(
        url=args.url,
        template=template,
        headers=headers,
        space_id=args.space_id,
        project_name=args.project or None,
        concurrency=args.concurrency,
        timeout=args.timeout,
        retries=args.retries,
        rate=args.rate,
        validate=validate,
    )
    summary = Summary()

    def progress(result: RunResult) -> None:
        summary.add(result)
        print(
            f"\r{summary.total} runs: {summary.ok} ok, {summary.failed} failed",
            end="",
            file=sys.stderr,
            flush=True,
        )

    with open_results(args.results) as results:
        asyncio.run(run_experiment(experiment, dataset.rows(), results, on_result=progress))
    print(file=sys.stderr)
    print(summary.render())
    print(f"results: {args.results}")
    return EXIT_FAILED_RUNS if summary.failed and not args.allow_failures else 0


def _log_api(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only this command needs it

    store = LogStore(api_keys=frozenset(args.api_key), space_keys=frozenset(args.space_key))
    uvicorn.run(create_log_api(store), host=args.host, port=args.port, log_level="info")
    return 0


def _template(value: str) -> Any:
    path = Path(value)
    text = path.read_text(encoding="utf-8") if path.is_file() else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"--template is neither a file nor JSON (line {exc.lineno}, column {exc.colno})"
        ) from None


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise ValueError("--header must look like 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers
