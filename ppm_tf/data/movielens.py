"""MovieLens latest-small → the raw data contract: the real data set next to the synthetic world.

PPM needs what MovieLens has: a long time-stamped log (ratings, 1996-2018), item text (titles),
entity labels (genres), a query-like signal (free-text tags) and, for ~30% of the movies, an
image (``posters/<movieId>.jpg``). ``import_movielens`` writes them as the four raw tables
(``schema.py``) in the ``RawLayout`` of ``raw_files.py``, so every later stage reads MovieLens
exactly as it reads a generated world. The mapping:

- ids: users are ``"u<userId>"``, items ``"m<movieId>"``; the prefixes keep the two id spaces
  apart wherever ids are mixed (vocabularies, logs).
- ratings → events: ``click = rating >= 4``, ``order = rating == 5``. A MovieLens rating is the
  only feedback there is, so each rating is one impression; a user's ratings of one UTC day form
  one request, ``request_id = "u<userId>-d<YYYYMMDD>"``. Events are sorted by
  (ts, user, movie) and written in shards of ``EVENTS_PER_SHARD`` lines.
- movies → items: ``title`` as in the csv; ``entities`` = the genres and ``category`` = the
  first genre (``(no genres listed)`` gives ``entities = []`` and category ``"unknown"``);
  ``brand = None``; ``attrs = {"year": int}`` when the title ends in ``(YYYY)`` or
  ``(YYYY-YYYY)`` (the first year), else ``{}``. ``launch_ts`` is when the movie entered this
  log: its first rating or tag, whichever is earlier (some tags predate the first rating, and
  the validator requires ``launch_ts <=`` every event and query of the item); a movie with
  neither gets the log's first rating ts. ``image = "images/<movieId>.jpg"`` (relative to OUT,
  the poster's bytes copied there) when the poster exists and PIL decodes it, else ``None``.
- users: every user with a written event; ``signup_ts`` = the user's first rating or tag.
- tags → queries: ``query`` = the tag, ``item_id`` = the tagged movie, ``ts``. Without
  ``tags.csv`` (an export with no search log) there are no queries; the report's ``notes``
  say so, and the text encoder then trains without them (``encoders.text_objective``).

Ratings and tags on a movie missing from movies.csv cannot satisfy the item reference check;
they are skipped and counted in the summary, as are missing and undecodable posters (absent
posters are normal: the image encoder handles items without an image). links.csv is not used.

``world.json`` suggests time splits by event quantiles, snapped to UTC day boundaries so that a
request (user-day) never straddles two splits: ``eval`` = the days holding the last
``1 - TRAIN_END_QUANTILE`` of the events, the recent window = the ``TRAIN_END_QUANTILE -
PRETRAIN_END_QUANTILE`` before them (its events from ``VALID_START_QUANTILE`` on are
``valid``), ``pretrain`` = everything earlier. Spans are half-open
``[start, end)``, in timestamps and in day numbers relative to the horizon's first UTC day.

The import holds the data in memory (latest-small: 100k ratings, a few seconds) and is
deterministic: the same source gives the same bytes.
"""
from __future__ import annotations

import bisect
import concurrent.futures
import csv
import datetime
import io
import json
import logging
import os
import re
import shutil
from typing import Any, Callable, Iterator, Sequence

from PIL import Image, UnidentifiedImageError

from ppm_tf.data.raw_files import (IMAGES_DIR, SECONDS_PER_DAY, RawLayout, replace_directory,
                                   split_spans, write_jsonl)

RATINGS_CSV, MOVIES_CSV, TAGS_CSV, POSTERS_DIR = "ratings.csv", "movies.csv", "tags.csv", "posters"
IMPORT_REPORT_JSON = "import_report.json"
NO_TAGS_NOTE = ("no tags.csv: the import has no queries, so the text encoder cannot use query "
                "matching; `ppm train-encoders` (text objective auto) keeps a pre-trained "
                "encoder frozen or trains one with SimCSE on the titles")

