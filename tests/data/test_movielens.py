"""The MovieLens adapter: the real latest-small import and a hand-made tiny directory."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from ppm_tf.data import schema
from ppm_tf.data.movielens import NO_TAGS_NOTE, format_summary, import_movielens
from ppm_tf.data.raw_files import RawLayout, read_jsonl, read_world

ML_SMALL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-latest-small"
needs_ml_small = pytest.mark.skipif(
    not (ML_SMALL / "ratings.csv").is_file(),
    reason=f"MovieLens latest-small not found at {ML_SMALL} (shared data lives outside the repo)")


def _tables(root):
    layout = RawLayout(str(root))
    return {table: list(read_jsonl(layout.pattern(table))) for table in schema.TABLES}


def _reference_context(root, tables):
    log_ts = [record["ts"] for record in tables["events"] + tables["queries"]]
    return schema.ValidationContext(
        known_item_ids=frozenset(item["item_id"] for item in tables["items"]),
        known_user_ids=frozenset(user["user_id"] for user in tables["users"]),
        item_launch_ts={item["item_id"]: item["launch_ts"] for item in tables["items"]},
        max_ts=max(log_ts), image_root=str(root), read_image=schema.read_local_file)


def _file_bytes(root):
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(Path(root).rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def ml_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml_small")
    summary = import_movielens(str(ML_SMALL), str(out))
    return out, summary, _tables(out)


@pytest.fixture(scope="module")
def ml_small_csv():
    """The csv rows, read independently of the adapter: (movies, ratings on known movies, tags)."""
    def rows(name):
        with open(ML_SMALL / name, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    movies = {row["movieId"] for row in rows("movies.csv")}
    all_ratings = rows("ratings.csv")
    ratings = [row for row in all_ratings if row["movieId"] in movies]
    return movies, ratings, len(all_ratings) - len(ratings), rows("tags.csv")


@needs_ml_small
def test_real_import_counts_match_the_csv(ml_small, ml_small_csv):
    out, summary, tables = ml_small
    movies, ratings, skipped_ratings, tags = ml_small_csv
    assert (summary["events"], summary["users"], summary["items"]) == (100836, 610, 9742)
    assert len(tables["events"]) == len(ratings) == 100836
    assert len(tables["users"]) == len({row["userId"] for row in ratings}) == 610
    assert len(tables["items"]) == len(movies) == 9742
    assert len(tables["queries"]) == summary["queries"] == len(tags)
    assert summary["ratings_skipped_unknown_movie"] == skipped_ratings
    assert summary["tags_skipped_unknown_movie"] == 0
    assert summary == json.loads((out / "import_report.json").read_text())
    assert read_world(str(out))["sizes"] == {
        "items": 9742, "users": 610, "events": 100836, "queries": len(tags)}
    assert "100,836" in format_summary(summary)


@needs_ml_small
def test_real_import_rates_follow_the_rating_thresholds(ml_small, ml_small_csv):
    _, summary, tables = ml_small
    _, ratings, _, _ = ml_small_csv
    high = sum(float(row["rating"]) >= 4 for row in ratings) / len(ratings)
    top = sum(float(row["rating"]) == 5 for row in ratings) / len(ratings)
    assert summary["click_rate"] == pytest.approx(high)
    assert summary["order_rate"] == pytest.approx(top)
    events = tables["events"]
    assert sum(event["click"] for event in events) / len(events) == pytest.approx(high)
    assert [event["ts"] for event in events] == sorted(event["ts"] for event in events)


@needs_ml_small
def test_every_real_record_passes_the_validator_with_reference_checks(ml_small):
    out, _, tables = ml_small
    context = _reference_context(out, tables)
    problems = {table: [(record, schema.validate_record(table, record, context))
                        for record in records] for table, records in tables.items()}
    bad = {table: [pair for pair in pairs if pair[1]][:3] for table, pairs in problems.items()}
    assert bad == {table: [] for table in schema.TABLES}


@needs_ml_small
def test_real_posters_are_copied_and_absent_ones_recorded(ml_small):
    out, summary, tables = ml_small
    with_image = [item for item in tables["items"] if item["image"] is not None]
    assert summary["posters_present"] == len(with_image) > 2900
    assert summary["posters_present"] + summary["posters_missing"] + \
        summary["posters_undecodable"] == len(tables["items"])
    assert all((out / item["image"]).is_file() for item in with_image)
    first = with_image[0]
    assert (out / first["image"]).read_bytes() == \
        (ML_SMALL / "posters" / f"{first['item_id'][1:]}.jpg").read_bytes()
    without_poster = next(item for item in tables["items"]
                          if not (ML_SMALL / "posters" / f"{item['item_id'][1:]}.jpg").exists())
    assert without_poster["image"] is None
    assert int(without_poster["item_id"][1:]) in summary["posters_missing_movie_ids"]


@needs_ml_small
def test_real_suggested_splits_partition_the_events_by_day(ml_small):
    out, _, tables = ml_small
    world = read_world(str(out))
    splits = world["suggested_splits"]
    assert splits["pretrain"]["end_ts"] == splits["train"]["start_ts"]
    assert splits["train"]["end_ts"] == splits["valid"]["start_ts"]
    assert splits["valid"]["end_ts"] == splits["eval"]["start_ts"]
    assert splits["pretrain"]["start_ts"] <= world["horizon"]["start_ts"] < splits["pretrain"]["end_ts"]
    assert splits["eval"]["end_ts"] > world["horizon"]["end_ts"]
    assert splits["pretrain"]["days"][0] == 0
    assert splits["train"]["days"][0] * 86_400 + splits["pretrain"]["start_ts"] == \
        splits["train"]["start_ts"]
    counts = {name: sum(span["start_ts"] <= event["ts"] < span["end_ts"]
                        for event in tables["events"])
              for name, span in splits.items()}
    assert counts == {name: span["events"] for name, span in splits.items()}
    assert sum(counts.values()) == len(tables["events"])
    # Quantiles snapped to days: train, valid and eval each hold about a tenth of the events
    # (valid, the recent window's second half, as large as eval).
    for name in ("train", "valid", "eval"):
        assert 0.08 < counts[name] / len(tables["events"]) < 0.12, name


@pytest.mark.slow  # a second import of all of MovieLens latest-small
@needs_ml_small
def test_real_reimport_gives_identical_bytes(ml_small, tmp_path):
    out, _, _ = ml_small
    import_movielens(str(ML_SMALL), str(tmp_path))
    assert _file_bytes(tmp_path) == _file_bytes(out)


def test_missing_source_file_is_a_clear_error(tmp_path):
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Heat (1995),Action\n")
    with pytest.raises(FileNotFoundError, match="ratings.csv"):
        import_movielens(str(tmp_path), str(tmp_path / "out"))
    (tmp_path / "movies.csv").unlink()
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    with pytest.raises(FileNotFoundError, match="movies.csv"):
        import_movielens(str(tmp_path), str(tmp_path / "out"))


# A tiny MovieLens-like directory. Timestamps: 2000-01-01 00:00 UTC is 946684800.
DAY0 = 946_684_800
TINY_MOVIES = """movieId,title,genres
1,"Matrix, The (1999)",Action|Sci-Fi
2,Black Mirror,(no genres listed)
3,Death Note: Desu nôto (2006–2007) ,Anime
4,Never Seen (1950),Drama
"""
TINY_RATINGS = f"""userId,movieId,rating,timestamp
7,1,5.0,{DAY0 + 100}
7,2,4.0,{DAY0 + 200}
7,1,3.5,{DAY0 + 86_400 + 5}
8,2,2.0,{DAY0 + 86_400 + 60}
9,99,5.0,{DAY0 + 300}
"""
TINY_TAGS = f"""userId,movieId,tag,timestamp
8,2,dystopia,{DAY0 - 1000}
7,3,"anime, dark",{DAY0 + 500}
7,99,lost,{DAY0 + 600}
"""


@pytest.fixture
def tiny_movielens(tmp_path):
    src = tmp_path / "src"
    (src / "posters").mkdir(parents=True)
    (src / "movies.csv").write_text(TINY_MOVIES, encoding="utf-8")
    (src / "ratings.csv").write_text(TINY_RATINGS)
    (src / "tags.csv").write_text(TINY_TAGS)
    Image.new("RGB", (4, 6), (200, 30, 30)).save(src / "posters" / "1.jpg", format="PNG")
    (src / "posters" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return src, tmp_path / "out"


def test_tiny_import_maps_every_field(tiny_movielens):
    src, out = tiny_movielens
    summary = import_movielens(str(src), str(out))
    tables = _tables(out)
    day1 = DAY0 + 86_400
    assert tables["events"] == [
        {"request_id": "u7-d20000101", "user_id": "u7", "item_id": "m1", "ts": DAY0 + 100,
         "click": 1, "order": 1},
        {"request_id": "u7-d20000101", "user_id": "u7", "item_id": "m2", "ts": DAY0 + 200,
         "click": 1, "order": 0},
        {"request_id": "u7-d20000102", "user_id": "u7", "item_id": "m1", "ts": day1 + 5,
         "click": 0, "order": 0},
        {"request_id": "u8-d20000102", "user_id": "u8", "item_id": "m2", "ts": day1 + 60,
         "click": 0, "order": 0},
    ]
    assert tables["items"] == [
        {"item_id": "m1", "title": "Matrix, The (1999)", "image": "images/1.jpg",
         "category": "Action", "brand": None, "entities": ["Action", "Sci-Fi"],
         "launch_ts": DAY0 + 100, "attrs": {"year": 1999}},
        # The tag predates the first rating, so it sets the launch.
        {"item_id": "m2", "title": "Black Mirror", "image": None, "category": "unknown",
         "brand": None, "entities": [], "launch_ts": DAY0 - 1000, "attrs": {}},
        # Never rated: launched with its first tag.
        {"item_id": "m3", "title": "Death Note: Desu nôto (2006–2007) ", "image": None,
         "category": "Anime", "brand": None, "entities": ["Anime"], "launch_ts": DAY0 + 500,
         "attrs": {"year": 2006}},
        # Neither rated nor tagged: launched with the log's first rating.
        {"item_id": "m4", "title": "Never Seen (1950)", "image": None, "category": "Drama",
         "brand": None, "entities": ["Drama"], "launch_ts": DAY0 + 100, "attrs": {"year": 1950}},
    ]
    # User 9 only rated an unknown movie; user 8's tag predates its first rating.
    assert tables["users"] == [{"user_id": "u7", "signup_ts": DAY0 + 100},
                               {"user_id": "u8", "signup_ts": DAY0 - 1000}]
    assert tables["queries"] == [{"query": "dystopia", "item_id": "m2", "ts": DAY0 - 1000},
                                 {"query": "anime, dark", "item_id": "m3", "ts": DAY0 + 500}]
    assert (out / "images" / "1.jpg").read_bytes() == (src / "posters" / "1.jpg").read_bytes()
    assert not (out / "images" / "2.jpg").exists()
    assert {key: summary[key] for key in (
        "items", "users", "events", "queries", "click_rate", "order_rate", "posters_present",
        "posters_missing", "posters_undecodable", "posters_missing_movie_ids",
        "posters_undecodable_movie_ids", "ratings_skipped_unknown_movie",
        "tags_skipped_unknown_movie", "skipped_unknown_movie_ids", "horizon_start",
        "horizon_end", "notes")} == {
        "items": 4, "users": 2, "events": 4, "queries": 2, "click_rate": 0.5,
        "order_rate": 0.25, "posters_present": 1, "posters_missing": 2,
        "posters_undecodable": 1, "posters_missing_movie_ids": [3, 4],
        "posters_undecodable_movie_ids": [2], "ratings_skipped_unknown_movie": 1,
        "tags_skipped_unknown_movie": 1, "skipped_unknown_movie_ids": [99],
        "horizon_start": "1999-12-31", "horizon_end": "2000-01-02", "notes": []}
    context = _reference_context(out, tables)
    assert all(not schema.validate_record(table, record, context)
               for table, records in tables.items() for record in records)
    world = read_world(str(out))
    assert world["horizon"]["start_ts"] == DAY0 - 1000
    eval_span = world["suggested_splits"]["eval"]
    assert eval_span["days"] == [2, 3]
    assert [eval_span["start_ts"], eval_span["end_ts"]] == [day1, day1 + 86_400]


def test_tiny_reimport_over_an_old_output_removes_stale_shards(tiny_movielens):
    src, out = tiny_movielens
    first = import_movielens(str(src), str(out))
    stale = Path(RawLayout(str(out)).events_shard(3))
    stale.write_text('{"stale": 1}\n')
    assert import_movielens(str(src), str(out)) == first
    assert not stale.exists()
    assert len(_tables(out)["events"]) == first["events"]
    assert not Path(str(out) + ".partial").exists()


def test_import_refuses_to_replace_a_directory_that_is_not_a_data_set(tiny_movielens):
    src, out = tiny_movielens
    out.mkdir(parents=True, exist_ok=True)
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        import_movielens(str(src), str(out))
    assert (out / "notes.txt").read_text() == "keep me"


def test_tiny_import_without_tags_or_posters_still_imports(tiny_movielens):
    src, out = tiny_movielens
    (src / "tags.csv").unlink()
    for poster in (src / "posters").iterdir():
        poster.unlink()
    (src / "posters").rmdir()
    summary = import_movielens(str(src), str(out))
    assert (summary["queries"], summary["posters_missing"], summary["events"]) == (0, 4, 4)
    assert os.path.getsize(RawLayout(str(out)).queries) == 0
    report = json.loads((out / "import_report.json").read_text())
    assert report["notes"] == [NO_TAGS_NOTE] and "no tags.csv" in NO_TAGS_NOTE
    assert f"note: {NO_TAGS_NOTE}" in format_summary(summary)


def test_malformed_value_names_file_line_and_field(tiny_movielens):
    src, out = tiny_movielens
    (src / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,five,946684900\n")
    with pytest.raises(ValueError, match=r"ratings.csv line 2: field 'rating'"):
        import_movielens(str(src), str(out))


SMALL_TITLES = [
    ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
    ("Heat (1995)", "Action|Crime|Thriller"), ("Casino (1995)", "Crime|Drama"),
    ("Alien (1979)", "Horror|Sci-Fi"), ("Aliens (1986)", "Action|Horror|Sci-Fi"),
    ("Fargo (1996)", "Comedy|Crime|Drama|Thriller"), ("Babe (1995)", "Children|Drama"),
    ("Clueless (1995)", "Comedy|Romance"), ("Se7en (1995)", "Mystery|Thriller"),
    ("Apollo 13 (1995)", "Adventure|Drama|IMAX"), ("Jumanji (1995)", "Adventure|Children"),
    ("Matrix, The (1999)", "Action|Sci-Fi|Thriller"), ("Amélie (2001)", "Comedy|Romance"),
    ("Shrek (2001)", "Adventure|Animation|Children|Comedy"), ("Memento (2000)", "Mystery"),
    ("Gladiator (2000)", "Action|Adventure|Drama"), ("Scream (1996)", "Comedy|Horror"),
    ("Titanic (1997)", "Drama|Romance"), ("Psycho (1960)", "Crime|Horror"),
    ("Vertigo (1958)", "Drama|Mystery|Romance"), ("Up (2009)", "Adventure|Animation"),
    ("Inception (2010)", "Action|Sci-Fi"), ("Frozen (2013)", "Animation|Comedy"),
    ("Her (2013)", "Drama|Romance|Sci-Fi"), ("Drive (2011)", "Crime|Drama"),
    ("Black Mirror", "(no genres listed)"), ("Moon (2009)", "Drama|Sci-Fi"),
    ("Arrival (2016)", "Sci-Fi"), ("Coco (2017)", "Animation|Children"),
    ("Logan (2017)", "Action|Sci-Fi"),
]


def write_small_movielens(src: Path, days: int = 40, users: int = 24, seed: int = 0) -> None:
    """A MovieLens-format directory without tags.csv: the titles above, ratings on every day
    (every split gets events), a poster for two movies in three."""
    import random

    rng = random.Random(seed)
    (src / "posters").mkdir(parents=True)
    with open(src / "movies.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["movieId", "title", "genres"])
        for movie, (title, genres) in enumerate(SMALL_TITLES, start=1):
            writer.writerow([movie, title, genres])
            if movie % 3:
                colour = tuple(rng.randrange(256) for _ in range(3))
                Image.new("RGB", (24, 36), colour).save(src / "posters" / f"{movie}.jpg",
                                                         format="JPEG")
    lines = ["userId,movieId,rating,timestamp"]
    for day in range(days):
        for _ in range(8):
            user, movie = rng.randrange(1, users + 1), rng.randrange(1, len(SMALL_TITLES) + 1)
            rating = rng.choice([2.0, 3.0, 3.5, 4.0, 4.5, 5.0])
            lines.append(f"{user},{movie},{rating},{DAY0 + day * 86_400 + rng.randrange(86_000)}")
    (src / "ratings.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_a_movielens_export_without_tags_runs_the_whole_tiny_demo(tmp_path):
    from conftest import run_ppm_demo
    from ppm_tf.encoders.packaged_checkpoints import minilm_directory

    write_small_movielens(tmp_path / "src")
    summary = import_movielens(str(tmp_path / "src"), str(tmp_path / "raw"))
    assert summary["queries"] == 0 and summary["notes"] == [NO_TAGS_NOTE]
    result = run_ppm_demo(tmp_path / "run", "--data", str(tmp_path / "raw"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for stage in ("preprocess catalogue", "preprocess events", "train-encoders", "embed-items",
                  "pretrain", "precompute", "train qm_ep", "train ppm", "train urm", "evaluate",
                  "serve"):
        assert f"[{stage}] done" in result.stdout, stage
    encoders = json.loads((tmp_path / "run" / "work" / "encoders" / "metrics.json").read_text())
    # Without queries: the installed MiniLM kept frozen, else SimCSE from random weights.
    expected = "frozen" if minilm_directory() else "simcse"
    assert encoders["text"]["objective"] == expected
    assert "model" not in encoders["text"]  # no held-out queries to rank
    assert encoders["text"]["entity_neighbours"]["eval"]["model"]["items"] > 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"base", "qm_ep", "ppm", "urm"} <= set(metrics["models"])
