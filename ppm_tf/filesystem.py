"""Deleting a stage's old outputs on any filesystem Beam knows (local, gs://, ...)."""
from __future__ import annotations

import os
import shutil

from apache_beam.io.filesystems import FileSystems


def delete_tree(path: str) -> None:
    """Removes a file, or a folder with everything under it (``path`` ending in "/")."""
    if "://" not in path:  # local: Beam's delete does not remove nested folders
        if path.endswith("/"):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
        return
    pattern = path + "**" if path.endswith("/") else path
    files = [file.path for file in FileSystems.match([pattern])[0].metadata_list]
    if files:
        FileSystems.delete(files)
