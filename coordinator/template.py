"""Hydrating Arize's body template with a dataset row, exactly as the coordinator does.

`{{column_name}}` placeholders name a column exactly. A string that is nothing but one
placeholder takes the row's value with its JSON type (a number stays a number); a placeholder
inside a longer string is replaced by the value's text. Every placeholder is checked against the
dataset's columns before any request is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
WHOLE = re.compile(r"^\{\{\s*([^{}]*?)\s*\}\}$")


class TemplateError(ValueError):
    """The template cannot be hydrated from this dataset; the message lists the fix."""


def placeholders(template: Any) -> list[str]:
    """Every placeholder name in the template's string values, in order, without repeats."""
    found: dict[str, None] = {}
    _walk_strings(template, lambda text: found.update(dict.fromkeys(PLACEHOLDER.findall(text))))
    return list(found)


def check_template(template: Any, columns: Iterable[str]) -> None:
    """Raise before anything is sent if a placeholder names no column of the dataset."""
    known = list(columns)
    problems = []
    for name in placeholders(template):
        if name in known:
            continue
        if name.startswith("dataset.") and name.removeprefix("dataset.") in known:
            problems.append(
                f"{{{{{name}}}}}: write {{{{{name.removeprefix('dataset.')}}}}}, "
                "placeholders name the column only (not {{dataset.column}})"
            )
        else:
            problems.append(f"{{{{{name}}}}} names no column")
    if problems:
        raise TemplateError(
            "; ".join(problems) + f". The dataset's columns are: {', '.join(known) or 'none'} "
            "(placeholder names must match column names exactly)"
        )


def hydrate(template: Any, row: Mapping[str, Any]) -> Any:
    """The template with every placeholder replaced by the row's value."""
    if isinstance(template, str):
        whole = WHOLE.match(template)
        if whole:
            return _value(row, whole.group(1))
        if "{{" not in template:
            return template
        return PLACEHOLDER.sub(lambda m: _text(_value(row, m.group(1))), template)
    if isinstance(template, dict):
        return {key: hydrate(value, row) for key, value in template.items()}
    if isinstance(template, list):
        return [hydrate(item, row) for item in template]
    return template


def _value(row: Mapping[str, Any], name: str) -> Any:
    try:
        return row[name]
    except KeyError:
        raise TemplateError(f"this row has no value for {{{{{name}}}}}") from None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def _walk_strings(node: Any, visit: Any) -> None:
    if isinstance(node, str):
        visit(node)
    elif isinstance(node, dict):
        for value in node.values():
            _walk_strings(value, visit)
    elif isinstance(node, list):
        for item in node:
            _walk_strings(item, visit)
