"""The Kubernetes manifests in deploy/kubernetes: valid for the API server, and true to the app.

Offline: the schemas are kubernetes-validate's own, the app is built in-process, and the
worker's probe talks to a local redis-server. Each check reads the fact it compares against
from where it lives (the app's routes, the Settings model, the Dockerfile, pyproject.toml),
so a change on either side that breaks a deployment fails here.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import SecretStr

from app.cli import main as cli_main
from app.main import create_app
from app.settings import Settings, variable_names
from app.tracing.fast.export_process import STOP_TIMEOUT
from tests.conftest import client_for
from tests.redis_server import RedisServer

# Neither ships type information: loaded as Any rather than silenced import by import.
yaml: Any = importlib.import_module("yaml")
kubernetes_validate: Any = importlib.import_module("kubernetes_validate")

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
SERVICE = "agent-endpoint"  # the literal the project template renames
SECRET = f"{SERVICE}-secrets"
API = SERVICE  # the API Deployment
WORKER = f"{SERVICE}-worker"
ARIZE_TIMEOUT_SECONDS = 120  # how long Arize waits for an answer
# Values the Secret holds in a real cluster; stand-ins of the right shape for Settings.
SECRET_VALUES = {
    "AGENT_API_KEYS": "k8s-manifest-test-key-0123456789",
    "REDIS_URL": "redis://redis.invalid:6379/0",
}
VARIABLES = sorted({name for field in Settings.model_fields for name in variable_names(field)})
SECRET_VARIABLES = {
    name
    for field, info in Settings.model_fields.items()
    if "SecretStr" in repr(info.annotation)
    for name in variable_names(field)
}

Document = dict[str, Any]


def _load() -> list[tuple[str, Document]]:
    return [
        (path.name, document)
        for path in sorted(DEPLOY.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document  # a `---` with nothing after it
    ]


DOCUMENTS = _load()
RESOURCES = [(name, doc) for name, doc in DOCUMENTS if doc.get("kind") != "Kustomization"]


def _one(kind: str, name: str) -> Document:
    found = [doc for _, doc in RESOURCES if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in {DEPLOY}, found {len(found)}"
    return found[0]


def _deployments() -> list[Document]:
    return [doc for _, doc in RESOURCES if doc["kind"] == "Deployment"]


def _container(deployment: Document) -> Document:
    containers: list[Document] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container expected"
    return containers[0]


def _secret_refs() -> Iterator[tuple[str, Document]]:
    """(env var name, secretKeyRef) of every container."""
    for deployment in _deployments():
        for var in _container(deployment).get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                yield var["name"], ref


def _environment(container: Document) -> dict[str, str]:
    """The variables the container starts with, the Secret's filled with stand-ins; optional
    Secret keys left out (the configuration must work without them)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom source {source}"
        env.update(_one("ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        if ref.get("optional"):
            continue
        assert ref["key"] in SECRET_VALUES, f"add a stand-in for required key {ref['key']}"
        env[var["name"]] = SECRET_VALUES[ref["key"]]
    return env


def _settings(container: Document, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the container's process reads them: its environment, and nothing else."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in _environment(container).items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def _dockerfile_user() -> tuple[int, int]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+)$", dockerfile, re.MULTILINE)
    assert user is not None, "Dockerfile: no numeric `USER uid` line"
    # The user's group: the gid of the group `useradd --gid` names.
    account = re.search(
        rf"groupadd .*--gid (\d+) (\w+).*useradd .*--uid {user[1]} --gid (\w+)", dockerfile, re.S
    )
    assert account is not None, "Dockerfile: no groupadd/useradd of the user"
    assert account[2] == account[3], "Dockerfile: the user's group is not the one created"
    return int(user[1]), int(account[1])


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


# ---------------------------------------------------------------- the Kubernetes schema


@pytest.mark.parametrize(
    "document",
    [doc for _, doc in RESOURCES],
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in RESOURCES],
)
def test_manifest_is_valid_kubernetes(document: Document) -> None:
    """Strict: an unknown or misspelt field fails, as `kubectl apply --validate=strict` would."""
    version = kubernetes_validate.latest_version()  # the CLI's default
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(item) for item in exc.path)
        problem = f"invalid for Kubernetes {exc.version}: {path}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        problem = exc.message
    else:
        return
    pytest.fail(problem, pytrace=False)  # the validator's message, not its schema dump


def test_kustomization_lists_every_manifest() -> None:
    """`kubectl apply -k deploy/kubernetes` applies every file, and only files that exist."""
    kustomizations = [doc for _, doc in DOCUMENTS if doc.get("kind") == "Kustomization"]
    assert len(kustomizations) == 1
    kustomization = kustomizations[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert set(kustomization) == {"apiVersion", "kind", "resources"}
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a file listed twice"
    assert set(listed) == {name for name, _ in RESOURCES}


# ---------------------------------------------------------------- names, labels, image


def test_resources_are_named_after_the_service() -> None:
    for _, doc in RESOURCES:
        name = doc["metadata"]["name"]
        assert name == SERVICE or name.startswith(f"{SERVICE}-"), name
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == SERVICE, name


def test_containers_run_the_projects_image() -> None:
    images = {_container(deployment)["image"] for deployment in _deployments()}
    assert images == {f"registry.example.com/{SERVICE}:{_project_version()}"}


def test_selectors_match_the_pod_labels() -> None:
    """Each Deployment owns its pods; the Service and the PDB take the API pods, not workers."""
    labels = {}
    for deployment in _deployments():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), deployment["metadata"]["name"]
        labels[deployment["metadata"]["name"]] = pod_labels
    for selector in (
        _one("Service", SERVICE)["spec"]["selector"],
        _one("PodDisruptionBudget", SERVICE)["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels[API].items()
        assert not selector.items() <= labels[WORKER].items()


# ---------------------------------------------------------------- ports and probes


def test_ports_are_named_and_match_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probes, Service and Ingress reach the container port by name; the server listens on it,
    on an address the kubelet and the Service can reach."""
    container = _container(_one("Deployment", API))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    settings = _settings(container, monkeypatch)
    assert ports == {"http": settings.port}
    assert settings.host not in {"127.0.0.1", "localhost", "::1"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http", probe
    service = _one("Service", SERVICE)
    assert service["spec"]["type"] == "ClusterIP"
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == "http"
    backends = [
        path["backend"]["service"]
        for rule in _one("Ingress", SERVICE)["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": SERVICE, "port": {"name": service_port["name"]}}]


@pytest.mark.anyio
async def test_probes_ask_the_routes_that_answer_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readiness fails until the app has started and liveness does not: the probes call the
    real app's routes, with the configuration of the manifests."""
    container = _container(_one("Deployment", API))
    app = create_app(_settings(container, monkeypatch))
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    served = {route.path for route in routes if "GET" in (route.methods or ())}
    probes = ("startupProbe", "readinessProbe", "livenessProbe")
    paths = {probe: container[probe]["httpGet"]["path"] for probe in probes}
    assert set(paths.values()) <= served
    transport = httpx.ASGITransport(app=app)  # no lifespan: the agent is not ready yet
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as starting:
        assert (await starting.get(paths["readinessProbe"])).status_code == 503
    async with client_for(app) as ready:
        for probe, path in paths.items():
            assert (await ready.get(path)).status_code == 200, probe


def test_worker_probe_pings_redis(redis_server: RedisServer) -> None:
    """The worker's liveness command succeeds against a live Redis and fails without one."""
    container = _container(_one("Deployment", WORKER))
    assert "ports" not in container
    command = container["livenessProbe"]["exec"]["command"]
    assert command[0] == "python3"  # the image's venv Python; here, this test's interpreter

    def probe(redis_url: str) -> int:
        argv = [sys.executable, *command[1:]]
        env = {"REDIS_URL": redis_url}
        return subprocess.run(argv, env=env, check=False, timeout=30).returncode

    assert probe(redis_server.url) == 0
    redis_server.stop()
    assert probe(redis_server.url) != 0


def test_containers_run_cli_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """The image's ENTRYPOINT is kept (no `command`), and the args are its subcommands."""
    expected = {API: ["serve"], WORKER: ["worker"]}
    for deployment in _deployments():
        container = _container(deployment)
        assert "command" not in container
        assert container["args"] == expected[deployment["metadata"]["name"]]
        with pytest.raises(SystemExit) as exited:
            cli_main([*container["args"], "--help"])
        assert exited.value.code == 0
    assert "worker" in capsys.readouterr().out


# ---------------------------------------------------------------- configuration and secrets


def test_every_variable_is_a_setting() -> None:
    """A misspelt variable would be ignored by the service without a word."""
    names = set()
    for deployment in _deployments():
        container = _container(deployment)
        names |= {var["name"] for var in container.get("env", [])}
        for source in container.get("envFrom", []):
            names |= set(_one("ConfigMap", source["configMapRef"]["name"])["data"])
    names |= {ref["key"] for _, ref in _secret_refs()}
    unknown = sorted(names - set(VARIABLES))
    assert not unknown, f"not settings of app/settings.py: {unknown}"


def test_secrets_come_from_the_one_secret() -> None:
    """Secret settings are never written in a manifest; they come from agent-endpoint-secrets,
    under the key named like the variable."""
    refs = list(_secret_refs())
    assert {name for name, _ in refs} >= {"AGENT_API_KEYS", "REDIS_URL"}
    for name, ref in refs:
        assert ref["name"] == SECRET, name
        assert ref["key"] == name
    assert not [kind for _, doc in RESOURCES if (kind := doc["kind"]) == "Secret"]
    for deployment in _deployments():
        container = _container(deployment)
        written = {var["name"] for var in container.get("env", []) if "value" in var}
        for source in container.get("envFrom", []):
            written |= set(_one("ConfigMap", source["configMapRef"]["name"])["data"])
        assert not written & SECRET_VARIABLES, deployment["metadata"]["name"]


def test_readme_creates_the_secret_the_manifests_read() -> None:
    readme = (DEPLOY / "README.md").read_text()
    match = re.search(r"kubectl create secret generic (\S+)((?:[^\n]*\\\n)*[^\n]*)", readme)
    assert match is not None
    assert match.group(1) == SECRET
    created = set(re.findall(r"--from-literal=([A-Z_]+)=", match.group(2)))
    refs = list(_secret_refs())
    assert created == {ref["key"] for _, ref in refs if not ref.get("optional")}
    mentioned = set(re.findall(r"--from-literal=([A-Z_]+)=", readme))
    assert mentioned <= {ref["key"] for _, ref in refs}


@pytest.mark.parametrize("deployment", [API, WORKER])
def test_configuration_is_accepted(deployment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server (or the worker) starts with what the manifests give it, jobs in Redis."""
    settings = _settings(_container(_one("Deployment", deployment)), monkeypatch)
    if deployment == API:
        settings.check_auth_configured()
    settings.check_jobs_configured()
    settings.check_tracing_configured()
    assert settings.jobs_mode == "redis"
    assert isinstance(settings.redis_url, SecretStr)


def test_ingress_outlasts_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingress waits longer than Arize and the agent's limit, takes the bodies the service
    takes, and serves its hosts over TLS."""
    settings = _settings(_container(_one("Deployment", API)), monkeypatch)
    ingress = _one("Ingress", SERVICE)
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"])
        assert seconds > max(ARIZE_TIMEOUT_SECONDS, settings.timeout_seconds), timeout
    size = re.fullmatch(r"(\d+)([km]?)", annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    assert size is not None
    limit = int(size.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[size.group(2)]
    assert limit >= settings.max_body_bytes
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    tls_hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    assert hosts <= tls_hosts
    assert all(host.endswith(".example.com") for host in hosts)


# ---------------------------------------------------------------- shutdown and security


def test_termination_grace_outlasts_the_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes kills a pod terminationGracePeriodSeconds after it asked it to stop; the
    service must have finished by then. API: the preStop sleep, uvicorn waiting for in-flight
    requests, the drain waiting for sync agents (each AGENT_SHUTDOWN_GRACE_SECONDS), the span
    export flush. Worker: running jobs (AGENT_JOB_GRACE_SECONDS), then the flush."""
    api = _one("Deployment", API)
    container = _container(api)
    sleep, seconds = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    settings = _settings(container, monkeypatch)
    api_needs = float(seconds) + 2 * settings.shutdown_grace_seconds + STOP_TIMEOUT
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > api_needs

    worker = _one("Deployment", WORKER)
    settings = _settings(_container(worker), monkeypatch)
    worker_needs = settings.job_grace_seconds + STOP_TIMEOUT
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > worker_needs


@pytest.mark.parametrize("deployment", [API, WORKER])
def test_pods_are_locked_down(deployment: str) -> None:
    """The Dockerfile's user, never root, no privilege, no capability, a read-only root
    with a writable /tmp, no service-account token, no Service variables."""
    pod = _one("Deployment", deployment)["spec"]["template"]["spec"]
    container = _container(_one("Deployment", deployment))
    effective = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = _dockerfile_user()
    assert effective["runAsUser"] == uid
    assert effective["runAsGroup"] == gid
    assert effective["runAsNonRoot"] is True
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    assert effective["allowPrivilegeEscalation"] is False
    assert effective["capabilities"] == {"drop": ["ALL"]}
    assert effective["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    tmp = mounts["/tmp"]  # noqa: S108 - the pod's /tmp, not a file of this test
    [volume] = [volume for volume in pod["volumes"] if volume["name"] == tmp]
    assert "emptyDir" in volume
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert set(container["resources"]) == {"requests", "limits"}
