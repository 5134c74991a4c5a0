"""Evaluators: `--eval NAME[:ARG]`, run on each run's output as it arrives.

Built in, offline:

    json_schema:FILE_OR_JSON   the output matches this JSON Schema
    equals:COLUMN[@PATH]       the output (or the value at PATH in it) equals the row's COLUMN
    contains:COLUMN[@PATH]     ... contains the row's COLUMN
    regex:COLUMN[@PATH]        ... matches the RE2 pattern in the row's COLUMN (linear time)
    latency:MS                 the run took less than MS milliseconds
    max_tool_calls:N[@PATH]    at most N tool calls: the list (or count) at PATH, `tool_calls`
                               by default
    judge[:COLUMN]             LLM-as-judge (arize-phoenix-evals): is the output a correct answer
                               to the row (COLUMN: the reference answer)? Needs --judge-model

and your own, `module:function` (importable, or in the current folder): called as
`function(output, row)`, it returns a score (a number or a bool), a label (a string),
`(score, label, explanation)`, or a dict of those keys.

A PATH is dotted keys and list indices into the output (`final_response`, `steps.0.tool_calls`,
an optional leading `$.`). The output of a run is the response body, or for a run answered 202
the record its agent pushed later. Each evaluator gives a `Verdict`; one that raises gives a
verdict with `error` set, and the run itself stays as it was: a broken evaluator never fails a
run. Regexes run on RE2, whose matching time is linear in the text, so a hostile output cannot
stall the runner on backtracking.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs

from coordinator.dataset import Row

Kind = Literal["CODE", "LLM"]
PASS_LABELS = frozenset({"pass", "passed", "true", "yes", "correct", "ok"})
PASS_SCORE = 0.5  # a score at or above this passes (built-ins score 1.0 or 0.0)
EXPLANATION_CHARS = 500
JUDGE_MODEL_ENV = "AGENT_JUDGE_MODEL"
JUDGE_PROMPT = """You are grading an AI agent's answer.
[Input]: {input}
[Agent's answer]: {output}
[Reference answer, may be empty]: {reference}
Is the agent's answer a correct and complete response to the input (consistent with the reference
when one is given)? Answer "correct" or "incorrect"."""
RE2_MAX_MEM = 8 << 20  # bytes a compiled pattern may use: bounds a hostile pattern too
EXTRAS_HINT = (
    "install the coordinator's extra: `pip install 'agent-endpoint[experiments]'` "
    "(in this repository `make install`)"
)


class EvaluatorError(ValueError):
    """An `--eval` spec that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Verdict:
    """One evaluator's result on one run, as recorded in the results file and in Phoenix."""

    score: float | None = None
    label: str | None = None
    explanation: str | None = None
    error: str | None = None

    @property
    def passed(self) -> bool | None:
        """Pass or fail; None when the evaluator failed or said nothing either way."""
        if self.error is not None:
            return None
        if self.score is not None:
            return self.score >= PASS_SCORE
        if self.label is not None:
            return self.label.strip().lower() in PASS_LABELS
        return None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# What an evaluator function sees: the run's output, its dataset row, and its latency in ms.
Check = Callable[[Any, Row, float | None], Verdict]


@dataclass(frozen=True)
class Evaluator:
    name: str  # the spec as given: the annotation's name in Phoenix, the key in results.jsonl
    kind: Kind
    check: Check

    def __call__(self, output: Any, row: Row, latency_ms: float | None = None) -> Verdict:
        """The verdict; an evaluator that raises gets its error recorded instead."""
        try:
            return self.check(output, row, latency_ms)
        except Exception as exc:  # noqa: BLE001 - any failure of an evaluator is its own verdict
            return Verdict(error=f"{type(exc).__name__}: {exc}"[:EXPLANATION_CHARS])


def parse(spec: str, judge_model: str | None = None) -> Evaluator:
    """The evaluator an `--eval` spec names; EvaluatorError saying how to write it if none."""
    name, _, arg = spec.partition(":")
    builders: dict[str, Callable[[str], Check]] = {
        "json_schema": _json_schema,
        "equals": lambda a: _against_column(a, _equals),
        "contains": lambda a: _against_column(a, _contains),
        "regex": _regex,
        "latency": _latency,
        "max_tool_calls": _max_tool_calls,
    }
    if name == "judge":
        return Evaluator(spec, "LLM", _judge(arg, judge_model))
    if name in builders:
        return Evaluator(spec, "CODE", builders[name](arg))
    if arg:
        return Evaluator(spec, "CODE", _custom(name, arg))
    raise EvaluatorError(
        f"--eval {spec}: unknown evaluator; use one of {', '.join([*builders, 'judge'])} "
        "(NAME:ARG), or module:function for your own"
    )


