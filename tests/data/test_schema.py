"""The raw data contract: valid records of every table pass, and each kind of bad record is
reported with the field at fault and a reason a person can act on."""
import io
import os
import struct
import threading
import zlib

import pytest
from PIL import Image, ImageFile

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


# --- strings that would break a writer -------------------------------------------------------

@pytest.mark.parametrize("line, field", [
    (r'{"item_id": "i1", "title": "\ud800"}', "title"),
    (r'{"user_id": "u\udfff1", "signup_ts": 1}', "user_id"),
    (r'{"item_id": "i1", "source": {"tags": ["ok", "x\ud800y"]}}', "source"),
    (r'{"item_id": "i1", "attrs": {"\ud800": 1}}', "attrs"),
    (r'{"\ud800": 1}', r"\ud800"),
    (rb'{"item_id": "i1", "title": "\ud800"}', "title"),
], ids=["title", "id", "nested-extra-field", "attribute-name", "field-name", "bytes"])
def test_lone_surrogate_in_any_string_is_invalid_unicode(line, field):
    """JSON may escape a lone surrogate; it is no Unicode character, and every writer that
    encodes it as UTF-8 (Beam's coders included) would fail."""
    record, problem = parse_json_record(line)
    assert record is None
    assert (problem.field, problem.code) == (field, "invalid_unicode")
    assert problem.reason.startswith("not valid Unicode: lone surrogate \\ud")


def test_surrogate_pair_is_valid_unicode():
    record, problem = parse_json_record(r'{"user_id": "u\ud83d\ude00", "signup_ts": 1699913600}')
    assert problem is None and record["user_id"] == "u\U0001f600"


@pytest.mark.parametrize("table, field, value, character", [
    (ITEMS, "category", "evil\ncat", "\n"),
    (ITEMS, "brand", "Ac\rme", "\r"),
    (ITEMS, "item_id", "i\x001", "\x00"),
    (EVENTS, "user_id", "u\t1", "\t"),
    (EVENTS, "request_id", "r\x7f1", "\x7f"),
    (QUERIES, "item_id", "i\x851", "\x85"),
    (ITEMS, "entities", ["mug", "line\u2028break"], "\u2028"),
])
def test_control_character_in_an_id_or_token(table, field, value, character):
    """Ids and catalogue tokens become vocabulary lines: a line break would split one in two."""
    problem = _only_problem(validate_record(table, _record(table, **{field: value})))
    assert (problem.field, problem.code) == (field, "control_character")
    assert f"control character {character!r}" in problem.reason


def test_titles_and_queries_may_hold_line_breaks():
    assert validate_record(ITEMS, _record(ITEMS, title="Red mug\nwith handle")) == []
    assert validate_record(QUERIES, _record(QUERIES, query="red\tmug")) == []


# --- images -----------------------------------------------------------------------------------

def _blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, built row by row: a huge one costs no memory to make."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(), b"\x00" * (1 + (width + 7) // 8)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


@pytest.fixture
def data_dir(tmp_path):
    """DIR/images/i1.png (a PNG) in ``tmp_path/raw``, and a PNG outside it in ``secret/``."""
    (tmp_path / "raw" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "images" / "i1.png").write_bytes(PNG)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "x.png").write_bytes(PNG)
    return tmp_path / "raw"


def _reading(root, **changes) -> tuple[ValidationContext, list[str]]:
    """A context reading local files under ``root``, and the list of paths it was asked for."""
    requested = []

    def read_image(path: str, *limit) -> bytes:
        requested.append(path)
        return schema.read_local_file(path, *limit)

    return ValidationContext(image_root=str(root), read_image=read_image, **changes), requested


@pytest.mark.parametrize("image", [NOT_AN_IMAGE, TRUNCATED_PNG, b""],
                         ids=["not-an-image", "truncated-png", "empty"])
def test_undecodable_image_bytes(image):
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=image), DECODE_IMAGES))
    assert problem.field == "image"
    assert problem.reason.startswith("undecodable image")


def test_png_file_inside_the_data_directory_passes(data_dir):
    (data_dir / "images" / "alias.png").symlink_to(data_dir / "images" / "i1.png")
    context, requested = _reading(data_dir)
    for image in ("images/i1.png", str(data_dir / "images" / "i1.png"), "images/./alias.png",
                  "images/../images/i1.png"):
        assert validate_record(ITEMS, _record(ITEMS, image=image), context) == [], image
    assert requested == [str(data_dir.resolve() / "images" / "i1.png")] * 4


