"""Arize's log record schema (`public.Record` of public.proto), checked without protobuf or arize.

Arize's log API reads a record as the protobuf JSON mapping of its `public.Record` message, so
the stand-in must refuse what that parser refuses, and say where and why. The coordinator ships
without the `arize` package (it pulls pandas and pyarrow), so the messages reachable from
`Record` are written out below; `tests/test_log_api.py` compares this table with the
descriptor in arize's generated code field by field, and feeds one corpus of records to this
check and to `json_format.Parse` requiring the same verdict.

The JSON mapping, as protobuf's Python parser applies it: a field is named by its proto name
or its camelCase JSON name; null means "not set" (but not inside a list or as a map value);
unknown fields are refused; at most one field of a oneof is set; a double is a number or a
string `float()` reads, with "NaN"/"Infinity" quoted; an integer is a whole number or a string of
one, in range; a string is a string; a timestamp is an RFC 3339 string. Where that parser is
laxer than the JSON mapping, this check follows the mapping and refuses: `[]` or `""` as a
message, `true`/`false` as a double, and timestamps with one-digit fields or an empty
fraction. A record that fits the mapping fits both.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

# Message -> field -> "[repeated |map ]TYPE[ | ONEOF]"; maps are keyed by strings. TYPE is a
# scalar, a message of package `public`, or a well-known type (`google.protobuf.*`).
MESSAGES: dict[str, dict[str, str]] = {
    "Record": {
        "organization_key": "string",
        "model_id": "string",
        "prediction_id": "string",
        "prediction": "Prediction",
        "actual": "Actual",
        "feature_importances": "FeatureImportances",
        "prediction_and_actual": "PredictionAndActual",
        "space_key": "string",
        "environment_params": "Record.EnvironmentParams",
        "is_generative_llm_record": "google.protobuf.BoolValue",
    },
    "Record.EnvironmentParams": {
        "training": "Record.EnvironmentParams.Training | environment",
        "validation": "Record.EnvironmentParams.Validation | environment",
        "production": "Record.EnvironmentParams.Production | environment",
    },
    "Record.EnvironmentParams.Training": {},
    "Record.EnvironmentParams.Validation": {"batch_id": "string"},
    "Record.EnvironmentParams.Production": {},
    "Prediction": {
        "timestamp": "google.protobuf.Timestamp",
        "model_version": "string",
        "label": "Label",
        "features": "map Value",
        "tags": "map Value",
        "prediction_label": "PredictionLabel",
        "llm_fields": "LLMFields",
        "retrieved_document_ids": "repeated string",
    },
    "Actual": {
        "timestamp": "google.protobuf.Timestamp",
        "label": "Label",
        "tags": "map Value",
        "actual_label": "ActualLabel",
    },
    "FeatureImportances": {
        "timestamp": "google.protobuf.Timestamp",
        "model_version": "string",
        "feature_importances": "map double",
    },
    "PredictionAndActual": {"prediction": "Prediction", "actual": "Actual"},
    "Label": {
        "binary": "bool | data",
        "categorical": "string | data",
        "numeric": "double | data",
        "score_categorical": "ScoreCategorical | data",
    },
    "ScoreCategorical": {
        "categorical": "string",
        "score": "double",
        "category": "ScoreCategorical.Category | type",
        "score_category": "ScoreCategorical.ScoreCategory | type",
        "score_value": "ScoreCategorical.ScoreValue | type",
    },
    "ScoreCategorical.Category": {"category": "string"},
    "ScoreCategorical.ScoreValue": {"value": "double"},
    "ScoreCategorical.ScoreCategory": {
        "category": "string",
        "score": "double",
        "numeric_sequence": "repeated double",
    },
    "PredictionLabel": {
        "binary": "bool | data",
        "categorical": "string | data",
        "numeric": "double | data",
        "score_categorical": "ScoreCategorical | data",
        "ranking": "RankingPrediction | data",
        "object_detection": "ObjectDetection | data",
        "multi_class": "MultiClassPrediction | data",
        "cv_label": "CVPredictionLabel | data",
    },
    "ActualLabel": {
        "binary": "bool | data",
        "categorical": "string | data",
        "numeric": "double | data",
        "score_categorical": "ScoreCategorical | data",
        "ranking": "RankingActual | data",
        "object_detection": "ObjectDetection | data",
        "multi_class": "MultiClassActual | data",
        "cv_label": "CVActualLabel | data",
    },
    "RankingPrediction": {
        "prediction_group_id": "string",
        "rank": "int64",
        "prediction_score": "google.protobuf.DoubleValue",
        "label": "string",
    },
    "RankingActual": {
        "category": "MultiValue",
        "relevance_score": "google.protobuf.DoubleValue",
    },
    "ObjectDetection": {"bounding_boxes": "repeated ObjectDetection.BoundingBox"},
    "ObjectDetection.BoundingBox": {
        "coordinates": "repeated double",
        "category": "string",
        "score": "google.protobuf.DoubleValue",
    },
    "MultiClassPrediction": {
        "multi_label": "MultiClassPrediction.MultiLabel | type",
        "single_label": "MultiClassPrediction.SingleLabel | type",
    },
    "MultiClassPrediction.MultiLabel": {
        "prediction_threshold_scores": "map MultiClassPrediction.MultiLabel.MultiLabelScores",
    },
    "MultiClassPrediction.MultiLabel.MultiLabelScores": {
        "prediction_score": "google.protobuf.DoubleValue",
        "threshold_score": "google.protobuf.DoubleValue",
    },
    "MultiClassPrediction.SingleLabel": {"prediction_scores": "map google.protobuf.DoubleValue"},
    "MultiClassActual": {"actual_labels": "repeated string"},
    "CVPredictionLabel": {
        "prediction_object_detection_label": "PredictionObjectDetectionLabel | data",
        "semantic_segmentation_label": "SemanticSegmentationLabel | data",
        "prediction_instance_segmentation_label": "PredictionInstanceSegmentationLabel | data",
    },
    "CVActualLabel": {
        "actual_object_detection_label": "ActualObjectDetectionLabel | data",
        "semantic_segmentation_label": "SemanticSegmentationLabel | data",
        "actual_instance_segmentation_label": "ActualInstanceSegmentationLabel | data",
    },
    "PredictionObjectDetectionLabel": {
        "prediction_bounding_boxes": "repeated PredictionBoundingBox"
    },
    "PredictionBoundingBox": {
        "coordinates": "repeated double",
        "category": "string",
        "score": "google.protobuf.DoubleValue",
    },
    "ActualObjectDetectionLabel": {"actual_bounding_boxes": "repeated ActualBoundingBox"},
    "ActualBoundingBox": {"coordinates": "repeated double", "category": "string"},
    "SemanticSegmentationLabel": {"polygons": "repeated SemanticSegmentationPolygon"},
    "SemanticSegmentationPolygon": {"coordinates": "repeated double", "category": "string"},
    "PredictionInstanceSegmentationLabel": {
        "polygons": "repeated PredictionInstanceSegmentationPolygon",
    },
    "PredictionInstanceSegmentationPolygon": {
        "coordinates": "repeated double",
        "bbox_coordinates": "repeated double",
        "category": "string",
        "score": "google.protobuf.DoubleValue",
    },
    "ActualInstanceSegmentationLabel": {"polygons": "repeated ActualInstanceSegmentationPolygon"},
    "ActualInstanceSegmentationPolygon": {
        "coordinates": "repeated double",
        "bbox_coordinates": "repeated double",
        "category": "string",
    },
    "LLMFields": {
        "llm_model_name": "string",
        "llm_params": "map Value",
        "prompt_template": "string",
        "prompt_template_name": "string",
    },
    "Value": {
        "string": "string | data",
        "int": "int64 | data",
        "double": "double | data",
        "multi_value": "MultiValue | data",
        "embedding": "Embedding | data",
        "dictionary": "NumericDictionary | data",
    },
    "MultiValue": {"values": "repeated string"},
    "NumericDictionary": {"values": "map google.protobuf.DoubleValue"},
    "Embedding": {
        "vector": "repeated double",
        "link_to_data": "google.protobuf.StringValue",
        "raw_data": "Embedding.RawData",
    },
    "Embedding.RawData": {"tokenArray": "Embedding.TokenArray | type"},
    "Embedding.TokenArray": {"tokens": "repeated string"},
}

SCALARS = frozenset({"string", "bool", "double", "int64"})
TIMESTAMP = "google.protobuf.Timestamp"
WRAPPERS = {
    "google.protobuf.BoolValue": "bool",
    "google.protobuf.DoubleValue": "double",
    "google.protobuf.StringValue": "string",
}
INT64 = (-(2**63), 2**63 - 1)
# Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, a Timestamp's range.
TIMESTAMP_RANGE = (-62_135_596_800, 253_402_300_799)
RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})T(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?(?:(?P<z>Z)|(?P<sign>[+-])(?P<hh>[0-9]{2}):(?P<mm>[0-9]{2}))"
)
# How to write the values people get wrong most, for the refusal's message.
EXAMPLES = {
    "Value": '{"string": "Tokyo"}, {"int": 4} or {"double": 0.5}',
    TIMESTAMP: '"2026-11-23T12:00:00Z"',
}
_UNPAIRED_SURROGATE = re.compile(
    r"[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)


@dataclass(frozen=True)
class Field:
    name: str
    json_name: str
    type: str
    shape: Literal["single", "repeated", "map"]
    oneof: str | None


class SchemaError(ValueError):
    """The record does not fit Arize's `Record`: where (`path`) and why."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def json_name(name: str) -> str:
    """protobuf's JSON name of a field: each `_x` becomes `X`."""
    parts = name.split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _field(name: str, spec: str) -> Field:
    kind, _, oneof = (part.strip() for part in spec.partition("|"))
    shape: Literal["single", "repeated", "map"] = "single"
    for prefix in ("repeated", "map"):
        if kind.startswith(prefix + " "):
            shape = "repeated" if prefix == "repeated" else "map"
            kind = kind.removeprefix(prefix + " ")
    return Field(name, json_name(name), kind, shape, oneof or None)


