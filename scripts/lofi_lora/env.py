"""Environment variables of lofi-lora, validated before any work starts."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ENVIRONMENT, USAGE, LoraError

DATA_DIR_ENV = "LOFI_LORA_DATA_DIR"
ACE_STEP_DIR_ENV = "LOFI_ACE_STEP_DIR"


def data_dir(explicit: Path | None = None) -> Path:
    """The dataset folder: `--data-dir`, else $LOFI_LORA_DATA_DIR; it must be a directory (created if missing)."""
    raw = explicit if explicit is not None else os.environ.get(DATA_DIR_ENV)
    if not raw:
        raise LoraError(f"no dataset folder: pass --data-dir or set {DATA_DIR_ENV}", USAGE)
    path = Path(raw).expanduser()
    if path.exists() and not path.is_dir():
        raise LoraError(f"{DATA_DIR_ENV}={raw} is not a directory", USAGE)
    return path


def ace_step_dir(explicit: Path | None = None) -> Path:
    """The base ACE-Step model folder (`--base`, else $LOFI_ACE_STEP_DIR); it must exist."""
    raw = explicit if explicit is not None else os.environ.get(ACE_STEP_DIR_ENV)
    if not raw:
        raise LoraError(
            f"no base model: pass --base or set {ACE_STEP_DIR_ENV} to an ACE-Step folder", ENVIRONMENT
        )
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise LoraError(
            f"base model folder {path} does not exist ({ACE_STEP_DIR_ENV} or --base)", ENVIRONMENT
        )
    return path
