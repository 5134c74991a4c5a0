"""`agent-endpoint coordinator …`: Arize's side, on your machine.

    agent-endpoint coordinator run --url URL --dataset FILE --template FILE_OR_JSON
        [--shape flat|wrapped] [--header 'Name: value' ...] [--concurrency N] [--timeout S]
        [--retries N] [--results FILE] [--space-id ID] [--project NAME] [--allow-failures]
        [--eval NAME[:ARG] ...] [--judge-model PROVIDER:MODEL]
        [--phoenix URL | --no-phoenix] [--experiment-name NAME] [--dataset-name NAME]
    agent-endpoint coordinator compare A.jsonl B.jsonl [--fail-if-worse] [--tolerance PTS]
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
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from coordinator.compare import EXIT_WORSE, CompareError, Side, render, worse
from coordinator.dataset import Dataset, DatasetError
from coordinator.evaluators import Evaluator, parse
from coordinator.log_api import LogStore, create_log_api
from coordinator.progress import ProgressBar
from coordinator.runner import Experiment, RunResult, open_results, run_experiment
from coordinator.schema import Validate, body_validator, schema_document, with_preset
from coordinator.summary import Summary
from coordinator.template import SHAPES, TemplateError, check_template
from coordinator.tracing import RunSpans, otlp_provider

if TYPE_CHECKING:
    from coordinator.experiments import PhoenixExperiment

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
PHOENIX_ENV = "PHOENIX_COLLECTOR_ENDPOINT"  # Phoenix's own variable: its base URL


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
    run.add_argument(
        "--eval",
        action="append",
        default=[],
        dest="evals",
        metavar="NAME[:ARG]",
        help="evaluate each output, repeatable: json_schema:FILE, equals|contains|regex:COLUMN"
        "[@PATH], latency:MS, max_tool_calls:N[@PATH], judge[:COLUMN], or module:function",
    )
    run.add_argument(
        "--judge-model",
        help="the model of --eval judge: provider:model (e.g. openai:gpt-4o-mini, its key in "
        "OPENAI_API_KEY) or package.module:attribute; default $AGENT_JUDGE_MODEL",
    )
    phoenix = run.add_mutually_exclusive_group()
    phoenix.add_argument(
        "--phoenix",
        metavar="URL",
        help="record the run as an experiment in the Phoenix at URL (e.g. http://127.0.0.1:6006); "
        f"default ${PHOENIX_ENV}",
    )
    phoenix.add_argument(
        "--no-phoenix",
        action="store_true",
        help=f"record nothing in Phoenix, even with {PHOENIX_ENV}",
    )
    run.add_argument(
        "--experiment-name", help="the experiment's name in Phoenix (default: Phoenix picks one)"
    )
    run.add_argument(
        "--dataset-name",
        help="the dataset's name in Phoenix (default: the dataset file's name without suffix); "
        "the same name and rows find the same dataset again",
    )
    run.set_defaults(handler=_run)

    compare = sub.add_parser(
        "compare", help="two results files side by side: evaluators, latency, changed verdicts"
    )
    compare.add_argument("a", type=Path, help="the baseline's results.jsonl")
    compare.add_argument("b", type=Path, help="the candidate's results.jsonl")
    compare.add_argument(
        "--fail-if-worse",
        action="store_true",
        help=f"exit {EXIT_WORSE} when B has more failed runs, or a lower pass rate on an evaluator",
    )
    compare.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="percentage points a pass rate may drop before --fail-if-worse fails (default 0)",
    )
    compare.add_argument("--limit", type=int, default=20, help="changed rows to list (default 20)")
    compare.set_defaults(handler=_compare)

    log_api = sub.add_parser("log-api", help="serve the stand-in of Arize's log API")
    log_api.add_argument("--host", default="127.0.0.1")
    log_api.add_argument("--port", type=int, default=8900)
    log_api.add_argument("--api-key", action="append", required=True)
    log_api.add_argument("--space-key", action="append", required=True)
    log_api.set_defaults(handler=_log_api)


def _run(args: argparse.Namespace) -> int:
    try:
        headers, template, dataset, validate = _prepare(args)
        evaluators = tuple(parse(spec, args.judge_model) for spec in args.evals)
        recorder = _phoenix(args, dataset, template, evaluators)
    except (DatasetError, TemplateError, ValueError, RuntimeError) as exc:
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
        evaluators=evaluators,
    )
    experiment = _traced(args, experiment, recorder)
    kinds: dict[str, str] = {e.name: e.kind for e in evaluators}
    first_trace: list[str] = []
    summary = Summary()
    live = sys.stderr.isatty()  # a progress bar for people; CI logs get the summary only
    bar = ProgressBar(dataset.count() if live else 0)

    def progress(result: RunResult) -> None:
        summary.add(result)
        if recorder is not None:
            recorder.record(result, kinds)
            if result.ok and not first_trace:
                first_trace.append(result.trace_id)
        if live and bar.due(summary.total):
            print(bar.render(summary.total, summary.failed), end="", file=sys.stderr, flush=True)

    try:
        with open_results(Path(args.results)) as results:
            asyncio.run(_experiment(args, experiment, dataset, results, progress))
    except ValueError as exc:
        print(f"agent-endpoint coordinator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if experiment.spans is not None:
            experiment.spans.shutdown()  # flushes the spans still batched
        if recorder is not None:
            recorder.close()  # waits for the runs and evaluations still being posted
    if live:
        print(bar.render(summary.total, summary.failed), file=sys.stderr)
    print(summary.render())
    print(f"results: {args.results}")
    if recorder is not None:
        print(recorder.render())
        if first_trace:
            print(f"phoenix: a trace: {recorder.trace_url(first_trace[0])}")
    return EXIT_FAILED_RUNS if summary.failed and not args.allow_failures else 0


def _prepare(args: argparse.Namespace) -> tuple[dict[str, str], Any, Dataset, Validate | None]:
    """The headers, the template (with its preset), the dataset and the body check."""
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
    return headers, template, dataset, validate


def _phoenix(
    args: argparse.Namespace, dataset: Dataset, template: Any, evaluators: tuple[Evaluator, ...]
) -> PhoenixExperiment | None:
    """The experiment recorded in Phoenix: with --phoenix or $PHOENIX_COLLECTOR_ENDPOINT, unless
    --no-phoenix or --dry-run (nothing is sent, so there is nothing to record)."""
    args.phoenix_url = None
    if args.no_phoenix or args.dry_run:
        return None
    args.phoenix_url = args.phoenix or os.environ.get(PHOENIX_ENV) or None
    if not args.phoenix_url:
        return None
    return _start_phoenix(args, args.phoenix_url, dataset, template, evaluators)


def _traced(
    args: argparse.Namespace, experiment: Experiment, recorder: PhoenixExperiment | None
) -> Experiment:
    """With Phoenix: its ids in arize_metadata, the run spans exported to it, in the project the
    experiment opens. With --otlp-endpoint: the run spans exported there."""
    endpoint = args.otlp_endpoint
    if recorder is not None:
        experiment = dataclasses.replace(
            experiment,
            dataset_id=recorder.dataset_id,
            experiment_id=recorder.experiment_id,
            project_name=recorder.project_name,
        )
        endpoint = endpoint or f"{args.phoenix_url.rstrip('/')}/v1/traces"
    if not endpoint:
        return experiment
    provider = otlp_provider(endpoint, experiment.project_name)
    spans = RunSpans(provider, endpoint, experiment.project_name)
    return dataclasses.replace(experiment, spans=spans)


def _start_phoenix(
    args: argparse.Namespace,
    url: str,
    dataset: Dataset,
    template: Any,
    evaluators: tuple[Evaluator, ...],
) -> PhoenixExperiment:
    """Upload the dataset and create the experiment (imports the Phoenix client only now)."""
    from coordinator.experiments import PhoenixExperiment  # noqa: PLC0415 - seconds of imports

    config = template.get("config") if isinstance(template, dict) else None
    metadata = {
        "preset": args.preset,
        "shape": args.shape,
        "config": config,
        "template": template,
        "url": args.url,
        "evaluators": [e.name for e in evaluators],
        "source": "agent-endpoint coordinator",
    }
    return PhoenixExperiment.start(
        url,
        dataset,
        dataset_name=args.dataset_name or dataset.path.stem,
        experiment_name=args.experiment_name
        or (args.preset and f"{dataset.path.stem} · {args.preset}"),
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def _compare(args: argparse.Namespace) -> int:
    try:
        a, b = Side.read(args.a), Side.read(args.b)
    except CompareError as exc:
        print(f"agent-endpoint coordinator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(render(a, b, limit=args.limit))
    reasons = worse(a, b, args.tolerance)
    if reasons:
        print(f"B is worse: {'; '.join(reasons)}")
    return EXIT_WORSE if reasons and args.fail_if_worse else 0


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
