"""docker-compose.yml against the Dockerfile and the app, offline.

CI runs the stack for real (.ci/container-check), but on its own Debian base: these checks
cover what that run cannot see, the official image a user builds on, and the names compose
passes on, which the app would ignore if they were misspelled.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from app.settings import Settings, variable_names

yaml: Any = importlib.import_module("yaml")

ROOT = Path(__file__).parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
VARIABLES = {name for field in Settings.model_fields for name in variable_names(field)}


def dockerfile_default_image() -> str:
    match = re.search(r"(?m)^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE)
    assert match is not None, "Dockerfile: no ARG PYTHON_IMAGE with a default"
    return match[1]


def test_compose_builds_on_the_dockerfiles_default_image() -> None:
    argument = COMPOSE["x-agent"]["build"]["args"]["PYTHON_IMAGE"]
    assert argument == f"${{PYTHON_IMAGE:-{dockerfile_default_image()}}}"


def test_watch_syncs_into_the_package_the_image_imports() -> None:
    # The official image's Python version, from its tag (python:3.11-slim-bookworm); CI's
    # Debian bookworm base has the same 3.11. The venv is the one the Dockerfile builds.
    version = re.match(r"python:(\d+\.\d+)-", dockerfile_default_image())
    assert version is not None, dockerfile_default_image()
    venv = re.search(r"VIRTUAL_ENV=(\S+)", DOCKERFILE)
    assert venv is not None
    rules = COMPOSE["services"]["agent"]["develop"]["watch"]
    syncs = [rule for rule in rules if rule["action"] == "sync+restart"]
    site = f"{venv[1]}/lib/python{version[1]}/site-packages"
    assert {rule["target"] for rule in syncs} == {f"{site}/agent", f"{site}/app"}
    for sync in syncs:
        assert sync["target"].endswith(sync["path"].removeprefix("./"))
        assert (ROOT / sync["path"] / "__init__.py").is_file()
    rebuild = next(rule for rule in rules if rule["action"] == "rebuild")
    assert f"COPY {rebuild['path']} " in DOCKERFILE, "the rebuild rule watches what is copied"


def test_services_pass_only_settings_the_app_reads() -> None:
    for service in ("agent", "worker"):
        environment = COMPOSE["services"][service]["environment"]
        unknown = sorted(set(environment) - VARIABLES)
        assert not unknown, f"{service}: not settings of the app: {unknown}"


def test_the_worker_runs_the_worker_command_and_waits_for_redis() -> None:
    worker = COMPOSE["services"]["worker"]
    assert worker["command"] == ["worker"]
    assert worker["profiles"] == ["jobs"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["environment"]["REDIS_URL"].startswith("${REDIS_URL:-redis://redis:6379/")
