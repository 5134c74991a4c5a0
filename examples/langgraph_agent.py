"""A LangGraph tool-calling agent, traced with OpenInference, that runs offline.

Serve it with `AGENT_ENTRYPOINT=examples.langgraph_agent:run`. It takes the same input as
`agent/input_schema.json`: `goal`, and optional `config.model` and `config.max_turns`.

The graph is the usual ReAct loop: the model node calls the chat model with the tools bound;
when the answer asks for tools, the `tools` node (LangGraph's `ToolNode`) runs them and hands
the results back to the model, until the model answers in plain text.

`ScriptedChatModel` stands in for a real chat model so the example needs no network and no API
key, and answers the same goal the same way. To use a real model, install its package
(`pip install langchain-openai`) and change two lines in `graph_for`:

    from langchain_openai import ChatOpenAI          # or: from langchain_anthropic import ...
    return build_graph(ChatOpenAI(model=model))      # ... ChatAnthropic(model=model)

Then delete `ScriptedChatModel`, and replace `get_weather` with your own tools.

Tracing: `LangChainInstrumentor` is switched on when this module is imported and reports to the
global OpenTelemetry tracer provider, the one the service sets up. It may be set after this
import: the instrumentor holds OpenTelemetry's proxy tracer, which finds the provider at the
first span after it is set (and keeps it: set the provider once per process). Each run
gives a CHAIN span for the graph with CHAIN spans for its nodes, an LLM span per model call and
a TOOL span per tool call, all under the span that is current when `run` is called (the
service's request span, which also stamps Arize's run ids on every span below it).
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.errors import GraphRecursionError
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from openinference.instrumentation.langchain import LangChainInstrumentor

from app.context import AgentContext

DEFAULT_MODEL = "scripted-chat-model"
DEFAULT_MAX_TURNS = 12
SYSTEM_PROMPT = "You are a weather assistant. Use the get_weather tool; never guess the weather."

_instrumentor = LangChainInstrumentor()
if not _instrumentor.is_instrumented_by_opentelemetry:  # a second import must not wrap twice
    _instrumentor.instrument()  # no tracer_provider: the global one, whenever it is set


# ---------------------------------------------------------------- tools

SKIES = ["sunny", "partly cloudy", "light rain", "clear", "overcast"]


@tool
def get_weather(city: str) -> dict[str, Any]:
    """Today's weather in a city: sky and high temperature in °C."""
    seed = zlib.crc32(city.strip().lower().encode())  # a deterministic stand-in for a weather API
    return {"city": city, "sky": SKIES[seed % len(SKIES)], "high_c": 12 + seed % 18}


TOOLS: list[BaseTool] = [get_weather]


# ---------------------------------------------------------------- the scripted model

# "weather in Paris", "trip to New York", "pack for Lisbon": capitalised words after a preposition.
CITY = re.compile(r"\b(?i:in|to|for|at)\s+([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)")


class ScriptedChatModel(BaseChatModel):
    """A chat model that follows a script instead of calling an API (replace it, see above).

    It answers the way a tool-calling model does: with `get_weather` bound and no tool result
    yet, it returns an `AIMessage` whose `tool_calls` ask for the weather in the city named in
    the user's message; once it sees the `ToolMessage`, it answers in text from the result.
    """

    model_name: str = DEFAULT_MODEL

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        # As real chat models do: the tools' JSON schemas go with every call, as a keyword.
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = {spec["function"]["name"] for spec in kwargs.get("tools", [])}
        message = self._reply(messages, tools)
        prompt_tokens = sum(_count_tokens(m.content) for m in messages)
        answer_tokens = _count_tokens(message.content) + _count_tokens(message.tool_calls)
        message.usage_metadata = {
            "input_tokens": prompt_tokens,
            "output_tokens": answer_tokens,
            "total_tokens": prompt_tokens + answer_tokens,
        }
        message.response_metadata = {
            "model_name": self.model_name,
            "finish_reason": "tool_calls" if message.tool_calls else "stop",
        }
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Nothing to wait for; without this, BaseChatModel would run `_generate` in a thread.
        return self._generate(messages, stop, **kwargs)

    def _reply(self, messages: Sequence[BaseMessage], tools: set[str]) -> AIMessage:
        asked = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)
        results = [m for m in messages[asked:] if isinstance(m, ToolMessage)]
        if results:
            return AIMessage(content=" ".join(_describe(r.content) for r in results))
        found = CITY.search(messages[asked].text)
        if found is None or "get_weather" not in tools:
            return AIMessage(content="Which city should I check the weather for?")
        city = found.group(1)
        call_id = f"call_{zlib.crc32(city.encode()):08x}"
        return AIMessage(
            content="", tool_calls=[ToolCall(name="get_weather", args={"city": city}, id=call_id)]
        )


