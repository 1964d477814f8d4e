"""ruff keeps the Python side consistent (and catches print() in daemon code, which would corrupt stdio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_client import ROOT
from tests.lint_tools import find_tool


def ruff() -> list[str]:
    return [find_tool("ruff")]


def test_ruff_check():
    out = subprocess.run(
        [*ruff(), "check", "daemon", "scripts", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format():
    out = subprocess.run(
        [*ruff(), "format", "--check", "daemon", "scripts", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_runtime_never_imports_torch():
    code = (
        "import sys, lofi_daemon.daemon, lofi_daemon.cli, lofi_daemon.backends.musicgen.backend, lofi_daemon.backends.ace_step.backend; "
        "bad = [m for m in ('torch', 'transformers', 'diffusers', 'optimum') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT / "daemon").returncode == 0


def test_mypy():
    # configuration (files, strictness) is [tool.mypy] in pyproject.toml
    out = subprocess.run([find_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_missing_tool_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        find_tool("lofi-no-such-linter")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        find_tool("lofi-no-such-linter")


def test_pre_commit_hooks_run_every_lint_and_type_tool():
    import yaml  # comes with huggingface_hub

    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert set(hooks) == {"ruff", "ruff-format", "mypy", "stylua", "luacheck"}
    for hook in hooks.values():
        assert hook["language"] == "system"  # local tools: nothing to fetch
        exe = hook["entry"].split()[0]
        # the entry names the binary the tests use: a path inside the checkout, or a command on PATH
        assert Path(exe).name in {"ruff", "mypy", "stylua", "luacheck"}
        assert "/" not in exe or exe.startswith((".venv/", ".tools/"))
