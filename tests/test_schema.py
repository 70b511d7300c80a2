"""The raw data contract: valid records of every table pass, and each kind of bad record is
reported with the field at fault and a reason a person can act on."""
import io

import pytest
from PIL import Image

from ppm_tf.data import schema
from ppm_tf.data.schema import (
    DEFAULT_MIN_TS, EVENTS, ITEMS, QUERIES, TABLES, USERS, Problem, ValidationContext,
    parse_json_record, resolve_image_path, validate_record)

TS = 1_700_000_000  # 2023-11-14 UTC
LAUNCH_TS = TS - 86_400


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), color=(200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png_bytes()
NOT_AN_IMAGE = b"this is not an image"
TRUNCATED_PNG = PNG[:40]

VALID = {
    ITEMS: {
        "item_id": "i1",
        "title": "Red mug",
        "image": None,
        "category": "kitchen",
        "brand": "Acme",
        "entities": ["mug", "handle"],
        "launch_ts": LAUNCH_TS,
        "attrs": {"colour": "red", "volume_ml": 350, "price": 9.5},
    },
    USERS: {"user_id": "u1", "signup_ts": LAUNCH_TS},
    EVENTS: {"request_id": "r1", "user_id": "u1", "item_id": "i1", "ts": TS, "click": 1,
             "order": 1},
    QUERIES: {"query": "red mug", "item_id": "i1", "ts": TS},
}

DECODE_IMAGES = ValidationContext(read_image=schema.read_local_file)
REFERENCES = ValidationContext(known_item_ids=frozenset({"i1"}), known_user_ids=frozenset({"u1"}),
                               item_launch_ts={"i1": LAUNCH_TS})


def _record(table: str, **changes) -> dict:
    return {**VALID[table], **changes}


def _without(table: str, field: str) -> dict:
    return {name: value for name, value in VALID[table].items() if name != field}


def _only_problem(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# --- valid records ---------------------------------------------------------------------------

@pytest.mark.parametrize("table", TABLES)
def test_valid_record_of_every_table_passes(table):
    assert validate_record(table, VALID[table]) == []
    assert validate_record(table, VALID[table], REFERENCES) == []


@pytest.mark.parametrize("table, changes", [
    (ITEMS, {"image": None, "brand": None}),
    (ITEMS, {"entities": [], "attrs": {}}),
    (ITEMS, {"image": PNG}),
    (ITEMS, {"image": bytearray(PNG)}),
    (EVENTS, {"click": 0, "order": 0}),
    (EVENTS, {"click": 1, "order": 0}),
    (EVENTS, {"ts": DEFAULT_MIN_TS}),
    (USERS, {"signup_ts": None}),
], ids=["image-and-brand-null", "empty-entities-and-attrs", "png-bytes", "png-bytearray",
        "no-click", "click-no-order", "ts-at-min", "signup-null"])
def test_valid_variants_pass(table, changes):
    assert validate_record(table, _record(table, **changes), DECODE_IMAGES) == []


@pytest.mark.parametrize("table, field", [
    (ITEMS, "image"), (ITEMS, "brand"), (ITEMS, "attrs"), (USERS, "signup_ts")])
def test_optional_field_may_be_absent(table, field):
    assert validate_record(table, _without(table, field)) == []


@pytest.mark.parametrize("table", TABLES)
def test_extra_fields_are_ignored(table):
    record = _record(table, source="export-7", scores=[0.1, None], nested={"a": [1]})
    assert validate_record(table, record, REFERENCES) == []


def test_timestamp_at_max_ts_is_not_in_the_future():
    assert validate_record(EVENTS, VALID[EVENTS], ValidationContext(max_ts=TS)) == []


def test_event_at_the_item_launch_passes():
    assert validate_record(EVENTS, _record(EVENTS, ts=LAUNCH_TS), REFERENCES) == []


# --- bad records: one problem, with its field and reason --------------------------------------

@pytest.mark.parametrize("table, field", [
    (ITEMS, "item_id"), (ITEMS, "title"), (ITEMS, "category"), (ITEMS, "entities"),
    (ITEMS, "launch_ts"),
    (USERS, "user_id"),
    (EVENTS, "request_id"), (EVENTS, "user_id"), (EVENTS, "item_id"), (EVENTS, "ts"),
    (EVENTS, "click"), (EVENTS, "order"),
    (QUERIES, "query"), (QUERIES, "item_id"), (QUERIES, "ts"),
])
def test_missing_required_field(table, field):
    for record in (_without(table, field), _record(table, **{field: None})):
        assert validate_record(table, record) == [Problem(field, "missing required field")]


@pytest.mark.parametrize("table, field, value, reason", [
    (ITEMS, "item_id", 7, "wrong type: expected a string id, got int"),
    (EVENTS, "user_id", 42, "wrong type: expected a string id, got int"),
    (EVENTS, "request_id", ["r1"], "expected a string id, got list"),
    (EVENTS, "ts", 1_700_000_000.0,
     "wrong type: expected integer seconds since the epoch, got float"),
    (EVENTS, "ts", "1700000000", "got str"),
    (EVENTS, "ts", True, "got bool"),
    (USERS, "signup_ts", False, "got bool"),
    (ITEMS, "launch_ts", "2023-11-14", "got str"),
    (ITEMS, "title", 5, "wrong type: expected a string, got int"),
    (QUERIES, "query", ["red", "mug"], "expected a string, got list"),
    (ITEMS, "brand", 5, "wrong type: expected a string or null, got int"),
    (ITEMS, "entities", "mug", "wrong type: expected a list of strings, got str"),
    (ITEMS, "entities", ("mug",), "expected a list of strings, got tuple"),
    (ITEMS, "entities", ["mug", ""], "expected a list of non-empty strings"),
    (ITEMS, "entities", ["mug", "  "], "expected a list of non-empty strings"),
    (ITEMS, "entities", ["mug", 3], "expected a list of non-empty strings"),
    (ITEMS, "attrs", {"sizes": ["S", "M"]},
     "attribute 'sizes': expected a string or number, got list"),
    (ITEMS, "attrs", {"on_sale": True},
     "attribute 'on_sale': expected a string or number, got bool"),
    (ITEMS, "attrs", {"weight": None}, "got NoneType"),
    (ITEMS, "attrs", ["red"], "wrong type: expected an object, got list"),
    (ITEMS, "image", 5, "wrong type: expected a path, bytes or null, got int"),
])
def test_wrong_type(table, field, value, reason):
    problem = _only_problem(validate_record(table, _record(table, **{field: value})))
    assert problem.field == field
    assert reason in problem.reason


@pytest.mark.parametrize("table, field, value, reason", [
    (ITEMS, "item_id", "", "empty id"),
    (USERS, "user_id", "   ", "empty id"),
    (EVENTS, "request_id", "\t", "empty id"),
    (ITEMS, "title", "", "empty text"),
    (ITEMS, "category", " ", "empty text"),
    (QUERIES, "query", "", "empty text"),
    (ITEMS, "image", " ", "empty image path"),
])
def test_empty_id_or_text(table, field, value, reason):
    assert validate_record(table, _record(table, **{field: value})) == [Problem(field, reason)]


@pytest.mark.parametrize("table, field, value", [
    (EVENTS, "ts", DEFAULT_MIN_TS - 1),
    (ITEMS, "launch_ts", 0),
    (USERS, "signup_ts", -5),
    (QUERIES, "ts", 1_700_000),  # a unit error, e.g. hours written as seconds
])
def test_timestamp_before_min_ts(table, field, value):
    problem = _only_problem(validate_record(table, _record(table, **{field: value})))
    assert problem == Problem(field, f"out-of-range timestamp {value}: before {DEFAULT_MIN_TS}")


def test_custom_min_ts():
    context = ValidationContext(min_ts=TS)
    assert validate_record(EVENTS, VALID[EVENTS], context) == []
    problem = _only_problem(validate_record(EVENTS, _record(EVENTS, ts=TS - 1), context))
    assert problem.field == "ts"
    assert f"before {TS}" in problem.reason


@pytest.mark.parametrize("table, field", [
    (EVENTS, "ts"), (QUERIES, "ts"), (ITEMS, "launch_ts"), (USERS, "signup_ts")])
def test_future_timestamp_after_max_ts(table, field):
    future = TS + 1
    record = _record(table, **{field: future})
    problems = validate_record(table, record, ValidationContext(max_ts=TS))
    reason = f"out-of-range timestamp {future}: in the future (after {TS})"
    assert problems == [Problem(field, reason)]


@pytest.mark.parametrize("field", ["click", "order"])
@pytest.mark.parametrize("value", [2, -1, 1.0, 0.0, "1", [1]])
def test_label_not_0_or_1(field, value):
    problem = _only_problem(validate_record(EVENTS, _record(EVENTS, **{field: value})))
    assert problem == Problem(field, f"expected 0 or 1, got {value!r}")


@pytest.mark.parametrize("field", ["click", "order"])
def test_boolean_label_is_rejected(field):
    problem = _only_problem(validate_record(EVENTS, _record(EVENTS, **{field: True})))
    assert problem.field == field


def test_order_without_click():
    record = _record(EVENTS, click=0, order=1)
    assert validate_record(EVENTS, record) == [Problem("order", "order without click")]


@pytest.mark.parametrize("table", [EVENTS, QUERIES])
def test_unknown_item_id(table):
    problems = validate_record(table, _record(table, item_id="i9"), REFERENCES)
    assert problems == [Problem("item_id", "unknown id 'i9': not in items")]


def test_unknown_user_id():
    problems = validate_record(EVENTS, _record(EVENTS, user_id="u9"), REFERENCES)
    assert problems == [Problem("user_id", "unknown id 'u9': not in users")]


def test_reference_checks_are_off_without_known_ids():
    record = _record(EVENTS, item_id="i9", user_id="u9")
    assert validate_record(EVENTS, record) == []


@pytest.mark.parametrize("table", [EVENTS, QUERIES])
def test_event_before_item_launch(table):
    problem = _only_problem(validate_record(table, _record(table, ts=LAUNCH_TS - 1), REFERENCES))
    assert problem.field == "ts"
    assert f"before the item's launch_ts {LAUNCH_TS}" in problem.reason
    assert "'i1'" in problem.reason


def test_known_item_without_launch_ts_does_not_crash():
    context = ValidationContext(known_item_ids=frozenset({"i1", "i2"}), item_launch_ts={"i1": TS})
    assert validate_record(EVENTS, _record(EVENTS, item_id="i2"), context) == []


def test_every_field_problem_is_reported():
    record = _record(ITEMS, title="", launch_ts=1.5, entities="mug")
    del record["item_id"]
    problems = validate_record(ITEMS, record)
    assert [problem.field for problem in problems] == ["item_id", "title", "entities", "launch_ts"]


def test_several_reference_problems_are_reported():
    record = _record(EVENTS, item_id="i9", user_id="u9", click=0, order=1)
    problems = validate_record(EVENTS, record, REFERENCES)
    assert [problem.field for problem in problems] == ["order", "item_id", "user_id"]


# --- images -----------------------------------------------------------------------------------

@pytest.mark.parametrize("image", [NOT_AN_IMAGE, TRUNCATED_PNG, b""],
                         ids=["not-an-image", "truncated-png", "empty"])
def test_undecodable_image_bytes(image):
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=image), DECODE_IMAGES))
    assert problem.field == "image"
    assert problem.reason.startswith("undecodable image")


