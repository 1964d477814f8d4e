"""The `lofi-lora` entry point: shared flags, exit codes and environment checks (subcommands test themselves)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scripts.lofi_lora import cli, env
from scripts.lofi_lora.errors import ENVIRONMENT, USAGE, LoraError

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_points_at_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lofi-lora"] == "scripts.lofi_lora.cli:main"


def test_version_and_help_exit_zero(capsys):
    assert cli.main(["--version"]) == 0
    assert "lofi-lora" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error(capsys):
    assert cli.main(["no-such-command"]) == USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_runs_as_a_module_without_torch_for_help():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, scripts.lofi_lora.cli as c; c.main(['--help']); print('torch' in sys.modules)",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "daemon"), str(ROOT)])},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().endswith("False")


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(env.DATA_DIR_ENV, str(tmp_path))
    assert env.data_dir() == tmp_path
    monkeypatch.delenv(env.DATA_DIR_ENV)
    with pytest.raises(LoraError) as e:
        env.data_dir()
    assert e.value.code == USAGE and env.DATA_DIR_ENV in e.value.message
    file = tmp_path / "f"
    file.write_text("")
    with pytest.raises(LoraError):
        env.data_dir(file)


def test_missing_base_model_is_an_environment_error(tmp_path, monkeypatch):
    monkeypatch.setenv(env.ACE_STEP_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(LoraError) as e:
        env.ace_step_dir()
    assert e.value.code == ENVIRONMENT and "does not exist" in e.value.message


def test_json_error_shape(monkeypatch, capsys):
    class Failing:
        HELP = {"prepare": "fails"}

        @staticmethod
        def add_arguments(parser, command):
            pass

        @staticmethod
        def run(args):
            raise LoraError("bad input")

    monkeypatch.setattr(cli, "_module", lambda name: Failing if name == "prepare" else None)
    assert cli.main(["prepare", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": False, "error": "bad input", "exit_code": 1}


def test_a_subcommand_missing_a_package_says_so_and_the_others_still_run(monkeypatch, capsys):
    real = cli.importlib.import_module

    def without_pyarrow(name, *a, **kw):
        if name.endswith(".dataset"):
            raise ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow")
        return real(name, *a, **kw)

    monkeypatch.setattr(cli.importlib, "import_module", without_pyarrow)
    assert cli.main(["dataset", "--repeat", "2"]) == ENVIRONMENT
    assert "needs the pyarrow package: run scripts/setup --train" in capsys.readouterr().err
    assert cli.main(["prompts", "--list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["presets"]) == 38
    # unknown flags stay usage errors where the module is there
    assert cli.main(["prompts", "--bogus"]) == USAGE
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
