"""Hydrating the body template from a dataset row, and the mistakes caught before sending."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.template import TemplateError, check_template, hydrate, placeholders

TEMPLATE: dict[str, Any] = {
    "goal": "{{input}}",
    "config": {"model": "claude-sonnet-4-5", "max_turns": "{{turns}}"},
    "note": "Asked by {{ user }} about {{input}}",
    "history": ["{{input}}", 3, None],
}


def test_placeholders_in_order_without_repeats() -> None:
    assert placeholders(TEMPLATE) == ["input", "turns", "user"]


def test_whole_string_placeholder_keeps_the_json_type() -> None:
    row = {"input": "Plan Tokyo", "turns": 12, "user": {"id": 7}}
    assert hydrate(TEMPLATE, row) == {
        "goal": "Plan Tokyo",
        "config": {"model": "claude-sonnet-4-5", "max_turns": 12},
        "note": 'Asked by {"id": 7} about Plan Tokyo',
        "history": ["Plan Tokyo", 3, None],
    }


def test_values_with_quotes_and_braces_stay_intact() -> None:
    row = {"input": 'say "hi" {not a placeholder}', "turns": None, "user": ""}
    hydrated = hydrate(TEMPLATE, row)
    assert hydrated["goal"] == 'say "hi" {not a placeholder}'
    assert hydrated["config"]["max_turns"] is None
    assert hydrated["note"] == 'Asked by  about say "hi" {not a placeholder}'


def test_template_matching_the_columns_passes() -> None:
    check_template(TEMPLATE, ["input", "turns", "user", "expected"])


def test_unknown_column_lists_the_dataset_columns() -> None:
    with pytest.raises(TemplateError) as caught:
        check_template({"goal": "{{question}}"}, ["input", "expected"])
    assert str(caught.value) == (
        "{{question}} names no column. The dataset's columns are: input, expected "
        "(placeholder names must match column names exactly)"
    )


def test_dataset_prefix_is_the_classic_mistake() -> None:
    with pytest.raises(TemplateError, match=r"write \{\{input\}\}, placeholders name the column"):
        check_template({"goal": "{{dataset.input}}"}, ["input"])


def test_row_missing_a_value_is_reported() -> None:
    with pytest.raises(TemplateError, match=r"this row has no value for \{\{turns\}\}"):
        hydrate(TEMPLATE, {"input": "x", "user": "u"})
