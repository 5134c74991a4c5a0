"""The body Arize POSTs for every dataset row, read in either of its two live shapes.

Arize documents two shapes, and both are sent today:

- **flat**, the Agent Playground's (arize.com/docs/ax/improve/agent-playground): "These fields
  are sent at the top level of the request body, with `arize_metadata` added beside them";
  placeholders are `{{dataset.column}}`, and a chosen preset's fields are merged in at the top
  level. Everything but `arize_metadata` is the agent's input:

      {"goal": "Plan a 3-day trip to Tokyo", "config": {...}, "arize_metadata": {...}}

- **wrapped**, the agent setup page's (seed `003_…`): "Arize wraps the body you template into
  an envelope"; placeholders are `{{column}}`, presets fill `config`:

      {"input": {"goal": "...", "config": {...}}, "arize_metadata": {...}}

The rule (`AGENT_BODY_SHAPE=auto`, the default): a body whose `input` is not a JSON object is
flat (`{"input": "{{dataset.input}}"}` is a natural flat template). A body whose `input` is an
object could be either, so the input schema decides: the reading the schema accepts wins; when
it accepts both or neither, a body with other fields beside `input`, or a schema that itself
declares an `input` property, is flat, and anything else is wrapped. `AGENT_BODY_SHAPE=wrapped`
or `flat` fixes the reading for an operator who knows which page their team uses. Either way
the agent's `input` and `ctx.config` (`input["config"]`) mean the same thing.

`arize_metadata` (`dataset_id`, `experiment_id`, `run_id`, `example_id`, `space_id`, maybe
`project_name`, maybe more) is for correlation and never refuses a run: missing ids, wrong
types, extra keys or `{}` give warnings (on the span and in the log), not a 4xx.

Every scan of request data here is linear in its size and iterative (no regular expression
that can backtrack, no recursion a deep body can exhaust): a request must never hold the event
loop for long, whatever it holds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from app.errors import ApiError

Shape = Literal["wrapped", "flat"]
ShapeSetting = Literal["auto", "wrapped", "flat"]

EXAMPLE_METADATA: dict[str, str] = {
    "dataset_id": "RGF0YXNldDox",
    "experiment_id": "RXhwZXJpbWVudDox",
    "run_id": "RXhwZXJpbWVudFJ1bjox",
    "example_id": "RGF0YXNldEV4YW1wbGU6MQ==",
    "space_id": "U3BhY2U6MQ==",
    "project_name": "customer-support-v2",
}
EXAMPLE_INPUT: dict[str, Any] = {
    "goal": "Plan a 3-day trip to Tokyo",
    "config": {"model": "claude-sonnet-4-5", "max_turns": 12},
}
# The Agent Playground's body first: it is what users meet in Arize today.
EXAMPLE_FLAT: dict[str, Any] = {**EXAMPLE_INPUT, "arize_metadata": EXAMPLE_METADATA}
EXAMPLE_WRAPPED: dict[str, Any] = {"input": EXAMPLE_INPUT, "arize_metadata": EXAMPLE_METADATA}

RUN_ID_FIELDS = ("dataset_id", "experiment_id", "run_id", "example_id", "space_id", "project_name")
# The ids Arize always sends; `project_name` is optional (tracing page).
EXPECTED_IDS = RUN_ID_FIELDS[:5]
MAX_LISTED = 20  # placeholders, keys or warnings named in one message
MAX_NAME_CHARS = 80
# Nesting past this is refused: job documents are stored and served through pydantic, whose
# serializer stops near 255 levels, and Arize's templated bodies are a few levels deep.
MAX_DEPTH = 64  # a placeholder name or key quoted in a message is cut past this


class ArizeMetadata(BaseModel):
    """IDs Arize appends to every request; use them to stamp spans and pushed results.

    Every id is optional: a run is never refused over its metadata (`read_metadata`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    dataset_id: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None
    example_id: str | None = None
    space_id: str | None = None
    project_name: str | None = None

    def run_ids(self) -> dict[str, str]:
        """The ids above that are present, without extras."""
        return self.model_dump(include=set(RUN_ID_FIELDS), exclude_none=True)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One request read: the agent's input, Arize's ids, the reading used and its warnings.

    `alternative` is the other reading's input when both were possible (auto mode), so a body
    that fits neither can be diagnosed under both.
    """

    input: dict[str, Any]
    arize_metadata: ArizeMetadata | None
    shape: Shape
    warnings: tuple[str, ...] = ()
    alternative: dict[str, Any] | None = None
    wrapped_possible: bool = True
    text: str | None = None  # the input as JSON text, encoded off the loop for a large body
    size: int = 0  # bytes of the body it was read from

    @property
    def traced(self) -> dict[str, Any] | str:
        """What the request span records as its input: the text if it was made, else the dict."""
        return self.text if self.text is not None else self.input

    @property
    def run_id(self) -> str | None:
        return self.arize_metadata.run_id if self.arize_metadata else None


class NotInteroperableError(ValueError):
    """JSON that Python reads but RFC 8259 says other parsers may not (or must not)."""


def _no_constant(name: str) -> Any:
    raise NotInteroperableError(f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotInteroperableError(
            f"the number {_cut(text)} is beyond a double's range (RFC 8259 §6: not interoperable)"
        )
    return value


# `\uD800`-`\uDFFF` escapes: paired ones decode to one character, a lone one stays a surrogate.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_document(body: bytes, example: str) -> dict[str, Any]:
    """The body as a JSON object; every failure is a 4xx that names the fix.

    Only interoperable JSON passes (RFC 8259): no NaN or Infinity, no number beyond a double,
    no integer of more than 4,300 digits (Python's own limit), no lone surrogate, no nesting
    past MAX_DEPTH levels. All are refused here, with a 400, before any job exists.
    """
    if not body.strip():
        raise ApiError(400, "empty_body", f"the request body is empty; send {example}")
    try:
        document = json.loads(
            body.decode("utf-8"),  # RFC 8259: JSON on the wire is UTF-8
            parse_constant=_no_constant,
            parse_float=_finite,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = (
            f" (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else " (it is not UTF-8)"
        )
        raise ApiError(
            400,
            "invalid_json",
            f"the request body is not valid JSON{where}: check the body template in Arize "
            "for unquoted placeholders or trailing commas",
        ) from None
    except NotInteroperableError as exc:
        raise ApiError(
            400, "invalid_json", f"the request body is not interoperable JSON: {exc}"
        ) from None
    except ValueError:  # int() past sys.get_int_max_str_digits()
        raise ApiError(
            400,
            "invalid_json",
            "the request body holds an integer of more than 4,300 digits; send it as a string",
        ) from None
    except RecursionError:
        raise ApiError(
            400,
            "invalid_json",
            "the request body nests arrays or objects too deeply to read; send a flatter body",
        ) from None
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _deeper_than(document, MAX_DEPTH):
        raise ApiError(
            400,
            "invalid_json",
            f"the request body nests arrays or objects more than {MAX_DEPTH} levels deep; "
            "send a flatter body",
        )
    if SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400,
                "invalid_json",
                "the request body holds a lone UTF-16 surrogate escape (such as \\ud800), "
                "which is not a character (RFC 8259 §8.2); send valid Unicode text",
            ) from None
    if not isinstance(document, dict):
        raise ApiError(
            422,
            "invalid_envelope",
            f"the request body is a JSON {json_kind(document)}; Arize sends a JSON object "
            f"such as {example}",
        )
    return document


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether arrays and objects nest past `limit` levels, walked without recursion."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend(
                (item, depth + 1) for item in node.values() if isinstance(item, dict | list)
            )
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node if isinstance(item, dict | list))
    return False


def read_envelope(
    document: dict[str, Any],
    setting: ShapeSetting,
    accepts: Callable[[dict[str, Any]], bool],
    schema_declares_input: bool,
) -> Envelope:
    """Read a body as flat or wrapped (module docstring); `accepts` is the input schema's."""
    metadata, warnings = read_metadata(document.get("arize_metadata"))
    flat = {key: value for key, value in document.items() if key != "arize_metadata"}
    inner = flat.get("input")
    wrapped_possible = isinstance(inner, dict)
    if setting == "wrapped":
        if not isinstance(inner, dict):
            raise _not_wrapped(flat, inner)
        return Envelope(inner, metadata, "wrapped", warnings)
    if setting == "flat" or not isinstance(inner, dict):
        return Envelope(flat, metadata, "flat", warnings, wrapped_possible=wrapped_possible)
    wrapped_ok, flat_ok = accepts(inner), accepts(flat)
    if wrapped_ok != flat_ok:
        shape: Shape = "wrapped" if wrapped_ok else "flat"
    else:
        shape = "flat" if len(flat) > 1 or schema_declares_input else "wrapped"
    if shape == "wrapped":
        return Envelope(inner, metadata, "wrapped", warnings, alternative=flat)
    return Envelope(flat, metadata, "flat", warnings, alternative=inner)


def _not_wrapped(flat: dict[str, Any], inner: object) -> ApiError:
    if "input" in flat:
        what = f"`input` is a JSON {json_kind(inner)}"
    else:
        what = f"no `input` key (top-level keys: {_names(sorted(flat))})"
    return ApiError(
        422,
        "body_not_wrapped",
        f'AGENT_BODY_SHAPE=wrapped expects {{"input": {{...}}, "arize_metadata": {{...}}}} '
        f"but {what}; the Agent Playground sends the templated fields at the top level: set "
        "AGENT_BODY_SHAPE=auto (or flat) to accept that shape",
    )


def read_metadata(raw: object) -> tuple[ArizeMetadata | None, tuple[str, ...]]:
    """Arize's ids as far as they are usable, and a warning for each problem; never refuses.

    Absent metadata is normal for local tests and gives no warning. Numbers and booleans are
    kept as text; other values of a known id are dropped; extra keys are kept.
    """
    if raw is None:
        return None, ()
    if not isinstance(raw, dict):
        return None, (f"arize_metadata is a JSON {json_kind(raw)}, not an object; ignored",)
    warnings: list[str] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in RUN_ID_FIELDS:
            values[key] = value
        elif isinstance(value, str):
            if value:
                values[key] = value
        elif isinstance(value, int | float | bool):
            values[key] = json.dumps(value)
            warnings.append(f"arize_metadata.{key} is a number or boolean; used as text")
        elif value is not None:
            warnings.append(f"arize_metadata.{key} is a JSON {json_kind(value)}; ignored")
    missing = [key for key in EXPECTED_IDS if key not in values]
    if missing:
        warnings.append(
            f"arize_metadata has no {', '.join(missing)}: spans and pushed results carry only "
            "the ids that were sent"
        )
    return ArizeMetadata.model_validate(values), tuple(warnings)


# -- placeholders ------------------------------------------------------------------------------


def whole_placeholder(text: str) -> str | None:
    """The name in a string that is nothing but `{{name}}` (spaces around allowed), else None."""
    stripped = text.strip()
    if len(stripped) < 5 or not stripped.startswith("{{") or not stripped.endswith("}}"):
        return None
    name = stripped[2:-2].strip()
    if not name or "{" in name or "}" in name:
        return None
    return name


def embedded_placeholders(text: str) -> Iterator[str]:
    """Names of `{{name}}` inside a longer string, in one left-to-right pass (linear time)."""
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            return
        end = text.find("}}", start + 2)
        if end < 0:
            return
        name = text[start + 2 : end].strip()
        if name and "{" not in name:
            yield name
        position = end + 2


@dataclass(frozen=True, slots=True)
class Placeholders:
    """Unfilled placeholders: `whole` values refuse the run, `embedded` ones only warn."""

    whole: list[tuple[str, str]]  # (json path, name)
    embedded: list[tuple[str, str]]
    embedded_total: int


def find_placeholders(value: Any, root: str = "input") -> Placeholders:
    """Every string in `value` that still holds `{{name}}`, walked without recursion.

    At most MAX_LISTED embedded ones are kept (they are only reported); every whole one is.
    """
    whole: list[tuple[str, str]] = []
    embedded: list[tuple[str, str]] = []
    embedded_total = 0
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if "{{" not in node:
                continue
            name = whole_placeholder(node)
            if name is not None:
                whole.append((path, name))
                continue
            for name in embedded_placeholders(node):
                embedded_total += 1
                if len(embedded) < MAX_LISTED:
                    embedded.append((path, name))
        elif isinstance(node, dict):
            prefix = f"{path}." if path else ""
            stack.extend((f"{prefix}{key}", item) for key, item in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(
                (f"{path}[{index}]", item) for index, item in reversed(list(enumerate(node)))
            )
    return Placeholders(whole, embedded, embedded_total)


def placeholder_hint(path: str, name: str, shape: Shape) -> str:
    """Why `{{name}}` at `path` was left unfilled, and the fix, in the words of the page used."""
    shown = _cut(name)
    where = path or "the body"
    if name.startswith("dataset."):
        column = _cut(name.removeprefix("dataset."))
        if shape == "wrapped":
            return (
                f"{where} holds {{{{{shown}}}}}: the setup page's body template writes "
                f"{{{{{column}}}}} (the column name only)"
            )
        return (
            f"{where} holds {{{{{shown}}}}}: the dataset has no column named {column!r} "
            "(names must match the column exactly)"
        )
    if shape == "flat":
        return (
            f"{where} holds {{{{{shown}}}}}: the Agent Playground's request editor writes "
            f"{{{{dataset.{shown}}}}}, or the dataset has no column named {shown!r}"
        )
    return (
        f"{where} holds {{{{{shown}}}}}: the dataset has no column named {shown!r} "
        "(placeholders must match column names exactly)"
    )


def check_placeholders(envelope: Envelope, *, quote: bool = True) -> list[str]:
    """422 naming every value that is nothing but an unfilled placeholder; warnings for the
    placeholders inside longer values, which are data (`"curly {{braces}} inside"` runs).

    The warnings go to spans and logs, so without `quote` (AGENT_TRACE_IO=false) they name the
    paths only, not the text found there."""
    root = "input" if envelope.shape == "wrapped" else ""
    found = find_placeholders(envelope.input, root)
    if found.whole:
        listed = found.whole[:MAX_LISTED]
        hints = [placeholder_hint(path, name, envelope.shape) for path, name in listed]
        more = len(found.whole) - len(listed)
        raise ApiError(
            422,
            "unfilled_placeholder",
            "unfilled template placeholders: "
            + "; ".join(hints)
            + (f"; and {more} more" if more > 0 else ""),
            run_id=envelope.run_id,
        )
    if not found.embedded:
        return []
    names = ", ".join(
        f"{path or 'body'}: {{{{{_cut(name)}}}}}" if quote else (path or "body")
        for path, name in found.embedded
    )
    more = found.embedded_total - len(found.embedded)
    return [
        f"{found.embedded_total} unfilled placeholder(s) inside longer values ({names}"
        + (f", and {more} more" if more > 0 else "")
        + "); run anyway, as data"
    ]


# -- content type ------------------------------------------------------------------------------


def check_content_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON (`application/json` or `application/*+json`)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        shown = _cut(media_type) or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type is {shown}; send the body as JSON with `Content-Type: application/json`",
        )


def json_kind(value: object) -> str:
    return {
        list: "array",
        dict: "object",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), "value")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "…"


def _names(keys: list[str]) -> str:
    shown = ", ".join(_cut(key) for key in keys[:MAX_LISTED]) or "none"
    return shown + (f", and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")
