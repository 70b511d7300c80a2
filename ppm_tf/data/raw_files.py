"""Where a raw data set's files live, and how they are written and read as JSON lines.

A raw data directory (written by ``ppm generate`` or ``ppm import-movielens``, or by a user's
own export) looks like::

    DIR/items.jsonl            one item record per line (schema.ITEMS)
    DIR/users.jsonl
    DIR/queries.jsonl
    DIR/events/part-*.jsonl    events, sharded (one shard per day for generated worlds)
    DIR/images/<item_id>.png   product images referenced by items' ``image`` field
    DIR/oracle/part-*.jsonl    synthetic worlds only: true p_click/p_order per impression,
                               kept apart from every model-visible field
    DIR/world.json             what produced the data: config, seed, sizes, horizon, splits

Readers take glob patterns so the same layout works on ``gs://`` through Beam's filesystems.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
from typing import Any, Iterable, Iterator

WORLD_JSON = "world.json"
IMAGES_DIR = "images"
SPLITS = ("pretrain", "train", "eval")
SECONDS_PER_DAY = 86_400


@dataclasses.dataclass(frozen=True)
class RawLayout:
    """Paths of one raw data directory (local path or any URL Beam's filesystems read)."""

    root: str

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def items(self) -> str:
        return self._join("items.jsonl")

    @property
    def users(self) -> str:
        return self._join("users.jsonl")

    @property
    def queries(self) -> str:
        return self._join("queries.jsonl")

    @property
    def events_pattern(self) -> str:
        return self._join("events", "part-*.jsonl")

    @property
    def oracle_pattern(self) -> str:
        return self._join("oracle", "part-*.jsonl")

    @property
    def world(self) -> str:
        return self._join(WORLD_JSON)

    def events_shard(self, index: int) -> str:
        return self._join("events", f"part-{index:05d}.jsonl")

    def oracle_shard(self, index: int) -> str:
        return self._join("oracle", f"part-{index:05d}.jsonl")

    def image(self, file_name: str) -> str:
        return self._join(IMAGES_DIR, file_name)

    def pattern(self, table: str) -> str:
        """The file pattern holding ``table``'s records."""
        return {"items": self.items, "users": self.users, "queries": self.queries,
                "events": self.events_pattern}[table]


def to_json_line(record: dict[str, Any]) -> str:
    """Compact, key-ordered JSON: the same record always gives the same bytes."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def write_jsonl(path: str, records: Iterable[dict[str, Any]]) -> int:
    """Writes records as JSON lines (local path), creating the folder; returns the count."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(to_json_line(record))
            handle.write("\n")
            count += 1
    return count


def write_lines(path: str, lines: Iterable[str]) -> None:
    """Writes pre-formatted JSON lines (the fast path for millions of events)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line)
            handle.write("\n")


def read_jsonl(pattern: str) -> Iterator[dict[str, Any]]:
    """Reads every record of the local files matching ``pattern``, in file-name order."""
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def read_world(root: str) -> dict[str, Any]:
    with open(RawLayout(root).world, encoding="utf-8") as handle:
        return json.load(handle)


def replace_directory(source: str, target: str) -> None:
    """Moves a finished directory into ``target``, replacing an earlier raw data set there.

    Refuses to delete a non-empty ``target`` that is not a raw data set (no world.json), so a
    mistyped ``--out`` cannot wipe unrelated files.
    """
    if os.path.isdir(target) and os.listdir(target):
        if not os.path.exists(os.path.join(target, WORLD_JSON)):
            raise FileExistsError(
                f"--out {target!r} is a non-empty directory without {WORLD_JSON}; refusing to "
                "replace it. Choose an empty or new directory.")
        shutil.rmtree(target)
    elif os.path.isdir(target):
        os.rmdir(target)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    os.replace(source, target)


def split_spans(first_day_ts: int, day_bounds: list[int]) -> dict[str, dict[str, Any]]:
    """world.json's ``suggested_splits``: per split, half-open days and timestamps.

    ``day_bounds`` are the four day numbers [pretrain start, train start, eval start, end),
    counted from ``first_day_ts``, the midnight (UTC) that starts the horizon.
    """
    return {name: {"days": [day_bounds[index], day_bounds[index + 1]],
                   "start_ts": first_day_ts + day_bounds[index] * SECONDS_PER_DAY,
                   "end_ts": first_day_ts + day_bounds[index + 1] * SECONDS_PER_DAY}
            for index, name in enumerate(SPLITS)}
