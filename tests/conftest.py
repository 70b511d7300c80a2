"""Shared pytest setup: the shared data folder, and one real tiny pipeline run that the
end-to-end tests share (markers live in pytest.ini)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared/`` folder that sits next to the repository (data sets, fixtures)."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"../shared not found next to the repo: {path}")
    return path


def run_ppm_demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ppm_tf.cli", "demo", "--preset", "tiny",
                           "--out", str(out), *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)


@pytest.fixture(scope="session")
def tiny_demo_run(tmp_path_factory):
    """``ppm demo --preset tiny`` run once for the session: (run folder, its stdout)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    result = run_ppm_demo(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out, result.stdout
