"""app/tracing/ by concern: no import cycles, and the fast pipeline behind its one entry point.

The SDK pipeline is what every copied project runs by default, so it must not even load the
fast one (`python -X importtime` would show it); the fast one is reached only through
`app.tracing.pipeline`, which imports `app.tracing.fast` when AGENT_TRACE_PIPELINE=fast.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
APP = ROOT / "app"
FAST = "app.tracing.fast"


def module_name(path: Path) -> str:
    """app/tracing/__init__.py -> app.tracing"""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in APP.rglob("*.py")}


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The app modules `path` imports (at module level, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from package import module` imports the module
                module = f"{node.module}.{alias.name}"
                found.add(module if module in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("app.")}


def test_the_tracing_modules_import_no_cycle() -> None:
    graph = {
        name: {target for target in imports(path, top_level_only=False) if target in MODULES}
        for name, path in MODULES.items()
        if name.startswith("app.tracing")
    }

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, " -> ".join((*trail, name))
        for target in graph.get(name, ()):
            visit(target, (*trail, name))

    for name in graph:
        visit(name, ())


def test_only_the_pipeline_reaches_the_fast_pipeline_and_only_through_its_entry() -> None:
    for name, path in MODULES.items():
        if name.startswith(FAST):
            continue
        reached = {t for t in imports(path, top_level_only=False) if t.startswith(FAST)}
        if name == "app.tracing.pipeline":
            assert reached == {FAST}, reached  # `from app.tracing import fast`, nothing deeper
        else:
            assert not reached, f"{name} imports {reached}"


def test_the_sdk_pipeline_loads_nothing_of_the_fast_one() -> None:
    code = """
import sys
from app.main import create_app
from app.tracing import build_tracer_provider
from app.redaction import Redactor
from app.settings import Settings
settings = Settings(
    api_keys=["k" * 32], traces_exporter=["console"], trace_pipeline="sdk", _env_file=None
)
provider = build_tracer_provider(settings, Redactor([]))
create_app(settings, agent=lambda input, ctx: None, tracer_provider=provider)
provider.shutdown()
loaded = sorted(name for name in sys.modules if name.startswith("app.tracing.fast"))
print(",".join(loaded))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == ""
