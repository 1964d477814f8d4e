"""Finding the lint and type tools the tests run. On a developer's machine a missing tool skips its test; in CI
(`CI` set) it fails the run, because CI installs every tool and a missing one means the check silently stopped."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.daemon_client import ROOT

# where the project installs its tools: the venv (ruff, mypy) and the local npm prefix (stylua)
TOOL_DIRS = (ROOT / ".venv" / "bin", ROOT / ".tools" / "node_modules" / ".bin")


def find_tool(name: str) -> str:
    for folder in TOOL_DIRS:
        exe = shutil.which(name, path=str(folder))
        if exe:
            return exe
    exe = shutil.which(name)
    if exe:
        return exe
    message = f"{name} is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI is set: CI must run every lint and type check", pytrace=False)
    pytest.skip(message)
