"""``ppm demo --preset tiny`` end to end, as a user runs it: every stage for real, in a
subprocess, then a re-run that skips what is up to date."""
import json

import pytest
from conftest import run_ppm_demo

from ppm_tf.demo.side_process import side_process_worthwhile
from ppm_tf.demo.stages import BESIDE, stage_line, stage_records

MODELS = ("base", "qm_ep", "ppm", "urm", "base_long")


@pytest.mark.slow
def test_every_stage_runs_and_reports(tiny_demo_run):
    out, stdout = tiny_demo_run
    for stage in ("generate", "preprocess catalogue", "preprocess events", "train-encoders",
                  "embed-items", "pretrain", "precompute", "train urm", "evaluate", "export urm",
                  "serve", "ab"):
        assert f"[{stage}] done in" in stdout, stage
    metrics = json.loads((out / "metrics.json").read_text())
    stages = stage_records(metrics)  # every stage that ran: time, what it processed, rate
    assert list(stages)[:2] == ["generate", "preprocess catalogue"] and "ab" in stages
    for name, record in stages.items():
        assert record["seconds"] > 0 and record["count"] > 0, name
        assert record["per_second"] == pytest.approx(record["count"] / record["seconds"])
        assert record["cpu_seconds"] > 0 and record["cores"] > 0, name
        assert stage_line(name, record) in stdout  # the printed line, from the same record
    assert stages["preprocess events"]["unit"] == "events"
    assert stages["embed-items"]["unit"] == "items"
    assert stages["preprocess events"]["count"] == stages["generate"]["count"]  # every event
    beside = {name for name, record in stages.items() if record.get(BESIDE)}
    # On a CPU-only machine with 2+ cores the encoders trained (and embedded the items) beside
    # the events job, and the rows that need only preprocess trained (and base exported)
    # beside precompute.
    assert beside == ({"train-encoders", "embed-items", "train base", "train base_long",
                       "train lr", "train counts", "export base"}
                      if side_process_worthwhile() else set())
    for name in MODELS:
        model = metrics["models"][name]
        for slice_name in ("overall", "cold", "warm"):
            assert set(model[slice_name]) >= {"click_auc", "order_auc", "click_gauc", "logloss"}
        assert model["train_seconds"] > 0 and model["trainable_params"] > 0
    assert set(metrics["oracle"]) >= {"overall", "cold", "warm"}
    assert metrics["serving"]["rest_and_grpc_agree"]
    ab = metrics["ab"]  # the replayed A/B test: every eval day of the tiny world
    assert ab["arms"] == ["urm", "base", "oracle", "popularity", "random"]
    assert ab["requests"] > 0 and ab["excluded_requests"] == 0
    assert all(errors["failed_requests"] == 0 for errors in ab["errors"].values())
    assert set(ab["latency_ms"]) == {"urm", "base"}
    clicks = {arm: row["clicks_per_request"]["value"]
              for arm, row in ab["comparison"]["arms"].items()}
    assert max(clicks, key=clicks.get) == "oracle", clicks  # the ceiling of every ranking
    assert "A/B test replayed" in stdout and "no feedback loop" in stdout
    assert metrics["iteration_efficiency"]["urm"]["train_examples"] < \
        metrics["iteration_efficiency"]["base_long"]["train_examples"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "urm" in html
    assert "alt='Stage times'" in html  # the chart of stage times
    for name in ("urm", "base"):
        versions = [path for path in (out / "saved_models" / name).iterdir()
                    if path.name.isdigit()]
        assert len(versions) == 1 and (versions[0] / "saved_model.pb").is_file()


@pytest.mark.slow
def test_a_rerun_skips_the_stages_that_are_up_to_date(tiny_demo_run):
    out, _ = tiny_demo_run
    result = run_ppm_demo(out)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("preprocess", "train-encoders", "pretrain", "precompute", "train urm",
                  "train base", "export base", "export urm", "ab"):
        assert f"[{stage}] up to date; skipped" in result.stdout, stage
    assert "A/B test replayed" in result.stdout  # the last replay's table, read back
    # The side process starts as quietly as the command: no TensorFlow start-up notices.
    for notice in ("absl::InitializeLog", "oneDNN", "cuda"):
        assert notice not in result.stderr, result.stderr[-3000:]
