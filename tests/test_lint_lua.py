"""luacheck and stylua keep the Lua side consistent (configuration: .luacheckrc, .stylua.toml)."""

from __future__ import annotations

import subprocess

import pytest

from tests.daemon_client import ROOT
from tests.lint_tools import find_tool

ARGS = {
    "luacheck": ["--no-color", "--formatter", "plain", "lua", "plugin"],
    "stylua": ["--check", "lua", "plugin"],
}


@pytest.mark.parametrize("tool", sorted(ARGS))
def test_lua_lint_and_format(tool):
    out = subprocess.run([find_tool(tool), *ARGS[tool]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
