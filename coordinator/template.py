"""Hydrating Arize's body template with a dataset row, in either of the shapes Arize sends.

Arize documents two request shapes, and both are live:

- `flat`, the Agent Playground (https://arize.com/docs/ax/improve/agent-playground), the current
  way to launch an experiment: placeholders are `{{dataset.column_name}}`, and the hydrated
  fields are sent at the top level of the body with `arize_metadata` beside them.
- `wrapped`, the setup page (https://arize.com/docs/ax/improve/setup-agent-endpoint):
  placeholders are `{{column_name}}`, and the hydrated body is sent under `input`.

A string that is nothing but one placeholder takes the row's value with its JSON type (a number
stays a number); a placeholder inside a longer string is replaced by the value's text. A
placeholder in the other shape's style is left as written, as Arize leaves it, which is why
`check_template` refuses one before any request is sent.

Placeholders are found with `str.find`, in time linear in the string: the obvious regular
expression, `\\{\\{\\s*([^{}]*?)\\s*\\}\\}`, backtracks in time cubic in the whitespace after an
unclosed `{{`, and a dataset value or template is enough to stall a run on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, get_args

Shape = Literal["flat", "wrapped"]
SHAPES: tuple[Shape, ...] = get_args(Shape)
DATASET_PREFIX = "dataset."  # the Agent Playground's `{{dataset.column}}`
OPEN, CLOSE = "{{", "}}"
METADATA_KEY = "arize_metadata"


class TemplateError(ValueError):
    """The template cannot be hydrated from this dataset; the message names the fix."""


def scan(text: str) -> Iterator[tuple[int, int, str]]:
    """Each `{{ name }}` in `text` as (start, end, name without surrounding whitespace).

    Matches what `\\{\\{\\s*([^{}]*?)\\s*\\}\\}` would: `{{`, then no brace, then `}}`; found
    left to right without overlaps. Every character is looked at a bounded number of times.
    """
    position = 0
    while True:
        start = text.find(OPEN, position)
        if start < 0:
            return
        end = text.find(CLOSE, start + 2)
        if end < 0:
            return  # no `}}` further on: no placeholder can close
        inner = text[start + 2 : end]
        brace = max(inner.rfind("{"), inner.rfind("}"))
        if brace >= 0:
            # Only a `{{` right before the brace-free tail can open a placeholder ending here.
            brace += start + 2
            if text[brace] == "{" and text[brace - 1] == "{":
                start = brace - 1
            else:
                position = brace + 1
                continue
        yield start, end + 2, text[start + 2 : end].strip()
        position = end + 2


def placeholders(template: Any) -> list[str]:
    """Every placeholder name in the template's string values, as written, in order, once."""
    found: dict[str, None] = {}
    for text in _strings(template):
        found.update(dict.fromkeys(name for _, _, name in scan(text)))
    return list(found)


def column_of(name: str, shape: Shape) -> str | None:
    """The column a placeholder names in this shape; None when it is the other shape's style
    (Arize would send it unfilled)."""
    playground = name.startswith(DATASET_PREFIX)
    if shape == "flat":
        return name.removeprefix(DATASET_PREFIX) if playground else None
    return None if playground else name


def written(column: str, shape: Shape) -> str:
    """How the placeholder for `column` is written in this shape."""
    return "{{" + (DATASET_PREFIX if shape == "flat" else "") + column + "}}"


def check_template(template: Any, columns: Iterable[str], shape: Shape = "flat") -> None:
    """Raise before anything is sent if Arize would send a placeholder unfilled: one naming no
    column, or one in the other shape's style."""
    known = list(columns)
    problems = [_problem(name, known, shape) for name in placeholders(template)]
    problems = [problem for problem in problems if problem]
    style = written("column", shape)
    if shape == "flat":
        if not isinstance(template, dict):
            raise TemplateError(
                "with --shape flat the template's fields are sent at the top level, so it must "
                "be a JSON object (or pass --shape wrapped to send it under input)"
            )
        if METADATA_KEY in template:
            problems.append(
                f"{METADATA_KEY} is added by Arize beside the template's fields; "
                "remove it from the template"
            )
    if problems:
        raise TemplateError(
            "; ".join(problems) + f". The dataset's columns are: {', '.join(known) or 'none'} "
            f"(with --shape {shape} placeholders are {style}, "
            "named exactly like the columns)"
        )


def _problem(name: str, known: list[str], shape: Shape) -> str:
    column = column_of(name, shape)
    if column is not None and column in known:
        return ""
    if shape == "flat" and name in known:
        return (
            f"{{{{{name}}}}}: write {written(name, shape)}, the Agent Playground's style "
            "(or pass --shape wrapped for the setup page's {{column}})"
        )
    if shape == "wrapped" and name.removeprefix(DATASET_PREFIX) in known:
        return (
            f"{{{{{name}}}}}: write {written(name.removeprefix(DATASET_PREFIX), shape)}, "
            "the setup page's style (or pass --shape flat for the Agent Playground's "
            "{{dataset.column}})"
        )
    return f"{{{{{name}}}}} names no column"


def hydrate(template: Any, row: Mapping[str, Any], shape: Shape = "wrapped") -> Any:
    """The template with every placeholder of this shape's style replaced by the row's value.

    The default shape is `wrapped` for the callers that build the setup page's envelope
    themselves (the benchmark); the runner always passes its experiment's shape.
    """
    if isinstance(template, str):
        if OPEN not in template:
            return template
        return _hydrate_string(template, row, shape)
    if isinstance(template, dict):
        return {key: hydrate(value, row, shape) for key, value in template.items()}
    if isinstance(template, list):
        return [hydrate(item, row, shape) for item in template]
    return template


def _hydrate_string(text: str, row: Mapping[str, Any], shape: Shape) -> Any:
    found = list(scan(text))
    if len(found) == 1 and found[0][:2] == (0, len(text)):
        column = column_of(found[0][2], shape)
        return text if column is None else _value(row, column, found[0][2])
    parts: list[str] = []
    position = 0
    for start, end, name in found:
        column = column_of(name, shape)
        parts.append(text[position:start])
        parts.append(text[start:end] if column is None else _text(_value(row, column, name)))
        position = end
    parts.append(text[position:])
    return "".join(parts)


def _value(row: Mapping[str, Any], column: str, name: str) -> Any:
    try:
        return row[column]
    except KeyError:
        raise TemplateError(f"this row has no value for {{{{{name}}}}}") from None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
