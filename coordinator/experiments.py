"""Recording a coordinator run as a Phoenix experiment, through arize-phoenix-client.

`coordinator run --phoenix URL` (or PHOENIX_COLLECTOR_ENDPOINT) uploads the dataset, creates an
experiment on it and records each run as it finishes, with its trace id and its evaluations, so
Phoenix shows what Arize shows: the experiment's table, each run linked to its trace, and two
experiments on one dataset side by side in the comparison view.

- The dataset is uploaded under a name (the dataset file's stem by default) with Phoenix's
  upsert: the same rows again find the same dataset and version, changed rows make a new
  version of it; it is never duplicated. Each example keeps the row's `id` (or `example_id`)
  column as its stable id, and its input is the whole row.
- The experiment carries its name, and the preset, the config (the template as hydrated, minus
  the rows) and the body shape as metadata.
- Runs are posted from a few worker threads, so the runner's event loop never waits on Phoenix;
  `close()` waits for the last ones. A post that fails is counted and reported, never retried
  into a duplicate, and never fails the run itself.

The client is imported here only, and this module only when Phoenix is asked for: the
coordinator needs neither the client nor its import time otherwise.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from coordinator.dataset import Dataset, Row
from coordinator.evaluators import EXTRAS_HINT
from coordinator.runner import RunResult

ENV = "PHOENIX_COLLECTOR_ENDPOINT"
POST_THREADS = 4
ERRORS_KEPT = 3


class PhoenixError(RuntimeError):
    """Phoenix cannot be used for this run; the message names the fix."""


def load_client(base_url: str) -> Any:
    """A `phoenix.client.Client` for `base_url`, or PhoenixError naming the install command."""
    try:
        from phoenix.client import Client  # noqa: PLC0415 - a few seconds of imports, only here
    except ImportError:
        raise PhoenixError(
            f"recording experiments in Phoenix needs arize-phoenix-client: {EXTRAS_HINT}"
        ) from None
    return Client(base_url=base_url)


def example_ids(rows: list[Row]) -> list[str]:
    """Each row's stable id: its `id`/`example_id` column, or its position when those are
    missing or repeat (Phoenix refuses two examples with one id)."""
    ids = [str(row.get("id") or row.get("example_id") or "") for row in rows]
    if all(ids) and len(set(ids)) == len(ids):
        return ids
    return [f"row-{index}" for index in range(len(rows))]


class PhoenixExperiment:
    """One experiment in a running Phoenix, recorded run by run."""

    def __init__(
        self,
        client: Any,
        *,
        dataset: dict[str, str],
        experiment: dict[str, Any],
        examples: dict[str, str],
        project_id: str,
    ) -> None:
        self.client = client
        self.project_id = project_id
        self.dataset_id = dataset["id"]
        self.dataset_name = dataset["name"]
        self.dataset_version_id = dataset["version_id"]
        self.experiment_id: str = experiment["id"]
        self.experiment_name: str = experiment["name"]
        # The project Phoenix opens from the experiment: the run spans go there.
        self.project_name: str = experiment.get("project_name") or "default"
        self._examples = examples  # stable example id -> Phoenix's node id
        self._pool = ThreadPoolExecutor(POST_THREADS, thread_name_prefix="phoenix-runs")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self.recorded = 0
        self.evaluations = 0
        self.failures: Counter[str] = Counter()

    @classmethod
    def start(
        cls,
        base_url: str,
        dataset: Dataset,
        *,
        dataset_name: str,
        experiment_name: str | None,
        metadata: dict[str, Any],
        description: str | None = None,
    ) -> PhoenixExperiment:
        """Upload (or find again) the dataset and create the experiment on its version."""
        client = load_client(base_url)
        rows = list(dataset.rows())
        if not rows:
            raise PhoenixError(f"{dataset.path}: no rows to upload to Phoenix")
        ids = example_ids(rows)
        try:
            uploaded = client.datasets.create_dataset(
                name=dataset_name,
                examples=[
                    {"input": row, "output": {}, "metadata": {}, "id": example_id}
                    for row, example_id in zip(rows, ids, strict=True)
                ],
                dataset_description=f"uploaded by agent-endpoint coordinator from {dataset.path}",
            )
            experiment = client.experiments.create(
                dataset_id=uploaded.id,
                dataset_version_id=uploaded.version_id,
                experiment_name=experiment_name,
                experiment_description=description,
                experiment_metadata=metadata,
            )
            project = client.projects.get(project_name=experiment["project_name"])
        except Exception as exc:
            client._client.close()  # the client has no close() of its own
            raise PhoenixError(
                f"Phoenix at {base_url} refused the dataset or the experiment "
                f"({type(exc).__name__}: {exc}); is it running there (`make phoenix`)?"
            ) from exc
        examples = {str(e["id"]): str(e.get("node_id") or e["id"]) for e in uploaded.examples}
        return cls(
            client,
            dataset={"id": uploaded.id, "name": uploaded.name, "version_id": uploaded.version_id},
            experiment=dict(experiment),
            examples=examples,
            project_id=project["id"],
        )

    @property
    def url(self) -> str:
        """The experiment in Phoenix's comparison view (its runs, linked to their traces)."""
        return str(self.client.experiments.get_experiment_url(self.dataset_id, self.experiment_id))

    def compare_url(self, *experiment_ids: str) -> str:
        """Phoenix's comparison view of these experiments on this dataset, the first as base."""
        base = str(self.client._client.base_url)
        query = urlencode([("experimentId", e) for e in experiment_ids])
        return f"{base.rstrip('/')}/datasets/{quote(self.dataset_id, safe='')}/compare?{query}"

    def trace_url(self, trace_id: str) -> str:
        """One trace in the experiment's project."""
        base = str(self.client._client.base_url).rstrip("/")
        return f"{base}/projects/{quote(self.project_id, safe='')}/traces/{trace_id}"

    def record(self, result: RunResult, kinds: Mapping[str, str]) -> None:
        """Queue the run and its evaluations (`kinds`: evaluator name -> CODE or LLM) for
        posting; returns at once."""
        node_id = self._examples.get(result.example_id) or self._examples.get(f"row-{result.index}")
        if node_id is None:
            self._fail("the run's example is not in the uploaded dataset")
            return
        ended = _when(result.ended_at) or datetime.now(UTC)
        started = _when(result.started_at) or ended
        future = self._pool.submit(self._post, node_id, result, started, ended, kinds)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _post(
        self,
        node_id: str,
        result: RunResult,
        started: datetime,
        ended: datetime,
        kinds: Mapping[str, str],
    ) -> None:
        trace_id = result.trace_id if result.started_at else None  # a run never sent has none
        try:
            run = self.client.experiments.log_run(
                experiment_id=self.experiment_id,
                dataset_example_id=node_id,
                output=result.output,
                start_time=started,
                end_time=ended,
                trace_id=trace_id,
                error=_error_text(result.error),
            )
        except Exception as exc:  # noqa: BLE001 - reported in the summary, never fails the run
            self._fail(f"run: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self.recorded += 1
        for name, verdict in (result.evaluations or {}).items():
            try:
                self.client.experiments.log_evaluation(
                    experiment_run_id=run["id"],
                    name=name,
                    annotator_kind=kinds.get(name, "CODE"),
                    start_time=ended,
                    score=verdict.get("score"),
                    label=verdict.get("label"),
                    explanation=verdict.get("explanation"),
                    error=verdict.get("error"),
                )
            except Exception as exc:  # noqa: BLE001
                self._fail(f"evaluation {name}: {type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    self.evaluations += 1

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures[what[:300]] += 1

    def close(self) -> None:
        """Wait for every queued post, then close the client's connections."""
        self._pool.shutdown(wait=True)
        self.client._client.close()

    def render(self) -> str:
        lines = [
            f"phoenix: experiment {self.experiment_name!r} on dataset {self.dataset_name!r}: "
            f"{self.recorded} runs, {self.evaluations} evaluations recorded",
            f"phoenix: {self.url}",
        ]
        if self.failures:
            lines.append(f"phoenix: not recorded: {sum(self.failures.values())}")
            lines.extend(f"  {what}: {n}" for what, n in self.failures.most_common(ERRORS_KEPT))
        return "\n".join(lines)


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def _error_text(error: dict[str, Any] | None) -> str | None:
    if error is None:
        return None
    kind = error.get("kind", "error")
    detail = error.get("message") or error.get("violations") or error.get("body") or ""
    status = f" {error['status']}" if "status" in error else ""
    return f"{kind}{status}: {detail}"[:2000]
