"""One command line for every job: the console script, the job scripts and the error policy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mentalchat.cli import build_parser, commands, job_main, main
from mentalchat.core.stage import get_stage

REPO = Path(__file__).resolve().parents[1]
JOBS = {"dataset": "build_dataset", "finetune": "finetune", "generate": "generate", "judge": "judge",
        "import-dataset": "import_dataset",
        "stats": "stats", "pipeline": "pipeline", "deidentify": "deidentify", "crisis": "crisis", "fastchat": "fastchat",
        "human-study": "human_study", "inspect-logs": "inspect_logs"}
KEY = "sk-test-Abcdefghijklmnopqrstuvwx"


def test_console_script_lists_every_command() -> None:
    script = Path(sys.executable).with_name("mentalchat")
    assert script.is_file(), "the mentalchat console script is not installed (pip install -e .)"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in JOBS:
        assert re.search(rf"^ +{name}\b", out.stdout, re.M), name
    assert set(commands()) == set(JOBS)


def _options(parser) -> list[tuple]:
    return sorted((tuple(a.option_strings), a.dest, a.required, str(a.nargs), str(a.default)) for a in parser._actions)


@pytest.mark.parametrize("command", sorted(JOBS))
def test_job_script_and_console_command_take_the_same_options(command: str) -> None:
    job = f"jobs/{JOBS[command]}.py"
    assert (REPO / job).is_file()
    as_job = build_parser(command, prog=job)
    as_command = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    assert _options(as_job) == _options(as_command)
    assert as_job.epilog == as_command.epilog and as_job.description == as_command.description
    text = as_job.format_help()
    if command not in ("pipeline", "deidentify", "crisis", "import-dataset", "fastchat", "human-study", "inspect-logs"):
        assert "--config" in text and "--verbose" in text and "overrides" in text
        assert get_stage(command).usage.splitlines()[1].strip() in text  # the examples are shown


def test_job_script_runs_through_the_same_entry_point(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "stats.py"), "--config", str(tmp_path / "missing.yaml"),
         "--judgments", "x", "--output", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2 and out.stderr.strip() == f"error: config file not found: {tmp_path / 'missing.yaml'}"


def test_input_errors_exit_2_with_the_message_scrubbed(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    missing = tmp_path / f"{KEY}.yaml"
    assert main(["judge", "--config", str(missing), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config file not found:") and KEY not in err and "[REDACTED]" in err


def test_usage_errors_are_input_errors(tmp_path: Path, capsys) -> None:
    code = job_main("stats", ["--config", str(REPO / "configs" / "smoke.yaml"), "--output", str(tmp_path / "o")])
    assert code == 2 and "give at least one of --judgments, --fastchat, --human" in capsys.readouterr().err


def test_a_bug_exits_1_with_a_scrubbed_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    stage = get_stage("stats")

    def boom(cfg, args):
        raise RuntimeError(f"unexpected: header Authorization: Bearer {KEY}")

    monkeypatch.setattr(stage, "run_command", boom)
    code = main(["stats", "--config", str(REPO / "configs" / "smoke.yaml"), "--judgments", "x",
                 "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "RuntimeError: unexpected" in err and KEY not in err


def test_keys_named_by_the_config_are_scrubbed_too(tmp_path: Path, monkeypatch, capsys) -> None:
    """A judge engine's own key variable (not one of the usual names) is watched once the config loads."""
    monkeypatch.setenv("MY_GATEWAY_KEY", "gw-secret-0123456789")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "engines:\n  gw: {backend: openai, model: m, api_key_env: MY_GATEWAY_KEY}\n"
        "judge:\n  judges: [{engine: gw}]\n",
        encoding="utf-8",
    )
    code = main(["judge", "--config", str(cfg), "--questions", "gw-secret-0123456789.jsonl",
                 "--answers", "a.parquet", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "gw-secret-0123456789" not in err and "[REDACTED]" in err
