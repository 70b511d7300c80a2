"""Every stage checks its inputs before any work: run out of order, it fails with one line
naming the missing file and the command that makes it, exit code 2, no traceback, and the
work dir untouched.

Each case is the tiny demo run's finished work dir with one predecessor's output removed, and
the stage run as a user runs it (``ppm …`` in a subprocess).
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

# (the stage's command line, the predecessor's output removed, the command that makes it)
CASES = [
    (["train-encoders", "--preset", "tiny", "--epochs", "1"], "catalogue.json",
     "ppm preprocess --data RAW_DATA_DIR --out {work}"),
    (["embed-items"], "encoders/text/encoder.json", "ppm train-encoders --work {work}"),
    (["pretrain", "--epochs", "1"], "item_vectors/metadata.json",
     "ppm embed-items --work {work}"),
    (["precompute"], "models/ppm_pretrained/training.json", "ppm pretrain --work {work}"),
    (["train", "--model", "urm", "--epochs", "1"], "cached/metadata.json",
     "ppm precompute --work {work}"),
    (["train", "--model", "base", "--epochs", "1"], "preprocess.json",
     "ppm preprocess --data RAW_DATA_DIR --out {work}"),
    (["export", "--model", "urm"], "models/urm/training.json",
     "ppm train --work {work} --model urm"),
]


def _snapshot(root: Path) -> dict:
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*")}


def _run_out_of_order(tiny_demo_run, tmp_path, command: list[str], removed: str):
    work = tmp_path / "work"
    shutil.copytree(tiny_demo_run[0] / "work", work)
    target = work / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = _snapshot(work)
    extra = ["--base-path", str(tmp_path / "saved_models")] if command[0] == "export" else []
    result = subprocess.run([sys.executable, "-m", "ppm_tf.cli", *command, "--work", str(work),
                             *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert _snapshot(work) == before  # nothing written, nothing deleted
    assert not (tmp_path / "saved_models").exists()
    return work, result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command, removed, made_by", CASES,
                         ids=[" ".join(case[0][:3]) for case in CASES])
def test_a_stage_before_its_predecessor_says_what_to_run_first(tiny_demo_run, tmp_path,
                                                               command, removed, made_by):
    work, last_line = _run_out_of_order(tiny_demo_run, tmp_path, command, removed)
    assert last_line == (f"ppm {command[0]}: error: {work}/{removed} not found: run "
                         f"`{made_by.format(work=work)}` first")


def test_evaluate_before_any_training_says_to_train(tiny_demo_run, tmp_path):
    work, last_line = _run_out_of_order(tiny_demo_run, tmp_path, ["evaluate"], "predictions")
    assert last_line == (f"ppm evaluate: error: no predictions under {work}/predictions: run "
                         f"`ppm train --work {work} --model all` first")
