"""Every knob of the service, read from the environment (and `.env`) by pydantic-settings.

Each field is documented in `.env.example` and the README's configuration table; the
environment variable is the field name upper-cased with the `AGENT_` prefix.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGE_DIR = Path(__file__).parent


def agent_dir() -> Path:
    """The `agent/` package's folder (the user's room), found without importing it: the one in
    the working directory first (`agent-endpoint` puts it on the path), else the installed one."""
    spec = importlib.util.find_spec("agent")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path("agent")


# Values people paste from docs and forget to change; refused as API keys.
PLACEHOLDER_KEYS = frozenset({"changeme", "change-me", "changethis", "secret", "your-key", "xxx"})
MIN_KEY_LENGTH = 16
TRACE_EXPORTERS = frozenset({"otlp", "arize", "console", "none"})
MAX_PUSH_BACKOFF_SECONDS = 60.0  # the longest wait between two tries of a push


class SettingsError(ValueError):
    """The configuration cannot work; the message says which variable to fix."""


def _split_csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(BaseSettings):
    """Configuration of one agent endpoint process."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # -- the agent
    entrypoint: str = Field(
        default="agent:run",
        description="`module:function` of the agent, called as run(input, ctx).",
    )
    input_schema_file: Path = Field(
        default_factory=lambda: agent_dir() / "input_schema.json",
        description="JSON Schema of the body Arize templates under `input`.",
    )
    presets_file: Path | None = Field(
        default_factory=lambda: agent_dir() / "presets.json",
        description="Named request presets (config payloads) served with the schema.",
    )
    reject_placeholders: bool = Field(
        default=True,
        description="Refuse a value that is nothing but an unfilled `{{column}}` or "
        "`{{dataset.column}}` placeholder (one inside a longer value only warns).",
    )
    body_shape: Literal["auto", "wrapped", "flat"] = Field(
        default="auto",
        description="How to read a request body: flat (the Agent Playground's: fields at the "
        'top level beside arize_metadata), wrapped (the setup page\'s {"input": {...}}) or auto '
        "(either; the input schema breaks ties).",
    )

    # -- HTTP
    invoke_path: str = Field(default="/invoke", description="Path of the invoke route.")
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Request body limit.")
    docs_enabled: bool = Field(default=True, description="Serve /docs and /openapi.json.")

    # -- auth
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated accepted keys (rotation: list both)."
    )
    api_key_header: str = Field(default="X-API-Key", description="API-key header name.")
    auth_mode: Literal["any", "bearer", "header"] = Field(
        default="any",
        description="Credential forms accepted: `any` (Bearer or the API-key header), `bearer` "
        "(Authorization only) or `header` (the API-key header only; Authorization is left to "
        "a platform in front).",
    )
    required_headers: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description="Extra headers every request must carry, `Name=value,Name2=value2`.",
    )
    auth_disabled: bool = Field(default=False, description="Local development only.")

    # -- limits
    timeout_seconds: float = Field(default=110.0, gt=0, description="Agent time limit.")
    max_concurrency: int = Field(default=64, gt=0, description="In-flight agent runs.")
    queue_wait_seconds: float = Field(
        default=0.0, ge=0, description="How long a request waits for a free slot before 429."
    )
    sync_threads: int = Field(default=64, gt=0, description="Thread pool size for sync agents.")
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long shutdown waits for in-flight requests (0: not at all); those "
        "still running then are cancelled and answered 503 `shutting_down`.",
    )

    # -- the HTTP server (`agent-endpoint serve`; app/server_limits.py)
    max_header_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="Request line and headers, in bytes, before 431 and a closed connection.",
    )
    max_headers: int = Field(default=100, ge=8, description="Header fields per request before 431.")
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time from a connection's first byte (or its opening) to the end of the "
        "headers; past it 408 and the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Time to read a request body on the invoke routes before 408 (a lying "
        "Content-Length cannot hold a connection).",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections per server process (lowered to fit `ulimit -n`); past it "
        "the connection idle or slowest sending its headers the longest is closed, or the new "
        "one refused with 503 when every connection has a request running.",
    )

    # -- retried rows run once (app/idempotency.py)
    idempotency: bool = Field(
        default=True,
        description="A second request with the same arize_metadata.run_id (or Idempotency-Key "
        "header, which wins) waits for or replays the first's answer instead of running again.",
    )
    idempotency_retention_seconds: float = Field(
        default=86_400, gt=0, description="How long a successful answer is kept for replays."
    )
    idempotency_max_entries: int = Field(
        default=10_000, ge=1, description="Answers kept at most; the oldest go first."
    )
    idempotency_max_bytes: int = Field(
        default=67_108_864,
        ge=1,
        description="Bytes of kept answers at most; a bigger single answer is not kept.",
    )

    # -- serving (used by `agent-endpoint serve`)
    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(
        default=8000,
        gt=0,
        lt=65536,
        validation_alias=AliasChoices("AGENT_PORT", "PORT"),
        description="Bind port; PORT (set by PaaS platforms) works too.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("AGENT_WORKERS", "WEB_CONCURRENCY"),
        description="Server processes of `agent-endpoint serve`; WEB_CONCURRENCY works too.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For/-Proto are trusted (comma-separated, or *).",
    )
    log_level: str = Field(default="info", description="Python log level name.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per line, with trace_id, span_id and run_id.",
    )

    # -- tracing (the standard OTEL_* variables keep their meaning; see the README)
    traces_exporter: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("OTEL_TRACES_EXPORTER", "traces_exporter"),
        description="Comma-separated: otlp, arize, console, none. Unset: arize when "
        "ARIZE_API_KEY is set, plus otlp when an OTLP endpoint is set.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"
        ),
        description="Collector URL, e.g. http://127.0.0.1:6006 for Phoenix (OTLP/HTTP).",
    )
    otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL", "otlp_protocol"
        ),
        description="OTLP transport: http/protobuf or grpc.",
    )
    service_name: str = Field(
        default="agent-endpoint",
        validation_alias=AliasChoices("OTEL_SERVICE_NAME", "service_name"),
        description="service.name of the spans.",
    )
    trace_project: str = Field(
        default="agent-endpoint",
        description="Project the spans land in (Phoenix, and Arize when the caller names none).",
    )
    trace_io: bool = Field(
        default=True,
        description="Record the input and output on the request span; false for sensitive data.",
    )
    trace_io_max_chars: int = Field(
        default=16_384, gt=0, description="Input/output recorded on spans is cut past this."
    )
    fastapi_instrumentor: bool = Field(
        default=False,
        description="Also trace every HTTP request with OpenTelemetry's FastAPIInstrumentor.",
    )
    trace_pipeline: Literal["sdk", "fast"] = Field(
        default="sdk",
        description="`sdk`: the OpenTelemetry SDK's spans and batch export, in threads. `fast`: "
        "a light request span and export from a child process, for millisecond agents; it "
        "falls back to `sdk`, with a warning, when the SDK lacks what it relies on.",
    )
    export_process: bool = Field(
        default=True,
        description="AGENT_TRACE_PIPELINE=fast only: encode and send spans from a child "
        "process, off the request path.",
    )
    export_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="AGENT_TRACE_PIPELINE=fast only: niceness of the export process; requests "
        "get the CPU first (0: equal).",
    )
    arize_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ARIZE_API_KEY", "arize_api_key"),
        description="Arize API key for span export (per-request space routing).",
    )
    arize_space_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("ARIZE_SPACE_ALLOWLIST", "arize_space_allowlist"),
        description="Comma-separated Arize space ids spans may be routed to; `*` allows any.",
    )
    arize_collector_endpoint: str = Field(
        default="https://otlp.arize.com/v1",
        validation_alias=AliasChoices("ARIZE_COLLECTOR_ENDPOINT", "arize_collector_endpoint"),
        description="Arize's OTLP collector (EU: https://otlp.eu-west-1a.arize.com/v1).",
    )
    arize_transport: Literal["grpc", "http"] = Field(
        default="grpc", description="Transport to Arize's collector: grpc or http."
    )

    # -- async jobs: POST /invoke/async, GET /jobs/{job_id}, result push
    jobs: Literal["local", "redis", "off"] | None = Field(
        default=None,
        description="Where async jobs run: local (this process), redis (worker processes; "
        "the default with REDIS_URL) or off.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="Redis for durable jobs and worker processes, e.g. redis://127.0.0.1:6379/0.",
    )
    async_status: Literal[200, 202] = Field(
        default=200,
        description="Status of POST /invoke/async's answer: 200 (Arize records any other "
        "status as a failed run) or 202; a caller's `Prefer: respond-async` gets 202 anyway.",
    )
    job_timeout_seconds: float = Field(
        default=3600, gt=0, description="Time limit of one async job's agent run."
    )
    job_concurrency: int = Field(
        default=8, ge=1, description="Jobs run at once: per server process (local) or worker."
    )
    job_queue_size: int = Field(
        default=1000, ge=1, description="Local mode: jobs waiting to run before 503."
    )
    job_grace_seconds: float = Field(
        default=60,
        ge=0,
        description="Local mode: at shutdown, time left to queued and running jobs.",
    )
    job_heartbeat_seconds: float = Field(
        default=15,
        ge=1,
        description="Redis mode: a worker silent this long is taken for dead and its jobs run "
        "again on another worker.",
    )
    job_retention_seconds: float = Field(
        default=86_400, gt=0, description="How long a finished job's status stays readable."
    )
    job_store_max_jobs: int = Field(
        default=10_000,
        ge=1,
        description="Local mode: finished jobs kept in memory; past it the oldest are forgotten "
        "(404) before their retention ends.",
    )
    job_store_max_bytes: int = Field(
        default=67_108_864,
        ge=0,
        description="Local mode: bytes (as JSON) of the results and inputs of finished jobs kept "
        "in memory; past it the oldest results are dropped (`result_dropped` in the status).",
    )
    job_access: Literal["any", "submitter"] = Field(
        default="any",
        description="Who may GET or DELETE a job: any configured API key (keys are for "
        "rotation) or only the key that submitted it (a hash of it is stored with the job).",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL callers reach this service at, e.g. https://agent.example.com; "
        "status_url and Location are built on it instead of the request's Host header.",
    )
    push: Literal["arize", "webhook", "none"] | None = Field(
        default=None,
        description="Where a finished job's result goes: arize (the log API; the default with "
        "ARIZE_SPACE_KEY), webhook (the default with AGENT_PUSH_WEBHOOK_URL) or none.",
    )
    arize_space_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ARIZE_SPACE_KEY", "arize_space_key"),
        description="Arize space key for the log API (Space Settings).",
    )
    arize_log_url: str = Field(
        default="https://api.arize.com/v1/log",
        validation_alias=AliasChoices("ARIZE_LOG_URL", "arize_log_url"),
        description="Arize's REST log API.",
    )
    push_model_id: str = Field(
        default="agent-endpoint", description="`model_id` of the records pushed to Arize."
    )
    push_label: str | None = Field(
        default=None,
        description="`module:function` mapping a finished job to its record's label.",
    )
    push_webhook_url: str | None = Field(
        default=None, description="URL that receives each finished job's status document."
    )
    push_webhook_secret: SecretStr | None = Field(
        default=None, description="Signs webhook pushes (X-Agent-Signature: sha256=HMAC)."
    )
    push_attempts: int = Field(
        default=6, ge=1, description="Tries per push on connection errors, 429 and 5xx."
    )
    push_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First wait between push tries; doubles each time."
    )
    push_timeout_seconds: float = Field(
        default=10, gt=0, description="Time limit of one push request."
    )

    @field_validator("traces_exporter", "arize_space_allowlist", mode="before")
    @classmethod
    def _list_from_csv(cls, value: object) -> object:
        return _split_csv(value) if isinstance(value, str) else value

    @field_validator("traces_exporter")
    @classmethod
    def _known_exporters(cls, names: list[str]) -> list[str]:
        names = [name.lower() for name in names]
        unknown = [name for name in names if name not in TRACE_EXPORTERS]
        if unknown:
            raise ValueError(
                f"unknown exporter {', '.join(unknown)}; use a comma-separated list of "
                f"{', '.join(sorted(TRACE_EXPORTERS))}"
            )
        return names

    @field_validator("async_status", mode="before")
    @classmethod
    def _status_from_text(cls, value: object) -> object:
        # The environment gives text; a Literal of ints takes no text.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @property
    def exporters(self) -> frozenset[str]:
        """The span exporters in use, after the defaults described on `traces_exporter`."""
        if self.traces_exporter:
            return frozenset(self.traces_exporter) - {"none"}
        chosen = set()
        if self.arize_api_key is not None:
            chosen.add("arize")
        if self.otlp_endpoint:
            chosen.add("otlp")
        return frozenset(chosen)

    def check_tracing_configured(self) -> None:
        """Refuse an Arize export that could never work or could leak to any space."""
        if "arize" not in self.exporters:
            return
        if self.arize_api_key is None or not self.arize_api_key.get_secret_value():
            raise SettingsError(
                "OTEL_TRACES_EXPORTER includes arize but ARIZE_API_KEY is not set: "
                "copy it from Arize's Space Settings → API Keys"
            )
        if not self.arize_space_allowlist:
            raise SettingsError(
                "ARIZE_SPACE_ALLOWLIST is empty: list the Arize space ids this endpoint may "
                "export spans to (comma-separated), or `*` to allow any space"
            )

    def secret_values(self) -> list[str]:
        """Every configured secret, for masking wherever text leaves the process."""
        secrets = [key.get_secret_value() for key in self.api_keys]
        secrets += [value.get_secret_value() for value in self.required_headers.values()]
        for optional in (
            self.arize_api_key,
            self.arize_space_key,
            self.push_webhook_secret,
            self.redis_url,
        ):
            if optional is not None:
                secrets.append(optional.get_secret_value())
        return secrets

    @property
    def push_budget_seconds(self) -> float:
        """The longest one push can take: every try at its time limit, every wait at most."""
        return self.push_attempts * (self.push_timeout_seconds + MAX_PUSH_BACKOFF_SECONDS) + 60

    @property
    def jobs_mode(self) -> Literal["local", "redis", "off"]:
        if self.jobs is not None:
            return self.jobs
        return "redis" if self.redis_url is not None else "local"

    @property
    def push_target(self) -> Literal["arize", "webhook", "none"]:
        if self.push is not None:
            return self.push
        if self.arize_space_key is not None:
            return "arize"
        return "webhook" if self.push_webhook_url else "none"

    def check_jobs_configured(self) -> None:
        """Refuse async-job settings that could never work, naming the missing variable."""
        if self.jobs_mode == "redis" and self.redis_url is None:
            raise SettingsError("AGENT_JOBS=redis needs REDIS_URL, e.g. redis://127.0.0.1:6379/0")
        if self.push_target == "arize":
            missing = [
                name
                for name, value in (
                    ("ARIZE_API_KEY", self.arize_api_key),
                    ("ARIZE_SPACE_KEY", self.arize_space_key),
                )
                if value is None
            ]
            if missing:
                raise SettingsError(
                    f"pushing job results to Arize's log API needs {' and '.join(missing)} "
                    "(Space Settings in Arize); or set AGENT_PUSH=none"
                )
        if self.push_target == "webhook" and not self.push_webhook_url:
            raise SettingsError("AGENT_PUSH=webhook needs AGENT_PUSH_WEBHOOK_URL")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_from_csv(cls, value: object) -> object:
        return _split_csv(value) if isinstance(value, str) else value

    @field_validator("required_headers", mode="before")
    @classmethod
    def _headers_from_csv(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in _split_csv(value):
            name, sep, header_value = item.partition("=")
            if not sep or not name.strip() or not header_value.strip():
                raise ValueError(
                    f"AGENT_REQUIRED_HEADERS entry {name.strip()!r} must look like Name=value"
                )
            pairs[name.strip()] = header_value.strip()
        return pairs

    @field_validator(
        "presets_file",
        "otlp_endpoint",
        "arize_api_key",
        "redis_url",
        "jobs",
        "push",
        "arize_space_key",
        "push_label",
        "push_webhook_url",
        "push_webhook_secret",
        "public_url",
        mode="before",
    )
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError(
                "AGENT_PUBLIC_URL must be an absolute http(s) URL without query, e.g. "
                "https://agent.example.com (or https://example.com/agent behind a path prefix)"
            )
        return value.rstrip("/")

    @field_validator("invoke_path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("AGENT_INVOKE_PATH must start with '/', e.g. /invoke")
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_are_real(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(keys, start=1):
            secret = key.get_secret_value()
            if secret.lower() in PLACEHOLDER_KEYS or len(secret) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"AGENT_API_KEYS entry #{position} is a placeholder or shorter than "
                    f"{MIN_KEY_LENGTH} characters; generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return keys

    def check_auth_configured(self) -> None:
        """Refuse to serve without keys unless auth was switched off on purpose."""
        if not self.api_keys and not self.auth_disabled:
            raise SettingsError(
                "no API keys configured: set AGENT_API_KEYS=<key>[,<key>...] "
                "(or AGENT_AUTH_DISABLED=true for local development only)"
            )


ENV_FILE_VARIABLE = "AGENT_ENV_FILE"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning validation errors into one readable line.

    The dotenv file is `.env` in the working directory, or AGENT_ENV_FILE (empty: none); the
    environment wins over it.
    """
    from pydantic import ValidationError  # noqa: PLC0415 - only needed on this path

    overrides.setdefault("_env_file", os.environ.get(ENV_FILE_VARIABLE, ".env") or None)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable(err['loc'])}{err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise SettingsError(f"invalid configuration: {problems}") from None


def _variable(location: tuple[int | str, ...]) -> str:
    if not location:
        return ""
    name = str(location[0])
    for field in Settings.model_fields:
        names = variable_names(field)
        if name in (field, *names):
            return f"{' or '.join(names)}: "
    return f"{name}: "


def variable_name(field: str) -> str:
    """The environment variable of a settings field (standard names like OTEL_* included)."""
    return variable_names(field)[0]


def variable_names(field: str) -> list[str]:
    """Every environment variable that sets `field`, the one that wins first."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [name for name in alias.choices if isinstance(name, str) and name.isupper()]
    return [f"AGENT_{field.upper()}"]
