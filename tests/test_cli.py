"""The command line: every stage has help, user errors are one clear line with exit status 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from detoxrl.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", ["prepare", "sft", "train-rm", "ppo", "eval", "report", "run", "judge-eval"])
def test_every_stage_has_help(cmd):
    res = runner.invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_config_command_prints_resolved_yaml():
    res = runner.invoke(app, ["config", "--set", "ppo.steps=7"])
    assert res.exit_code == 0 and "steps: 7" in res.output


def test_bad_override_is_one_clear_error():
    res = runner.invoke(app, ["config", "--set", "ppo.cliprange=-1"])
    assert res.exit_code == 2
    assert "ppo.cliprange" in res.output and "Traceback" not in res.output


def test_run_rejects_unknown_force_stage(tmp_path):
    res = runner.invoke(app, ["run", "--force", "nope", "--run-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown stage" in res.output
