"""Loading the agent named by AGENT_ENTRYPOINT (`module:function`)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.context import AgentContext

AgentFunction = Callable[[dict[str, Any], "AgentContext"], Any]


class AgentLoadError(RuntimeError):
    """AGENT_ENTRYPOINT does not name a usable agent; the message says what to change."""


@dataclass(frozen=True)
class Agent:
    """A loaded agent: the callable, a name for logs, and whether it runs on the event loop."""

    function: AgentFunction
    name: str
    is_async: bool

    @classmethod
    def wrap(cls, function: AgentFunction, name: str | None = None) -> Agent:
        label = name or str(getattr(function, "__qualname__", None) or repr(function))
        _check_signature(function, label)
        call = getattr(function, "__call__", None)  # noqa: B004 - async __call__ objects count
        is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)
        return cls(function=function, name=label, is_async=is_async)


def load_agent(spec: str) -> Agent:
    """Import `module:function`; every failure names the variable and the fix."""
    return Agent.wrap(load_callable(spec, "AGENT_ENTRYPOINT"), spec)


def load_callable(spec: str, variable: str) -> Any:
    """The callable `module:function` names; failures name `variable` and the fix."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AgentLoadError(
            f"{variable}={spec!r} must look like 'module:function', e.g. 'agent:run'"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise AgentLoadError(
            f"{variable}={spec!r}: cannot import module {module_name!r} ({exc}); "
            "check the spelling and that the package is installed"
        ) from exc
    except Exception as exc:
        raise AgentLoadError(
            f"{variable}={spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            available = sorted(
                name
                for name, value in vars(module).items()
                if callable(value) and not name.startswith("_")
            )
            raise AgentLoadError(
                f"{variable}={spec!r}: module {module_name!r} has no attribute "
                f"{attribute!r}; callables there: {', '.join(available) or 'none'}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise AgentLoadError(f"{variable}={spec!r} is a {type(target).__name__}, not callable")
    return target


def _check_signature(function: Callable[..., Any], label: str) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # builtins without a signature: trust them
    try:
        signature.bind(None, None)
    except TypeError:
        raise AgentLoadError(
            f"agent {label} has signature {signature}; it must accept two positional "
            "arguments: run(input, ctx)"
        ) from None
