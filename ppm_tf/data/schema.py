"""The raw data contract: the records every data source must deliver, and their validator.

Four tables feed the pipeline (DESIGN.md §4): ``items`` (the catalogue, with content for the
modal encoders), ``users`` (who may appear in events), ``events`` (impressions with click and
order labels) and ``queries`` (search log for query matching). The synthetic world, the
MovieLens adapter and any user's own export write exactly these records; the Beam
preprocessing validates each one here and sends a bad one to the dead-letter output with the
field and the reason. Nothing in this module needs TensorFlow.

Timestamps are integer seconds since the Unix epoch (UTC). Ids are non-empty strings. Fields
not named here are allowed and ignored, so sources can carry extra columns.
"""
from __future__ import annotations

import dataclasses
import io
import json
from typing import Any, Callable, Mapping

from PIL import Image, UnidentifiedImageError

ITEMS, USERS, EVENTS, QUERIES = "items", "users", "events", "queries"
TABLES = (ITEMS, USERS, EVENTS, QUERIES)

# Field kinds, each checked by one function below.
ID, TEXT, TIMESTAMP, BINARY_LABEL, NAME_LIST, IMAGE, ATTRS, OPTIONAL_TEXT = (
    "id", "text", "timestamp", "binary_label", "name_list", "image", "attrs", "optional_text")

# table -> {field: kind}; the one definition of the raw records.
RECORD_FIELDS: dict[str, dict[str, str]] = {
    ITEMS: {
        "item_id": ID,
        "title": TEXT,
        "image": IMAGE,  # path (relative to the data root, absolute, or a URL), bytes, or null
        "category": TEXT,
        "brand": OPTIONAL_TEXT,
        "entities": NAME_LIST,  # what the product image shows: entity-prediction labels
        "launch_ts": TIMESTAMP,
        "attrs": ATTRS,  # free-form attributes: {name: str | int | float}
    },
    USERS: {"user_id": ID, "signup_ts": TIMESTAMP},
    EVENTS: {
        "request_id": ID,
        "user_id": ID,
        "item_id": ID,
        "ts": TIMESTAMP,
        "click": BINARY_LABEL,
        "order": BINARY_LABEL,
    },
    QUERIES: {"query": TEXT, "item_id": ID, "ts": TIMESTAMP},
}

# Fields that may be absent from a record (all others are required).
OPTIONAL_FIELDS = {ITEMS: {"image", "brand", "attrs"}, USERS: {"signup_ts"}}

