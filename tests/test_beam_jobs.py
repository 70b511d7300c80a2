"""The Beam jobs' flags are pipeline options: they show in the job's display data, and a flag
neither the job nor Beam knows is an error, not a warning."""
import subprocess
import sys

import pytest
from apache_beam.transforms.display import DisplayData
from conftest import REPO

from beam_jobs import embed_items, precompute_towers, preprocess
from ppm_tf.beam_runner import JobFlagError, WorkOptions, parse_job_options


def displayed(options) -> dict:
    return {item.key: item.value for item in DisplayData.create_from_options(options).items}


def test_job_flags_are_pipeline_options_in_the_display_data():
    options = parse_job_options(
        preprocess.PreprocessOptions, ["--data", "gs://b/raw", "--out", "gs://b/work",
                                       "--max_seq_len", "30", "--image_root", "gs://b/img"],
        "ppm preprocess", "")
    shown = displayed(options)
    assert shown["data"] == "gs://b/raw" and shown["work"] == "gs://b/work"
    assert shown["max_seq_len"] == 30 and "gs://b/img" in str(shown["image_roots"])
    assert options.view_as(WorkOptions).work == "gs://b/work"
    options = parse_job_options(embed_items.EmbedItemsOptions,
                                ["--work", "w", "--batch_size", "64"], "ppm embed-items", "")
    assert displayed(options)["batch_size"] == 64


@pytest.mark.parametrize("job, argv", [
    (preprocess, ["--data", "d", "--out", "w", "--max_seq_lne", "30"]),
    (embed_items, ["--work", "w", "--max_batch", "64"]),
    (precompute_towers, ["--work", "w", "--wrok", "x"]),
])
def test_an_unknown_flag_stops_the_job_naming_it(job, argv, tmp_path):
    with pytest.raises(JobFlagError, match=f"unknown flag.*{argv[-2]}"):
        job.run(argv)


def test_a_missing_required_flag_is_named():
    with pytest.raises(JobFlagError, match="missing required flag.*--data"):
        preprocess.run(["--out", "w"])


def test_the_cli_reports_an_unknown_job_flag_and_fails():
    result = subprocess.run([sys.executable, "-m", "ppm_tf.cli", "precompute", "--work", "w",
                             "--runner", "DirectRunner", "--bogus_flag", "1"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "unknown flag(s) --bogus_flag" in result.stderr