CLICK_MIN_RATING = 4.0
ORDER_RATING = 5.0
NO_GENRES = "(no genres listed)"
UNKNOWN_CATEGORY = "unknown"
EVENTS_PER_SHARD = 20_000
# train, valid and eval hold a tenth of the events each: a valid split as large as eval, so
# that what is chosen on it is as reliable as what is reported on eval (a fifth of a tenth-size
# window held 14 users, too few to tell settings 0.01 apart).
PRETRAIN_END_QUANTILE = 0.7
VALID_START_QUANTILE = 0.8
TRAIN_END_QUANTILE = 0.9

# "Heat (1995)", "Death Note: Desu nôto (2006–2007)"; trailing blanks occur in the csv.
_TITLE_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{4})?\)\s*$")

_log = logging.getLogger(__name__)


def import_movielens(src: str, out: str) -> dict[str, Any]:
    """Converts the MovieLens directory ``src`` into a raw data directory ``out``.

    Returns the import summary (also written to ``out/import_report.json``); raises
    FileNotFoundError when ``src`` lacks ratings.csv or movies.csv and ValueError, with file,
    line and field, on a malformed row.
    """
    partial = out.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    summary = _import_into(src, partial)
    replace_directory(partial, out)
    _log.info("imported MovieLens %s into %s", src, out)
    return summary