def _describe(content: str | list[str | dict[str, Any]]) -> str:
    try:
        weather = json.loads(str(content))
        return (
            f"Today in {weather['city']}: {weather['sky']}, with a high of {weather['high_c']}°C."
        )
    except (ValueError, TypeError, KeyError):
        return f"The weather service said: {content}"


def _count_tokens(content: object) -> int:
    """A rough count (words), so the LLM spans carry token counts as a real model's do."""
    return len(content.split()) if isinstance(content, str) else len(json.dumps(content).split())


# ---------------------------------------------------------------- the graph

Graph = CompiledStateGraph[MessagesState, None, MessagesState, MessagesState]


def build_graph(llm: BaseChatModel) -> Graph:
    """The ReAct loop: model → tools → model … until the model answers without tool calls."""
    model = llm.bind_tools(TOOLS)

    async def call_model(state: MessagesState) -> dict[str, list[AnyMessage]]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    return graph.compile()


@functools.lru_cache(maxsize=8)
def graph_for(model: str) -> Graph:
    """One compiled graph per model name (Arize presets pick among a few)."""
    return build_graph(ScriptedChatModel(model_name=model))


# ---------------------------------------------------------------- the agent


async def run(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    goal: str = input["goal"]
    model = str(ctx.config.get("model", DEFAULT_MODEL))
    max_turns = int(ctx.config.get("max_turns", DEFAULT_MAX_TURNS))
    ctx.logger.info("langgraph agent, model %s, max_turns %d: %s", model, max_turns, goal[:200])

    config: RunnableConfig = {
        # A turn is a model call and the tool calls it asks for: two graph steps, and N turns
        # that end in an answer take 2N - 1. LangGraph finishes a run only within
        # recursion_limit - 1 steps (it counts the input as one), so the limit is 2N.
        "recursion_limit": 2 * max_turns,
    }
    start: MessagesState = {"messages": [SystemMessage(SYSTEM_PROMPT), HumanMessage(goal)]}
    messages = start["messages"]
    stop_reason = "answered"
    try:
        # Stream the states rather than `ainvoke`, to keep the last one if the limit is hit.
        async for state in graph_for(model).astream(start, config, stream_mode="values"):
            messages = state["messages"]
    except GraphRecursionError:
        stop_reason = "max_turns"
        ctx.logger.warning("stopped at max_turns=%d without a final answer", max_turns)
    return summarize(messages, model, stop_reason)


def summarize(messages: list[AnyMessage], model: str, stop_reason: str) -> dict[str, Any]:
    """The run as JSON: the answer (None if cut off), each tool call with its result, turns."""
    results = {m.tool_call_id: m.content for m in messages if isinstance(m, ToolMessage)}
    replies = [m for m in messages if isinstance(m, AIMessage)]
    tool_calls = [
        {
            "name": call["name"],
            "arguments": call["args"],
            "result": _parse(results.get(call["id"] or "")),
        }
        for reply in replies
        for call in reply.tool_calls
    ]
    answer = replies[-1] if replies and stop_reason == "answered" else None
    return {
        "final_response": str(answer.text) if answer is not None else None,
        "tool_calls": tool_calls,
        "turns": len(replies),
        "model": model,
        "stop_reason": stop_reason,
    }


def _parse(content: object) -> object:
    """A tool result as it was returned: ToolNode hands dicts to the model as JSON text."""
    if not isinstance(content, str):
        return content
    try:
        return json.loads(content)
    except ValueError:
        return content
