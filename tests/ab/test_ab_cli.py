"""``ppm ab`` as users run it: a real subprocess; bad input ends in one clear line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ppm_tf.data.synthetic import generate_world, preset

REPO = Path(__file__).resolve().parents[2]


def ppm_ab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ppm_tf.cli", "ab", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ab_cli") / "raw"
    generate_world(preset("tiny"), seed=0, out=str(out), preset_name="tiny")
    return out


def test_built_in_arms_print_the_table_and_write_the_results(world_dir, tmp_path):
    result = ppm_ab("--work", str(tmp_path / "work"), "--data", str(world_dir), "--days", "1",
                    "--arms", "oracle,random", "--pool", "30", "--resamples", "200")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "A/B test replayed" in result.stdout and "differences are arm - random" in result.stdout
    stored = json.loads((tmp_path / "work" / "ab" / "ab.json").read_text())
    assert stored["arms"] == ["oracle", "random"] and stored["pool"] == 30


def test_an_arm_without_an_export_is_refused_naming_the_command_to_run(world_dir, tmp_path):
    missing = ppm_ab("--work", str(tmp_path / "work"), "--data", str(world_dir),
                     "--saved-models", str(tmp_path / "saved_models"), "--arms", "urm,oracle")
    assert missing.returncode == 2
    assert "no exported version of urm" in missing.stderr and "ppm export" in missing.stderr
    assert "Traceback" not in missing.stderr