def _import_into(src: str, out: str) -> dict[str, Any]:
    movies = _read_movies(os.path.join(src, MOVIES_CSV))
    ratings = _read_table(os.path.join(src, RATINGS_CSV),
                          ("userId", "movieId", "rating", "timestamp"), (int, int, float, int))
    tags_path = os.path.join(src, TAGS_CSV)
    notes = []
    if os.path.exists(tags_path):
        tags = _read_table(tags_path, ("userId", "movieId", "tag", "timestamp"),
                           (int, int, str, int))
    else:
        _log.warning("%s not found: the import has no queries", tags_path)
        notes.append(NO_TAGS_NOTE)
        tags = []

    kept_ratings = sorted((ts, user, movie, rating) for user, movie, rating, ts in ratings
                          if movie in movies)
    kept_tags = sorted((ts, movie, tag, user) for user, movie, tag, ts in tags if movie in movies)
    if not kept_ratings:
        raise ValueError(f"{os.path.join(src, RATINGS_CSV)}: no rating of a movie in {MOVIES_CSV}")
    layout = RawLayout(out)
    poster_status = _copy_posters(os.path.join(src, POSTERS_DIR), sorted(movies), layout)

    events = [_event(ts, user, movie, rating) for ts, user, movie, rating in kept_ratings]
    queries = [{"query": tag, "item_id": f"m{movie}", "ts": ts} for ts, movie, tag, _ in kept_tags]
    items = _items(movies, kept_ratings, kept_tags, poster_status)
    users = _users(kept_ratings, kept_tags)
    event_shards = _write_events(layout, events)
    write_jsonl(layout.items, items)
    write_jsonl(layout.users, users)
    write_jsonl(layout.queries, queries)

    log_ts = [event["ts"] for event in events] + [query["ts"] for query in queries]
    horizon = {"start_ts": min(log_ts), "end_ts": max(log_ts)}
    horizon.update(start_date=_utc_date(horizon["start_ts"]), end_date=_utc_date(horizon["end_ts"]))
    splits = _suggested_splits([ts for ts, *_ in kept_ratings],
                               horizon["start_ts"] // SECONDS_PER_DAY)
    sizes = {"items": len(items), "users": len(users), "events": len(events),
             "queries": len(queries)}
    _write_json(layout.world, {
        "source": "movielens",
        "src": os.path.abspath(src),
        "sizes": sizes,
        "event_shards": event_shards,
        "horizon": horizon,
        "labels": {"click": f"rating >= {CLICK_MIN_RATING}", "order": f"rating == {ORDER_RATING}"},
        "suggested_splits": splits,
    })
    summary = {
        "source": "movielens",
        "src": os.path.abspath(src),
        **sizes,
        "event_shards": event_shards,
        "click_rate": sum(event["click"] for event in events) / len(events),
        "order_rate": sum(event["order"] for event in events) / len(events),
        "posters_present": sum(status == "present" for status in poster_status.values()),
        "posters_missing": sum(status == "missing" for status in poster_status.values()),
        "posters_undecodable": sum(status == "undecodable" for status in poster_status.values()),
        "posters_missing_movie_ids": _movie_ids_with(poster_status, "missing"),
        "posters_undecodable_movie_ids": _movie_ids_with(poster_status, "undecodable"),
        "ratings_skipped_unknown_movie": len(ratings) - len(kept_ratings),
        "tags_skipped_unknown_movie": len(tags) - len(kept_tags),
        "skipped_unknown_movie_ids": sorted({row[1] for row in [*ratings, *tags]} - set(movies)),
        "horizon_start": horizon["start_date"],
        "horizon_end": horizon["end_date"],
        "suggested_split_dates": {
            name: [_utc_date(span["start_ts"]), _utc_date(span["end_ts"] - 1)]
            for name, span in splits.items()},
        "notes": notes,
    }
    _write_json(os.path.join(out, IMPORT_REPORT_JSON), summary)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The import summary as a few aligned lines for the CLI."""
    dates = summary["suggested_split_dates"]
    return "\n".join([
        f"MovieLens import from {summary['src']}",
        f"  items    {summary['items']:>8,}  posters: {summary['posters_present']:,} present, "
        f"{summary['posters_missing']:,} missing, {summary['posters_undecodable']:,} undecodable",
        f"  users    {summary['users']:>8,}",
        f"  events   {summary['events']:>8,}  in {summary['event_shards']} shards; "
        f"click rate {summary['click_rate']:.4f}, order rate {summary['order_rate']:.4f}",
        f"  queries  {summary['queries']:>8,}",
        f"  skipped (movie not in {MOVIES_CSV}): {summary['ratings_skipped_unknown_movie']:,} "
        f"ratings, {summary['tags_skipped_unknown_movie']:,} tags",
        f"  horizon  {summary['horizon_start']} .. {summary['horizon_end']}",
        "  splits   " + ", ".join(f"{name} {first} .. {last}"
                                  for name, (first, last) in dates.items()),
        *(f"  note: {note}" for note in summary.get("notes", [])),
    ])


def _read_movies(path: str) -> dict[int, tuple[str, list[str]]]:
    """movieId -> (title, genres); ``(no genres listed)`` becomes no genres."""
    movies = {}
    for movie, title, genres in _read_table(path, ("movieId", "title", "genres"), (int, str, str)):
        movies[movie] = (title, [] if genres == NO_GENRES else genres.split("|"))
    return movies


def _read_table(path: str, columns: Sequence[str],
                parsers: Sequence[Callable[[str], Any]]) -> list[tuple]:
    """The named columns of a csv file, each parsed; a bad value raises with file, line, field."""
    rows = []
    for line, values in _csv_rows(path, columns):
        row = []
        for column, parse, value in zip(columns, parsers, values):
            try:
                row.append(parse(value))
            except ValueError:
                raise ValueError(f"{path} line {line}: field {column!r}: expected "
                                 f"{parse.__name__}, got {value!r}") from None
        rows.append(tuple(row))
    return rows


def _csv_rows(path: str, columns: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MovieLens file not found: {path}")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [column for column in columns if column not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks column(s) {missing}")
        indices = [header.index(column) for column in columns]
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path} line {reader.line_num}: expected {len(header)} "
                                 f"fields, got {len(row)}")
            yield reader.line_num, [row[index] for index in indices]


def _copy_posters(posters_dir: str, movie_ids: list[int], layout: RawLayout) -> dict[int, str]:
    """Copies each decodable poster into OUT/images; movieId -> present/missing/undecodable."""
    os.makedirs(os.path.join(layout.root, IMAGES_DIR), exist_ok=True)

    def copy(movie: int) -> str:
        try:
            with open(os.path.join(posters_dir, f"{movie}.jpg"), "rb") as handle:
                poster = handle.read()
        except FileNotFoundError:
            return "missing"
        if not _decodes(poster):
            return "undecodable"
        with open(layout.image(f"{movie}.jpg"), "wb") as handle:
            handle.write(poster)
        return "present"

    # Decoding dominates and PIL releases the GIL while it decodes.
    with concurrent.futures.ThreadPoolExecutor() as pool:
        return dict(zip(movie_ids, pool.map(copy, movie_ids)))


def _decodes(image_bytes: bytes) -> bool:
    """Whether PIL decodes the whole image, as the validator's image check does."""
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False
    return True


def _event(ts: int, user: int, movie: int, rating: float) -> dict[str, Any]:
    return {"request_id": f"u{user}-d{_utc_date(ts).replace('-', '')}", "user_id": f"u{user}",
            "item_id": f"m{movie}", "ts": ts, "click": int(rating >= CLICK_MIN_RATING),
            "order": int(rating == ORDER_RATING)}


def _items(movies: dict[int, tuple[str, list[str]]], kept_ratings: list[tuple],
           kept_tags: list[tuple], poster_status: dict[int, str]) -> list[dict[str, Any]]:
    launch_ts: dict[int, int] = {}
    # Both lists are sorted by ts, so the first ts seen per movie is its earliest.
    for ts, _, movie, _ in kept_ratings:
        launch_ts.setdefault(movie, ts)
    for ts, movie, *_ in kept_tags:
        launch_ts[movie] = min(ts, launch_ts.get(movie, ts))
    first_rating_ts = kept_ratings[0][0]
    items = []
    for movie, (title, genres) in sorted(movies.items()):
        year = _TITLE_YEAR.search(title)
        items.append({
            "item_id": f"m{movie}",
            "title": title,
            "image": f"{IMAGES_DIR}/{movie}.jpg" if poster_status[movie] == "present" else None,
            "category": genres[0] if genres else UNKNOWN_CATEGORY,
            "brand": None,
            "entities": genres,
            "launch_ts": launch_ts.get(movie, first_rating_ts),
            "attrs": {"year": int(year.group(1))} if year else {},
        })
    return items


def _users(kept_ratings: list[tuple], kept_tags: list[tuple]) -> list[dict[str, Any]]:
    signup_ts: dict[int, int] = {}
    for ts, user, *_ in kept_ratings:
        signup_ts.setdefault(user, ts)
    for ts, _, _, user in kept_tags:
        if user in signup_ts:
            signup_ts[user] = min(ts, signup_ts[user])
    return [{"user_id": f"u{user}", "signup_ts": ts} for user, ts in sorted(signup_ts.items())]


def _write_events(layout: RawLayout, events: list[dict[str, Any]]) -> int:
    """Writes the events in shards of ``EVENTS_PER_SHARD``; returns the number of shards."""
    starts = range(0, len(events), EVENTS_PER_SHARD)
    for index, start in enumerate(starts):
        write_jsonl(layout.events_shard(index), events[start:start + EVENTS_PER_SHARD])
    return len(starts)


def _suggested_splits(event_ts: list[int], first_day: int) -> dict[str, Any]:
    """pretrain/train/valid/eval: quantiles of the sorted ``event_ts``, snapped to whole UTC
    days (a day count would leave ``valid`` empty: many of MovieLens' days hold no rating)."""
    def day_of_quantile(quantile: float) -> int:
        return event_ts[int(quantile * len(event_ts))] // SECONDS_PER_DAY - first_day

    bounds = [0, day_of_quantile(PRETRAIN_END_QUANTILE), day_of_quantile(VALID_START_QUANTILE),
              day_of_quantile(TRAIN_END_QUANTILE),
              event_ts[-1] // SECONDS_PER_DAY + 1 - first_day]
    spans = split_spans(first_day * SECONDS_PER_DAY, bounds)
    for span in spans.values():
        span["events"] = (bisect.bisect_left(event_ts, span["end_ts"])
                          - bisect.bisect_left(event_ts, span["start_ts"]))
    return spans


def _movie_ids_with(poster_status: dict[int, str], status: str) -> list[int]:
    return [movie for movie, movie_status in poster_status.items() if movie_status == status]


def _utc_date(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).date().isoformat()


def _write_json(path: str, value: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        json.dump(value, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