def test_png_file_by_absolute_path_passes(tmp_path):
    path = tmp_path / "i1.png"
    path.write_bytes(PNG)
    assert validate_record(ITEMS, _record(ITEMS, image=str(path)), DECODE_IMAGES) == []


@pytest.mark.parametrize("content", [NOT_AN_IMAGE, TRUNCATED_PNG], ids=["garbage", "truncated"])
def test_corrupt_image_file(tmp_path, content):
    path = tmp_path / "i1.png"
    path.write_bytes(content)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=str(path)), DECODE_IMAGES))
    assert problem.field == "image"
    assert problem.reason.startswith("undecodable image")


def test_image_path_that_does_not_exist(tmp_path):
    path = tmp_path / "missing.png"
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=str(path)), DECODE_IMAGES))
    assert problem.field == "image"
    assert problem.reason.startswith("image not readable")
    assert "missing.png" in problem.reason


def test_relative_image_path_is_resolved_against_image_root(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "i1.png").write_bytes(PNG)
    (tmp_path / "images" / "i2.png").write_bytes(NOT_AN_IMAGE)
    context = ValidationContext(image_root=str(tmp_path), read_image=schema.read_local_file)
    assert validate_record(ITEMS, _record(ITEMS, image="images/i1.png"), context) == []
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/i2.png"), context))
    assert problem.field == "image"
    assert problem.reason.startswith("undecodable image")
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/i3.png"), context))
    assert problem.reason.startswith("image not readable")


