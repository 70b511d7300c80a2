"""Training under ``tf.distribute.MultiWorkerMirroredStrategy``: two real worker processes
on 127.0.0.1 (TF_CONFIG), bounded by timeouts, on the tiny demo run's work dir."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ppm_tf import features
from ppm_tf.metrics import roc_auc

from loopback import free_ports

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600


def start_workers(work: Path, *extra: str) -> list[subprocess.Popen]:
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "ppm_tf.cli", "train", "--work", str(work), "--model", "base",
             "--strategy", "multi_worker", "--collective-timeout", "120", *extra],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return workers


def finish(workers: list[subprocess.Popen]) -> list[tuple[int, str]]:
    results = []
    for worker in workers:
        try:
            output, _ = worker.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
        results.append((worker.returncode, output))
    return results


def predictions(work: Path) -> dict[str, np.ndarray]:
    return dict(np.load(work / "predictions" / "base.npz"))


def click_auc(work: Path) -> float:
    rows = predictions(work)
    return roc_auc(rows[features.CLICK], rows["click_prob"])


@pytest.fixture
def work_copy(tiny_demo_run, tmp_path):
    """The tiny run's work dir, its `base` model removed (the single-worker reference stays
    in the original)."""
    run, _ = tiny_demo_run
    copy = tmp_path / "work"
    shutil.copytree(run / "work", copy, ignore=shutil.ignore_patterns("ppm_user_tower"))
    shutil.rmtree(copy / "models" / "base")
    (copy / "predictions" / "base.npz").unlink()
    return run / "work", copy


def test_two_workers_killed_mid_epoch_resume_and_train_what_one_trains(work_copy):
    """Two workers back up every step; one is killed mid-epoch, its peer fails instead of
    hanging, and the restarted cluster resumes from the last step's backup. Tolerance: the
    same global batches averaged over two replicas give the single-worker model up to
    all-reduce rounding, so eval click AUC within 0.005 and every probability within 1e-3."""
    single, work = work_copy
    workers = start_workers(work, "--save-every-steps", "1")
    backup = work / "models" / "base" / "backup" / "keras"
    deadline = time.monotonic() + TIMEOUT
    while (not (backup / "chief" / "checkpoint").exists() and time.monotonic() < deadline
           and workers[0].poll() is None):
        time.sleep(0.05)
    assert (backup / "chief" / "checkpoint").exists(), finish(workers)[0][1][-4000:]
    assert workers[1].poll() is None, "the run ended before a worker could be killed"
    workers[1].send_signal(signal.SIGKILL)
    (survivor_code, survivor_output), _ = finish(workers)
    assert survivor_code != 0, "the surviving worker should fail once its peer is lost"
    assert not (work / "models" / "base" / "training.json").exists()

    results = finish(start_workers(work, "--save-every-steps", "1"))
    for returncode, output in results:
        assert returncode == 0, output[-4000:]
    summary = json.loads((work / "models" / "base" / "training.json").read_text())
    reference = json.loads((single / "models" / "base" / "training.json").read_text())
    assert summary["replicas"] == 2
    assert summary["resumed_from"]["epoch"] == 0 and summary["resumed_from"]["step"] >= 1
    # The whole run's cost, not only the part after the restart.
    assert (summary["epochs"], summary["train_examples"]) == (
        reference["epochs"], reference["train_examples"])
    assert not (work / "models" / "base" / "backup").exists()
    assert abs(click_auc(work) - click_auc(single)) < 0.005
    np.testing.assert_allclose(predictions(work)["click_prob"],
                               predictions(single)["click_prob"], atol=1e-3)


def test_parameter_servers_shard_the_id_tables_and_fit(tmp_path):
    """ParameterServerStrategy, for id tables too big for one worker: IDRec built under a
    variable partitioner has its item table sharded across two parameter servers, and
    ``model.fit`` trains it (an in-process cluster on 127.0.0.1, in its own process)."""
    result = subprocess.run([sys.executable, str(Path(__file__).with_name(
        "parameter_server_fit.py")), str(tmp_path)], cwd=REPO, capture_output=True,
        text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["table"] == "ShardedVariable"
    assert sorted(report["shard_devices"]) == [f"/job:ps/replica:0/task:{index}/device:CPU:0"
                                               for index in range(2)]
    assert len(report["losses"]) == 2 and all(np.isfinite(report["losses"]))
