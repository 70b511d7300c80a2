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

An item's ``image`` path must lie inside the data directory (or a root the job explicitly
allows): ``resolve_image_path`` checks that after resolving ``..`` and symlinks, before
anything is opened, and ``read_local_file`` opens only regular files, up to a size limit.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import posixpath
import shutil
import stat
from typing import Any, Iterable, Iterator

WORLD_JSON = "world.json"
IMAGES_DIR = "images"
SPLITS = ("pretrain", "train", "eval")
SPLITS_WITH_VALID = ("pretrain", "train", "valid", "eval")
SECONDS_PER_DAY = 86_400
URL_SEPARATOR = "://"


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


class ImageRefused(ValueError):
    """An image path or file refused before its bytes are read; ``code`` is the dead-letter
    code (``image_outside_root``, ``image_url``, ``image_not_regular_file``, ...)."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code


def _normalise(path: str) -> str:
    """``path`` with ``..`` resolved: lexically for URLs (object stores have no symlinks),
    through the filesystem for local paths (symlinks too; nothing is opened)."""
    if URL_SEPARATOR in path:
        scheme, rest = path.split(URL_SEPARATOR, 1)
        return f"{scheme.lower()}{URL_SEPARATOR}{posixpath.normpath(rest)}"
    return os.path.realpath(path)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_image_path(path: str, data_root: str, allowed_roots: tuple[str, ...] = ()) -> str:
    """Where an item's ``image`` lies, refused (``ImageRefused``) unless inside ``data_root``
    or one of ``allowed_roots`` once ``..`` and symlinks are resolved.

    A relative path is relative to ``data_root``. URLs are compared by normalised prefix, so
    ``gs://`` data directories work; any other URL (``https://``) is refused, never fetched.
    """
    if "\0" in path:
        raise ImageRefused("invalid_image_path", f"image path {path!r} contains a NUL byte")
    roots = [root for root in (data_root, *allowed_roots) if root]
    if not roots:
        raise ImageRefused("image_outside_root",
                           f"image path {path!r} given, but no image root is set")
    is_url = URL_SEPARATOR in path
    if is_url or path.startswith("/"):
        candidate = path
    else:
        candidate = data_root.rstrip("/") + "/" + path if data_root else path
    resolved = _normalise(candidate)
    if any(_inside(resolved, _normalise(root)) for root in roots):
        return resolved
    where = " or ".join(repr(root) for root in roots)
    if is_url:
        raise ImageRefused("image_url", f"image URL {path!r} is not inside {where}: images are "
                           "read from the data directory (or --image_root), never downloaded")
    raise ImageRefused("image_outside_root", f"image path {path!r} resolves to {resolved!r}, "
                       f"outside {where}; it was not opened")


def read_local_file(path: str, max_bytes: int) -> bytes:
    """Reads a local image file whole, if it is a regular file of at most ``max_bytes``.

    The type and size are checked before opening (a FIFO would block ``open`` forever, a
    huge file would be read into memory), then again on the open descriptor, so a file
    swapped in between changes nothing; at most ``max_bytes`` are ever read.
    """
    _check_image_file(path, os.stat(path), max_bytes)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        _check_image_file(path, os.fstat(descriptor), max_bytes)
        content = handle.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise ImageRefused("image_file_too_large",
                           f"image file {path!r} grew over max_image_bytes={max_bytes:,}")
    return content


def _check_image_file(path: str, status: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise ImageRefused("image_not_regular_file",
                           f"image path {path!r} is not a regular file (a directory, FIFO or "
                           "device); it was not opened")
    check_image_size(path, status.st_size, max_bytes)


def check_image_size(path: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageRefused("image_file_too_large", f"image file {path!r} has {size:,} bytes, "
                           f"over max_image_bytes={max_bytes:,}; it was not read")


def non_file_matches(pattern: str) -> list[str]:
    """Local paths matching a data-file ``pattern`` that are not regular files (say a folder
    named like a shard): Beam's match skips folders silently, and would block on a FIFO."""
    if URL_SEPARATOR in pattern:
        return []
    return sorted(path for path in glob.glob(pattern) if not os.path.isfile(path))


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

    ``day_bounds`` are the day numbers [pretrain start, train start, eval start, end), counted
    from ``first_day_ts``, the midnight (UTC) that starts the horizon; five bounds [pretrain,
    train, valid, eval, end) also suggest the ``valid`` split (the recent window's end).
    """
    names = SPLITS if len(day_bounds) == len(SPLITS) + 1 else SPLITS_WITH_VALID
    if len(day_bounds) != len(names) + 1:
        raise ValueError(f"split_spans takes {len(SPLITS) + 1} or {len(SPLITS_WITH_VALID) + 1} "
                         f"day bounds, got {len(day_bounds)}")
    return {name: {"days": [day_bounds[index], day_bounds[index + 1]],
                   "start_ts": first_day_ts + day_bounds[index] * SECONDS_PER_DAY,
                   "end_ts": first_day_ts + day_bounds[index + 1] * SECONDS_PER_DAY}
            for index, name in enumerate(names)}