"""Install an adapter where the daemon finds LoRA styles: `$LOFI_LORA_DIR/<name>/pytorch_lora_weights.safetensors`
(default `<cache dir>/lora`, the daemon's own rule), so `:Lofi generate backend=ace_step lora=<name>` uses it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import USAGE, LoraError

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def lora_dir() -> Path:
    from lofi_daemon.backends.ace_step.backend import ENV_LORA_DIR
    from lofi_daemon.config import Settings

    env = os.environ.get(ENV_LORA_DIR)
    return Path(env).expanduser() if env else Settings.from_env().cache_dir / "lora"


def install(adapter: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise LoraError(f"style name {name!r}: letters, digits, '.', '_' or '-' (at most 64)", USAGE)
    src = adapter / WEIGHTS_NAME if adapter.is_dir() else adapter
    dst_dir = lora_dir() / name
    dst_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst_dir, prefix=".install.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst_dir / WEIGHTS_NAME)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst_dir / WEIGHTS_NAME
