"""The project template: copier makes a renamed project whose `.env` configures a working server.

The generated project's own `make test` runs in CI (`.ci/template-check`); these tests check the
renaming, the fresh keys, the refusals of bad answers, and serve the generated app with its own
`.env`. The template is this repository: copier clones its last commit (plus a developer's
uncommitted edits, with a warning that is expected here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from copier import run_copy, run_update
from copier.errors import DirtyLocalWarning

from app.settings import Settings
from tests.live import free_port
from tests.processes import ROOT, clean_env
from tests.servers import wait_ready

TEMPLATE_ONLY = [
    "copier.yml",
    ".copier/customize.py",
    ".ci/template-check",
    "tests/test_project_template.py",
]


def generate(destination: Path, **answers: Any) -> Path:
    with warnings.catch_warnings():
        # A developer's checkout may hold uncommitted edits; copier includes them and warns.
        warnings.simplefilter("ignore", DirtyLocalWarning)
        run_copy(
            str(ROOT),
            destination,
            data=answers,
            defaults=True,
            unsafe=True,  # the task that runs .copier/customize.py
            quiet=True,
            vcs_ref="HEAD",
        )
    return destination


def env_settings(project: Path) -> Settings:
    return Settings(_env_file=project / ".env")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("generated") / "support-triage",
        project_name="Support Triage",
        service_name="triage-svc",
        port=8123,
        auth_mode="header",
        api_key_header="X-Agent-Key",
    )


def test_the_project_is_renamed(project: Path) -> None:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "support-triage"  # the slug of the name

    readme = (project / "README.md").read_text()
    assert readme.startswith("# Support Triage\n")
    assert "template-only" not in readme
    assert "Start your own project" not in readme
    assert "template-check" not in readme
    assert "http://127.0.0.1:8123/invoke" in readme
    assert "127.0.0.1:8000" not in readme

    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    assert compose["name"] == "support-triage"
    assert compose["services"]["agent"]["image"] == "support-triage:local"
    assert compose["services"]["agent"]["ports"] == ["127.0.0.1:${AGENT_PORT:-8123}:8000"]

    deploy_files = [path for path in (project / "deploy").rglob("*") if path.is_file()]
    assert len(deploy_files) >= 5
    for path in [*deploy_files, project / "render.yaml"]:
        text = path.read_text()
        assert "triage-svc" in text, path
        # Only the console command inside the image keeps the template's name.
        rest = re.sub(r"agent-endpoint (serve|worker)\b", "", text)
        assert "agent-endpoint" not in rest, path

    # Deployed services take the auth answers too (they read no .env).
    config = yaml.safe_load((project / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    assert (config["data"]["AGENT_AUTH_MODE"], config["data"]["AGENT_API_KEY_HEADER"]) == (
        "header",
        "X-Agent-Key",
    )
    render = yaml.safe_load((project / "render.yaml").read_text())
    render_env = {item["key"]: item.get("value") for item in render["services"][0]["envVars"]}
    assert (render_env["AGENT_AUTH_MODE"], render_env["AGENT_API_KEY_HEADER"]) == (
        "header",
        "X-Agent-Key",
    )

    answers = yaml.safe_load((project / ".copier" / "answers.yml").read_text())
    assert answers["service_name"] == "triage-svc"
    assert answers["auth_mode"] == "header"
    assert answers["_commit"]

    assert [path for path in TEMPLATE_ONLY if (project / path).exists()] == []
    ci = (project / ".ci" / "run").read_text()
    assert "template-check" not in ci
    assert "make test" in ci
    assert ".ci/container-check" in ci
    assert all((ROOT / path).exists() for path in TEMPLATE_ONLY if path != ".ci/template-check")


def test_env_holds_the_answers_and_a_fresh_key(project: Path) -> None:
    env = project / ".env"
    assert env.stat().st_mode & 0o777 == 0o600
    settings = env_settings(project)
    assert settings.port == 8123
    assert settings.auth_mode == "header"
    assert settings.api_key_header == "X-Agent-Key"
    assert settings.service_name == "triage-svc"
    assert settings.trace_project == "triage-svc"
    [key] = settings.api_keys
    assert len(key.get_secret_value()) >= 43  # 32 random bytes
    settings.check_auth_configured()
    # The key is in .env alone, never in a file that would be committed.
    committed = [p for p in project.rglob("*") if p.is_file() and p.name != ".env"]
    assert not any(key.get_secret_value() in p.read_text(errors="ignore") for p in committed)
    assert ".env" in (project / ".gitignore").read_text().split()


def test_every_project_gets_its_own_key(tmp_path: Path, project: Path) -> None:
    other = generate(tmp_path / "other", project_name="Other", auth_mode="bearer")
    settings = env_settings(other)
    assert settings.auth_mode == "bearer"
    assert settings.api_key_header == "X-API-Key"
    assert settings.port == 8000
    assert settings.service_name == "other"
    assert settings.api_keys[0].get_secret_value() != (
        env_settings(project).api_keys[0].get_secret_value()
    )


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_name": "Agent", "project_slug": "My Agent!"}, "lowercase letters"),
        ({"project_name": "Agent", "service_name": "Svc_1"}, "Kubernetes"),
        ({"project_name": "Agent", "port": 80}, "between 1024 and 65535"),
        (
            {"project_name": "Agent", "auth_mode": "header", "api_key_header": "Authorization"},
            "Bearer form",
        ),
        ({"project_name": "Agent", "auth_mode": "basic"}, "basic"),
    ],
    ids=["slug", "service", "port", "header", "mode"],
)
def test_bad_answers_are_refused(tmp_path: Path, answers: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "bad", **answers)
    assert not (tmp_path / "bad" / ".env").exists()


def test_a_pattern_that_no_longer_matches_stops_the_renaming(tmp_path: Path) -> None:
    """If the template's files drift, customize.py names the file instead of half-renaming."""
    for name in ("pyproject.toml", "README.md", ".env.example", "docker-compose.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "render.yaml").write_text("services: []\n")
    (tmp_path / "docker-compose.yml").write_text("name: something-else\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / ".copier" / "customize.py"), *OPTIONS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "docker-compose.yml: no match for" in result.stderr
    assert not (tmp_path / ".env").exists()


OPTIONS = [
    "--project-name=X",
    "--project-slug=x",
    "--service-name=x",
    "--port=9000",
    "--auth-mode=any",
    "--api-key-header=X-API-Key",
]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_update_brings_in_template_changes_and_keeps_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`copier update --trust -a .copier/answers.yml`, as the README says, after the template
    changed: the change arrives, the renaming and the answers stay, `.env` is untouched."""
    for variable in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{variable}_NAME", "test")
        monkeypatch.setenv(f"GIT_{variable}_EMAIL", "test@example.com")
    template = tmp_path / "template"
    git(tmp_path, "clone", "--quiet", str(ROOT), str(template))
    project = generate(tmp_path / "project", project_name="Support Triage", port=8123)
    answers = yaml.safe_load((project / ".copier" / "answers.yml").read_text())
    assert answers["_src_path"] == str(ROOT)
    # Point the project at the clone, as if it had been generated from it.
    (project / ".copier" / "answers.yml").write_text(
        yaml.safe_dump(
            {
                **answers,
                "_src_path": str(template),
                "_commit": git(template, "rev-parse", "HEAD").strip(),
            }
        )
    )
    env_before = (project / ".env").read_bytes()
    # The user's room: their agent and schema, edited after generation.
    mine = "async def run(input, ctx):  # noqa: A002\n    return {'mine': True}\n"
    (project / "agent" / "__init__.py").write_text(mine)
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "generated")

    example = template / ".env.example"
    example.write_text(
        example.read_text().replace("AGENT_MAX_CONCURRENCY=64", "AGENT_MAX_CONCURRENCY=65")
    )
    # The template's own example agent and schema change too: the project's must not.
    for name, old, new in (
        ("__init__.py", '"tokyo"', '"kyoto"'),
        ("input_schema.json", "What the agent should do", "Kyoto: what the agent does"),
    ):
        path = template / "agent" / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    git(template, "commit", "--quiet", "--all", "-m", "a template change")
    run_update(
        project,
        answers_file=".copier/answers.yml",
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
        vcs_ref="HEAD",
    )
    updated = (project / ".env.example").read_text()
    assert "AGENT_MAX_CONCURRENCY=65" in updated
    assert "AGENT_PORT=8123" in updated
    assert 'name = "support-triage"' in (project / "pyproject.toml").read_text()
    assert (project / ".env").read_bytes() == env_before
    assert (project / "agent" / "__init__.py").read_text() == mine
    assert "Kyoto" not in (project / "agent" / "input_schema.json").read_text()
    changed = git(project, "status", "--porcelain").split("\n")
    assert sorted(line[3:] for line in changed if line) == [".copier/answers.yml", ".env.example"]


@pytest.mark.live
def test_the_generated_app_serves_with_its_env(tmp_path: Path) -> None:
    """The generated app, run from its folder, reads its .env: port, key and header."""
    port = free_port()
    project = generate(tmp_path / "served", project_name="Served", port=port, auth_mode="header")
    key = env_settings(project).api_keys[0].get_secret_value()
    log = tmp_path / "server.log"
    env = clean_env(AGENT_ENV_FILE=str(project / ".env"), PYTHONPATH=str(project))
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log)
        body = {"input": {"goal": "Plan a 3-day trip to Tokyo"}}
        with httpx.Client(base_url=url, timeout=10) as client:
            accepted = client.post("/invoke", json=body, headers={"X-API-Key": key})
            bearer = client.post("/invoke", json=body, headers={"Authorization": f"Bearer {key}"})
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert accepted.status_code == 200, accepted.text
    assert "Tokyo" in accepted.json()["final_response"]
    assert bearer.status_code == 401  # header mode: Authorization is not looked at
    assert key not in log.read_text()
