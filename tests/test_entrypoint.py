"""AGENT_ENTRYPOINT: loading `module:function`, and a clear error for every way it can be wrong."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from app.entrypoint import AgentLoadError, load_agent
from app.main import create_app
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("spec", "is_async"),
    [
        ("tests.agents:echo", True),
        ("tests.agents:sync_echo", False),
        ("tests.agents:Tools.run", True),
        ("agent:run", True),
    ],
)
def test_good_entrypoints_load(spec: str, is_async: bool) -> None:
    agent = load_agent(spec)
    assert agent.name == spec
    assert agent.is_async is is_async


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.agents", "must look like 'module:function'"),
        ("tests.agents:", "must look like 'module:function'"),
        (":run", "must look like 'module:function'"),
        ("tests.no_such_module:run", "cannot import module 'tests.no_such_module'"),
        ("tests.agents:missing", "has no attribute 'missing'; callables there:"),
        ("tests.agents:NOT_CALLABLE", "is a dict, not callable"),
        ("tests.agents:one_argument", "it must accept two positional arguments: run(input, ctx)"),
    ],
)
def test_bad_entrypoints_name_the_fix(spec: str, message: str) -> None:
    with pytest.raises(AgentLoadError, match=r"AGENT_ENTRYPOINT|agent ") as caught:
        load_agent(spec)
    assert message in str(caught.value)


def test_missing_attribute_lists_what_is_there() -> None:
    with pytest.raises(AgentLoadError) as caught:
        load_agent("tests.agents:ech")
    assert "echo" in str(caught.value)
    assert "sync_echo" in str(caught.value)


def test_module_that_fails_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_agent.py").write_text("import json\nraise RuntimeError('no API key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AgentLoadError, match="importing 'broken_agent' raised RuntimeError"):
        load_agent("broken_agent:run")


def test_missing_dependency_of_the_agent_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_dep.py").write_text("import not_installed_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        AgentLoadError, match=r"cannot import module 'needs_dep'.*not_installed_pkg"
    ):
        load_agent("needs_dep:run")


def test_create_app_fails_at_startup_for_a_bad_entrypoint() -> None:
    with pytest.raises(AgentLoadError, match=r"tests\.agents:missing"):
        create_app(make_settings(entrypoint="tests.agents:missing"))


def test_injected_agent_is_checked_too() -> None:
    def wrong() -> None:
        """Takes nothing."""

    with pytest.raises(AgentLoadError, match="must accept two positional arguments"):
        create_app(make_settings(), agent=wrong)  # type: ignore[arg-type]


def test_the_old_entrypoint_still_loads_with_a_deprecation_warning() -> None:
    """`app.agent:run` stays one release: the agent moved to the top-level `agent/` room."""
    from agent import run  # noqa: PLC0415

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop("app.agent", None)
        loaded = load_agent("app.agent:run")
    assert loaded.function is run
    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert "AGENT_ENTRYPOINT=agent:run" in str(warning.message)