# 1990-01-01 UTC: nothing in a click log is older; a smaller value is a unit or parse error.
DEFAULT_MIN_TS = 631_152_000
# 2100-01-01 UTC: catches milliseconds passed as seconds when no export time is known.
DEFAULT_MAX_TS = 4_102_444_800


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a record is bad: the field at fault, a reason a person can act on, and a short
    ``code`` (``missing``, ``wrong_type``, ``unknown_id``, ...) that dead-letter counts group by."""

    field: str
    reason: str
    code: str = dataclasses.field(default="", compare=False)

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "code": self.code}


def read_local_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


@dataclasses.dataclass(frozen=True)
class ValidationContext:
    """What the validator may know beyond the record itself.

    ``max_ts`` rejects future timestamps: set it to the export time of the logs. The id sets
    and ``item_launch_ts`` enable reference checks; leave them ``None`` where a pipeline checks
    references with a join instead. ``read_image`` turns an image path into bytes (Beam passes
    its filesystem reader so ``gs://`` paths work); ``None`` skips decoding images.
    """

    min_ts: int = DEFAULT_MIN_TS
    max_ts: int = DEFAULT_MAX_TS
    known_item_ids: frozenset[str] | None = None
    known_user_ids: frozenset[str] | None = None
    item_launch_ts: Mapping[str, int] | None = None
    image_root: str = ""
    read_image: Callable[[str], bytes] | None = None


def parse_json_record(line: str | bytes) -> tuple[dict[str, Any] | None, Problem | None]:
    """Parses one JSON-lines row; a row that is not a JSON object is a problem, not a crash."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        return None, Problem("<record>", f"not valid JSON: {error!r}", "invalid_json")
    if not isinstance(record, dict):
        return None, Problem("<record>", f"expected a JSON object, got {type(record).__name__}",
                             "invalid_json")
    return record, None


def validate_record(table: str, record: Mapping[str, Any],
                    context: ValidationContext = ValidationContext()) -> list[Problem]:
    """Returns the problems of one record of ``table``; an empty list means it is valid.

    Every field is checked; the checks across fields and against reference data run only
    once each field is valid on its own.
    """
    if table not in RECORD_FIELDS:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
    if not isinstance(record, Mapping):
        return [Problem("<record>", f"expected a mapping, got {type(record).__name__}",
                        "wrong_type")]
    problems = []
    optional = OPTIONAL_FIELDS.get(table, set())
    for field, kind in RECORD_FIELDS[table].items():
        if field not in record or (record[field] is None and kind not in (IMAGE, OPTIONAL_TEXT)):
            if field not in optional:
                problems.append(Problem(field, "missing required field", "missing"))
            continue
        failure = _FIELD_CHECKS[kind](record[field], context)
        if failure:
            code, reason = failure
            problems.append(Problem(field, reason, code))
    if not problems:
        problems.extend(cross_field_problems(table, record, context))
    return problems


def _check_id(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return "wrong_type", f"wrong type: expected a string id, got {type(value).__name__}"
    if not value.strip():
        return "empty", "empty id"
    return None


def _check_text(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return "wrong_type", f"wrong type: expected a string, got {type(value).__name__}"
    if not value.strip():
        return "empty", "empty text"
    return None


def _check_optional_text(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if value is not None and not isinstance(value, str):
        return "wrong_type", f"wrong type: expected a string or null, got {type(value).__name__}"
    return None


def _check_timestamp(value: Any, context: ValidationContext) -> tuple[str, str] | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "wrong_type", ("wrong type: expected integer seconds since the epoch, "
                              f"got {type(value).__name__}")
    if value < context.min_ts:
        return "too_old", f"out-of-range timestamp {value}: before {context.min_ts}"
    if value > context.max_ts:
        return "future", f"out-of-range timestamp {value}: in the future (after {context.max_ts})"
    return None


def _check_binary_label(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if type(value) is not int or value not in (0, 1):
        return "not_binary", f"expected 0 or 1, got {value!r}"
    return None


def _check_name_list(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if not isinstance(value, list):
        return "wrong_type", f"wrong type: expected a list of strings, got {type(value).__name__}"
    if not all(isinstance(name, str) and name.strip() for name in value):
        return "wrong_type", "expected a list of non-empty strings"
    return None


def _check_attrs(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return "wrong_type", f"wrong type: expected an object, got {type(value).__name__}"
    for name, attr in value.items():
        if isinstance(attr, bool) or not isinstance(attr, (str, int, float)):
            return "wrong_type", (f"attribute {name!r}: expected a string or number, "
                                  f"got {type(attr).__name__}")
    return None


def _check_image(value: Any, context: ValidationContext) -> tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return "empty", "empty image path"
        if context.read_image is None:
            return None
        try:
            image_bytes = context.read_image(resolve_image_path(value, context.image_root))
        except OSError as error:
            return "unreadable_image", f"image not readable: {error}"
    elif isinstance(value, (bytes, bytearray)):
        image_bytes = bytes(value)
        if context.read_image is None:
            return None
    else:
        return "wrong_type", f"wrong type: expected a path, bytes or null, got {type(value).__name__}"
    return _decode_problem(image_bytes)


def _decode_problem(image_bytes: bytes) -> tuple[str, str] | None:
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.load()
    except Image.DecompressionBombError as error:
        return "image_too_large", f"image too large: {error}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return "undecodable_image", f"undecodable image: {error}"
    return None


def resolve_image_path(path: str, image_root: str) -> str:
    """An image path as stored in ``items`` is relative to the data root unless absolute/URL."""
    if not image_root or "://" in path or path.startswith("/"):
        return path
    return image_root.rstrip("/") + "/" + path


_FIELD_CHECKS: dict[str, Callable[[Any, ValidationContext], tuple[str, str] | None]] = {
    ID: _check_id,
    TEXT: _check_text,
    OPTIONAL_TEXT: _check_optional_text,
    TIMESTAMP: _check_timestamp,
    BINARY_LABEL: _check_binary_label,
    NAME_LIST: _check_name_list,
    ATTRS: _check_attrs,
    IMAGE: _check_image,
}


def cross_field_problems(table: str, record: Mapping[str, Any],
                         context: ValidationContext) -> list[Problem]:
    """Checks that need several fields or the context's reference data, for a record whose
    fields are each valid (a join that already validated them calls this alone)."""
    problems = []
    if table == EVENTS and record["order"] == 1 and record["click"] == 0:
        problems.append(Problem("order", "order without click", "order_without_click"))
    item_id = record.get("item_id")
    if table in (EVENTS, QUERIES):
        if context.known_item_ids is not None and item_id not in context.known_item_ids:
            problems.append(Problem("item_id", f"unknown id {item_id!r}: not in items",
                                    "unknown_id"))
        launch_ts = (context.item_launch_ts or {}).get(item_id)
        if launch_ts is not None and record["ts"] < launch_ts:
            problems.append(Problem(
                "ts", f"before the item's launch_ts {launch_ts} (item {item_id!r})", "before_launch"))
    if table == EVENTS and context.known_user_ids is not None:
        if record["user_id"] not in context.known_user_ids:
            problems.append(Problem(
                "user_id", f"unknown id {record['user_id']!r}: not in users", "unknown_id"))
    return problems