def value_at(output: Any, path: str) -> Any:
    """The value at a dotted PATH (`a.b.0`) in the output; KeyError naming the step if none."""
    value = output
    steps = [s for s in path.removeprefix("$").split(".") if s]
    for step in steps:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif (
            isinstance(value, list)
            and step.lstrip("-").isdigit()
            and -len(value) <= int(step) < len(value)
        ):
            value = value[int(step)]
        else:
            raise KeyError(f"no {step!r} at {path!r} in the output")
    return value


def text_of(value: Any) -> str:
    """A string as it is, anything else as its JSON text."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _verdict(passed: bool, explanation: str | None = None) -> Verdict:
    return Verdict(
        score=1.0 if passed else 0.0,
        label="pass" if passed else "fail",
        explanation=explanation[:EXPLANATION_CHARS] if explanation else None,
    )


def _json_schema(arg: str) -> Check:
    if not arg:
        raise EvaluatorError("--eval json_schema:FILE_OR_JSON: name the schema file")
    path = Path(arg)
    try:
        schema = json.loads(path.read_text(encoding="utf-8") if path.is_file() else arg)
    except json.JSONDecodeError as exc:
        raise EvaluatorError(f"--eval json_schema:{arg}: neither a file nor JSON ({exc})") from None
    try:
        validator = jsonschema_rs.validator_for(schema)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EvaluatorError(
            f"--eval json_schema:{arg}: not a valid JSON Schema ({first})"
        ) from None

    def check(output: Any, row: Row, latency_ms: float | None) -> Verdict:
        errors = sorted(
            validator.iter_errors(output), key=lambda e: [str(p) for p in e.instance_path]
        )
        where = "; ".join(
            f"{'.'.join(map(str, e.instance_path)) or '(root)'}: {e.message}" for e in errors[:3]
        )
        return _verdict(not errors, where or None)

    return check


def _split_column(arg: str, usage: str) -> tuple[str, str]:
    column, _, path = arg.partition("@")
    if not column:
        raise EvaluatorError(f"--eval {usage}: name the dataset column")
    return column, path


def _expected(row: Row, column: str) -> str:
    if column not in row:
        raise KeyError(f"the row has no column {column!r} (columns: {', '.join(row)})")
    return text_of(row[column]) if row[column] is not None else ""


def _equals(actual: str, expected: str) -> Verdict:
    same = actual.strip() == expected.strip()
    return _verdict(same, None if same else f"expected {expected[:200]!r}, got {actual[:200]!r}")


def _contains(actual: str, expected: str) -> Verdict:
    found = expected in actual
    return _verdict(found, None if found else f"{expected[:200]!r} not in the output")


def _against_column(arg: str, compare: Callable[[str, str], Verdict]) -> Check:
    column, path = _split_column(arg, "equals|contains:COLUMN[@PATH]")

    def check(output: Any, row: Row, latency_ms: float | None) -> Verdict:
        return compare(text_of(value_at(output, path)), _expected(row, column))

    return check


def _regex(arg: str) -> Check:
    column, path = _split_column(arg, "regex:COLUMN[@PATH]")
    re2 = _require("re2", "the regex evaluator runs on RE2 (google-re2)")
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    compiled: dict[str, Any] = {}  # one compiled pattern per distinct pattern in the column

    def check(output: Any, row: Row, latency_ms: float | None) -> Verdict:
        pattern = _expected(row, column)
        if pattern not in compiled:
            try:
                compiled[pattern] = re2.compile(pattern, options)
            except re2.error as exc:
                raise ValueError(f"not an RE2 pattern: {pattern[:200]!r} ({exc})") from None
        found = compiled[pattern].search(text_of(value_at(output, path))) is not None
        return _verdict(found, None if found else f"no match for {pattern[:200]!r}")

    return check


def _number(arg: str, usage: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise EvaluatorError(f"--eval {usage}: {arg!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise EvaluatorError(f"--eval {usage}: {arg!r} must be a number >= 0")
    return value


def _latency(arg: str) -> Check:
    limit = _number(arg, "latency:MS")

    def check(output: Any, row: Row, latency_ms: float | None) -> Verdict:
        if latency_ms is None:
            raise ValueError("the run has no latency (not sent)")
        fast = latency_ms < limit
        return Verdict(
            score=1.0 if fast else 0.0,
            label="pass" if fast else "fail",
            explanation=f"{latency_ms:.1f} ms (limit {limit:g} ms)",
        )

    return check


def _max_tool_calls(arg: str) -> Check:
    count, _, path = arg.partition("@")
    limit = _number(count, "max_tool_calls:N[@PATH]")
    path = path or "tool_calls"

    def check(output: Any, row: Row, latency_ms: float | None) -> Verdict:
        calls = value_at(output, path)
        if isinstance(calls, list):
            made = len(calls)
        elif isinstance(calls, int) and not isinstance(calls, bool):
            made = calls
        else:
            raise TypeError(f"{path!r} is neither a list nor a count: {text_of(calls)[:100]}")
        return Verdict(
            score=1.0 if made <= limit else 0.0,
            label="pass" if made <= limit else "fail",
            explanation=f"{made} tool calls (at most {limit:g})",
        )

    return check


def _custom(module_name: str, attribute: str) -> Check:
    if str(Path.cwd()) not in sys.path:  # as `python -m` would: your module beside your dataset
        sys.path.append(str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EvaluatorError(
            f"--eval {module_name}:{attribute}: cannot import {module_name} ({exc}); run from the "
            "folder that holds it, or add that folder to PYTHONPATH"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise EvaluatorError(
            f"--eval {module_name}:{attribute}: {module_name} has no function {attribute}"
        )

    def check(output: Any, row: Row, latency_ms: float | None) -> Verdict:
        return as_verdict(function(output, row))

    return check


def as_verdict(returned: Any) -> Verdict:
    """A custom evaluator's return value read as a verdict: a score, a label, a tuple, a dict."""
    if isinstance(returned, Verdict):
        return returned
    if isinstance(returned, bool):
        return _verdict(returned)
    if isinstance(returned, int | float):
        return Verdict(score=float(returned))
    if isinstance(returned, str):
        return Verdict(label=returned)
    if isinstance(returned, tuple) and 1 <= len(returned) <= 3:
        score, label, explanation = (*returned, None, None)[:3]
        return Verdict(
            score=None if score is None else float(score),
            label=None if label is None else str(label),
            explanation=None if explanation is None else str(explanation),
        )
    if isinstance(returned, dict) and {"score", "label", "explanation"} & set(returned):
        return as_verdict(
            (returned.get("score"), returned.get("label"), returned.get("explanation"))
        )
    raise TypeError(
        "an evaluator returns a score (number or bool), a label (str), "
        f"(score, label, explanation) or a dict of those, not {type(returned).__name__}"
    )


