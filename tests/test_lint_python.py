"""ruff keeps the Python side consistent (and catches print() in daemon code, which would corrupt stdio)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.daemon_client import ROOT


def ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed")
    return [exe]


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
