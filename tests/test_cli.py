"""The ``ppm`` command as users run it: a real subprocess, real files."""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from beam_jobs import embed_items, preprocess
from ppm_tf.beam_runner import WorkOptions
from ppm_tf.cli import build_parser
from ppm_tf.serving import server

REPO = Path(__file__).resolve().parents[1]


def ppm(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TF_CPP_", "TF_USE_LEGACY_KERAS"))}  # as a user's shell
    return subprocess.run([sys.executable, "-m", "ppm_tf.cli", *args], cwd=REPO,
                          env={**env, **extra_env}, capture_output=True, text=True, timeout=600)


def _options_parser(*options_classes) -> argparse.ArgumentParser:
    """A Beam job's own flags (its ``PipelineOptions`` classes) on one parser."""
    parser = argparse.ArgumentParser()
    for options_class in options_classes:
        options_class._add_argparse_args(parser)
    return parser


# A pass-through command's flags are parsed by the job it runs.
PASS_THROUGH_PARSERS = {
    "preprocess": lambda: _options_parser(WorkOptions, preprocess.PreprocessOptions),
    "embed-items": lambda: _options_parser(WorkOptions, embed_items.EmbedItemsOptions),
    "precompute": lambda: _options_parser(WorkOptions),
    "serve": server.build_parser}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [action for action in parser._actions
                     if isinstance(action, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def _flags_without_help(parser: argparse.ArgumentParser) -> list[str]:
    return ["/".join(action.option_strings) or action.dest for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            and (not action.help or action.help == argparse.SUPPRESS)]


def test_generate_prints_the_summary_with_oracle_auc(tmp_path):
    result = ppm("generate", "--preset", "tiny", "--seed", "3", "--out", str(tmp_path / "w"))
    assert result.returncode == 0, result.stderr
    assert "oracle AUC on eval days" in result.stdout and "click_auc" in result.stdout
    assert (tmp_path / "w" / "world.json").is_file()


def test_import_movielens_reports_a_missing_source_clearly(tmp_path):
    result = ppm("import-movielens", "--src", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "out"))
    assert result.returncode == 2
    assert "ppm import-movielens: error:" in result.stderr and "movies.csv" in result.stderr


def test_unknown_preset_is_a_usage_error(tmp_path):
    result = ppm("generate", "--preset", "huge", "--out", str(tmp_path))
    assert result.returncode == 2 and "invalid choice: 'huge'" in result.stderr


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (REPO / "README.md").read_text().splitlines()
    commands = [line for line in readme if line.startswith("python3.11 ")]
    assert len(commands) == 2
    assert commands[0].endswith("ppm demo") and "pytest" in commands[1]
    first_code_line = next(index for index, line in enumerate(readme) if line.startswith("```"))
    assert readme[first_code_line + 1:first_code_line + 3] == commands
    assert "grep -m 2 '^python3.11 ' README.md | sed -n 2p" in (REPO / ".ci" / "run").read_text()


def test_every_flag_of_every_command_has_a_help_string():
    parser = build_parser()
    missing = {"ppm": _flags_without_help(parser)}
    for name, command in _commands(parser).items():
        command_parser = PASS_THROUGH_PARSERS[name]() if name in PASS_THROUGH_PARSERS else command
        missing[name] = _flags_without_help(command_parser)
        assert command_parser._actions, name
    assert {name: flags for name, flags in missing.items() if flags} == {}
    assert set(PASS_THROUGH_PARSERS) <= set(_commands(parser))


def test_help_lists_the_stages_in_pipeline_order():
    result = ppm("--help")
    assert result.returncode == 0 and result.stderr == ""
    listed = [line.split()[0] for line in result.stdout.splitlines()
              if line.startswith("    ") and line.split()[0] in _commands(build_parser())]
    pipeline = ["generate", "import-movielens", "preprocess", "train-encoders", "embed-items",
                "pretrain", "precompute", "train", "evaluate", "export", "serve"]
    assert [name for name in listed if name in pipeline] == pipeline
    assert "pipeline's stages, in the order they run" in result.stdout


@pytest.mark.parametrize("command", ["generate", "import-movielens", "demo", "train-encoders",
                                     "pretrain", "train", "evaluate", "export"])
def test_every_command_has_help(command):
    result = ppm(command, "--help")
    assert result.returncode == 0 and "usage: ppm " + command in result.stdout


@pytest.mark.parametrize("command, flag", [("preprocess", "--data"), ("precompute", "--work"),
                                           ("embed-items", "--work"),
                                           ("serve", "--rest_api_port")])
def test_beam_jobs_and_the_server_take_their_own_flags(command, flag):
    result = ppm(command, "--help")
    assert result.returncode == 0 and flag in result.stdout
    # Only our lines: no TensorFlow/absl/oneDNN start-up notices, no Beam apitools warning.
    assert result.stderr == ""
    assert result.stdout.startswith(f"usage: ppm {command} ")


def test_a_failing_command_prints_only_its_error(tmp_path):
    result = ppm("evaluate", "--work", str(tmp_path / "no-such-work"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("ppm evaluate: error: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_tensorflow_that_fails_to_import_shows_what_it_printed(tmp_path):
    broken = tmp_path / "tensorflow"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'native loader: libcudnn.so.9 missing\\n')\n"
        "raise ImportError('broken TensorFlow build')\n")
    result = ppm("train", "--work", str(tmp_path), "--model", "base",
                 PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    assert result.returncode == 1
    assert "native loader: libcudnn.so.9 missing" in result.stderr
    assert "ImportError: broken TensorFlow build" in result.stderr


@pytest.mark.parametrize("command", ["pretrain", "train"])
def test_training_flags_override_only_the_preset_fields_given(command):
    from ppm_tf.cli import _overrides

    model = ["--model", "urm"] if command == "train" else []
    parser = build_parser()
    plain = parser.parse_args([command, "--work", "w", *model])
    assert _overrides(plain) == {}
    ranked = parser.parse_args([command, "--work", "w", *model, "--ranking-loss", "listwise",
                                "--ranking-loss-weight", "0.5", "--save-every-steps", "10"])
    assert _overrides(ranked) == {"ranking_loss": "listwise", "ranking_loss_weight": 0.5,
                                  "save_every_steps": 10}
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--work", "w", *model, "--ranking-loss", "softmax"])


@pytest.mark.parametrize("command", ["pretrain", "train"])
def test_set_replaces_any_preset_field_read_as_its_type(command):
    from ppm_tf.cli import _overrides

    model = ["--model", "urm"] if command == "train" else []
    parser = build_parser()
    settings = parser.parse_args([command, "--work", "w", *model, "--set", "learning_rate=0.01",
                                  "--set", "count_offset=true", "--set", "mlp_units=[64, 32]",
                                  "--ranking-loss", "listwise"])
    assert _overrides(settings) == {"learning_rate": 0.01, "count_offset": True,
                                    "mlp_units": (64, 32), "ranking_loss": "listwise"}
    twice = parser.parse_args([command, "--work", "w", *model, "--set", "ranking_loss=pairwise",
                               "--ranking-loss", "listwise"])
    with pytest.raises(ValueError, match="ranking_loss: given by its own flag and by --set"):
        _overrides(twice)
    epochs_field = "train_epochs" if command == "train" else "pretrain_epochs"
    budget = parser.parse_args([command, "--work", "w", *model, "--epochs", "2",
                                "--set", f"{epochs_field}=3"])
    with pytest.raises(ValueError, match=f"{epochs_field}: given by its own flag and by --set"):
        _overrides(budget)


@pytest.mark.parametrize("setting, message", [
    ("learning_rate=fast", "learning_rate: 'fast' is not a number"),
    ("count_offset=1", "count_offset: '1' is not true or false"),
    ("mlp_units=[1.5]", "mlp_units: '[1.5]' is not a list of integers"),
    ("save_every_steps=often", "save_every_steps: 'often' is not an integer or null"),
    ("learning_rat=0.01", "'learning_rat=0.01' is not FIELD=VALUE with a model preset field"),
    ("learning_rate", "'learning_rate' is not FIELD=VALUE"),
])
def test_a_setting_of_the_wrong_type_or_field_is_a_usage_error_naming_it(setting, message,
                                                                          capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--work", "w", "--model", "lr", "--set", setting])
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_setting_trains_the_row_and_is_recorded(tiny_demo_run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(tiny_demo_run[0] / "work", work)
    result = ppm("train", "--work", str(work), "--model", "lr", "--set", "learning_rate=0.01",
                 "--set", "train_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((work / "models" / "lr" / "training.json").read_text())
    assert summary["config"]["learning_rate"] == 0.01
    assert summary["config"]["train_epochs"] == 2
    refused = ppm("train", "--work", str(work), "--model", "lr", "--set", "ranking_loss=softmax")
    assert refused.returncode == 2
    assert refused.stderr.startswith("ppm train: error: ranking_loss must be one of")


def test_pretraining_reads_requests_in_groups_of_the_size_given():
    from ppm_tf.cli import _overrides

    parser = build_parser()
    assert _overrides(parser.parse_args(["pretrain", "--work", "w", "--request-group", "8"])) \
        == {"pretrain_request_group": 8}
    assert _overrides(parser.parse_args(["pretrain", "--work", "w", "--request-group", "auto"])) \
        == {"pretrain_request_group": "auto"}
    with pytest.raises(SystemExit):
        parser.parse_args(["pretrain", "--work", "w", "--request-group", "often"])
    with pytest.raises(SystemExit):  # fine-tuning reads cached states: no tower to save
        parser.parse_args(["train", "--work", "w", "--model", "urm", "--request-group", "8"])


def test_only_pretraining_takes_the_towers_item_counts():
    from ppm_tf.cli import _overrides

    parser = build_parser()
    assert _overrides(parser.parse_args(["pretrain", "--work", "w", "--tower-item-counts"])) \
        == {"tower_item_counts": True}
    with pytest.raises(SystemExit):  # the tower is trained and exported by pretraining only
        parser.parse_args(["train", "--work", "w", "--model", "urm", "--tower-item-counts"])
