"""Each preprocessing transform on its own: tiny hand-made inputs, exact expected outputs.

Pipelines run on Beam's in-memory FnApiRunner. ``--runner=DirectRunner`` is the same engine
behind a switch, but in Beam 2.77 that switch first tries the Prism runner (it downloads a
binary); tests must never depend on the network.
"""
import gzip
import io
import json

import apache_beam as beam
import pytest
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from ppm_tf.data import raw_files, schema
from ppm_tf.preprocessing import outputs
from ppm_tf.preprocessing.joins import (ITEMS_OUT, QUERIES_OUT, JoinItems, JoinUsers,
                                        _CheckItemReferences)
from ppm_tf.preprocessing.sequences import BehaviourSequences, attach_behaviour_sequences
from ppm_tf.preprocessing.splits import SplitBounds
from ppm_tf.preprocessing.validate import (DEAD_LETTER, VALID, ReadAndValidate,
                                           dead_letter_key, read_with_filesystems)
from ppm_tf.preprocessing.vocabulary import Vocabularies
from ppm_tf.work_layout import WorkLayout

DAY = 86_400
T0 = 1_700_006_400  # 2023-11-15 00:00 UTC
BOUNDS = SplitBounds(train_start_ts=T0 + 10 * DAY, valid_start_ts=T0 + 19 * DAY,
                     eval_start_ts=T0 + 20 * DAY, end_ts=T0 + 30 * DAY)


def _pipeline() -> test_pipeline.TestPipeline:
    return test_pipeline.TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color=(10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _summary(entry):
    """A dead letter as (key, every problem's code, record, raw line): what tests compare."""
    return (dead_letter_key(entry), [problem["code"] for problem in entry["problems"]],
            entry.get("record"), entry.get("line"))


def _event(request_id, user_id, item_id, ts, click=0, order=0, **extra):
    return {"request_id": request_id, "user_id": user_id, "item_id": item_id, "ts": ts,
            "click": click, "order": order, **extra}


# --- ReadAndValidate -------------------------------------------------------------------------

def _write_lines(path, lines: list[bytes]) -> str:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return str(path)


def test_read_and_validate_splits_events_into_valid_and_dead_letters(tmp_path):
    good = _event("r1", "u1", "i1", T0, click=1, order=1)
    missing_click = {key: value for key, value in _event("r2", "u1", "i1", T0).items()
                     if key != "click"}
    wrong_type = _event("r3", "u1", "i1", str(T0))
    future = _event("r4", "u1", "i1", T0 + 100 * DAY)
    at_max_ts = _event("r5", "u1", "i1", T0 + 30 * DAY)
    non_utf8 = b'\xff\xfe{"request_id": "r6"}'
    lines = [json.dumps(good).encode(), b'{"request_id": "r0", "user_id":', non_utf8,
             json.dumps(missing_click).encode(), json.dumps(wrong_type).encode(),
             json.dumps(future).encode(), json.dumps(at_max_ts).encode(), b"[1, 2]",
             b"", b"  "]  # blank lines hold no record: skipped, not dead-lettered
    pattern = _write_lines(tmp_path / "events.jsonl", lines)
    context = schema.ValidationContext(max_ts=T0 + 30 * DAY)

    with _pipeline() as pipeline:
        result = pipeline | ReadAndValidate(schema.EVENTS, pattern, context)
        assert_that(result[VALID], equal_to([good, at_max_ts]), label="Valid")
        assert_that(result[DEAD_LETTER] | beam.Map(_summary), equal_to([
            ("events.<record>.invalid_json", ["invalid_json"], None,
             '{"request_id": "r0", "user_id":'),
            ("events.<record>.invalid_json", ["invalid_json"], None,
             non_utf8.decode("utf-8", errors="replace")),
            ("events.<record>.invalid_json", ["invalid_json"], None, "[1, 2]"),
            ("events.click.missing", ["missing"], missing_click, None),
            ("events.ts.wrong_type", ["wrong_type"], wrong_type, None),
            ("events.ts.future", ["future"], future, None),
        ]), label="DeadLetters")


def test_read_and_validate_loads_item_images_and_rejects_bad_ones(tmp_path):
    png = _png()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "good.png").write_bytes(png)
    (tmp_path / "images" / "garbage.png").write_bytes(b"not a png at all")
    item = {"item_id": "i1", "title": "Green mug", "image": "images/good.png",
            "category": "kitchen", "brand": "Acme", "entities": ["mug"], "launch_ts": T0,
            "attrs": {"colour": "green"}}
    no_image = {**item, "item_id": "i2", "image": None}
    missing_file = {**item, "item_id": "i3", "image": "images/nowhere.png"}
    undecodable = {**item, "item_id": "i4", "image": "images/garbage.png"}
    bad_title = {**item, "item_id": "i5", "title": 7}
    # A URL outside the data directory is never fetched.
    url = {**item, "item_id": "i6", "image": "https://example.com/i6.png"}
    empty_path = {**item, "item_id": "i7", "image": ""}
    pattern = _write_lines(tmp_path / "items.jsonl", [
        json.dumps(record).encode()
        for record in (item, no_image, missing_file, undecodable, bad_title, url, empty_path)])
    context = schema.ValidationContext(image_root=str(tmp_path), read_image=read_with_filesystems)

    with _pipeline() as pipeline:
        result = pipeline | ReadAndValidate(schema.ITEMS, pattern, context)
        # A valid item leaves with its image as bytes, so the catalogue carries them.
        assert_that(result[VALID], equal_to([{**item, "image": png}, no_image]), label="Valid")
        assert_that(result[DEAD_LETTER] | beam.Map(_summary), equal_to([
            ("items.image.unreadable_image", ["unreadable_image"], missing_file, None),
            ("items.image.undecodable_image", ["undecodable_image"], undecodable, None),
            ("items.title.wrong_type", ["wrong_type"], bad_title, None),
            ("items.image.image_url", ["image_url"], url, None),
            ("items.image.empty", ["empty"], empty_path, None),
        ]), label="DeadLetters")


