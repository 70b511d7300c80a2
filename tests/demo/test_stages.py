"""The demo's stage records: time, what was processed, throughput; the printed line; the
report's chart of stage times."""
import io
import json

import pytest
from matplotlib.image import imread

from ppm_tf.demo import report, stages


def test_a_stage_record_gives_the_throughput_of_what_it_processed():
    record = stages.stage_record(4.0, 10_000, "events")
    assert record == {"seconds": 4.0, "count": 10_000, "unit": "events", "per_second": 2_500.0}
    assert stages.stage_line("preprocess", record) == \
        "[preprocess] done in 4.0 s, 2,500 events/s (10,000 events)"


def test_a_stage_record_with_cpu_time_says_how_many_cores_were_busy():
    record = stages.stage_record(4.0, 10_000, "events", cpu=6.0)
    assert record["cpu_seconds"] == 6.0 and record["cores"] == 1.5
    assert stages.stage_line("pretrain", record).endswith("(10,000 events), 1.5 cores busy")


def test_cpu_seconds_count_the_work_of_this_process():
    started = stages.cpu_seconds()
    sum(index * index for index in range(3_000_000))
    assert stages.cpu_seconds() > started


def test_the_stages_cpu_time_bounds_the_wall_time_of_any_schedule():
    records = {"preprocess": stages.stage_record(240.0, 1_000, "events", cpu=250.0),
               "pretrain": stages.stage_record(150.0, 1_000, "examples", cpu=240.0),
               "train base": {**stages.stage_record(100.0, 1_000, "examples", cpu=150.0),
                              stages.BESIDE: True}}
    # 640 CPU seconds on 2 cores: at least 320 s, whatever runs beside what.
    assert stages.cpu_bound_line(records, 2) == \
        "CPU time of all stages 640 s: on 2 cores no schedule of them takes under 5.3 min"
    lines = stages.stage_table_lines(records, cores=2)
    assert lines[1].split()[:4] == ["preprocess", "240.0", "61.5%", "1.0"]
    assert lines[-1] == stages.cpu_bound_line(records, 2)
    # A record without CPU time (an older run's) leaves the bound out.
    assert stages.cpu_bound_line({**records, "serve": stages.stage_record(2.0, 1, "calls")},
                                 2) == ""
    assert stages.stage_table_lines(records)[-1] != lines[-1]  # no cores given: no bound


def test_a_negative_count_is_refused_with_its_unit():
    with pytest.raises(ValueError, match="count of items must be >= 0"):
        stages.stage_record(1.0, -1, "items")


RECORDS = {"preprocess": stages.stage_record(180.0, 1_075_380, "events"),
           "pretrain": stages.stage_record(320.0, 3_000_000, "examples"),
           "serve": stages.stage_record(2.0, 188, "client calls")}


def test_the_chart_has_one_bar_per_stage_in_run_order_with_its_seconds():
    figure = stages.stage_figure(RECORDS)
    axes = figure.axes[0]
    widths = [patch.get_width() for patch in axes.patches]
    assert widths == [180.0, 320.0, 2.0]
    assert [label.get_text() for label in axes.get_yticklabels()] == list(RECORDS)
    assert any("320.0 s, 9,375 examples/s" in text.get_text()
               for text in axes.texts)
    image = imread(io.BytesIO(stages.stage_chart_png(RECORDS)), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 500


def test_stages_from_the_side_process_are_marked_and_left_out_of_the_time_in_sequence():
    records = {**RECORDS, "train base": {**stages.stage_record(90.0, 50_000, "examples"),
                                         stages.BESIDE: True}}
    axes = stages.stage_figure(records).axes[0]
    colours = [patch.get_facecolor() for patch in axes.patches]
    assert colours[:3] == [colours[0]] * 3 and colours[3] != colours[0]
    assert "8.4 min in sequence" in axes.get_title()  # 180 + 320 + 2 s, not the 90 beside
    lines = stages.stage_table_lines(records)
    assert lines[1].split()[2] == "35.9%" and lines[4].split()[3] == "beside"
    assert "second process" in lines[-1]


def test_the_report_shows_the_stage_chart_and_throughputs(tmp_path):
    records = {name: {**record, "cpu_seconds": record["seconds"], "cores": 1.0}
               for name, record in RECORDS.items()}
    summary = {"models": {}, "preset": "tiny", "seed": 0, "wall_clock_seconds": 502.0,
               "stages": stages.stage_rows(records), stages.CPU_CORES: 2}
    summary = json.loads(json.dumps(summary, sort_keys=True))  # as metrics.json stores it
    assert list(stages.stage_records(summary)) == list(RECORDS)  # still in run order
    page = report.stages_html(stages.stage_records(summary), summary[stages.CPU_CORES])
    assert page.count("data:image/png;base64,") == 1 and "alt='Stage times'" in page
    assert "5,974 events/s (1,075,380)" in page
    assert "on 2 cores no schedule of them takes under 4.2 min" in page  # 502 CPU s / 2


def test_an_older_summary_with_times_only_still_gets_its_chart():
    records = stages.stage_records({"stage_seconds": {"preprocess": 183.0, "pretrain": 323.0}})
    assert list(records) == ["preprocess", "pretrain"]
    page = report.stages_html(records)
    assert "alt='Stage times'" in page and "183.0" in page
    assert report.stages_html({}) == ""
