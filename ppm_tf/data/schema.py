"""The raw data contract: the records every data source must deliver, and their validator.

Four tables feed the pipeline: ``items`` (the catalogue, with content for the
modal encoders), ``users`` (who may appear in events), ``events`` (impressions with click and
order labels) and ``queries`` (search log for query matching). The synthetic world, the
MovieLens adapter and any user's own export write exactly these records; the Beam
preprocessing validates each one here and sends a bad one to the dead-letter output with the
field and the reason. Nothing in this module needs TensorFlow.

Timestamps are integer seconds since the Unix epoch (UTC). Ids are non-empty strings. Ids and
the catalogue's tokens (category, brand, entities) become lines of vocabulary files, so they
may hold no control characters. Every string must be valid Unicode (JSON's ``"\\ud800"``
escape is not). Fields not named here are allowed and ignored, so sources can carry extra
columns. A JSON line holds at most ``DEFAULT_MAX_RECORD_BYTES`` unless the job says otherwise.
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
from typing import Any, Callable, Mapping

from PIL import Image, UnidentifiedImageError

from ppm_tf.data.raw_files import ImageRefused, read_local_file, resolve_image_path

ITEMS, USERS, EVENTS, QUERIES = "items", "users", "events", "queries"
TABLES = (ITEMS, USERS, EVENTS, QUERIES)

# Field kinds, each checked by one function below.
ID, TEXT, TOKEN, OPTIONAL_TOKEN, TIMESTAMP, BINARY_LABEL, NAME_LIST, IMAGE, ATTRS = (
    "id", "text", "token", "optional_token", "timestamp", "binary_label", "name_list", "image",
    "attrs")

# table -> {field: kind}; the one definition of the raw records.
RECORD_FIELDS: dict[str, dict[str, str]] = {
    ITEMS: {
        "item_id": ID,
        "title": TEXT,
        "image": IMAGE,  # path inside the data directory (see raw_files), bytes, or null
        "category": TOKEN,
        "brand": OPTIONAL_TOKEN,
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
# Limits that keep one hostile record from exhausting a worker; each is a job flag.
DEFAULT_MAX_RECORD_BYTES = 1 << 20  # one JSON line
DEFAULT_MAX_IMAGE_BYTES = 20 << 20  # one image file, checked before it is read
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # checked on the header, before decoding

# C0/C1 controls and the Unicode line/paragraph separators: each can end a line of text.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a record is bad: the field at fault, a reason a person can act on, and a short
    ``code`` (``missing``, ``wrong_type``, ``unknown_id``, ...) that dead-letter counts group by."""

    field: str
    reason: str
    code: str = dataclasses.field(default="", compare=False)

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "code": self.code}


@dataclasses.dataclass(frozen=True)
class ValidationContext:
    """What the validator may know beyond the record itself.

    ``max_ts`` rejects future timestamps: set it to the export time of the logs. The id sets
    and ``item_launch_ts`` enable reference checks; leave them ``None`` where a pipeline checks
    references with a join instead. Image paths must resolve inside ``image_root`` (the data
    directory) or one of ``allowed_image_roots``; ``read_image(path, max_bytes)`` turns such a
    path into bytes (Beam passes its filesystem reader so ``gs://`` paths work); ``None``
    skips reading and decoding images.
    """

    min_ts: int = DEFAULT_MIN_TS
    max_ts: int = DEFAULT_MAX_TS
    known_item_ids: frozenset[str] | None = None
    known_user_ids: frozenset[str] | None = None
    item_launch_ts: Mapping[str, int] | None = None
    image_root: str = ""
    allowed_image_roots: tuple[str, ...] = ()
    read_image: Callable[[str, int], bytes] | None = None
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