def test_read_and_validate_dead_letters_lone_surrogates_instead_of_crashing(tmp_path):
    """Beam's coders encode strings as UTF-8: one lone surrogate used to stop the whole job."""
    good = _event("r1", "u1", "i1", T0)
    lines = [json.dumps(good).encode(),
             b'{"request_id": "r2", "user_id": "u\\ud800", "item_id": "i1", "ts": 1}',
             b'{"request_id": "r3", "user_id": "u1", "item_id": "i1", "ts": 1, "click": 0, '
             b'"order": 0, "note": ["\\udc00"]}']
    pattern = _write_lines(tmp_path / "events.jsonl", lines)

    with _pipeline() as pipeline:
        result = pipeline | ReadAndValidate(schema.EVENTS, pattern, schema.ValidationContext())
        assert_that(result[VALID], equal_to([good]), label="Valid")
        assert_that(result[DEAD_LETTER] | beam.Map(_summary), equal_to([
            ("events.user_id.invalid_unicode", ["invalid_unicode"], None, lines[1].decode()),
            ("events.note.invalid_unicode", ["invalid_unicode"], None, lines[2].decode()),
        ]), label="DeadLetters")


def test_read_and_validate_dead_letters_a_record_over_the_byte_limit_unparsed(tmp_path):
    good = _event("r1", "u", "i1", T0)
    # 20 MB of valid JSON: it is neither parsed nor held whole.
    huge = b'{"request_id": "r2", "padding": "' + b"x" * (20 << 20) + b'"}'
    longer = _event("r3", "u1", "i1", T0)  # one byte longer than ``good``
    lines = [json.dumps(record).encode() for record in (good, longer)]
    pattern = _write_lines(tmp_path / "events.jsonl", [lines[0], huge, lines[1]])

    def summary(entry):
        return dead_letter_key(entry), entry["problems"][0]["reason"], entry["line"]

    with _pipeline() as pipeline:
        result = pipeline | ReadAndValidate(schema.EVENTS, pattern, schema.ValidationContext())
        assert_that(result[VALID], equal_to([good, longer]), label="Valid")
        assert_that(result[DEAD_LETTER] | beam.Map(summary), equal_to([(
            "events.<record>.record_too_large",
            f"record of {len(huge):,} bytes is over max_record_bytes=1,048,576 (not parsed; "
            "the dead letter keeps its first 256 bytes)", huge[:256].decode())]),
            label="DeadLetters")
    with _pipeline() as pipeline:  # the limit is a setting: a line at it passes
        result = pipeline | ReadAndValidate(schema.EVENTS, pattern, schema.ValidationContext(),
                                            max_record_bytes=len(lines[0]))
        assert_that(result[VALID], equal_to([good]), label="Valid")
        assert_that(result[DEAD_LETTER] | beam.Map(dead_letter_key),
                    equal_to(["events.<record>.record_too_large"] * 2), label="Over")