def judge_model(spec: str | None) -> Any:
    """The judge's model: `provider:model` (arize-phoenix-evals' LLM, e.g. openai:gpt-4o-mini,
    its key from the provider's usual variable) or `package.module:attribute` naming a model
    object of your own (anything with phoenix-evals' `generate_classification`, or a function
    making one); None unless given or set in AGENT_JUDGE_MODEL."""
    spec = spec or os.environ.get(JUDGE_MODEL_ENV)
    if not spec:
        return None
    first, _, second = spec.partition(":")
    if not second:
        raise EvaluatorError(
            f"--judge-model {spec}: write provider:model (e.g. openai:gpt-4o-mini) or "
            "module:attribute"
        )
    if "." in first:  # a module path: providers' names have no dots
        try:
            made = getattr(importlib.import_module(first), second)
        except (ImportError, AttributeError) as exc:
            raise EvaluatorError(f"--judge-model {spec}: {exc}") from None
        return made() if callable(made) and not hasattr(made, "generate_classification") else made
    evals = _require("phoenix.evals", "the judge evaluator uses arize-phoenix-evals")
    try:
        return evals.LLM(provider=first, model=second)
    except ValueError as exc:
        raise EvaluatorError(
            f"--judge-model {spec}: {exc}. Install the provider's SDK (e.g. `pip install openai`) "
            "and set its key (e.g. OPENAI_API_KEY)"
        ) from None


def _judge(column: str, model_spec: str | None) -> Check:
    model = judge_model(model_spec)
    if model is None:
        raise EvaluatorError(
            f"--eval judge needs a model: pass --judge-model provider:model (e.g. "
            f"openai:gpt-4o-mini, with OPENAI_API_KEY set) or set {JUDGE_MODEL_ENV}"
        )
    evals = _require("phoenix.evals", "the judge evaluator uses arize-phoenix-evals")
    classifier = evals.create_classifier(
        name="judge",
        prompt_template=JUDGE_PROMPT,
        llm=model,
        choices={"correct": 1.0, "incorrect": 0.0},
    )

    def check(output: Any, row: Row, latency_ms: float | None) -> Verdict:
        reference = _expected(row, column) if column else ""
        (score, *_) = classifier.evaluate(
            {"input": text_of(row), "output": text_of(output), "reference": reference}
        )
        if score.score is None and score.label is None:
            raise ValueError("the judge gave neither a label nor a score")
        return Verdict(
            score=score.score,
            label=score.label,
            explanation=(score.explanation or None) and score.explanation[:EXPLANATION_CHARS],
        )

    return check


def _require(module: str, why: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EvaluatorError(f"{why}, which is not installed: {EXTRAS_HINT}") from None