def parse_json_record(line: str | bytes) -> tuple[dict[str, Any] | None, Problem | None]:
    """Parses one JSON-lines row; a row that is not a JSON object is a problem, not a crash,
    and so is one holding a string that is not valid Unicode (every later step encodes it)."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        return None, Problem("<record>", f"not valid JSON: {error!r}", "invalid_json")
    if not isinstance(record, dict):
        return None, Problem("<record>", f"expected a JSON object, got {type(record).__name__}",
                             "invalid_json")
    problem = _invalid_unicode_problem(record) if _may_hold_surrogates(line) else None
    return (None, problem) if problem else (record, None)


def _may_hold_surrogates(line: str | bytes) -> bool:
    """UTF-8 bytes cannot encode a lone surrogate: in them only a JSON \\u escape can."""
    return isinstance(line, str) or b"\\u" in line


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _invalid_unicode_problem(record: dict[str, Any]) -> Problem | None:
    """The first top-level field whose name or value holds a lone surrogate, at any depth."""
    for field, value in record.items():
        pending = [field, value]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as error:
                    surrogate = _escaped(item[error.start:error.end])
                    return Problem(_escaped(field), f"not valid Unicode: lone surrogate "
                                   f"{surrogate} in {_escaped(item)[:80]!r}", "invalid_unicode")
    return None


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
        if field not in record or (record[field] is None and kind not in (IMAGE, OPTIONAL_TOKEN)):
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
    return _control_character(value)


def _check_text(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return "wrong_type", f"wrong type: expected a string, got {type(value).__name__}"
    if not value.strip():
        return "empty", "empty text"
    return None


def _check_token(value: Any, context: ValidationContext) -> tuple[str, str] | None:
    return _check_text(value, context) or _control_character(value)


def _check_optional_token(value: Any, _: ValidationContext) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return "wrong_type", f"wrong type: expected a string or null, got {type(value).__name__}"
    return _control_character(value)


def _control_character(token: str) -> tuple[str, str] | None:
    """Ids and tokens become lines of vocabulary files: a line break inside one would split it."""
    found = _CONTROL_CHARACTER.search(token)
    if found is None:
        return None
    return "control_character", (f"control character {found.group()!r} at position "
                                 f"{found.start()} of {token!r}: ids and tokens are written as "
                                 "lines of vocabulary files")


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
    for name in value:
        if failure := _control_character(name):
            return failure
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
        image_bytes, failure = read_image(value, context)
        if failure:
            return failure
    elif isinstance(value, (bytes, bytearray)):
        image_bytes = bytes(value)
        if context.read_image is None:
            return None
    else:
        return "wrong_type", f"wrong type: expected a path, bytes or null, got {type(value).__name__}"
    return _decode_problem(image_bytes, context)


def read_image(path: str,
               context: ValidationContext) -> tuple[bytes | None, tuple[str, str] | None]:
    """The bytes of the image an item names, or (code, reason) when it is refused or unreadable.

    Nothing outside the allowed roots is opened, and nothing over the size limit is read.
    """
    try:
        resolved = resolve_image_path(path, context.image_root, context.allowed_image_roots)
        return context.read_image(resolved, context.max_image_bytes), None
    except ImageRefused as error:
        return None, (error.code, str(error))
    except OSError as error:
        return None, ("unreadable_image", f"image not readable: {error}")


def _decode_problem(image_bytes: bytes, context: ValidationContext) -> tuple[str, str] | None:
    if len(image_bytes) > context.max_image_bytes:
        return "image_file_too_large", (f"image has {len(image_bytes):,} bytes, over "
                                        f"max_image_bytes={context.max_image_bytes:,}")
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > context.max_image_pixels:
                return "image_too_large", (f"image too large: {width}x{height} = "
                                           f"{width * height:,} pixels, over max_image_pixels="
                                           f"{context.max_image_pixels:,}; not decoded")
            image.load()
    except Image.DecompressionBombError as error:
        return "image_too_large", f"image too large: {error}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return "undecodable_image", f"undecodable image: {error}"
    return None


_FIELD_CHECKS: dict[str, Callable[[Any, ValidationContext], tuple[str, str] | None]] = {
    ID: _check_id,
    TEXT: _check_text,
    TOKEN: _check_token,
    OPTIONAL_TOKEN: _check_optional_token,
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
