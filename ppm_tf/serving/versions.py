"""Which version folders under a model's base path exist, are complete, and should be served.

A model lives at ``<base_path>/<version>/`` with numeric version folders, as TF Serving expects.
A folder is a version only if its name is all digits (so ``.tmp-124`` or ``124.partial`` being
written next door is ignored) and it holds a complete SavedModel: ``saved_model.pb`` (or
``.pbtxt``) plus ``variables/variables.index`` and every ``variables.data-NNNNN-of-MMMMM`` shard.
The version policy (TF Serving's ``ServableVersionPolicy``) then picks the aspired versions.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from tensorflow_serving.config import file_system_storage_path_source_pb2

VersionPolicy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig \
    .ServableVersionPolicy

_VERSION_DIR = re.compile(r"\d{1,18}")  # below 2**63: TF Serving's int64 version numbers
_DATA_SHARD = re.compile(r"variables\.data-(\d{5})-of-(\d{5})")
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")

log = logging.getLogger(__name__)


def list_version_dirs(base_path: str) -> dict[int, str]:
    """``{version: path}`` for every numeric sub-folder (complete or not) of ``base_path``.

    Raises ``FileNotFoundError`` if ``base_path`` is missing. Two names for one number
    (``123`` and ``00123``) keep the first in sorted order, with a warning.
    """
    versions: dict[int, str] = {}
    with os.scandir(base_path) as entries:
        names = sorted(entry.name for entry in entries if entry.is_dir())
    for name in names:
        if not _VERSION_DIR.fullmatch(name):
            continue
        version = int(name)
        if version in versions:
            log.warning("Ignoring %s: version %d is already %s", os.path.join(base_path, name),
                        version, versions[version])
            continue
        versions[version] = os.path.join(base_path, name)
    return versions


def is_complete_saved_model(path: str) -> bool:
    """Whether ``path`` holds a whole SavedModel (graph, variables index and all shards)."""
    if not any(os.path.isfile(os.path.join(path, name)) for name in SAVED_MODEL_FILES):
        return False
    variables = os.path.join(path, "variables")
    if not os.path.isfile(os.path.join(variables, "variables.index")):
        return False
    shard_counts: set[int] = set()
    shards: set[int] = set()
    for name in os.listdir(variables):
        match = _DATA_SHARD.fullmatch(name)
        if match:
            shards.add(int(match.group(1)))
            shard_counts.add(int(match.group(2)))
    if len(shard_counts) > 1:
        return False
    return not shard_counts or shards == set(range(shard_counts.pop()))


def fingerprint(path: str) -> tuple:
    """A cheap summary of a folder's files (name, size, mtime) to notice that it changed."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def aspired_versions(versions: Iterable[int], policy: VersionPolicy) -> set[int]:
    """The versions a policy serves out of those on disk: latest N (default 1), all, specific."""
    on_disk = sorted(set(versions), reverse=True)
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(on_disk)
    if choice == "specific":
        return set(on_disk) & set(policy.specific.versions)
    num_versions = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(on_disk[:num_versions])