def test_image_reader_gets_the_resolved_path():
    requested = []

    def read_image(path: str) -> bytes:
        requested.append(path)
        return PNG

    context = ValidationContext(image_root="gs://bucket/raw/", read_image=read_image)
    for image in ("images/i1.png", "/abs/i1.png", "https://cdn.example.com/i1.png"):
        assert validate_record(ITEMS, _record(ITEMS, image=image), context) == []
    assert requested == ["gs://bucket/raw/images/i1.png", "/abs/i1.png",
                         "https://cdn.example.com/i1.png"]


def test_image_reader_os_error_is_a_problem():
    def read_image(path: str) -> bytes:
        raise OSError(f"permission denied: {path}")

    context = ValidationContext(read_image=read_image)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="i1.png"), context))
    assert problem == Problem("image", "image not readable: permission denied: i1.png")


@pytest.mark.parametrize("image", [NOT_AN_IMAGE, "no/such/file.png"])
def test_images_are_not_decoded_without_a_reader(image):
    assert validate_record(ITEMS, _record(ITEMS, image=image)) == []


def test_oversized_image_is_a_problem_not_a_crash(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2)  # 4x3 PNG is now over twice the limit
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=PNG), DECODE_IMAGES))
    assert problem.field == "image" and "image too large" in problem.reason