@pytest.mark.parametrize("content", [NOT_AN_IMAGE, TRUNCATED_PNG], ids=["garbage", "truncated"])
def test_corrupt_image_file(data_dir, content):
    (data_dir / "images" / "i2.png").write_bytes(content)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/i2.png"),
                                            _reading(data_dir)[0]))
    assert problem.field == "image"
    assert problem.reason.startswith("undecodable image")


def test_image_path_that_does_not_exist(data_dir):
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/missing.png"),
                                            _reading(data_dir)[0]))
    assert problem.field == "image" and problem.code == "unreadable_image"
    assert problem.reason.startswith("image not readable")
    assert "missing.png" in problem.reason


@pytest.mark.parametrize("image", [
    "/etc/passwd", "../../../../../../../../etc/passwd", "../secret/x.png",
    "images/../../secret/x.png", "images/escape.png", "images/escape-dir/x.png",
    "{secret}/x.png"])
def test_image_outside_the_data_directory_is_refused_without_opening_it(data_dir, image):
    """Absolute paths, ``..`` escapes and symlinks out (of the file or of a folder above it)
    resolve outside the data directory: refused before any read, even of a real PNG."""
    secret = data_dir.parent / "secret"
    (data_dir / "images" / "escape.png").symlink_to(secret / "x.png")
    (data_dir / "images" / "escape-dir").symlink_to(secret, target_is_directory=True)
    image = image.format(secret=secret)
    context, requested = _reading(data_dir)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=image), context))
    assert (problem.field, problem.code) == ("image", "image_outside_root")
    assert repr(image) in problem.reason and repr(str(data_dir)) in problem.reason
    assert requested == []


def test_an_allowed_image_root_admits_images_outside_the_data_directory(data_dir):
    secret = data_dir.parent / "secret"
    (data_dir.parent / "secret-sibling").mkdir()
    (data_dir.parent / "secret-sibling" / "x.png").write_bytes(PNG)
    context, requested = _reading(data_dir, allowed_image_roots=(str(secret),))
    for image in (str(secret / "x.png"), "../secret/x.png", "images/i1.png"):
        assert validate_record(ITEMS, _record(ITEMS, image=image), context) == [], image
    # A folder whose name starts like the allowed one is not inside it.
    sibling = str(data_dir.parent / "secret-sibling" / "x.png")
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=sibling), context))
    assert problem.code == "image_outside_root"
    assert len(requested) == 3


def test_image_path_without_any_root_is_refused():
    context = ValidationContext(read_image=lambda path, *limit: PNG)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/i1.png"), context))
    assert problem.code == "image_outside_root" and "no image root" in problem.reason


@pytest.mark.parametrize("image, resolved", [
    ("images/i1.png", "gs://bucket/raw/images/i1.png"),
    ("gs://bucket/raw/images/i1.png", "gs://bucket/raw/images/i1.png"),
    ("images/../images//i1.png", "gs://bucket/raw/images/i1.png"),
])
def test_gs_image_inside_a_gs_data_directory_is_read(image, resolved):
    requested = []
    context = ValidationContext(image_root="gs://bucket/raw/",
                                read_image=lambda path, *limit: requested.append(path) or PNG)
    assert validate_record(ITEMS, _record(ITEMS, image=image), context) == []
    assert requested == [resolved]


@pytest.mark.parametrize("image, code", [
    ("../secret/i1.png", "image_outside_root"),
    ("images/../../../other-bucket/i1.png", "image_outside_root"),
    ("/etc/passwd", "image_outside_root"),
    ("gs://bucket/raw/../secret/i1.png", "image_url"),
    ("gs://bucket/raw-other/i1.png", "image_url"),
    ("gs://other-bucket/raw/i1.png", "image_url"),
    ("https://cdn.example.com/i1.png", "image_url"),
    ("file:///etc/passwd", "image_url"),
])
def test_image_outside_a_gs_data_directory_is_refused_by_normalised_prefix(image, code):
    requested = []
    context = ValidationContext(image_root="gs://bucket/raw",
                                read_image=lambda path, *limit: requested.append(path) or PNG)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=image), context))
    assert (problem.field, problem.code) == ("image", code)
    assert requested == []
    if code == "image_url":
        assert "never downloaded" in problem.reason


@pytest.fixture
def unblock_fifo_later():
    """Opens the FIFOs registered with it for writing after 10 s: a reader stuck in ``open``
    is released (and the test fails on what it read) instead of hanging the run."""
    fifos = []

    def release():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # nobody is blocked reading it
                pass

    timer = threading.Timer(10, release)
    timer.start()
    yield fifos.append
    timer.cancel()


