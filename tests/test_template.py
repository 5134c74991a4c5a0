"""Hydrating the body template from a dataset row in both shapes, and the mistakes caught before
sending."""

from __future__ import annotations

import random
import re
import time
from typing import Any

import pytest

from coordinator.template import (
    Shape,
    TemplateError,
    check_template,
    hydrate,
    placeholders,
    scan,
)

# The same template in each shape's placeholder style.
TEMPLATES: dict[Shape, dict[str, Any]] = {
    "wrapped": {
        "goal": "{{input}}",
        "config": {"model": "claude-sonnet-4-5", "max_turns": "{{turns}}"},
        "note": "Asked by {{ user }} about {{input}}",
        "history": ["{{input}}", 3, None],
    },
    "flat": {
        "goal": "{{dataset.input}}",
        "config": {"model": "claude-sonnet-4-5", "max_turns": "{{dataset.turns}}"},
        "note": "Asked by {{ dataset.user }} about {{dataset.input}}",
        "history": ["{{dataset.input}}", 3, None],
    },
}
SHAPES: list[Shape] = ["flat", "wrapped"]
# The regular expression the scanner replaces: the reference for what a placeholder is.
BACKTRACKING = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def test_placeholders_in_order_without_repeats() -> None:
    assert placeholders(TEMPLATES["wrapped"]) == ["input", "turns", "user"]
    assert placeholders(TEMPLATES["flat"]) == ["dataset.input", "dataset.turns", "dataset.user"]


