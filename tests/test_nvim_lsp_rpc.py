"""Neovim's own vim.lsp.rpc client talks to the daemon: the framing is compatible."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.daemon_client import ROOT, daemon_env
from tests.nvim_path import nvim_binary


def test_vim_lsp_rpc_client_speaks_to_the_daemon(tmp_path):
    nvim = nvim_binary()
    if nvim is None:
        pytest.skip("no nvim")
    env = daemon_env(tmp_path)
    script = ROOT / "tests" / "lua" / "lsp_rpc_client.lua"
    proc = subprocess.run(
        [nvim, "--clean", "--headless", "-l", str(script), sys.executable, env["PYTHONPATH"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,  # above the script's own 2 × 120 s ceilings
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["server"]["name"] == "lofi-daemon" and "init_err" not in out
    assert out["generate"]["status"] == "queued"
    assert out["unknown"]["code"] == -32601
    assert out["notifications"][0] == "generation_started"
    assert "generation_progress" in out["notifications"]
    assert os.path.exists(out["complete"]["path"])
    assert out["shutdown"] == {"ok": True} and out["exit_code"] == 0
