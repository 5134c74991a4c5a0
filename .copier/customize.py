"""Turn a fresh copy of agent-endpoint into the user's project (copier runs this; see copier.yml).

Run in the new project's folder, with the answers as options. Every rewrite names the text it
expects: when the template's files drift and a pattern no longer matches, this stops with the
file and the pattern instead of leaving a half-renamed project. Standard library only: it runs
on the Python that runs copier. `.env` is written only when absent (a `copier update` keeps it).
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

TEMPLATE_NAME = "agent-endpoint"
# README sections about the template itself, dropped from the new project.
TEMPLATE_BLOCK = re.compile(r"\n<!-- template-only:start -->.*?<!-- template-only:end -->\n", re.S)
# The name where it names a Kubernetes/PaaS object, label or image (`agent-endpoint`,
# `agent-endpoint-worker`, `…/agent-endpoint:0.1.0`): not inside a longer word, and not the
# console command (`agent-endpoint worker`).
DEPLOY_NAME = re.compile(
    rf"(?<![\w.-]){TEMPLATE_NAME}(?!\w)(?! (?:serve|worker|schema|coordinator)\b)"
)


class Rewrite:
    """Pattern → replacement rules applied to one file, each of which must match."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8")

    def sub(
        self, pattern: str | re.Pattern[str], replacement: str | Callable[[re.Match[str]], str]
    ) -> None:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        # A plain string is inserted as it is (a project name may hold a backslash).
        function = replacement if callable(replacement) else lambda _match: replacement
        self.text, count = compiled.subn(function, self.text)
        if not count:
            sys.exit(f"customize: {self.path}: no match for {compiled.pattern!r}; update .copier/")

    def save(self) -> None:
        self.path.write_text(self.text, encoding="utf-8")


def customize(root: Path, answers: argparse.Namespace) -> None:
    name, slug, service, port = (
        answers.project_name,
        answers.project_slug,
        answers.service_name,
        answers.port,
    )
    header = answers.api_key_header if answers.auth_mode != "bearer" else "X-API-Key"

    pyproject = Rewrite(root / "pyproject.toml")
    pyproject.sub(rf'(?m)^name = "{TEMPLATE_NAME}"$', f'name = "{slug}"')
    pyproject.save()

    readme = Rewrite(root / "README.md")
    credential = (
        f"{header}: <key>" if answers.auth_mode == "header" else "Authorization: Bearer <key>"
    )
    readme.sub(
        rf"\A# {TEMPLATE_NAME}\n",
        f"# {name}\n\nMade from the {TEMPLATE_NAME} template (the answers are in "
        "`.copier/answers.yml`; `copier update --trust -a .copier/answers.yml` brings in its "
        "later changes). `.env` holds this project's key (`AGENT_API_KEYS`), so `make serve` "
        "checks it: send "
        f"`{credential}`.\n",
    )
    readme.sub(TEMPLATE_BLOCK, "\n")
    readme.sub(r"(?m)^\.ci/template-check .*\n", "")  # in the Development commands
    # Local URLs take the chosen port; inside a container the service keeps listening on 8000.
    readme.sub(r"\b(127\.0\.0\.1|localhost):8000\b", lambda match: f"{match[1]}:{port}")
    readme.save()

    example = Rewrite(root / ".env.example")
    example.sub(r"(?m)^AGENT_PORT=8000$", f"AGENT_PORT={port}")
    example.sub(r"(?m)^AGENT_API_KEY_HEADER=X-API-Key$", f"AGENT_API_KEY_HEADER={header}")
    example.sub(r"(?m)^AGENT_AUTH_MODE=any$", f"AGENT_AUTH_MODE={answers.auth_mode}")
    example.sub(rf"(?m)^OTEL_SERVICE_NAME={TEMPLATE_NAME}$", f"OTEL_SERVICE_NAME={service}")
    example.sub(rf"(?m)^AGENT_TRACE_PROJECT={TEMPLATE_NAME}$", f"AGENT_TRACE_PROJECT={service}")
    example.sub(rf"(?m)^AGENT_PUSH_MODEL_ID={TEMPLATE_NAME}$", f"AGENT_PUSH_MODEL_ID={service}")
    example.save()

    compose = Rewrite(root / "docker-compose.yml")
    compose.sub(rf"(?m)^name: {TEMPLATE_NAME}$", f"name: {slug}")
    compose.sub(rf"(?m)^  image: {TEMPLATE_NAME}:local$", f"  image: {slug}:local")
    compose.sub(r"\$\{AGENT_PORT:-8000\}", f"${{AGENT_PORT:-{port}}}")
    compose.save()

    # Kubernetes and PaaS objects are named after the service. The console command inside the
    # image keeps its name (`agent-endpoint serve`): only names, labels and values change.
    deploy_files = [p for p in sorted((root / "deploy").rglob("*")) if p.is_file()]
    for path in [*deploy_files, root / "render.yaml"]:
        deploy = Rewrite(path)
        deploy.sub(DEPLOY_NAME, service)
        if path.name in {"configmap.yaml", "render.yaml"}:
            quote = '"' if path.name == "configmap.yaml" else ""
            deploy.sub(
                rf"(AGENT_AUTH_MODE\W+(?:value: )?){quote}any{quote}\n",
                _value(answers.auth_mode, quote),
            )
            deploy.sub(
                rf"(AGENT_API_KEY_HEADER\W+(?:value: )?){quote}X-API-Key{quote}\n",
                _value(header, quote),
            )
        deploy.save()
    # The manifests' test checks every object is named after the service.
    manifests_test = Rewrite(root / "tests" / "test_deploy_manifests.py")
    manifests_test.sub(rf'(?m)^SERVICE = "{TEMPLATE_NAME}"', f'SERVICE = "{service}"')
    manifests_test.save()

    # The template's own check is not part of the new project (copier.yml excludes it).
    ci = Rewrite(root / ".ci" / "run")
    ci.sub(r'echo "== template check"\n\.ci/template-check\n\n', "")
    ci.save()

    env = root / ".env"
    if not env.exists():
        key = secrets.token_urlsafe(32)
        text = re.sub(
            r"(?m)^AGENT_API_KEYS=$", lambda _match: f"AGENT_API_KEYS={key}", example.text
        )
        env.touch(mode=0o600)
        env.write_text(text, encoding="utf-8")


def _value(value: str, quote: str) -> Callable[[re.Match[str]], str]:
    """Keep what precedes a YAML value (its key), replace the value."""
    return lambda match: f"{match[1]}{quote}{value}{quote}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for option in ("project-name", "project-slug", "service-name", "auth-mode", "api-key-header"):
        parser.add_argument(f"--{option}", required=True)
    parser.add_argument("--port", type=int, required=True)
    customize(Path.cwd(), parser.parse_args())


if __name__ == "__main__":
    main()