@pytest.mark.parametrize("path, image_root, expected", [
    ("images/i1.png", "", "images/i1.png"),
    ("images/i1.png", "/data/raw", "/data/raw/images/i1.png"),
    ("images/i1.png", "/data/raw/", "/data/raw/images/i1.png"),
    ("images/i1.png", "gs://bucket/raw", "gs://bucket/raw/images/i1.png"),
    ("/abs/i1.png", "/data/raw", "/abs/i1.png"),
    ("gs://other/i1.png", "/data/raw", "gs://other/i1.png"),
])
def test_resolve_image_path(path, image_root, expected):
    assert resolve_image_path(path, image_root) == expected


# --- records as JSON lines, and misuse ---------------------------------------------------------

@pytest.mark.parametrize("line", [
    '{"user_id": "u1", "signup_ts": 1699913600}',
    b'{"user_id": "u1", "signup_ts": 1699913600}',
])
def test_parse_json_record_object(line):
    record, problem = parse_json_record(line)
    assert problem is None
    assert record == {"user_id": "u1", "signup_ts": 1_699_913_600}
    assert validate_record(USERS, record) == []


@pytest.mark.parametrize("line", ["not json", '{"user_id": "u1"', "", b"\xff\xfe{}"],
                         ids=["text", "unterminated", "empty", "bad-utf8"])
def test_parse_json_record_non_json_line(line):
    record, problem = parse_json_record(line)
    assert record is None
    assert problem.field == "<record>"
    assert problem.reason.startswith("not valid JSON")


@pytest.mark.parametrize("line, type_name", [
    ("[1, 2]", "list"), ('"u1"', "str"), ("42", "int"), ("null", "NoneType")])
def test_parse_json_record_non_object(line, type_name):
    assert parse_json_record(line) == (
        None, Problem("<record>", f"expected a JSON object, got {type_name}"))


def test_parse_json_record_deeply_nested_line():
    record, problem = parse_json_record("[" * 100_000)
    assert record is None and problem.field == "<record>"


def test_record_that_is_not_a_mapping():
    assert validate_record(USERS, ["u1", TS]) == [
        Problem("<record>", "expected a mapping, got list")]


def test_unknown_table_raises():
    with pytest.raises(ValueError, match="unknown table 'clicks'"):
        validate_record("clicks", {})


def test_problem_as_dict():
    assert Problem("ts", "empty", "empty").as_dict() == {
        "field": "ts", "reason": "empty", "code": "empty"}


@pytest.mark.parametrize("table, changes, code", [
    (EVENTS, {"user_id": None}, "missing"),
    (EVENTS, {"ts": "soon"}, "wrong_type"),
    (EVENTS, {"request_id": " "}, "empty"),
    (EVENTS, {"ts": 5}, "too_old"),
    (EVENTS, {"ts": 5_000_000_000}, "future"),
    (EVENTS, {"click": 2}, "not_binary"),
    (EVENTS, {"click": 0, "order": 1}, "order_without_click"),
    (ITEMS, {"image": b"not an image"}, "undecodable_image"),
])
def test_every_problem_has_a_code_for_dead_letter_counts(table, changes, code):
    problem = _only_problem(validate_record(table, _record(table, **changes), DECODE_IMAGES))
    assert problem.code == code