FIELDS: dict[str, dict[str, Field]] = {
    message: {name: _field(name, spec) for name, spec in fields.items()}
    for message, fields in MESSAGES.items()
}
# Either spelling of a field's name finds it.
_BY_KEY: dict[str, dict[str, Field]] = {
    message: {key: f for f in fields.values() for key in (f.name, f.json_name)}
    for message, fields in FIELDS.items()
}


def loads(body: bytes | str) -> Any:
    """The body as JSON, refusing a key repeated in one object as protobuf's parser does.

    ValueError (UnicodeDecodeError, json.JSONDecodeError) if it is not JSON at all.
    """

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise SchemaError("body", f'the key "{key}" appears twice in one object; keep one')
            found[key] = value
        return found

    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return json.loads(text, object_pairs_hook=unique)


def check(record: object) -> dict[str, Any]:
    """The record with proto field names, nulls dropped and values converted (doubles as
    floats, timestamps as seconds); SchemaError if Arize's schema refuses it."""
    return _message("Record", record, "Record")


def _message(message: str, value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        example = f", like {EXAMPLES[message]}" if message in EXAMPLES else ""
        raise SchemaError(path, f"a {message} is a JSON object{example}; got {_show(value)}")
    fields = _BY_KEY[message]
    result: dict[str, Any] = {}
    oneofs: dict[str, str] = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            raise SchemaError(path, _unknown(message, key))
        if item is None:
            continue  # null: the field is not set
        if field.oneof is not None:
            if field.oneof in oneofs:
                raise SchemaError(
                    path,
                    f'"{oneofs[field.oneof]}" and "{key}" are both set, but a {message} holds '
                    f"one of {_members(message, field.oneof)}: keep one",
                )
            oneofs[field.oneof] = key
        result[field.name] = _value(field, item, f"{path}.{key}")
    return result


def _unknown(message: str, key: str) -> str:
    known = ", ".join(FIELDS[message]) or "none"
    hint = ""
    if message == "Record" and key in _BY_KEY["Prediction"]:
        hint = f' ("{key}" belongs under "prediction")'
    elif message == "Actual" and key in _BY_KEY["Prediction"]:
        hint = f' (an actual has no "{key}"; it belongs under "prediction")'
    return f'a {message} has no field "{key}"{hint}; its fields: {known}'


def _members(message: str, oneof: str) -> str:
    return ", ".join(f.name for f in FIELDS[message].values() if f.oneof == oneof)


def _value(field: Field, value: object, path: str) -> Any:
    if field.shape == "repeated":
        if not isinstance(value, list):
            raise SchemaError(path, f"expected a JSON array of {field.type}; got {_show(value)}")
        items = []
        for index, item in enumerate(value):
            if item is None:
                raise SchemaError(f"{path}[{index}]", "null is not allowed in a list")
            items.append(_single(field.type, item, f"{path}[{index}]"))
        return items
    if field.shape == "map":
        if not isinstance(value, dict):
            raise SchemaError(
                path, f"expected a JSON object of name -> {field.type}; got {_show(value)}"
            )
        entries = {}
        for key, item in value.items():
            if _UNPAIRED_SURROGATE.search(key):
                raise SchemaError(path, f"the name {key!r} holds an unpaired surrogate")
            if item is None:
                raise SchemaError(f"{path}[{key}]", f"null is not a {field.type}")
            entries[key] = _single(field.type, item, f"{path}[{key}]")
        return entries
    return _single(field.type, value, path)


def _single(kind: str, value: object, path: str) -> Any:
    if kind in SCALARS:
        return _scalar(kind, value, path)
    if kind in WRAPPERS:
        return _scalar(WRAPPERS[kind], value, path)
    if kind == TIMESTAMP:
        return _timestamp(value, path)
    return _message(kind, value, path)


def _scalar(kind: str, value: object, path: str) -> Any:
    if kind == "string":
        if not isinstance(value, str):
            raise SchemaError(path, f"expected a JSON string; got {_show(value)}")
        if _UNPAIRED_SURROGATE.search(value):
            raise SchemaError(path, "the string holds an unpaired surrogate")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise SchemaError(path, f"expected true or false; got {_show(value)}")
        return value
    if kind == "double":
        return _double(value, path)
    return _int64(value, path)


def _double(value: object, path: str) -> float:
    problem = f'expected a number, or "NaN", "Infinity" or "-Infinity" quoted; got {_show(value)}'
    if isinstance(value, bool) or not isinstance(value, int | float | str) or value == "nan":
        raise SchemaError(path, problem)
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(path, problem)
    try:
        return float(value)
    except OverflowError:
        raise SchemaError(path, f"{_show(value)} is too large for a double") from None
    except ValueError:
        spelled = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if isinstance(value, str) and value in spelled:
            return spelled[value]
        raise SchemaError(path, problem) from None


def _int64(value: object, path: str) -> int:
    problem = f"expected a whole number (or a string of one); got {_show(value)}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SchemaError(path, problem)
    if isinstance(value, float) and not value.is_integer():
        raise SchemaError(path, problem)
    if isinstance(value, str) and " " in value:
        raise SchemaError(path, problem)
    try:
        number = int(value)
    except ValueError:
        try:
            whole = float(value)
        except ValueError:
            raise SchemaError(path, problem) from None
        if not whole.is_integer():
            raise SchemaError(path, problem) from None
        number = int(whole)
    if not INT64[0] <= number <= INT64[1]:
        raise SchemaError(path, f"{_show(value)} is out of the range of an int64")
    return number


def _timestamp(value: object, path: str) -> float:
    """Seconds since the epoch of an RFC 3339 string."""
    problem = f"a timestamp is an RFC 3339 string, like {EXAMPLES[TIMESTAMP]}; got {_show(value)}"
    match = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise SchemaError(path, problem)
    try:
        local = datetime.fromisoformat(f"{match['date']}T{match['time']}").replace(tzinfo=UTC)
    except ValueError:
        raise SchemaError(path, f"{problem} (no such date or time)") from None
    offset = 0 if match["z"] else (int(match["hh"]) * 60 + int(match["mm"])) * 60
    seconds = int((local - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    seconds += -offset if match["sign"] == "+" else offset
    if not TIMESTAMP_RANGE[0] <= seconds <= TIMESTAMP_RANGE[1]:
        raise SchemaError(path, f"{_show(value)} is outside years 1 to 9999")
    return seconds + float(f"0.{match['fraction'] or 0}")


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