@pytest.mark.parametrize("shape", SHAPES)
def test_whole_string_placeholder_keeps_the_json_type(shape: Shape) -> None:
    row = {"input": "Plan Tokyo", "turns": 12, "user": {"id": 7}}
    assert hydrate(TEMPLATES[shape], row, shape) == {
        "goal": "Plan Tokyo",
        "config": {"model": "claude-sonnet-4-5", "max_turns": 12},
        "note": 'Asked by {"id": 7} about Plan Tokyo',
        "history": ["Plan Tokyo", 3, None],
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_values_with_quotes_and_braces_stay_intact(shape: Shape) -> None:
    row = {"input": 'say "hi" {not a placeholder} {{input}}', "turns": None, "user": ""}
    hydrated = hydrate(TEMPLATES[shape], row, shape)
    assert hydrated["goal"] == 'say "hi" {not a placeholder} {{input}}'
    assert hydrated["config"]["max_turns"] is None
    assert hydrated["note"] == 'Asked by  about say "hi" {not a placeholder} {{input}}'


@pytest.mark.parametrize(
    ("shape", "other"),
    [("flat", "{{input}}"), ("wrapped", "{{dataset.input}}")],
)
def test_the_other_shapes_placeholder_is_sent_unfilled(shape: Shape, other: str) -> None:
    """As Arize sends it: which is why check_template refuses it before anything is sent."""
    row = {"input": "Plan Tokyo"}
    assert hydrate({"goal": other, "note": f"about {other}."}, row, shape) == {
        "goal": other,
        "note": f"about {other}.",
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_template_matching_the_columns_passes(shape: Shape) -> None:
    check_template(TEMPLATES[shape], ["input", "turns", "user", "expected"], shape)


def test_unknown_column_lists_the_dataset_columns() -> None:
    with pytest.raises(TemplateError) as flat:
        check_template({"goal": "{{dataset.question}}"}, ["input", "expected"], "flat")
    assert str(flat.value) == (
        "{{dataset.question}} names no column. The dataset's columns are: input, expected "
        "(with --shape flat placeholders are {{dataset.column}}, named exactly like the columns)"
    )
    with pytest.raises(TemplateError) as wrapped:
        check_template({"goal": "{{question}}"}, ["input", "expected"], "wrapped")
    assert str(wrapped.value) == (
        "{{question}} names no column. The dataset's columns are: input, expected "
        "(with --shape wrapped placeholders are {{column}}, named exactly like the columns)"
    )


def test_setup_page_style_in_the_flat_shape_names_the_fix() -> None:
    with pytest.raises(TemplateError) as caught:
        check_template({"goal": "{{ input }}"}, ["input"], "flat")
    assert str(caught.value) == (
        "{{input}}: write {{dataset.input}}, the Agent Playground's style "
        "(or pass --shape wrapped for the setup page's {{column}}). The dataset's columns are: "
        "input (with --shape flat placeholders are {{dataset.column}}, named exactly like the "
        "columns)"
    )


def test_playground_style_in_the_wrapped_shape_names_the_fix() -> None:
    with pytest.raises(TemplateError) as caught:
        check_template({"goal": "{{dataset.input}}"}, ["input"], "wrapped")
    assert str(caught.value).startswith(
        "{{dataset.input}}: write {{input}}, the setup page's style "
        "(or pass --shape flat for the Agent Playground's {{dataset.column}})."
    )


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(TemplateError) as caught:
        check_template({"a": "{{input}}", "b": "{{dataset.nope}}"}, ["input"], "flat")
    message = str(caught.value)
    assert "{{input}}: write {{dataset.input}}" in message
    assert "{{dataset.nope}} names no column" in message


def test_flat_template_must_be_an_object_without_arize_metadata() -> None:
    with pytest.raises(TemplateError, match=r"must be a JSON object .*--shape wrapped"):
        check_template(["{{dataset.input}}"], ["input"], "flat")
    with pytest.raises(TemplateError, match=r"arize_metadata is added by Arize .* remove it"):
        check_template({"goal": "x", "arize_metadata": {}}, ["input"], "flat")
    check_template(["{{input}}"], ["input"], "wrapped")  # anything JSON goes under input


@pytest.mark.parametrize(
    ("shape", "placeholder"), [("flat", "dataset.turns"), ("wrapped", "turns")]
)
def test_row_missing_a_value_is_reported(shape: Shape, placeholder: str) -> None:
    with pytest.raises(TemplateError) as caught:
        hydrate(TEMPLATES[shape], {"input": "x", "user": "u"}, shape)
    assert str(caught.value) == f"this row has no value for {{{{{placeholder}}}}}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        "{{a}}",
        "{{ a }}",
        "{{{a}}}",
        "{{a{{b}}",
        "{{a}b}}",
        "{{a}}}}{{b}}",
        "{ {a}}",
        "{{}}",
        "{{   }}",
        "x{{a}}y{{ b c }}z",
        "{{a",
        "a}}",
        "{{a{}}",
        "}}{{a}}{{",
    ],
)
def test_scan_finds_what_the_regular_expression_finds(text: str) -> None:
    expected = [(m.start(), m.end(), m.group(1)) for m in BACKTRACKING.finditer(text)]
    assert list(scan(text)) == expected


def test_scan_agrees_with_the_regular_expression_on_random_strings() -> None:
    generator = random.Random(13)
    for _ in range(5000):
        text = "".join(generator.choice("{}{} ab\t") for _ in range(generator.randint(0, 24)))
        expected = [(m.start(), m.end(), m.group(1)) for m in BACKTRACKING.finditer(text)]
        assert list(scan(text)) == expected, text


@pytest.mark.parametrize(
    "text",
    [
        "{{" + " " * 200_000,  # an unclosed placeholder: the regex's cubic case
        "{{" + " " * 200_000 + "}",
        "{{ " * 100_000 + "}}",
        "{" * 200_000 + "}}",
        "{{x}" * 100_000 + "}}",
        "{{" + " " * 100_000 + "{{}}",
    ],
    ids=["unclosed", "half-closed", "many opens", "braces", "broken closes", "nested"],
)
def test_scan_takes_linear_time(text: str) -> None:
    """Each of these takes the backtracking regex minutes or more, and a quadratic scan seconds;
    a linear scan takes milliseconds."""
    started = time.perf_counter()
    list(scan(text))
    assert time.perf_counter() - started < 1.0
