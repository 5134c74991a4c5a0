"""The span processors on their own: secret masking, the space allow-list, run-id stamping."""

from __future__ import annotations

import json

from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.redaction import Redactor
from app.tracing.processors import AllowedSpaces, RunAttributes, Scrubbed

SECRET = "sk-live-0123456789abcdef"


def scrubbing() -> tuple[TracerProvider, InMemorySpanExporter, Scrubbed]:
    memory = InMemorySpanExporter()
    scrub = Scrubbed(SimpleSpanProcessor(memory), Redactor([SECRET]), ["X-Team-Token"])
    provider = TracerProvider()
    provider.add_span_processor(scrub)
    return provider, memory, scrub


def test_captured_credential_headers_are_masked_whatever_their_value() -> None:
    provider, memory, _ = scrubbing()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("http.request.header.authorization", ("Bearer anything",))
        span.set_attribute("http.request.header.x_team_token", ("t1", "t2"))
        span.set_attribute("http.request.header.cookie", "session=1")
        span.set_attribute("http.request.header.user_agent", ("curl/8",))
    attributes = memory.get_finished_spans()[0].attributes or {}
    assert attributes["http.request.header.authorization"] == ("[redacted]",)
    assert attributes["http.request.header.x_team_token"] == ("[redacted]", "[redacted]")
    assert attributes["http.request.header.cookie"] == "[redacted]"
    assert attributes["http.request.header.user_agent"] == ("curl/8",)


def test_a_configured_secret_is_masked_in_attributes_lists_and_events() -> None:
    provider, memory, _ = scrubbing()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("llm.prompt", f"use key {SECRET} please")
        span.set_attribute("tags", ["a", SECRET])
        span.set_attribute("count", 3)
        span.record_exception(ValueError(f"bad {SECRET}"))
    (exported,) = memory.get_finished_spans()
    assert SECRET not in exported.to_json()
    attributes = exported.attributes or {}
    assert attributes["llm.prompt"] == "use key [redacted] please"
    assert attributes["tags"] == ("a", "[redacted]")
    assert attributes["count"] == 3
    assert exported.name == "s"
    assert exported.context == span.get_span_context()


def test_a_clean_span_is_passed_on_as_it_is() -> None:
    provider, memory, scrub = scrubbing()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("k", "v")
    (exported,) = memory.get_finished_spans()
    assert scrub.scrub(exported) is exported


def spaced_span(provider: TracerProvider, space: str | None) -> None:
    attributes = {"arize.space_id": space} if space else {}
    with provider.get_tracer("t").start_as_current_span(f"span-{space}", attributes=attributes):
        pass


def test_only_allowed_spaces_reach_the_routing_processor() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(AllowedSpaces(SimpleSpanProcessor(memory), ["space-a"]))
    for space in ("space-a", "space-b", None, ""):
        spaced_span(provider, space)
    assert [span.name for span in memory.get_finished_spans()] == ["span-space-a"]


def test_a_star_allows_any_space_but_still_needs_one() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(AllowedSpaces(SimpleSpanProcessor(memory), ["*"]))
    for space in ("space-a", "space-b", None):
        spaced_span(provider, space)
    assert sorted(span.name for span in memory.get_finished_spans()) == [
        "span-space-a",
        "span-space-b",
    ]


def stamped(metadata: str, own: str | None) -> ReadableSpan:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(RunAttributes())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    token = context_api.attach(context_api.set_value("metadata", metadata))
    try:
        attributes = {"metadata": own} if own is not None else {}
        with provider.get_tracer("t").start_as_current_span("s", attributes=attributes):
            pass
    finally:
        context_api.detach(token)
    (span,) = memory.get_finished_spans()
    return span


def test_run_ids_are_stamped_and_merged_with_the_spans_own_metadata() -> None:
    ids = json.dumps({"run_id": "r1", "k": "ours"})
    assert json.loads(str((stamped(ids, None).attributes or {})["metadata"])) == {
        "run_id": "r1",
        "k": "ours",
    }
    merged = stamped(ids, json.dumps({"k": "theirs", "x": 1}))
    assert json.loads(str((merged.attributes or {})["metadata"])) == {
        "run_id": "r1",
        "k": "theirs",
        "x": 1,
    }


def test_metadata_that_is_not_json_is_left_as_the_span_set_it() -> None:
    span = stamped(json.dumps({"run_id": "r1"}), "not json")
    assert (span.attributes or {})["metadata"] == "not json"


def test_a_star_does_not_route_an_empty_space_id() -> None:
    """`*` allows any space, but an empty id is no space: nothing reaches the router."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(AllowedSpaces(SimpleSpanProcessor(memory), ["*"]))
    with provider.get_tracer("t").start_as_current_span("empty", attributes={"arize.space_id": ""}):
        pass
    with provider.get_tracer("t").start_as_current_span(
        "blank", attributes={"arize.space_id": " "}
    ):
        pass
    assert memory.get_finished_spans() == ()