class _MirrorFileSystem(LocalFileSystem):
    """``mirror:///x`` is the local file ``/x``, seen through Beam's filesystems as a
    ``gs://`` path would be (by URL, with sizes from the listing). Records what it opens."""

    opened: list[tuple[str, str]] = []
    PREFIX = "mirror://"

    @classmethod
    def scheme(cls):
        return "mirror"

    def match(self, patterns, limits=None):
        results = super().match([pattern[len(self.PREFIX):] for pattern in patterns], limits)
        return [MatchResult(self.PREFIX + result.pattern,
                            [FileMetadata(self.PREFIX + file.path, file.size_in_bytes)
                             for file in result.metadata_list]) for result in results]

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        self.opened.append((path, compression_type))
        return super().open(path[len(self.PREFIX):], mime_type, compression_type)


def test_read_with_filesystems_checks_a_remote_size_before_opening(tmp_path, monkeypatch):
    monkeypatch.setattr(_MirrorFileSystem, "opened", [])
    png = _png()
    (tmp_path / "i1.png").write_bytes(png)
    (tmp_path / "i2.png.gz").write_bytes(gzip.compress(png))
    url = f"mirror://{tmp_path}"
    assert read_with_filesystems(f"{url}/i1.png", len(png)) == png
    # Read as stored: a .gz name is not a reason to inflate it.
    assert read_with_filesystems(f"{url}/i2.png.gz", 1000) == gzip.compress(png)
    with pytest.raises(raw_files.ImageRefused, match="over max_image_bytes") as refused:
        read_with_filesystems(f"{url}/i1.png", len(png) - 1)
    assert refused.value.code == "image_file_too_large"
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_with_filesystems(f"{url}/missing.png", 1000)
    assert _MirrorFileSystem.opened == [(f"{url}/i1.png", CompressionTypes.UNCOMPRESSED),
                                        (f"{url}/i2.png.gz", CompressionTypes.UNCOMPRESSED)]


def test_read_and_validate_reads_images_under_a_url_data_directory_only(tmp_path, monkeypatch):
    """A ``gs://`` data directory works: images inside it by normalised prefix are read
    through Beam's filesystems; ``..`` out of it is refused unopened."""
    monkeypatch.setattr(_MirrorFileSystem, "opened", [])
    png = _png()
    (tmp_path / "raw" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "images" / "good.png").write_bytes(png)
    (tmp_path / "secret.png").write_bytes(png)
    item = {"item_id": "i1", "title": "Green mug", "image": "images/good.png",
            "category": "kitchen", "brand": "Acme", "entities": ["mug"], "launch_ts": T0}
    escape = {**item, "item_id": "i2", "image": "../secret.png"}
    escape_url = {**item, "item_id": "i3", "image": f"mirror://{tmp_path}/raw/../secret.png"}
    pattern = _write_lines(tmp_path / "items.jsonl",
                           [json.dumps(record).encode() for record in (item, escape, escape_url)])
    context = schema.ValidationContext(image_root=f"mirror://{tmp_path}/raw",
                                       read_image=read_with_filesystems)

    with _pipeline() as pipeline:
        result = pipeline | ReadAndValidate(schema.ITEMS, pattern, context)
        assert_that(result[VALID], equal_to([{**item, "image": png}]), label="Valid")
        assert_that(result[DEAD_LETTER] | beam.Map(dead_letter_key), equal_to(
            ["items.image.image_outside_root", "items.image.image_url"]), label="DeadLetters")
    assert [path for path, _ in _MirrorFileSystem.opened] == [
        f"mirror://{tmp_path}/raw/images/good.png"]


