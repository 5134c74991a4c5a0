"""The built-in evaluators, your own, and their failures, offline."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from coordinator.evaluators import EvaluatorError, Verdict, as_verdict, parse, value_at
from tests.processes import ROOT

ANSWER = {
    "final_response": "2-day plan for Paris:\nDay 1: Musée d'Orsay (sunny)\nDay 2: Montmartre",
    "tool_calls": [{"name": "lookup_city", "arguments": {"city": "paris"}}] * 3,
    "turns": 3,
}
ROW = {"id": "p", "city": "Paris", "exact": "2-day plan", "pattern": r"Day 2: \w+", "bad": "(?<=a)"}
SCHEMA = ROOT / "coordinator" / "samples" / "answer-schema.json"


@pytest.mark.parametrize(
    ("spec", "output", "latency", "expected"),
    [
        (f"json_schema:{SCHEMA}", ANSWER, 1.0, "pass"),
        (f"json_schema:{SCHEMA}", {"final_response": ""}, 1.0, "fail"),
        ('json_schema:{"type": "string"}', "text", 1.0, "pass"),
        ("contains:city@final_response", ANSWER, 1.0, "pass"),
        ("contains:city", "Lisbon", 1.0, "fail"),
        ("equals:exact", " 2-day plan ", 1.0, "pass"),
        ("equals:exact@final_response", ANSWER, 1.0, "fail"),
        ("regex:pattern@final_response", ANSWER, 1.0, "pass"),
        ("regex:pattern@tool_calls.0.name", ANSWER, 1.0, "fail"),
        ("latency:100", ANSWER, 99.9, "pass"),
        ("latency:100", ANSWER, 100.0, "fail"),
        ("max_tool_calls:3", ANSWER, 1.0, "pass"),
        ("max_tool_calls:2", ANSWER, 1.0, "fail"),
        ("max_tool_calls:3@turns", ANSWER, 1.0, "pass"),
        ("max_tool_calls:2@$.turns", ANSWER, 1.0, "fail"),
        ("tests.custom_evaluators:graded", ANSWER, 1.0, "fail"),
    ],
)
def test_built_in_and_own_evaluators(spec: str, output: Any, latency: float, expected: str) -> None:
    verdict = parse(spec)(output, ROW, latency)
    assert verdict.error is None
    assert {True: "pass", False: "fail"}[bool(verdict.passed)] == expected


@pytest.mark.parametrize(
    ("spec", "output", "error"),
    [
        ("contains:nosuch", ANSWER, "the row has no column 'nosuch'"),
        ("contains:city@missing.path", ANSWER, "no 'missing' at 'missing.path'"),
        ("regex:bad", ANSWER, "not an RE2 pattern"),
        ("max_tool_calls:3@final_response", ANSWER, "neither a list nor a count"),
        ("latency:10", ANSWER, "the run has no latency"),
        ("tests.custom_evaluators:broken", ANSWER, "RuntimeError: this evaluator always fails"),
    ],
)
def test_an_evaluator_that_raises_gives_its_error_as_the_verdict(
    spec: str, output: Any, error: str
) -> None:
    verdict = parse(spec)(output, ROW, None)
    assert verdict.error is not None
    assert error in verdict.error
    assert verdict.passed is None
    assert verdict.score is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch", "unknown evaluator; use one of json_schema, equals"),
        ("latency:fast", "'fast' is not a number"),
        ("latency:-1", "must be a number >= 0"),
        ("contains:", "name the dataset column"),
        ("json_schema:", "name the schema file"),
        ("json_schema:{nope", "neither a file nor JSON"),
        ("no_such_module_here:f", "cannot import no_such_module_here"),
        ("tests.custom_evaluators:missing", "has no function missing"),
        ("judge", "--eval judge needs a model: pass --judge-model"),
    ],
)
def test_a_bad_spec_is_refused_with_the_fix(
    spec: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENT_JUDGE_MODEL", raising=False)
    with pytest.raises(EvaluatorError, match="--eval") as caught:
        parse(spec)
    assert message in str(caught.value)


def test_regexes_are_linear_on_a_hostile_output() -> None:
    """`(a+)+$` on a's and a `!`: exponential for a backtracking engine, instant on RE2."""
    evaluator = parse("regex:pattern")
    verdicts: list[Verdict] = []
    worker = threading.Thread(
        target=lambda: verdicts.append(evaluator("a" * 100_000 + "!", {"pattern": "(a+)+$"}, 1.0))
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the regex evaluator stalled on a hostile output"
    assert verdicts[0].passed is False


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (True, Verdict(score=1.0, label="pass")),
        (0, Verdict(score=0.0)),
        (0.75, Verdict(score=0.75)),
        ("polite", Verdict(label="polite")),
        ((0.5, "half", "why"), Verdict(score=0.5, label="half", explanation="why")),
        ((None, "pass"), Verdict(label="pass")),
        ({"score": 1, "explanation": "ok"}, Verdict(score=1.0, explanation="ok")),
    ],
)
def test_what_your_own_evaluator_returns(returned: Any, expected: Verdict) -> None:
    assert as_verdict(returned) == expected


@pytest.mark.parametrize("returned", [None, [1.0], {"other": 1}, (1, 2, 3, 4)])
def test_a_return_value_that_is_no_verdict_is_an_error(returned: Any) -> None:
    with pytest.raises(TypeError, match="an evaluator returns a score"):
        as_verdict(returned)


def test_the_judge_runs_through_phoenix_evals_with_a_fake_model() -> None:
    from tests.fake_judge import model  # noqa: PLC0415

    judge = parse("judge:city", "tests.fake_judge:model")
    assert judge.kind == "LLM"
    good = judge(ANSWER, ROW, 1.0)
    assert (good.score, good.label, good.passed) == (1.0, "correct", True)
    assert "Paris" in model.prompts[-1]  # the reference answer reached the prompt
    assert json.dumps(ROW, ensure_ascii=False) in model.prompts[-1]
    bad = judge({"final_response": "no idea"}, ROW, 1.0)
    assert (bad.score, bad.label, bad.passed) == (0.0, "incorrect", False)
    broken = judge({"final_response": "BROKEN"}, ROW, 1.0)
    assert broken.error == "RuntimeError: the judge's provider refused the request"


def test_judge_models_named_wrongly_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_JUDGE_MODEL", "nocolon")
    with pytest.raises(EvaluatorError, match="write provider:model"):
        parse("judge")
    with pytest.raises(EvaluatorError, match="Unknown provider 'nosuchprovider'"):
        parse("judge", "nosuchprovider:model")


def test_value_at_follows_keys_and_indices() -> None:
    assert value_at({"a": [{"b": 1}, {"b": 2}]}, "a.-1.b") == 2
    assert value_at("text", "") == "text"
    with pytest.raises(KeyError):
        value_at({"a": [1]}, "a.1")


def test_a_schema_file_is_read(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "required": ["x"]}')
    verdict = parse(f"json_schema:{schema}")({}, {}, None)
    assert verdict.passed is False
    assert verdict.explanation == '(root): "x" is a required property'
