"""`agent-endpoint coordinator …`: Arize's side, on your machine.

    agent-endpoint coordinator run --url URL --dataset FILE --template FILE_OR_JSON
        [--shape flat|wrapped] [--header 'Name: value' ...] [--concurrency N] [--timeout S]
        [--retries N] [--results FILE] [--space-id ID] [--project NAME] [--allow-failures]
    agent-endpoint coordinator log-api [--host H] [--port P] --api-key K --space-key S

Registered with the console command through the `agent_endpoint.commands` entry point, so
`app/` never imports this package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from coordinator.dataset import Dataset, DatasetError
from coordinator.log_api import LogStore, create_log_api
from coordinator.progress import ProgressBar
from coordinator.runner import Experiment, RunResult, open_results, run_experiment
from coordinator.schema import body_validator, schema_document, with_preset
from coordinator.summary import Summary
from coordinator.template import SHAPES, TemplateError, check_template
from coordinator.tracing import RunSpans, otlp_provider

EXIT_FAILED_RUNS = 1
EXIT_USAGE = 2
DEFAULTS: dict[str, Any] = {
    "concurrency": 10,
    "timeout": 120.0,
    "retries": 3,
    "results": Path("results.jsonl"),
    "space_id": "sp_local",
    "project": "local-experiments",
    "shape": "flat",  # the Agent Playground's, the current way to launch an experiment
}
REQUIRED = ("url", "dataset", "template")


def register(commands: Any) -> None:
    """Add the `coordinator` command to the console command's subparsers."""
    parser = commands.add_parser(
        "coordinator", help="run a dataset through an endpoint as Arize does"
    )
    sub = parser.add_subparsers(dest="coordinator_command", required=True)

    run = sub.add_parser("run", help="send every dataset row to the endpoint")
    run.add_argument(
        "--config",
        type=Path,
        help="a TOML or JSON file with any of these options by name (url, dataset, template, "
        "headers = {Name = value}, concurrency, ...); flags win over it",
    )
    run.add_argument("--url", help="the endpoint's full URL, e.g. .../invoke")
    run.add_argument("--dataset", type=Path, help=".csv, .jsonl or .json")
    run.add_argument("--template", help="body template: a file or inline JSON")
    run.add_argument(
        "--shape",
        choices=SHAPES,
        help="flat (default, the Agent Playground): the template's fields at the top level "
        "beside arize_metadata, placeholders {{dataset.column}}, a preset's fields merged at "
        'the top level; wrapped (the setup page): {"input": template, "arize_metadata": '
        "...}, placeholders {{column}}, a preset's payload in config",
    )
    run.add_argument(
        "--header", action="append", default=[], help="'Name: value', repeatable (auth headers)"
    )
    run.add_argument("--concurrency", type=int, help=f"default {DEFAULTS['concurrency']}")
    run.add_argument("--timeout", type=float, help="seconds per request, default 120")
    run.add_argument("--retries", type=int, help="on connection errors, 429, 5xx; default 3")
    run.add_argument("--rate", type=float, help="at most this many requests per second")
    run.add_argument(
        "--schema",
        help="validate each body before sending: 'auto' (GET /schema of the endpoint's host), "
        "a URL, or a file (the /schema document or a bare JSON Schema)",
    )
    run.add_argument(
        "--preset",
        help="apply this named preset (from the schema document, GET /schema by default) as "
        "the chosen --shape does",
    )
    run.add_argument(
        "--log-api-port",
        type=int,
        help="also serve the log API stand-in on 127.0.0.1:PORT during the run, and match "
        "records pushed there to runs that answered 202 (prediction id = run id)",
    )
    run.add_argument("--log-api-key", action="append", default=[], help="accepted API key")
    run.add_argument("--space-key", action="append", default=[], help="accepted space key")
    run.add_argument(
        "--push-wait", type=float, default=300.0, help="seconds to wait for each pushed result"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="hydrate (and with --schema validate) every row, write the results, send nothing",
    )
    run.add_argument(
        "--otlp-endpoint",
        help="export each run's top-level span over OTLP/HTTP, e.g. "
        "http://127.0.0.1:6006/v1/traces (Phoenix)",
    )
    run.add_argument("--results", type=Path, help="default results.jsonl")
    run.add_argument("--space-id", help="default sp_local")
    run.add_argument("--project", help="default local-experiments")
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
        headers = _apply_config(args)
        template = _template(args.template)
        dataset = Dataset.open(Path(args.dataset))
        check_template(template, dataset.columns(), args.shape)
        validate = None
        if args.schema or args.preset:
            document = schema_document(args.schema or "auto", args.url, headers)
            validate = body_validator(document, args.shape) if args.schema else None
            if args.preset:
                template = with_preset(template, document, args.preset, args.shape)
    except (DatasetError, TemplateError, ValueError) as exc:
        print(f"agent-endpoint coordinator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    experiment = Experiment(
        url=args.url,
        template=template,
        shape=args.shape,
        headers=headers,
        space_id=args.space_id,
        project_name=args.project or None,
        concurrency=args.concurrency,
        timeout=args.timeout,
        retries=args.retries,
        rate=args.rate,
        validate=validate,
        push_wait=args.push_wait,
        dry_run=args.dry_run,
    )
    provider = otlp_provider(args.otlp_endpoint, args.project) if args.otlp_endpoint else None
    if provider is not None:
        experiment = dataclasses.replace(experiment, spans=RunSpans(provider))
    summary = Summary()
    live = sys.stderr.isatty()  # a progress bar for people; CI logs get the summary only
    bar = ProgressBar(dataset.count() if live else 0)

    def progress(result: RunResult) -> None:
        summary.add(result)
        if live and bar.due(summary.total):
            print(bar.render(summary.total, summary.failed), end="", file=sys.stderr, flush=True)

    try:
        with open_results(Path(args.results)) as results:
            asyncio.run(_experiment(args, experiment, dataset, results, progress))
    except ValueError as exc:
        print(f"agent-endpoint coordinator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if provider is not None:
            provider.shutdown()  # flushes the spans still batched
    if live:
        print(bar.render(summary.total, summary.failed), file=sys.stderr)
    print(summary.render())
    print(f"results: {args.results}")
    return EXIT_FAILED_RUNS if summary.failed and not args.allow_failures else 0


async def _experiment(
    args: argparse.Namespace,
    experiment: Experiment,
    dataset: Dataset,
    results: TextIO,
    progress: Callable[[RunResult], None],
) -> None:
    """Run the experiment, with the log API stand-in served beside it when asked."""
    if args.log_api_port is None:
        await run_experiment(experiment, dataset.rows(), results, on_result=progress)
        return
    import uvicorn  # noqa: PLC0415 - only needed with --log-api-port

    store = LogStore(api_keys=frozenset(args.log_api_key), space_keys=frozenset(args.space_key))
    config = uvicorn.Config(
        create_log_api(store), host="127.0.0.1", port=args.log_api_port, log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    if not server.started:
        with contextlib.suppress(BaseException):
            await serving
        raise ValueError(f"cannot serve the log API on 127.0.0.1:{args.log_api_port}")
    try:
        experiment = dataclasses.replace(experiment, pushes=store)
        await run_experiment(experiment, dataset.rows(), results, on_result=progress)
    finally:
        server.should_exit = True
        await serving


def _log_api(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only this command needs it

    store = LogStore(api_keys=frozenset(args.api_key), space_keys=frozenset(args.space_key))
    uvicorn.run(create_log_api(store), host=args.host, port=args.port, log_level="info")
    return 0


def _apply_config(args: argparse.Namespace) -> dict[str, str]:
    """Fill unset options from --config, then from DEFAULTS; return the merged headers."""
    config: dict[str, Any] = {}
    if args.config is not None:
        text = args.config.read_text(encoding="utf-8")
        try:
            config = tomllib.loads(text) if args.config.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"--config {args.config}: {exc}") from None
        unknown = set(config) - {*vars(args), "headers"}
        if unknown:
            raise ValueError(
                f"--config {args.config}: unknown options {', '.join(sorted(unknown))}"
            )
    for name in (*REQUIRED, *DEFAULTS, "rate", "schema", "preset", "otlp_endpoint"):
        if getattr(args, name, None) is None:
            setattr(args, name, config.get(name, DEFAULTS.get(name)))
    if args.shape not in SHAPES:
        raise ValueError(f"--config {args.config}: shape must be one of {', '.join(SHAPES)}")
    missing = [f"--{name}" for name in REQUIRED if getattr(args, name) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (as flags or in --config)")
    headers = {str(k): str(v) for k, v in config.get("headers", {}).items()}
    return headers | _headers(args.header)


def _template(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # given as an object in the config file
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