# --- JoinUsers -------------------------------------------------------------------------------

def test_join_users_rejects_unknown_duplicate_and_over_cap():
    users = [{"user_id": "u1", "signup_ts": T0}, {"user_id": "u2", "signup_ts": T0 + 5},
             {"user_id": "u2", "signup_ts": T0}, {"user_id": "bot", "signup_ts": T0}]
    # u1's (r1, i1) arrives twice with different labels: the canonical copy (click 0 sorts
    # first in key-sorted JSON) is kept, whatever the arrival order.
    dup_clicked = _event("r1", "u1", "i1", T0 + 10, click=1)
    dup_kept = _event("r1", "u1", "i1", T0 + 10, click=0)
    u1_other = _event("r1", "u1", "i2", T0 + 10)
    u2_event = _event("r2", "u2", "i1", T0 + 20)
    stranger = _event("r3", "u9", "i1", T0 + 30)
    bot_events = [_event(f"b{number}", "bot", "i1", T0 + number) for number in range(4)]
    events = [dup_clicked, u1_other, dup_kept, u2_event, stranger, *bot_events]

    with _pipeline() as pipeline:
        result = ({"users": pipeline | "Users" >> beam.Create(users),
                   "events": pipeline | "Events" >> beam.Create(events)}
                  | JoinUsers(max_events_per_user=3))  # u1 has 3 events: at the cap, kept
        assert_that(result[VALID], equal_to([dup_kept, u1_other, u2_event]), label="Valid")
        assert_that(result[DEAD_LETTER] | beam.Map(_summary), equal_to([
            ("users.user_id.duplicate_id", ["duplicate_id"], {"user_id": "u2",
                                                              "signup_ts": T0 + 5}, None),
            ("events.request_id.duplicate_event", ["duplicate_event"], dup_clicked, None),
            ("events.user_id.unknown_id", ["unknown_id"], stranger, None),
            *(("events.user_id.user_over_cap", ["user_over_cap"], event, None)
              for event in bot_events),
        ]), label="DeadLetters")


# --- JoinItems -------------------------------------------------------------------------------

def _item(item_id, launch_ts, brand="Acme", image=None, category="kitchen"):
    return {"item_id": item_id, "title": f"title of {item_id}", "image": image,
            "category": category, "brand": brand, "entities": ["mug", "red"],
            "launch_ts": launch_ts, "attrs": {"size": 2}}


def _catalogue(item):
    return {"item_id": item["item_id"], "title": item["title"], "image": item["image"] or b"",
            "has_image": int(bool(item["image"])), "category": item["category"],
            "brand": item["brand"] or "", "entities": item["entities"],
            "launch_ts": item["launch_ts"], "attrs_json": '{"size":2}'}


