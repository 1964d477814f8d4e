"""A LoRA style installed in the LoRA folder shows in `:Lofi models` and completes after `lora=` in a real
Neovim driving the real daemon (the ACE-Step backend lists the folder; no model is loaded for either)."""

from __future__ import annotations

import numpy as np

from tests.ace_step_helpers import FIXTURE
from tests.daemon_client import CEILING
from tests.nvim_helpers import configure, daemon_env, embedded_nvim, real_daemon_cmd, wait_for


def install_style(folder, name):
    from safetensors.numpy import save_file

    d = folder / name
    d.mkdir(parents=True)
    save_file(
        {
            "transformer_blocks.0.attn.to_q.lora_A.weight": np.ones((2, 32), np.float32),
            "transformer_blocks.0.attn.to_q.lora_B.weight": np.ones((32, 2), np.float32),
        },
        str(d / "pytorch_lora_weights.safetensors"),
    )


def test_installed_style_shows_in_models_and_completes_after_lora(tmp_path):
    styles = tmp_path / "styles"
    install_style(styles, "dusty-tape")
    env = daemon_env(tmp_path)
    env.update(LOFI_LORA_DIR=str(styles), LOFI_ACE_STEP_DIR=str(FIXTURE))
    with embedded_nvim(tmp_path, env=env) as nvim:
        configure(nvim, {"daemon": {"cmd": real_daemon_cmd(), "request_timeout_ms": int(CEILING * 1000)}})
        nvim.exec_lua("require('lofi.client').start()")
        wait_for(nvim, "return require('lofi.client').is_ready() or nil")
        lines = nvim.exec_lua(
            "local err, res = require('lofi.client').request_sync('get_backends', nil, ...)"
            " return require('lofi.format').backends(res)",
            int(CEILING * 1000),
        )
        assert "    LoRA styles (lora=): dusty-tape" in lines
        # a style installed while the daemon runs completes too (completion asks the running daemon)
        install_style(styles, "vinyl")
        got = nvim.funcs.getcompletion("Lofi generate lora=", "cmdline")
        assert got == ["lora=dusty-tape", "lora=vinyl"]
