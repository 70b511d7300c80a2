"""Shared pytest setup: the path to the shared data folder (markers live in pytest.ini)."""
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared/`` folder that sits next to the repository (data sets, fixtures)."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"../shared not found next to the repo: {path}")
    return path
