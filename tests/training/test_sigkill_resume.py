"""A ``ppm train`` process killed with SIGKILL mid-run and started again ends where an
uninterrupted run ends: the same predictions and the whole run's cost (one process, the
default strategy, the tiny demo run's work dir)."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600
ARGS = ("--model", "urm", "--epochs", "3", "--save-every-steps", "1")


def train(work: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ppm_tf.cli", "train", "--work", str(work),
                             *ARGS], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output[-4000:]
    return output


def fresh_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("urm.npz", "urm"))
    return target


def test_a_sigkilled_run_resumed_equals_an_uninterrupted_one(tiny_demo_run, tmp_path):
    source = tiny_demo_run[0] / "work"
    uninterrupted = fresh_copy(source, tmp_path / "uninterrupted")
    killed = fresh_copy(source, tmp_path / "killed")
    finished(train(uninterrupted))

    process = train(killed)
    backup = killed / "models" / "urm" / "backup" / "keras" / "chief" / "checkpoint"
    deadline = time.monotonic() + TIMEOUT
    while not backup.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    assert not (killed / "models" / "urm" / "training.json").exists()
    finished(train(killed))

    summaries = [json.loads((work / "models" / "urm" / "training.json").read_text())
                 for work in (uninterrupted, killed)]
    assert summaries[1]["resumed_from"]["epoch"] * summaries[1]["steps_per_epoch"] \
        + summaries[1]["resumed_from"]["step"] >= 1
    for key in ("epochs", "train_examples", "best_epoch", "validation_click_auc"):
        assert summaries[1][key] == pytest.approx(summaries[0][key], abs=1e-6), key
    predictions = [np.load(work / "predictions" / "urm.npz") for work in (uninterrupted, killed)]
    for key in ("click_prob", "order_prob"):
        np.testing.assert_allclose(predictions[1][key], predictions[0][key], atol=1e-6)
