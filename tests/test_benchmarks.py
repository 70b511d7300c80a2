"""The analysis benchmarks run on the tiny demo run and print what they measure. Their
figures are measurements, not asserted, except where two stages must agree."""
import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

NUMBER = r"[\d,]+\.?\d*"
SPREAD = rf"{NUMBER} \[ *{NUMBER}, +{NUMBER}\]"  # median [lowest, highest round]
RATIO = r"\d+\.\d+x \[\d+\.\d+, \d+\.\d+\]"  # ratio of medians [95% interval]


def run_benchmark(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def prediction_times(out) -> dict[str, int]:
    """When each of the run's prediction files was written: a benchmark that trains aside
    leaves them as they were."""
    return {path.name: path.stat().st_mtime_ns
            for path in (out / "work" / "predictions").iterdir()}


@pytest.mark.slow
def test_ablation_seeds_trains_aside_and_pools_seeds_with_intervals(tiny_demo_run):
    out, _ = tiny_demo_run
    before = prediction_times(out)
    stdout = run_benchmark("ablation_seeds.py", "--work", str(out / "work"), "--preset", "tiny",
                           "--models", "urm", "--seeds", "0", "1",
                           "--set", "urm:learning_rate=0.005", "--set", "urm:dropout=0.2")
    assert stdout.count("seed 1 ") == 2  # base and urm
    # The settings reach the row they name (its resolved config), and only that row.
    assert re.search(r"^seed 1 urm .*  learning_rate=0\.005  dropout=0\.2$", stdout,
                     re.MULTILINE), stdout
    assert re.search(r"^seed 1 base .*\d$", stdout, re.MULTILINE), stdout
    assert "pooled over seeds [0, 1]: mean over seeds (sd between seeds) [95% interval" in stdout
    for name in ("base", "urm"):
        for piece in ("overall", "cold, new in window", "cold, unseen before eval"):
            assert re.search(rf"^{name} +{piece} +\d\.\d{{4}} \(\d\.\d{{4}}\) "
                             r"\[\d\.\d{4}, \d\.\d{4}\]", stdout, re.MULTILINE), (name, piece)
    assert re.search(r"urm - base: overall [+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]"
                     r".*cold/overall .*  GAUC/request overall [+-]\d\.\d{4} "
                     r"\[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]$", stdout, re.MULTILINE), stdout
    # The run's own models and predictions are left as they were.
    assert prediction_times(out) == before


@pytest.mark.parametrize("setting, message", [
    ("urm:learning_rate=fast", "learning_rate: 'fast' is not a number"),
    ("learning_rate=0.01", "expected MODEL:FIELD=VALUE with MODEL one of ['base', 'urm']"),
    ("lr:learning_rate=0.01", "expected MODEL:FIELD=VALUE with MODEL one of ['base', 'urm']"),
])
def test_ablation_seeds_refuses_a_setting_before_it_trains(tmp_path, setting, message):
    result = subprocess.run([sys.executable, "benchmarks/ablation_seeds.py", "--work",
                             str(tmp_path), "--models", "urm", "--set", setting], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_model_options_trains_each_variant_aside_and_scores_valid_and_eval(tiny_demo_run):
    out, _ = tiny_demo_run
    before = prediction_times(out)
    stdout = run_benchmark("model_options.py", "--work", str(out / "work"), "--models", "urm",
                           "ppm_zero_shot", "--variants", "",
                           "head_learning_rate_scale=0,content_norm=true", "--seeds", "0")
    score = r" +(\d\.\d{4}|nan)"  # a tiny split may have no group or cold item to score
    for label in ("preset", "head_learning_rate_scale=0,content_norm=true"):
        assert re.search(rf"^urm \[{re.escape(label)}\] seed 0({score}){{6}} +\d+/\d+$",
                         stdout, re.MULTILINE), stdout
        assert f"urm [{label}] mean" in stdout
    # A zero-shot row is scored as `ppm train` leaves it, never fine-tuned: the demo's figure.
    eval_auc = rf"(?:{score}){{3}}{score}(?:{score}){{2}}"  # the fourth figure: eval's AUC
    zero_shot = re.search(rf"^ppm_zero_shot \[preset\] seed 0{eval_auc} +not fitted$", stdout,
                          re.MULTILINE)
    assert zero_shot, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert float(zero_shot.group(2)) == pytest.approx(
        metrics["models"]["ppm_zero_shot"]["overall"]["click_auc"], abs=1e-4)
    # The variant against the preset, paired per split and slice, with an interval (a tiny
    # split's cold slices may hold one class only, or nothing: nan, no interval).
    interval = r"\[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]"
    difference = rf"(?:[+-]\d\.\d{{4}} {interval}|[+-]?nan \[–\])"
    assert re.search(r"^urm \[head_learning_rate_scale=0,content_norm=true\] - \[preset\]: "
                     rf"valid overall [+-]\d\.\d{{4}} {interval}  valid cold {difference}  "
                     rf"valid unseen {difference}  eval overall [+-]\d\.\d{{4}} {interval}  "
                     rf"eval cold {difference}  eval unseen {difference}$",
                     stdout, re.MULTILINE), stdout
    sizes = re.search(r"^urm impressions: valid overall ([\d,]+)  valid cold ([\d,]+)  "
                      r"valid unseen ([\d,]+)  eval overall ([\d,]+)  eval cold ([\d,]+)  "
                      r"eval unseen ([\d,]+)$", stdout, re.MULTILINE)
    assert sizes, stdout
    valid_sizes, eval_sizes = ([int(size.replace(",", "")) for size in sizes.groups()[i:i + 3]]
                               for i in (0, 3))
    assert metrics["models"]["urm"]["overall"]["examples"] == eval_sizes[0]
    assert metrics["models"]["urm"]["cold"]["examples"] == eval_sizes[1]
    assert metrics["models"]["urm"]["cold_unseen"]["examples"] == eval_sizes[2]
    assert valid_sizes[0] >= valid_sizes[1] >= valid_sizes[2]
    assert "ppm_zero_shot [preset] -" not in stdout  # one variant: nothing to compare
    assert prediction_times(out) == before
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "model_options.py"),
                          "--work", str(out / "work"), "--variants", "learning_rte=1"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "'learning_rte=1' is not FIELD=VALUE" in bad.stderr


@pytest.mark.slow
def test_model_options_pairs_the_rows_of_two_work_dirs(tiny_demo_run, tmp_path):
    out, _ = tiny_demo_run
    copy = tmp_path / "work"
    shutil.copytree(out / "work", copy)
    stdout = run_benchmark("model_options.py", "--work", str(out / "work"), str(copy),
                           "--models", "ppm_zero_shot", "--variants", "", "--seeds", "0")
    first, second = (re.escape(f"preset @ {work}") for work in (out / "work", copy))
    assert re.search(rf"^ppm_zero_shot \[{second}\] seed 0 ", stdout, re.MULTILINE), stdout
    # One pre-training, copied: every paired difference is exactly zero.
    zero = r"\+0\.0000 \[\+0\.0000, \+0\.0000\]"
    assert re.search(rf"^ppm_zero_shot \[{second}\] - \[{first}\]: valid overall {zero}  .*"
                     rf"eval overall {zero}  ", stdout, re.MULTILINE), stdout


@pytest.mark.slow
def test_request_amplification_is_refused_with_the_limit_and_decoded_without(tiny_demo_run):
    out, _ = tiny_demo_run
    stdout = run_benchmark("request_amplification.py", "--out", str(out), "--requests", "1")
    rows = {(line[:24].strip(), line[24:40].strip()): line[40:] for line in stdout.splitlines()
            if line.startswith(("limit", "no limit"))}
    assert "1x INVALID_ARGUMENT" in rows[("limit 4096 (default)", "[100000]")]
    assert "1x INVALID_ARGUMENT" in rows[("limit 4096 (default)", "[1000000000000]")]
    assert "1x OK" in rows[("no limit (TF Serving)", "[100000]")]  # decoded and scored


@pytest.mark.slow
def test_oracle_decomposition_agrees_with_the_evaluation(tiny_demo_run):
    out, _ = tiny_demo_run
    stdout = run_benchmark("oracle_decomposition.py", "--data", str(out / "data"),
                           "--work", str(out / "work"), "--models", "base", "urm")
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {line[:32].strip(): line[32:].split() for line in stdout.splitlines()[2:]
            if len(line) > 32}
    oracle, urm = rows["oracle (every cause)"], rows["urm"]
    assert float(oracle[0]) == pytest.approx(metrics["oracle"]["overall"]["click_auc"], abs=1e-4)
    assert float(urm[0]) == pytest.approx(metrics["models"]["urm"]["overall"]["click_auc"],
                                          abs=1e-4)
    assert float(urm[4]) == pytest.approx(metrics["models"]["urm"]["overall"]["click_gauc"],
                                          abs=1e-4)
    assert {"oracle without id-only effects", "id-only effects alone"} <= set(rows)
    assert "of the oracle logit's variance" in stdout


@pytest.mark.slow
def test_serving_latency_compares_the_request_forms_through_the_production_deployment(
        tiny_demo_run):
    out, _ = tiny_demo_run
    stdout = run_benchmark("serving_latency.py", "--out", str(out), "--preset", "tiny",
                           "--rounds", "2", "--round-seconds", "0.05",
                           "--concurrent-requests", "2")
    request_bytes = {" ".join(name.split()): int(size.replace(",", "")) for name, size in
                     re.findall(r"^  (\w+ \w+ +(?:one user row|row per candidate)) +([\d,]+) ",
                                stdout, re.MULTILINE)}
    assert len(request_bytes) == 8, stdout
    for protocol in ("rest", "grpc"):  # repeating the user-level inputs costs bytes
        for model in ("base", "urm"):
            assert (request_bytes[f"{protocol} {model} row per candidate"]
                    > request_bytes[f"{protocol} {model} one user row"])
    assert "grpc urm cached states, 4 concurrent clients" in stdout
    # Every contender: the median of its rounds' medians with the lowest and highest round.
    for label in ("100 candidates", "1 candidate"):
        block = stdout.split(f"\n{label}: ")[1]
        for name in ("in-process base", "in-process urm cached states",
                     "in-process uncached urm", "rest urm with user_states", "grpc base"):
            assert re.search(rf"^  {name} +p50 +{SPREAD} +p99 +{NUMBER} +calls +\d+$", block,
                             re.MULTILINE), (label, name)
        for ratio in ("urm \\(cached\\) / base, in-process p50",
                      "grpc / in-process, urm cached p50",
                      "uncached / cached urm, in-process p50"):
            assert re.search(rf"^  {ratio}: {RATIO}", block, re.MULTILINE), (label, ratio)


@pytest.mark.slow
def test_train_throughput_alternates_the_models_in_rounds_and_prints_ratios(tiny_demo_run):
    out, _ = tiny_demo_run
    stdout = run_benchmark("train_throughput.py", "--work", str(out / "work"), "--preset",
                           "tiny", "--rounds", "2", "--round-seconds", "0.05", "--batches", "3")
    assert "2 rounds of >= 0.05 s per model, alternating" in stdout
    for name in ("base", "urm", "uncached"):
        assert re.search(rf"^{name} +{SPREAD} +\d+$", stdout, re.MULTILINE), name
    assert re.search(rf"^urm / base: {RATIO} \(target >= 0.7\)$", stdout, re.MULTILINE)
    assert re.search(r"^uncached / urm: \d+\.\d{3}x \[\d+\.\d{3}, \d+\.\d{3}\]", stdout,
                     re.MULTILINE)


@pytest.mark.slow
def test_pretrain_batches_alternates_the_two_readings_and_counts_tower_rows(tiny_demo_run):
    out, _ = tiny_demo_run
    stdout = run_benchmark("pretrain_batches.py", "--work", str(out / "work"), "--preset",
                           "tiny", "--group", "8", "--rounds", "2", "--round-seconds", "0.05",
                           "--batches", "2")
    assert "2 rounds of >= 0.05 s per reading, alternating" in stdout
    rows = {}
    for name in ("records", "groups of 8"):
        match = re.search(rf"^{name} +{SPREAD} +(\d+\.\d)$", stdout, re.MULTILINE)
        assert match, name
        rows[name] = float(match.group(1))
    assert 0 < rows["groups of 8"] < rows["records"] <= 256  # the tiny preset's batch
    assert re.search(rf"^groups of 8 / records: {RATIO}$", stdout, re.MULTILINE)


@pytest.mark.slow
def test_demo_side_process_redoes_the_rows_both_ways_in_alternating_rounds(tiny_demo_run,
                                                                           tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_demo_run[0], out)  # the benchmark rewrites the rows it times
    before = prediction_times(out)
    stdout = run_benchmark("demo_side_process.py", "--out", str(out), "--rounds", "1",
                           "--rows", "base", "urm")  # one row beside, one not
    assert "precompute + 2 rows + export of base, urm, preset tiny, seed 0: 1 rounds" in stdout
    for name in ("in sequence", "beside"):
        assert re.search(rf"^{name} +{SPREAD}$", stdout, re.MULTILINE), name
    assert re.search(rf"^beside / in sequence: {RATIO}$", stdout, re.MULTILINE)
    assert "[train base] done in" in stdout and "[export base] done in" in stdout
    assert "[export urm] done in" in stdout
    after = prediction_times(out)
    assert after.keys() == before.keys()
    redone = {name for name in before if after[name] > before[name]}
    assert redone == {"base.npz", "urm.npz"}


def test_bootstrap_speed_compares_both_ways_and_checks_they_agree():
    stdout = run_benchmark("bootstrap_speed.py", "--rows", "3000", "--users", "200",
                           "--resamples", "4", "--repeats", "2")
    assert "(median ms; all equal)" in stdout
    assert re.search(r"vectorised +\d+\.\d{2} ms", stdout)
    assert re.search(r"plain +\d+\.\d{2} ms", stdout)
    assert re.search(r"vectorised is \d+\.\dx faster", stdout)


def test_rounds_alternate_the_contenders_and_pair_their_rounds_in_ratios():
    from benchmarks.rounds import Ratio, Spread, alternate

    calls = []
    results = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        rounds=3, round_seconds=1e-4, warmup_calls=1,
                        units_per_call={"a": 5})
    assert calls[:2] == ["a", "b"]  # one warm-up call each
    timed = calls[2:]
    runs = [name for index, name in enumerate(timed) if index == 0 or timed[index - 1] != name]
    assert runs == ["a", "b", "a", "b"]  # rounds a|b, b|a, a|b: the order reverses
    assert [len(results[name]) for name in "ab"] == [3, 3]
    assert all(one.units == 5 * len(one.seconds) for one in results["a"])
    assert all(one.units == len(one.seconds) for one in results["b"])

    assert Ratio.of_medians([4.0, 4.0, 4.0], [2.0, 2.0, 2.0]).format() == "2.00x [2.00, 2.00]"
    ratio = Ratio.of_medians([1.0, 2.0, 9.0], [1.0, 1.0, 1.0])
    assert ratio.value == 2.0 and ratio.low >= 1.0 and ratio.high <= 9.0 and ratio.rounds == 3
    assert Spread.of([3.0, 1.0, 2.0]).format(".1f") == "2.0 [1.0, 3.0]"
    with pytest.raises(ValueError, match="same rounds"):
        Ratio.of_medians([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="rounds >= 1"):
        alternate({"a": lambda: None}, rounds=0, round_seconds=1.0)
