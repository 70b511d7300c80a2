"""The ``ppm`` command as users run it: a real subprocess, real files."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ppm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ppm_tf.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


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