def test_join_items_rejects_bad_references_and_enriches_events():
    png = _png()
    warm = _item("warm", T0)  # first shown in pretrain: warm for all its events
    cold = _item("cold", T0 + 12 * DAY, brand=None, category="garden")  # first shown in train
    dup = _item("dup", T0, image=png)  # listed twice, identically: one copy is kept
    unseen = _item("unseen", T0)  # in the catalogue, never shown
    items = [warm, cold, dup, dict(dup), unseen]

    warm_pretrain = _event("r1", "u1", "warm", T0 + DAY // 2)
    warm_eval = _event("r2", "u1", "warm", T0 + 25 * DAY, click=1)
    cold_train = _event("r3", "u1", "cold", T0 + 13 * DAY)
    cold_eval = _event("r4", "u2", "cold", T0 + 21 * DAY, click=1, order=1)
    dup_event = _event("r5", "u2", "dup", T0 + 3 * DAY)
    unknown_item = _event("r6", "u1", "ghost", T0 + DAY)
    before_launch = _event("r7", "u1", "cold", T0 + 11 * DAY)
    after_end = _event("r8", "u1", "warm", T0 + 30 * DAY)  # end_ts is exclusive
    events = [warm_pretrain, warm_eval, cold_train, cold_eval, dup_event, unknown_item,
              before_launch, after_end]

    def query(text, item_id, ts):
        return {"query": text, "item_id": item_id, "ts": ts}

    good_queries = [query("red mug", "warm", T0 + DAY), query("garden mug", "cold", T0 + 22 * DAY)]
    bad_queries = [query("ghost", "ghost", T0 + DAY), query("early", "cold", T0),
                   query("late", "warm", T0 + 31 * DAY)]

    def enriched(event, item, cold_flag, age_days, split, item_counts=(0,) * 6):
        return {**event, "category": item["category"], "brand": item["brand"] or "",
                "item_content": "mug\x1fred\x1fsize=2",
                "is_cold_item": cold_flag, "item_age_days": age_days, "split": split,
                "item_counts": list(map(float, item_counts))}

    with _pipeline() as pipeline:
        bounds = pipeline | "Bounds" >> beam.Create([BOUNDS.as_dict()])
        result = ({"items": pipeline | "Items" >> beam.Create(items),
                   "events": pipeline | "Events" >> beam.Create(events),
                   "queries": pipeline | "Queries" >> beam.Create(good_queries + bad_queries)}
                  | JoinItems(bounds, count_lookback_days=7))
        # Item counts are as of the start of the event's day; the recent window is the 7 days
        # before it (warm's and cold's earlier impressions are older than that).
        assert_that(result[VALID], equal_to([
            enriched(warm_pretrain, warm, 0, 0.5, "pretrain"),
            enriched(warm_eval, warm, 0, 25.0, "eval", (1, 0, 0, 0, 0, 0)),
            enriched(cold_train, cold, 1, 1.0, "train"),
            enriched(cold_eval, cold, 1, 9.0, "eval", (1, 0, 0, 0, 0, 0)),
            enriched(dup_event, dup, 0, 3.0, "pretrain"),
        ]), label="Examples")
        assert_that(result[ITEMS_OUT], equal_to(
            [_catalogue(warm), _catalogue(cold), _catalogue(dup), _catalogue(unseen)]),
            label="Catalogue")
        assert_that(result[QUERIES_OUT], equal_to([
            {"query": "red mug", "item_id": "warm", "ts": T0 + DAY, "split": "pretrain"},
            {"query": "garden mug", "item_id": "cold", "ts": T0 + 22 * DAY, "split": "eval"},
        ]), label="Queries")
        assert_that(result[DEAD_LETTER] | beam.Map(_summary), equal_to([
            # The dead-letter copy of an item shows its image's size, not its bytes.
            ("items.item_id.duplicate_id", ["duplicate_id"],
             {**dup, "image": f"<{len(png)} bytes>"}, None),
            ("events.item_id.unknown_id", ["unknown_id"], unknown_item, None),
            ("events.ts.before_launch", ["before_launch"], before_launch, None),
            ("events.ts.future", ["future"], after_end, None),
            ("queries.item_id.unknown_id", ["unknown_id"], bad_queries[0], None),
            ("queries.ts.before_launch", ["before_launch"], bad_queries[1], None),
            ("queries.ts.future", ["future"], bad_queries[2], None),
        ]), label="DeadLetters")


def _check_item_group(items, events=()):
    group = {"items": items, "events": list(events), "queries": []}
    return list(_CheckItemReferences(count_lookback_days=7).process(("dup", group), bounds=BOUNDS.as_dict()))


@pytest.mark.parametrize("arrival", ["ab", "ba", "aab", "bab"])
def test_conflicting_duplicate_items_are_all_rejected_whatever_the_arrival_order(arrival):
    """No copy wins by how it sorts: an attacker's copy that sorts first replaces nothing."""
    # Same record, images of the same size: only the bytes tell the copies apart.
    copies = {"a": _item("dup", T0, image=b"\x89PNG-a"), "b": _item("dup", T0, image=b"\x89PNG-b")}
    event = _event("r1", "u1", "dup", T0 + DAY)
    out = _check_item_group([copies[name] for name in arrival], [event])
    assert [output.tag for output in out] == [DEAD_LETTER] * (len(arrival) + 1)
    rejected = [output.value for output in out]
    assert [_summary(entry)[:2] for entry in rejected] == \
        [("items.item_id.conflicting_duplicate", ["conflicting_duplicate"])] * len(arrival) + \
        [("events.item_id.unknown_id", ["unknown_id"])]
    assert [entry["record"]["image"] for entry in rejected[:-1]] == ["<6 bytes>"] * len(arrival)
    assert f"{len(arrival)} records with 2 different contents" in \
        rejected[0]["problems"][0]["reason"]


def test_identical_duplicate_items_collapse_to_one():
    copies = [_item("dup", T0, image=b"\x89PNG-a") for _ in range(3)]
    out = _check_item_group(copies)
    assert [output.tag for output in out] == [DEAD_LETTER, DEAD_LETTER, ITEMS_OUT]
    assert {dead_letter_key(output.value) for output in out[:2]} == {"items.item_id.duplicate_id"}
    assert out[2].value == _catalogue(copies[0])


# --- BehaviourSequences ----------------------------------------------------------------------

def _impression(request_id, user_id, item_id, ts, click=0):
    return _event(request_id, user_id, item_id, ts, click=click, category=f"cat-{item_id}",
                  item_content=f"tokens-of-{item_id}")


# One user's log, in no particular order. Clicks: A (r1, T0), X (r4, T0+15), C (r2, T0+10),
# D (r3, T0+10), F (r4, T0+20). Request r4 spans two timestamps, so "other request" is
# checked apart from "strictly earlier".
U1_EVENTS = [
    _impression("r4", "u1", "F", T0 + 20, click=1),
    _impression("r1", "u1", "A", T0, click=1),
    _impression("r1", "u1", "B", T0),
    _impression("r2", "u1", "C", T0 + 10, click=1),
    _impression("r3", "u1", "D", T0 + 10, click=1),
    _impression("r3", "u1", "E", T0 + 10),
    _impression("r4", "u1", "X", T0 + 15, click=1),
    _impression("r4", "u1", "G", T0 + 20),
    _impression("r5", "u1", "H", T0 + 30),
]
U2_EVENTS = [_impression("s1", "u2", "Z", T0 + 5, click=1), _impression("s2", "u2", "Y", T0 + 40)]


def _with_history(event, *clicked):
    """``event`` with the history of ``clicked`` items (most recent first)."""
    times = {"A": T0, "C": T0 + 10, "D": T0 + 10, "X": T0 + 15, "F": T0 + 20, "Z": T0 + 5}
    return {**event, "hist_item_ids": list(clicked),
            "hist_categories": [f"cat-{item}" for item in clicked],
            "hist_content": [f"tokens-of-{item}" for item in clicked],
            "hist_ts": [times[item] for item in clicked],
            "hist_actions": [2] * len(clicked),  # each one clicked: features.ACTION_CLICKED
            "hist_len": len(clicked)}


def _expected_histories(max_seq_len):
    full = {  # (request, item) -> the whole history, most recent first
        ("r1", "A"): [], ("r1", "B"): [],  # A is in the same request and at the same time
        ("r2", "C"): ["A"], ("r3", "D"): ["A"], ("r3", "E"): ["A"],  # not D/C: same second
        ("r4", "X"): ["D", "C", "A"],
        ("r4", "F"): ["D", "C", "A"], ("r4", "G"): ["D", "C", "A"],  # not X: same request
        ("r5", "H"): ["F", "X", "D", "C", "A"],  # D before C: ties by request, newest first
        ("s1", "Z"): [], ("s2", "Y"): ["Z"],
    }
    return [_with_history(event, *full[event["request_id"], event["item_id"]][:max_seq_len])
            for event in U1_EVENTS + U2_EVENTS]


# Each request's user counts (impressions, clicks, orders; the whole log and the last 7 days
# alike here): the user's events before the request's first event. r4 starts at T0 + 15 and
# does not see r4's own X; r2 and r3 start at the same second and do not see each other.
USER_COUNTS_BY_REQUEST = {"r1": (0, 0, 0), "r2": (2, 1, 0), "r3": (2, 1, 0), "r4": (5, 3, 0),
                          "r5": (8, 5, 0), "s1": (0, 0, 0), "s2": (1, 1, 0)}


def test_behaviour_sequences_are_leak_free_most_recent_first_and_cut():
    with _pipeline() as pipeline:
        examples = (pipeline | beam.Create(U1_EVENTS + U2_EVENTS)
                    | BehaviourSequences(max_seq_len=2, count_lookback_days=7))
        assert_that(examples, equal_to([
            {**example, "user_counts": [float(value) for value in
                                        2 * USER_COUNTS_BY_REQUEST[example["request_id"]]]}
            for example in _expected_histories(2)]))


@pytest.mark.parametrize("max_seq_len", [1, 3, 10])
def test_attach_behaviour_sequences_matches_the_hand_made_histories(max_seq_len):
    got = [*attach_behaviour_sequences(U1_EVENTS, max_seq_len),
           *attach_behaviour_sequences(U2_EVENTS, max_seq_len)]
    assert got == _expected_histories(max_seq_len)


# --- Vocabularies ----------------------------------------------------------------------------

def test_vocabularies_apply_min_count_and_order_by_count_then_token(tmp_path):
    layout = WorkLayout(str(tmp_path / "work"))

    def example(user_id, item_id, split):
        return {"user_id": user_id, "item_id": item_id, "split": split}

    examples = [
        *(example("u2", "i1", "pretrain") for _ in range(3)),
        example("u1", "i2", "train"), example("u1", "i2", "pretrain"),
        example("u3", "i2", "train"), example("u3", "i3", "train"),
        example("u4", "i4", "pretrain"),  # once: below min_count
        *(example("u5", "i5", "eval") for _ in range(5)),  # eval never enters a vocabulary
    ]

    def item(item_id, category, entities, attrs_json="{}"):
        return {"item_id": item_id, "category": category, "brand": "", "entities": entities,
                "attrs_json": attrs_json}

    # Content tokens: the entities and the attributes (integers and strings; not floats).
    items = [item("i1", "kitchen", ["mug", "red", "mug"], '{"size":2}'),
             item("i2", "kitchen", ["mug"]),
             item("i3", "garden", ["red", "hose"], '{"size":2,"weight":0.5}'),
             item("i4", "garden", ["hose", "mug"]), item("i5", "toys", ["ball"])]
    expected = {"user_id": ["u2", "u1", "u3"], "item_id": ["i1", "i2"],
                "category": ["garden", "kitchen"], "brand": [], "entity": ["mug", "hose", "red"],
                "content": ["mug", "hose", "red", "size=2"]}

    with _pipeline() as pipeline:
        sizes = ({"examples": pipeline | "Examples" >> beam.Create(examples),
                  "items": pipeline | "Items" >> beam.Create(items)}
                 | Vocabularies(layout, min_count=2))
        assert_that(sizes, equal_to([(name, len(tokens)) for name, tokens in expected.items()]))

    for name, tokens in expected.items():
        with open(layout.vocab(name), encoding="utf-8") as handle:
            assert handle.read().splitlines() == tokens, name
    # No brand at all still gives a (empty) file, so readers need no special case.
    assert (tmp_path / "work" / "vocab" / "brand.txt").read_bytes() == b""


# --- stats -----------------------------------------------------------------------------------

def test_assemble_stats_fills_missing_splits_and_sums_dead_letters():
    parts = [("splits", "train", (4, 2, 1, 1)), ("dead_letter", "events.ts.future", 2),
             ("dead_letter", "events.click.missing", 1), ("vocabulary_sizes", "brand", 0),
             ("valid", "items", 3)]
    stats = outputs._assemble_stats(parts, BOUNDS.as_dict(), {"max_seq_len": 5})
    zero = {"examples": 0, "clicks": 0, "orders": 0, "cold_examples": 0, "click_rate": 0.0,
            "order_rate": 0.0, "cold_share": 0.0}
    assert stats == {
        "splits": {"pretrain": zero, "valid": zero, "eval": zero,
                   "train": {"examples": 4, "clicks": 2, "orders": 1, "cold_examples": 1,
                             "click_rate": 0.5, "order_rate": 0.25, "cold_share": 0.25}},
        "dead_letter": {"events.click.missing": 1, "events.ts.future": 2},
        "dead_letter_total": 3,
        "vocabulary_sizes": {"brand": 0}, "valid": {"items": 3},
        "split_bounds": BOUNDS.as_dict(), "settings": {"max_seq_len": 5},
    }
    assert list(stats["dead_letter"]) == sorted(stats["dead_letter"])


def test_write_stats_counts_exactly(tmp_path):
    layout = WorkLayout(str(tmp_path))

    def example(split, click=0, order=0, cold=0):
        return {"split": split, "click": click, "order": order, "is_cold_item": cold}

    examples = [example("pretrain"), example("pretrain", click=1),
                example("train", click=1, order=1, cold=1), example("train", cold=1),
                example("train"), example("eval", click=1, cold=1)]
    problem = schema.Problem("ts", "in the future", "future")
    dead = [{"table": "events", "problems": [problem.as_dict()]},
            {"table": "events", "problems": [problem.as_dict()]},
            {"table": "items", "problems": [schema.Problem("image", "bad", "undecodable_image")
                                            .as_dict(), problem.as_dict()]}]

    with _pipeline() as pipeline:
        inputs = {"examples": pipeline | "Examples" >> beam.Create(examples),
                  "dead_letter": pipeline | "Dead" >> beam.Create(dead),
                  "vocabulary_sizes": pipeline | "Sizes" >> beam.Create([("user_id", 7)]),
                  "items": pipeline | "Items" >> beam.Create([{"item_id": "i1"}] * 2),
                  "queries": pipeline | "Queries" >> beam.Create([])}
        bounds = pipeline | "Bounds" >> beam.Create([BOUNDS.as_dict()])
        _ = inputs | outputs.WriteStats(layout.stats_json, bounds, {"min_count": 2})

    with open(layout.stats_json, encoding="utf-8") as handle:
        stats = json.load(handle)
    assert {split: (counts["examples"], counts["clicks"], counts["orders"],
                    counts["cold_examples"]) for split, counts in stats["splits"].items()} == {
        "pretrain": (2, 1, 0, 0), "train": (3, 1, 1, 2), "valid": (0, 0, 0, 0),
        "eval": (1, 1, 0, 1)}
    assert stats["splits"]["train"]["cold_share"] == pytest.approx(2 / 3)
    assert stats["dead_letter"] == {"events.ts.future": 2, "items.image.undecodable_image": 1}
    assert stats["dead_letter_total"] == 3
    assert stats["valid"] == {"items": 2, "queries": 0}
    assert stats["vocabulary_sizes"] == {"user_id": 7}
    assert stats["split_bounds"] == BOUNDS.as_dict()
    assert stats["settings"] == {"min_count": 2}