def test_image_path_that_is_not_a_regular_file_is_refused_without_opening(
        data_dir, unblock_fifo_later):
    fifo = data_dir / "images" / "fifo.png"
    os.mkfifo(fifo)
    unblock_fifo_later(str(fifo))
    (data_dir / "images" / "folder.png").mkdir()
    context = _reading(data_dir)[0]
    for image in ("images/fifo.png", "images/folder.png", "images"):
        problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=image), context))
        assert (problem.field, problem.code) == ("image", "image_not_regular_file"), image
        assert "not a regular file" in problem.reason


def test_image_file_over_the_size_limit_is_refused_without_reading_it(data_dir):
    with open(data_dir / "images" / "huge.png", "wb") as handle:
        handle.truncate(21 << 20)  # sparse: 21 MB on paper, over the 20 MB default
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/huge.png"),
                                            _reading(data_dir)[0]))
    assert (problem.field, problem.code) == ("image", "image_file_too_large")
    assert "22,020,096 bytes, over max_image_bytes=20,971,520" in problem.reason


def test_image_size_limit_is_configurable_and_applies_to_inline_bytes(data_dir):
    at_limit, _ = _reading(data_dir, max_image_bytes=len(PNG))
    assert validate_record(ITEMS, _record(ITEMS, image="images/i1.png"), at_limit) == []
    assert validate_record(ITEMS, _record(ITEMS, image=PNG), at_limit) == []
    below, _ = _reading(data_dir, max_image_bytes=len(PNG) - 1)
    for image in ("images/i1.png", PNG):
        problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=image), below))
        assert problem.code == "image_file_too_large"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_image_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    """144 megapixels is under PIL's own error threshold (it would only warn and decode)."""
    huge = _blank_png(12_000, 12_000)
    assert len(huge) < 1 << 20
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda image: decoded.append(image.size))
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=huge), DECODE_IMAGES))
    assert (problem.field, problem.code) == ("image", "image_too_large")
    assert "144,000,000 pixels, over max_image_pixels=40,000,000" in problem.reason
    assert decoded == []
    small = ValidationContext(read_image=schema.read_local_file, max_image_pixels=11)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=PNG), small))
    assert problem.code == "image_too_large" and "4x3 = 12 pixels" in problem.reason


def test_relative_image_path_is_resolved_against_image_root(data_dir):
    (data_dir / "images" / "i2.png").write_bytes(NOT_AN_IMAGE)
    context = ValidationContext(image_root=str(data_dir), read_image=schema.read_local_file)
    assert validate_record(ITEMS, _record(ITEMS, image="images/i1.png"), context) == []
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/i2.png"), context))
    assert problem.field == "image"
    assert problem.reason.startswith("undecodable image")
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="images/i3.png"), context))
    assert problem.reason.startswith("image not readable")


def test_image_reader_os_error_is_a_problem():
    def read_image(path: str, max_bytes: int) -> bytes:
        raise OSError(f"permission denied: {path}")

    context = ValidationContext(image_root="gs://bucket/raw", read_image=read_image)
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image="i1.png"), context))
    assert problem == Problem(
        "image", "image not readable: permission denied: gs://bucket/raw/i1.png")


@pytest.mark.parametrize("image", [NOT_AN_IMAGE, "no/such/file.png", "/etc/passwd"])
def test_images_are_not_read_or_decoded_without_a_reader(image):
    assert validate_record(ITEMS, _record(ITEMS, image=image)) == []


def test_oversized_image_is_a_problem_not_a_crash(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2)  # 4x3 PNG is now over twice the limit
    problem = _only_problem(validate_record(ITEMS, _record(ITEMS, image=PNG), DECODE_IMAGES))
    assert problem.field == "image" and "image too large" in problem.reason


@pytest.mark.parametrize("path, image_root, expected", [
    ("images/i1.png", "/data/raw", "/data/raw/images/i1.png"),
    ("images/i1.png", "/data/raw/", "/data/raw/images/i1.png"),
    ("/data/raw/images/../images/i1.png", "/data/raw", "/data/raw/images/i1.png"),
    ("images/i1.png", "gs://bucket/raw", "gs://bucket/raw/images/i1.png"),
    ("GS://bucket/raw/images/i1.png", "gs://bucket/raw", "gs://bucket/raw/images/i1.png"),
])
def test_resolve_image_path(path, image_root, expected):
    assert resolve_image_path(path, image_root) == expected


def test_resolve_image_path_refuses_a_nul_byte():
    with pytest.raises(schema.ImageRefused, match="NUL byte") as refused:
        resolve_image_path("images/i1.png\x00.txt", "/data/raw")
    assert refused.value.code == "invalid_image_path"


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
