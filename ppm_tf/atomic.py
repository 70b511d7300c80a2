"""Write a directory elsewhere, then move it into place: a reader polling the target (a
model server, a later stage's up-to-date check) never sees a half-written one."""
from __future__ import annotations

import contextlib
import uuid

import tensorflow as tf


@contextlib.contextmanager
def atomic_directory(target: str):
    """Yields a temporary sibling path to write into; on success it replaces ``target``.

    The temporary name starts with "." so TF Serving and our server ignore it while it is
    being written. On error the partial directory is removed and ``target`` is untouched.
    """
    parent, _, name = target.rstrip("/").rpartition("/")
    temporary = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}" if parent else f".{name}.tmp"
    tf.io.gfile.makedirs(parent or ".")
    try:
        yield temporary
        if tf.io.gfile.exists(target):
            tf.io.gfile.rmtree(target)
        tf.io.gfile.rename(temporary, target)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.rmtree(temporary)
